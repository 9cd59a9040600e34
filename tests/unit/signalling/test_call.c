/*
 * Unit tests of the DM / group-DM call lifecycle (spec §4) with a test clock: ring timers,
 * idle timer, decline, join, last leave, dedupe of CALL_UPDATE, the join/create race.
 */
#include "tests/unit/sig_harness.h"
#include "tests/unit/test.h"
#include "lib/util.h"

#include <stdlib.h>

#define CH "500"
#define CREATE_3                                                                                   \
    "{\"channel_id\":\"500\",\"message_id\":\"900\",\"caller_id\":\"1\","                          \
    "\"recipients\":[\"1\",\"2\",\"3\"],\"region\":\"eu\"}"

/* Joins the call and confirms the connection (its media transport is up). */
static const char *dm_join(th *t, const char *user)
{
    static char id[64];
    char *p = xasprintf("{\"channel_id\":\"500\",\"user_id\":\"%s\",\"session_id\":\"s-%s\"}", user,
                        user);
    json_t *r;
    int st = th_rpc(t, "voice.connect", p, &r);
    free(p);
    if (st != 200) return NULL;
    snprintf(id, sizeof id, "%s", jstr(r, "voice_state.connection_id"));
    if (sig_conn_confirm(t->c, id, t->now) != 0) return NULL;
    return id;
}

static int leave(th *t, const char *cid)
{
    char *p = xasprintf("{\"connection_id\":\"%s\"}", cid);
    json_t *r;
    int st = th_rpc(t, "voice.disconnect", p, &r);
    free(p);
    return st;
}

/* Pops events until one named `name`; NULL if none. Other events are dropped. */
static json_t *next_named(th *t, const char *name)
{
    json_t *e;
    while ((e = th_event(t)) != NULL) {
        if (strcmp(jstr(e, "event"), name) == 0) return e;
        json_decref(e);
    }
    return NULL;
}

static size_t count_named(th *t, const char *name)
{
    size_t n = 0;
    for (size_t i = 0; i < json_array_size(t->events); i++)
        n += strcmp(jstr(json_array_get(t->events, i), "event"), name) == 0;
    return n;
}

TEST(create_rings_everyone_but_the_caller)
{
    th *t = th_new(NULL);
    json_t *r;
    CHECK_EQ_INT(th_rpc(t, "call.create", CREATE_3, &r), 200);
    CHECK_EQ_INT(json_array_size(jget(r, "call.ringing")), 2);
    CHECK_EQ_STR(jstr(r, "call.ringing.0"), "2");
    CHECK_EQ_STR(jstr(r, "call.ringing.1"), "3");
    json_t *e = th_event(t);
    CHECK_EQ_STR(jstr(e, "event"), "CALL_CREATE");
    CHECK_EQ_STR(jstr(e, "scope.type"), "users");
    CHECK_EQ_INT(json_array_size(jget(e, "scope.user_ids")), 3);
    CHECK_EQ_STR(jstr(e, "data.channel_id"), CH);
    CHECK_EQ_STR(jstr(e, "data.message_id"), "900");
    CHECK_EQ_STR(jstr(e, "data.region"), "eu");
    CHECK_EQ_INT(json_array_size(jget(e, "data.voice_states")), 0);
    CHECK_EQ_INT(json_array_size(jget(e, "data.recipients")), 3);
    CHECK(jstr(e, "data.created_at") != NULL);
    json_decref(e);
    CHECK_EQ_INT(th_rpc(t, "call.create", CREATE_3, &r), 409);
    CHECK_EQ_STR(jstr(r, "code"), "CALL_ALREADY_EXISTS");
    th_free(t);
}

TEST(explicit_and_empty_ringing)
{
    th *t = th_new(NULL);
    json_t *r;
    CHECK_EQ_INT(th_rpc(t, "call.create",
                        "{\"channel_id\":\"500\",\"message_id\":\"900\",\"caller_id\":\"1\","
                        "\"recipients\":[\"1\",\"2\",\"3\"],\"ringing\":[\"3\"]}",
                        &r),
                 200);
    CHECK_EQ_INT(json_array_size(jget(r, "call.ringing")), 1);
    CHECK_EQ_STR(jstr(r, "call.ringing.0"), "3");
    CHECK(json_is_null(jget(r, "call.region")));
    CHECK_EQ_INT(th_rpc(t, "call.create",
                        "{\"channel_id\":\"501\",\"message_id\":\"901\",\"caller_id\":\"1\","
                        "\"recipients\":[\"1\",\"2\"],\"ringing\":[]}",
                        &r),
                 200);
    CHECK_EQ_INT(json_array_size(jget(r, "call.ringing")), 0);
    CHECK_EQ_INT(th_rpc(t, "call.create",
                        "{\"channel_id\":\"502\",\"message_id\":\"902\",\"caller_id\":\"1\","
                        "\"recipients\":[\"1\",\"2\"],\"ringing\":[\"7\"]}",
                        &r),
                 403);
    CHECK_EQ_STR(jstr(r, "code"), "NOT_CALL_RECIPIENT");
    CHECK_EQ_INT(th_rpc(t, "call.create",
                        "{\"channel_id\":\"503\",\"message_id\":\"903\",\"caller_id\":\"9\","
                        "\"recipients\":[\"1\",\"2\"]}",
                        &r),
                 400);
    CHECK_EQ_STR(jstr(r, "field"), "params.caller_id");
    th_free(t);
}

