/*
 * Unit tests of recovery: a core rebuilt only from the rows it asked to persist continues exactly
 * where the old one stopped — states and versions, calls and their timers at their original
 * deadlines, unused grant nonces, remembered RPC replies, dedupe of CALL_UPDATE.
 */
#include "tests/unit/sig_harness.h"
#include "tests/unit/test.h"
#include "lib/util.h"

#include <errno.h>
#include <stdlib.h>

static char *dump(json_t *j)
{
    return json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
}

TEST(states_and_versions_survive_and_continue)
{
    th *t = th_new(NULL);
    char a[64], b[64];
    snprintf(a, sizeof a, "%s", th_connect(t, "100", "201", "1", "\"member\":{\"nick\":\"n\"}"));
    snprintf(b, sizeof b, "%s", th_connect(t, "100", "201", "2", "\"self_stream\":true"));
    json_t *r;
    char *p = xasprintf("{\"connection_id\":\"%s\",\"user_id\":\"1\",\"self_mute\":true,"
                        "\"viewer_stream_keys\":[\"100:201:%s\"]}",
                        a, b);
    CHECK_EQ_INT(th_rpc(t, "voice.update", p, &r), 200);
    free(p);
    CHECK_EQ_INT(th_rpc(t, "voice.set_server_state",
                        "{\"guild_id\":\"100\",\"user_id\":\"2\",\"deaf\":true}", &r),
                 200);
    sig_conn_confirm(t->c, a, t->now);
    sig_conn_confirm(t->c, b, t->now);
    CHECK_EQ_INT(th_rpc(t, "voice.get", "{\"guild_id\":\"100\"}", &r), 200);
    char *before = dump(r);
    CHECK_EQ_INT(th_restart(t), 0);
    CHECK_EQ_INT(th_rpc(t, "voice.get", "{\"guild_id\":\"100\"}", &r), 200);
    char *after = dump(r);
    CHECK_EQ_STR(after, before);
    free(before);
    free(after);
    /* versions continue: +1 from where they were, never repeating */
    p = xasprintf("{\"connection_id\":\"%s\",\"user_id\":\"1\",\"self_mute\":false}", a);
    CHECK_EQ_INT(th_rpc(t, "voice.update", p, &r), 200);
    free(p);
    CHECK_EQ_INT(jint(r, "voice_state.version"), 2);
    /* remembered server deaf applies to the user's next connection */
    CHECK_EQ_INT(th_rpc(t, "voice.connect",
                        "{\"guild_id\":\"100\",\"channel_id\":\"202\",\"user_id\":\"2\","
                        "\"session_id\":\"z\"}",
                        &r),
                 200);
    CHECK_EQ_INT(jbool(r, "voice_state.deaf"), 1);
    th_free(t);
}

TEST(pending_gate_keeps_its_original_deadline)
{
    th *t = th_new(NULL);
    CHECK(th_connect(t, "100", "201", "1", NULL));
    th_advance(t, 20000);
    CHECK_EQ_INT(th_restart(t), 0);
    th_drop_events(t);
    th_advance(t, 9999);
    CHECK_EQ_INT(th_nevents(t), 0);
    th_advance(t, 1);
    CHECK_EQ_INT(th_nevents(t), 1); /* 30 s after the join, not after the restart */
    th_free(t);
}

TEST(overdue_timers_fire_at_restart)
{
    th *t = th_new(NULL);
    json_t *r;
    th_rpc(t, "call.create",
           "{\"channel_id\":\"500\",\"message_id\":\"9\",\"caller_id\":\"1\","
           "\"recipients\":[\"1\",\"2\"]}",
           &r);
    th_drop_events(t);
    t->now += 45000; /* the node was down across the ring deadline */
    CHECK_EQ_INT(th_restart(t), 0);
    /* the unanswered call ended with its last ring, as soon as the node came back */
    json_t *e = th_event(t);
    CHECK_EQ_STR(jstr(e, "event"), "CALL_DELETE");
    json_decref(e);
    th_free(t);
}