TEST(ring_times_out_after_30s_and_call_stays_with_caller)
{
    th *t = th_new(NULL);
    json_t *r;
    th_rpc(t, "call.create", CREATE_3, &r);
    CHECK(dm_join(t, "1"));
    th_drop_events(t);
    th_advance(t, 29999);
    CHECK_EQ_INT(th_nevents(t), 0);
    th_advance(t, 1);
    /* both rings started together: each expiry removes its user (dedupe may merge nothing) */
    json_t *e = next_named(t, "CALL_UPDATE");
    CHECK(e != NULL);
    json_decref(e);
    CHECK_EQ_INT(th_rpc(t, "call.get", "{\"channel_id\":\"500\"}", &r), 200);
    CHECK_EQ_INT(json_array_size(jget(r, "call.ringing")), 0);
    CHECK_EQ_INT(json_array_size(jget(r, "call.voice_states")), 1);
    sig_stats st;
    sig_get_stats(t->c, &st);
    CHECK_EQ_INT(st.ring_timed_out, 2);
    CHECK_EQ_INT(st.calls_active, 1);
    th_free(t);
}

TEST(unanswered_call_ends_when_its_last_ring_expires)
{
    th *t = th_new(NULL);
    json_t *r;
    th_rpc(t, "call.create",
           "{\"channel_id\":\"500\",\"message_id\":\"900\",\"caller_id\":\"1\","
           "\"recipients\":[\"1\",\"2\"]}",
           &r);
    th_drop_events(t);
    th_advance(t, 30000);
    json_t *e = th_event(t);
    CHECK_EQ_STR(jstr(e, "event"), "CALL_DELETE");
    CHECK_EQ_STR(jstr(e, "data.channel_id"), CH);
    CHECK_EQ_INT(json_object_size(jget(e, "data")), 1);
    json_decref(e);
    e = th_event(t);
    CHECK_EQ_STR(jstr(e, "event"), "CALL_ENDED");
    CHECK_EQ_STR(jstr(e, "scope.type"), "internal");
    CHECK_EQ_STR(jstr(e, "data.message_id"), "900");
    CHECK_EQ_INT(json_array_size(jget(e, "data.participants")), 0);
    CHECK(jstr(e, "data.ended_timestamp") != NULL);
    json_decref(e);
    CHECK_EQ_INT(th_rpc(t, "call.get", "{\"channel_id\":\"500\"}", &r), 404);
    CHECK_EQ_STR(jstr(r, "code"), "CALL_NOT_FOUND");
    th_free(t);
}

TEST(decline_does_not_end_the_call_idle_timer_does)
{
    th *t = th_new(NULL);
    json_t *r;
    th_rpc(t, "call.create",
           "{\"channel_id\":\"500\",\"message_id\":\"900\",\"caller_id\":\"1\","
           "\"recipients\":[\"1\",\"2\"]}",
           &r);
    th_drop_events(t);
    CHECK_EQ_INT(
        th_rpc(t, "call.stop_ringing", "{\"channel_id\":\"500\",\"user_ids\":[\"2\"]}", &r), 200);
    CHECK_EQ_INT(json_array_size(jget(r, "call.ringing")), 0);
    json_t *e = th_event(t);
    CHECK_EQ_STR(jstr(e, "event"), "CALL_UPDATE");
    CHECK_EQ_INT(json_array_size(jget(e, "data.ringing")), 0);
    CHECK(jget(e, "data.recipients") == NULL); /* CALL_UPDATE carries the reference's fields */
    json_decref(e);
    th_advance(t, 119999);
    CHECK_EQ_INT(th_nevents(t), 0);
    CHECK_EQ_INT(th_rpc(t, "call.get", "{\"channel_id\":\"500\"}", &r), 200);
    th_advance(t, 1);
    e = next_named(t, "CALL_DELETE");
    CHECK(e != NULL);
    json_decref(e);
    sig_stats st;
    sig_get_stats(t->c, &st);
    CHECK_EQ_INT(st.ring_declined, 1);
    th_free(t);
}