TEST(calls_ring_timers_and_dedupe_survive)
{
    th *t = th_new(NULL);
    json_t *r;
    th_rpc(t, "call.create",
           "{\"channel_id\":\"500\",\"message_id\":\"9\",\"caller_id\":\"1\","
           "\"recipients\":[\"1\",\"2\",\"3\"],\"region\":\"eu\"}",
           &r);
    char a[64];
    json_t *rr;
    CHECK_EQ_INT(th_rpc(t, "voice.connect",
                        "{\"channel_id\":\"500\",\"user_id\":\"1\",\"session_id\":\"s\"}", &rr),
                 200);
    snprintf(a, sizeof a, "%s", jstr(rr, "voice_state.connection_id"));
    sig_conn_confirm(t->c, a, t->now);
    th_advance(t, 10000);
    CHECK_EQ_INT(th_rpc(t, "call.get", "{\"channel_id\":\"500\"}", &r), 200);
    char *before = dump(r);
    CHECK_EQ_INT(th_restart(t), 0);
    CHECK_EQ_INT(th_rpc(t, "call.get", "{\"channel_id\":\"500\"}", &r), 200);
    char *after = dump(r);
    CHECK_EQ_STR(after, before);
    free(before);
    free(after);
    th_drop_events(t);
    /* same region again: nothing visible changed, so no CALL_UPDATE after the restart either */
    CHECK_EQ_INT(th_rpc(t, "call.update_region", "{\"channel_id\":\"500\",\"region\":\"eu\"}", &r),
                 200);
    CHECK_EQ_INT(th_nevents(t), 0);
    /* the rings still expire 30 s after they started, not 30 s after the restart */
    th_advance(t, 19999);
    CHECK_EQ_INT(th_nevents(t), 0);
    th_advance(t, 1);
    CHECK(th_nevents(t) >= 1);
    CHECK_EQ_INT(th_rpc(t, "call.get", "{\"channel_id\":\"500\"}", &r), 200);
    CHECK_EQ_INT(json_array_size(jget(r, "call.ringing")), 0);
    /* the history survived: the end names the caller */
    char *p = xasprintf("{\"connection_id\":\"%s\"}", a);
    th_drop_events(t);
    CHECK_EQ_INT(th_rpc(t, "voice.disconnect", p, &r), 200);
    free(p);
    json_t *e;
    const char *who = NULL;
    while ((e = th_event(t)) != NULL) {
        if (strcmp(jstr(e, "event"), "CALL_ENDED") == 0) who = jstr(e, "data.participants.0");
        if (who) {
            CHECK_EQ_STR(who, "1");
            json_decref(e);
            break;
        }
        json_decref(e);
    }
    CHECK(who != NULL);
    th_free(t);
}

TEST(unused_grant_survives_used_one_stays_used)
{
    th *t = th_new(NULL);
    json_t *r;
    th_rpc(t, "voice.connect",
           "{\"guild_id\":\"100\",\"channel_id\":\"201\",\"user_id\":\"1\",\"session_id\":\"s\"}",
           &r);
    char tok1[2048];
    snprintf(tok1, sizeof tok1, "%s", jstr(r, "voice_server.token"));
    th_rpc(t, "voice.connect",
           "{\"guild_id\":\"100\",\"channel_id\":\"201\",\"user_id\":\"2\",\"session_id\":\"s2\"}",
           &r);
    char tok2[2048];
    snprintf(tok2, sizeof tok2, "%s", jstr(r, "voice_server.token"));
    sig_identity id;
    CHECK_EQ_INT(sig_grant_redeem(t->c, tok1, t->now, &id), 0);
    th_advance(t, 0); /* collect the redeem's writes */
    CHECK_EQ_INT(th_restart(t), 0);
    CHECK_EQ_INT(sig_grant_redeem(t->c, tok1, t->now, &id), -EALREADY);
    CHECK_EQ_INT(sig_grant_redeem(t->c, tok2, t->now, &id), 0);
    th_free(t);
}

TEST(acknowledged_request_ids_are_not_forgotten)
{
    th *t = th_new(NULL);
    const char *body = "{\"method\":\"voice.connect\",\"request_id\":\"gw-77\",\"params\":{"
                       "\"guild_id\":\"1\",\"channel_id\":\"2\",\"user_id\":\"3\","
                       "\"session_id\":\"s\"}}";
    json_t *r;
    CHECK_EQ_INT(th_reply(t, th_submit(t, body), &r), 200);
    char *first = dump(r);
    CHECK_EQ_INT(th_restart(t), 0);
    th_drop_events(t);
    CHECK_EQ_INT(th_reply(t, th_submit(t, body), &r), 200);
    char *again = dump(r);
    CHECK_EQ_STR(again, first);
    free(first);
    free(again);
    CHECK_EQ_INT(th_nevents(t), 0);
    CHECK_EQ_INT(th_rpc(t, "voice.get", "{\"user_id\":\"3\"}", &r), 200);
    CHECK_EQ_INT(json_array_size(jget(r, "voice_states")), 1);
    th_free(t);
}

TEST(bad_rows_are_refused_not_trusted)
{
    th *t = th_new(NULL);
    json_t *row = json_pack("{s:s}", "connection_id", "short");
    CHECK_EQ_INT(sig_core_restore(t->c, SIG_W_CONN_PUT, "short", row), -EINVAL);
    json_decref(row);
    row = json_pack("{s:s,s:[]}", "channel_id", "x", "rings");
    CHECK_EQ_INT(sig_core_restore(t->c, SIG_W_CALL_PUT, "5", row), -EINVAL);
    json_decref(row);
    row = json_pack("{s:b,s:b}", "mute", 1, "deaf", 0);
    CHECK_EQ_INT(sig_core_restore(t->c, SIG_W_SERVER_PUT, "no-colon", row), -EINVAL);
    CHECK_EQ_INT(sig_core_restore(t->c, SIG_W_CONN_DEL, "x", row), -EINVAL);
    json_decref(row);
    th_free(t);
}

int main(void)
{
    RUN(states_and_versions_survive_and_continue);
    RUN(pending_gate_keeps_its_original_deadline);
    RUN(overdue_timers_fire_at_restart);
    RUN(calls_ring_timers_and_dedupe_survive);
    RUN(unused_grant_survives_used_one_stays_used);
    RUN(acknowledged_request_ids_are_not_forgotten);
    RUN(bad_rows_are_refused_not_trusted);
    return test_summary();
}