TEST(join_clears_ring_and_last_leave_ends_even_while_ringing)
{
    th *t = th_new(NULL);
    json_t *r;
    th_rpc(t, "call.create", CREATE_3, &r);
    char a[64], b[64];
    snprintf(a, sizeof a, "%s", dm_join(t, "1"));
    th_drop_events(t);
    snprintf(b, sizeof b, "%s", dm_join(t, "2"));
    /* VSU to the recipients, the grant, then CALL_UPDATE: 2 joined and no longer ringing */
    json_t *e = th_event(t);
    CHECK_EQ_STR(jstr(e, "event"), "VOICE_STATE_UPDATE");
    CHECK_EQ_STR(jstr(e, "scope.type"), "users");
    CHECK(json_is_null(jget(e, "data.guild_id")));
    CHECK(json_is_null(jget(e, "data.member")));
    json_decref(e);
    e = next_named(t, "CALL_UPDATE");
    CHECK(e != NULL);
    CHECK_EQ_INT(json_array_size(jget(e, "data.ringing")), 1);
    CHECK_EQ_STR(jstr(e, "data.ringing.0"), "3");
    CHECK_EQ_INT(json_array_size(jget(e, "data.voice_states")), 2);
    json_decref(e);
    /* 2 leaves: roster update; 1 leaves: the call ends though 3 is still ringing */
    CHECK_EQ_INT(leave(t, b), 200);
    e = next_named(t, "CALL_UPDATE");
    CHECK(e != NULL);
    CHECK_EQ_INT(json_array_size(jget(e, "data.voice_states")), 1);
    json_decref(e);
    CHECK_EQ_INT(leave(t, a), 200);
    e = th_event(t);
    CHECK_EQ_STR(jstr(e, "event"), "VOICE_STATE_UPDATE");
    json_decref(e);
    e = th_event(t);
    CHECK_EQ_STR(jstr(e, "event"), "CALL_DELETE");
    json_decref(e);
    e = th_event(t);
    CHECK_EQ_STR(jstr(e, "event"), "CALL_ENDED");
    CHECK_EQ_INT(json_array_size(jget(e, "data.participants")), 2);
    CHECK_EQ_STR(jstr(e, "data.participants.0"), "1");
    CHECK_EQ_STR(jstr(e, "data.participants.1"), "2");
    json_decref(e);
    sig_stats st;
    sig_get_stats(t->c, &st);
    CHECK_EQ_INT(st.ring_answered, 1);
    CHECK_EQ_INT(st.calls_ended, 1);
    /* the ring timer of 3 fires into nothing */
    th_advance(t, 60000);
    CHECK_EQ_INT(th_nevents(t), 0);
    th_free(t);
}

TEST(idle_call_ends_after_120s_and_a_join_cancels_it)
{
    th *t = th_new(NULL);
    json_t *r;
    th_rpc(t, "call.create",
           "{\"channel_id\":\"500\",\"message_id\":\"900\",\"caller_id\":\"1\","
           "\"recipients\":[\"1\",\"2\"],\"ringing\":[]}",
           &r);
    th_advance(t, 60000);
    char a[64];
    snprintf(a, sizeof a, "%s", dm_join(t, "1"));
    CHECK(sig_conn_confirm(t->c, a, t->now) == 0);
    th_drop_events(t);
    th_advance(t, 600000);
    CHECK_EQ_INT(count_named(t, "CALL_DELETE"), 0);
    CHECK_EQ_INT(th_rpc(t, "call.get", "{\"channel_id\":\"500\"}", &r), 200);
    /* a second call nobody joins */
    th_rpc(t, "call.create",
           "{\"channel_id\":\"600\",\"message_id\":\"901\",\"caller_id\":\"1\","
           "\"recipients\":[\"1\",\"2\"],\"ringing\":[]}",
           &r);
    th_drop_events(t);
    th_advance(t, 119999);
    CHECK_EQ_INT(th_nevents(t), 0);
    th_advance(t, 1);
    CHECK_EQ_INT(count_named(t, "CALL_DELETE"), 1);
    th_free(t);
}

TEST(identical_call_update_is_never_sent_twice)
{
    th *t = th_new(NULL);
    json_t *r;
    th_rpc(t, "call.create", CREATE_3, &r);
    th_drop_events(t);
    /* ringing someone already ringing: timer reset, nothing visible */
    CHECK_EQ_INT(th_rpc(t, "call.ring", "{\"channel_id\":\"500\",\"user_ids\":[\"2\"]}", &r), 200);
    CHECK_EQ_INT(th_nevents(t), 0);
    CHECK_EQ_INT(th_rpc(t, "call.update_region", "{\"channel_id\":\"500\",\"region\":\"eu\"}", &r),
                 200);
    CHECK_EQ_INT(th_nevents(t), 0);
    CHECK_EQ_INT(th_rpc(t, "call.update_region", "{\"channel_id\":\"500\",\"region\":\"us\"}", &r),
                 200);
    CHECK_EQ_INT(count_named(t, "CALL_UPDATE"), 1);
    th_drop_events(t);
    /* a flag change of a participant is a VOICE_STATE_UPDATE only */
    char a[64];
    snprintf(a, sizeof a, "%s", dm_join(t, "1"));
    th_drop_events(t);
    char *p = xasprintf("{\"connection_id\":\"%s\",\"user_id\":\"1\",\"self_mute\":true}", a);
    CHECK_EQ_INT(th_rpc(t, "voice.update", p, &r), 200);
    free(p);
    CHECK_EQ_INT(th_nevents(t), 1);
    CHECK_EQ_INT(count_named(t, "VOICE_STATE_UPDATE"), 1);
    th_free(t);
}

TEST(ring_again_restarts_the_30s_timer)
{
    th *t = th_new(NULL);
    json_t *r;
    th_rpc(t, "call.create",
           "{\"channel_id\":\"500\",\"message_id\":\"900\",\"caller_id\":\"1\","
           "\"recipients\":[\"1\",\"2\"]}",
           &r);
    CHECK(dm_join(t, "1"));
    th_advance(t, 20000);
    CHECK_EQ_INT(th_rpc(t, "call.ring", "{\"channel_id\":\"500\",\"user_ids\":[\"2\"]}", &r), 200);
    th_drop_events(t);
    th_advance(t, 10000); /* 30 s after the first ring: still ringing */
    CHECK_EQ_INT(th_nevents(t), 0);
    th_advance(t, 20000); /* 30 s after the second */
    CHECK_EQ_INT(count_named(t, "CALL_UPDATE"), 1);
    th_free(t);
}

TEST(join_before_create_is_held_then_proceeds)
{
    th *t = th_new(NULL);
    uint64_t req = th_submit(t, "{\"method\":\"voice.connect\",\"params\":{\"channel_id\":\"500\","
                                "\"user_id\":\"1\",\"session_id\":\"s-1\"},\"request_id\":\"j1\"}");
    json_t *r;
    CHECK_EQ_INT(th_reply(t, req, &r), 0); /* no reply yet */
    sig_stats st;
    sig_get_stats(t->c, &st);
    CHECK_EQ_INT(st.held_joins, 1);
    th_advance(t, 2000);
    CHECK_EQ_INT(th_reply(t, req, &r), 0);
    CHECK_EQ_INT(th_rpc(t, "call.create", CREATE_3, &r), 200);
    CHECK_EQ_INT(th_reply(t, req, &r), 200);
    CHECK_EQ_STR(jstr(r, "voice_state.channel_id"), CH);
    /* CALL_CREATE first, then the join's events */
    json_t *e = th_event(t);
    CHECK_EQ_STR(jstr(e, "event"), "CALL_CREATE");
    json_decref(e);
    e = th_event(t);
    CHECK_EQ_STR(jstr(e, "event"), "VOICE_STATE_UPDATE");
    json_decref(e);
    /* the retried request_id returns the same reply */
    uint64_t again =
        th_submit(t, "{\"method\":\"voice.connect\",\"params\":{\"channel_id\":\"500\","
                     "\"user_id\":\"1\",\"session_id\":\"s-1\"},\"request_id\":\"j1\"}");
    CHECK_EQ_INT(th_reply(t, again, &r), 200);
    CHECK_EQ_INT(th_rpc(t, "voice.get", "{\"channel_id\":\"500\"}", &r), 200);
    CHECK_EQ_INT(json_array_size(jget(r, "voice_states")), 1);
    th_free(t);
}

TEST(join_without_call_fails_after_3s)
{
    th *t = th_new(NULL);
    uint64_t req = th_submit(t, "{\"method\":\"voice.connect\",\"params\":{\"channel_id\":\"500\","
                                "\"user_id\":\"1\",\"session_id\":\"s-1\"}}");
    json_t *r;
    th_advance(t, 2999);
    CHECK_EQ_INT(th_reply(t, req, &r), 0);
    th_advance(t, 1);
    CHECK_EQ_INT(th_reply(t, req, &r), 404);
    CHECK_EQ_STR(jstr(r, "code"), "CALL_NOT_FOUND");
    CHECK_EQ_INT(th_nevents(t), 0);
    /* a cancelled hold never answers */
    uint64_t req2 = th_submit(t, "{\"method\":\"voice.connect\",\"params\":{\"channel_id\":\"500\","
                                 "\"user_id\":\"1\",\"session_id\":\"s-1\"}}");
    sig_rpc_cancel(t->c, req2);
    th_advance(t, 5000);
    CHECK_EQ_INT(th_reply(t, req2, &r), 0);
    th_free(t);
}

TEST(non_recipient_cannot_join_and_calls_have_no_moderation)
{
    th *t = th_new(NULL);
    json_t *r;
    th_rpc(t, "call.create", CREATE_3, &r);
    CHECK_EQ_INT(th_rpc(t, "voice.connect",
                        "{\"channel_id\":\"500\",\"user_id\":\"8\",\"session_id\":\"s\"}", &r),
                 403);
    CHECK_EQ_STR(jstr(r, "code"), "NOT_CALL_RECIPIENT");
    CHECK_EQ_INT(th_rpc(t, "voice.connect",
                        "{\"channel_id\":\"500\",\"user_id\":\"2\",\"session_id\":\"s\","
                        "\"mute\":true,\"can_speak\":false,\"member\":{\"x\":1}}",
                        &r),
                 200);
    CHECK_EQ_INT(jbool(r, "voice_state.mute"), 0);
    CHECK_EQ_INT(jbool(r, "voice_state.suppress"), 0);
    CHECK(json_is_null(jget(r, "voice_state.member")));
    CHECK_EQ_STR(jstr(r, "voice_server.channel_id"), CH);
    CHECK(jget(r, "voice_server.guild_id") == NULL);
    /* a DM connection cannot move */
    char *p = xasprintf("{\"connection_id\":\"%s\",\"channel_id\":\"501\"}",
                        jstr(r, "voice_state.connection_id"));
    CHECK_EQ_INT(th_rpc(t, "voice.move", p, &r), 400);
    free(p);
    th_free(t);
}

TEST(call_delete_disconnects_everyone_and_ends)
{
    th *t = th_new(NULL);
    json_t *r;
    th_rpc(t, "call.create", CREATE_3, &r);
    CHECK(dm_join(t, "1"));
    CHECK(dm_join(t, "2"));
    th_drop_events(t);
    CHECK_EQ_INT(th_rpc(t, "call.delete", "{\"channel_id\":\"500\"}", &r), 200);
    CHECK_EQ_INT(count_named(t, "VOICE_STATE_UPDATE"), 2);
    CHECK_EQ_INT(count_named(t, "CALL_UPDATE"), 0);
    CHECK_EQ_INT(count_named(t, "CALL_DELETE"), 1);
    CHECK_EQ_INT(count_named(t, "CALL_ENDED"), 1);
    CHECK_EQ_INT(th_rpc(t, "voice.get", "{\"channel_id\":\"500\"}", &r), 200);
    CHECK_EQ_INT(json_array_size(jget(r, "voice_states")), 0);
    th_free(t);
}

TEST(five_connections_per_user_per_call)
{
    th *t = th_new(NULL);
    json_t *r;
    th_rpc(t, "call.create", CREATE_3, &r);
    for (int i = 0; i < 5; i++)
        CHECK(dm_join(t, "2"));
    CHECK(dm_join(t, "2") == NULL);
    th_free(t);
}

int main(void)
{
    RUN(create_rings_everyone_but_the_caller);
    RUN(explicit_and_empty_ringing);
    RUN(ring_times_out_after_30s_and_call_stays_with_caller);
    RUN(unanswered_call_ends_when_its_last_ring_expires);
    RUN(decline_does_not_end_the_call_idle_timer_does);
    RUN(join_clears_ring_and_last_leave_ends_even_while_ringing);
    RUN(idle_call_ends_after_120s_and_a_join_cancels_it);
    RUN(identical_call_update_is_never_sent_twice);
    RUN(ring_again_restarts_the_30s_timer);
    RUN(join_before_create_is_held_then_proceeds);
    RUN(join_without_call_fails_after_3s);
    RUN(non_recipient_cannot_join_and_calls_have_no_moderation);
    RUN(call_delete_disconnects_everyone_and_ends);
    RUN(five_connections_per_user_per_call);
    return test_summary();
}
