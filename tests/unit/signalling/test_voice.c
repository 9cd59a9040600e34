/*
 * Unit tests of the voice-state rules (spec §2) through the core's RPC entry, with a test clock.
 */
#include "tests/unit/sig_harness.h"
#include "tests/unit/test.h"
#include "lib/util.h"

#include <errno.h>
#include <stdlib.h>

#define G  "100"
#define C1 "201"
#define C2 "202"

static int rpc_own(th *t, const char *method, json_t **r, char *params)
{
    int st = th_rpc(t, method, params, r);
    free(params);
    return st;
}
#define rpcf(t, m, r, fmt, a, b) rpc_own((t), (m), (r), xasprintf(fmt, a, b))

TEST(connect_creates_state_version_0_with_grant)
{
    th *t = th_new(NULL);
    json_t *r;
    int st = th_rpc(t, "voice.connect",
                    "{\"guild_id\":\"100\",\"channel_id\":\"201\",\"user_id\":\"1\","
                    "\"session_id\":\"sess-a\",\"member\":{\"nick\":\"x\"},\"self_mute\":true}",
                    &r);
    CHECK_EQ_INT(st, 200);
    CHECK_EQ_INT(jint(r, "voice_state.version"), 0);
    CHECK_EQ_STR(jstr(r, "voice_state.channel_id"), C1);
    CHECK_EQ_STR(jstr(r, "voice_state.guild_id"), G);
    CHECK_EQ_STR(jstr(r, "voice_state.member.nick"), "x");
    CHECK_EQ_INT(jbool(r, "voice_state.self_mute"), 1);
    CHECK_EQ_INT(jbool(r, "voice_state.suppress"), 0);
    const char *id = jstr(r, "voice_state.connection_id");
    CHECK(id && strlen(id) == 22);
    CHECK_EQ_STR(jstr(r, "voice_server.connection_id"), id);
    CHECK_EQ_STR(jstr(r, "voice_server.endpoint"), "127.0.0.1:8701");
    CHECK_EQ_STR(jstr(r, "voice_server.guild_id"), G);
    CHECK(jget(r, "voice_server.channel_id") == NULL);
    CHECK(jstr(r, "voice_server.token") != NULL);
    /* exactly the reference's field set */
    const char *fields[] = {
        "guild_id",   "channel_id",  "user_id",   "connection_id", "session_id",
        "member",     "mute",        "deaf",      "self_mute",     "self_deaf",
        "self_video", "self_stream", "is_mobile", "suppress",      "viewer_stream_keys",
        "version"};
    CHECK_EQ_INT(json_object_size(jget(r, "voice_state")), ARRAY_LEN(fields));
    for (size_t i = 0; i < ARRAY_LEN(fields); i++)
        CHECK(jget(r, "voice_state") && jget(jget(r, "voice_state"), fields[i]));
    /* events: the state to the guild, the grant to the session */
    CHECK_EQ_INT(th_nevents(t), 2);
    json_t *e = th_event(t);
    CHECK_EQ_STR(jstr(e, "event"), "VOICE_STATE_UPDATE");
    CHECK_EQ_INT(jint(e, "seq"), 1);
    CHECK_EQ_STR(jstr(e, "scope.type"), "guild");
    CHECK_EQ_STR(jstr(e, "scope.guild_id"), G);
    CHECK_EQ_INT(json_array_size(jget(e, "scope.channel_ids")), 1);
    CHECK_EQ_STR(jstr(e, "scope.channel_ids.0"), C1);
    CHECK_EQ_INT(jint(e, "data.version"), 0);
    json_decref(e);
    e = th_event(t);
    CHECK_EQ_STR(jstr(e, "event"), "VOICE_SERVER_UPDATE");
    CHECK_EQ_STR(jstr(e, "scope.type"), "session");
    CHECK_EQ_STR(jstr(e, "scope.session_id"), "sess-a");
    json_decref(e);
    th_free(t);
}

TEST(connection_ids_are_distinct_base64url)
{
    th *t = th_new(NULL);
    char a[64];
    snprintf(a, sizeof a, "%s", th_connect(t, G, C1, "1", NULL));
    const char *b = th_connect(t, G, C1, "1", NULL);
    CHECK(b && strcmp(a, b) != 0);
    for (const char *p = a; *p; p++)
        CHECK((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
              *p == '-' || *p == '_');
    th_free(t);
}

TEST(update_bumps_version_by_one_and_noop_changes_nothing)
{
    th *t = th_new(NULL);
    const char *id = th_connect(t, G, C1, "1", NULL);
    char cid[64];
    snprintf(cid, sizeof cid, "%s", id);
    th_drop_events(t);
    json_t *r;
    CHECK_EQ_INT(rpcf(t, "voice.update", &r,
                      "{\"connection_id\":\"%s\",\"user_id\":\"1\",\"self_mute\":true%s}", cid, ""),
                 200);
    CHECK_EQ_INT(jint(r, "voice_state.version"), 1);
    CHECK_EQ_INT(jbool(r, "changed"), 1);
    CHECK_EQ_INT(th_nevents(t), 1);
    th_drop_events(t);
    /* the same again: nothing changes */
    CHECK_EQ_INT(rpcf(t, "voice.update", &r,
                      "{\"connection_id\":\"%s\",\"user_id\":\"1\",\"self_mute\":true%s}", cid, ""),
                 200);
    CHECK_EQ_INT(jint(r, "voice_state.version"), 1);
    CHECK_EQ_INT(jbool(r, "changed"), 0);
    CHECK_EQ_INT(th_nevents(t), 0);
    /* several flags in one update: still +1 */
    CHECK_EQ_INT(rpcf(t, "voice.update", &r,
                      "{\"connection_id\":\"%s\",\"user_id\":\"1\",\"self_deaf\":true,"
                      "\"self_video\":true,\"is_mobile\":true%s}",
                      cid, ""),
                 200);
    CHECK_EQ_INT(jint(r, "voice_state.version"), 2);
    CHECK_EQ_INT(th_nevents(t), 1);
    th_free(t);
}

TEST(update_by_other_user_is_refused)
{
    th *t = th_new(NULL);
    char cid[64];
    snprintf(cid, sizeof cid, "%s", th_connect(t, G, C1, "1", NULL));
    json_t *r;
    CHECK_EQ_INT(rpcf(t, "voice.update", &r,
                      "{\"connection_id\":\"%s\",\"user_id\":\"2\",\"self_mute\":true%s}", cid, ""),
                 403);
    CHECK_EQ_STR(jstr(r, "code"), "VOICE_USER_MISMATCH");
    CHECK_EQ_INT(rpcf(t, "voice.update", &r,
                      "{\"connection_id\":\"%s\",\"user_id\":\"1\",\"self_mute\":true%s}",
                      "AAAAAAAAAAAAAAAAAAAAAA", ""),
                 404);
    CHECK_EQ_STR(jstr(r, "code"), "VOICE_CONNECTION_NOT_FOUND");
    th_free(t);
}

TEST(base_version_more_than_one_behind_is_stale)
{
    th *t = th_new(NULL);
    char cid[64];
    snprintf(cid, sizeof cid, "%s", th_connect(t, G, C1, "1", NULL));
    json_t *r;
    rpcf(t, "voice.update", &r, "{\"connection_id\":\"%s\",\"user_id\":\"1\",\"self_mute\":true%s}",
         cid, "");
    rpcf(t, "voice.update", &r, "{\"connection_id\":\"%s\",\"user_id\":\"1\",\"self_deaf\":true%s}",
         cid, ""); /* version 2 */
    th_drop_events(t);
    CHECK_EQ_INT(rpcf(t, "voice.update", &r,
                      "{\"connection_id\":\"%s\",\"user_id\":\"1\",\"self_mute\":false,"
                      "\"base_version\":0%s}",
                      cid, ""),
                 409);
    CHECK_EQ_STR(jstr(r, "code"), "STALE_BASE_VERSION");
    CHECK_EQ_INT(th_nevents(t), 0);
    CHECK_EQ_INT(rpcf(t, "voice.get", &r, "{\"connection_id\":\"%s\"%s}", cid, ""), 200);
    CHECK_EQ_INT(jint(r, "voice_states.0.version"), 2);
    CHECK_EQ_INT(jbool(r, "voice_states.0.self_mute"), 1);
    /* one behind is accepted */
    CHECK_EQ_INT(rpcf(t, "voice.update", &r,
                      "{\"connection_id\":\"%s\",\"user_id\":\"1\",\"self_mute\":false,"
                      "\"base_version\":1%s}",
                      cid, ""),
                 200);
    CHECK_EQ_INT(jint(r, "voice_state.version"), 3);
    /* ahead of the state is a client bug */
    CHECK_EQ_INT(rpcf(t, "voice.update", &r,
                      "{\"connection_id\":\"%s\",\"user_id\":\"1\",\"self_mute\":true,"
                      "\"base_version\":9%s}",
                      cid, ""),
                 400);
    CHECK_EQ_STR(jstr(r, "field"), "params.base_version");
    th_free(t);
}

TEST(user_limit_counts_distinct_users)
{
    th *t = th_new(NULL);
    const char *lim = "\"user_limit\":2";
    CHECK(th_connect(t, G, C1, "1", lim));
    CHECK(th_connect(t, G, C1, "2", lim));
    CHECK(th_connect(t, G, C1, "1", lim)); /* user 1 again: not counted twice */
    json_t *r;
    CHECK_EQ_INT(th_rpc(t, "voice.connect",
                        "{\"guild_id\":\"100\",\"channel_id\":\"201\",\"user_id\":\"3\","
                        "\"session_id\":\"s\",\"user_limit\":2}",
                        &r),
                 403);
    CHECK_EQ_STR(jstr(r, "code"), "VOICE_CHANNEL_FULL");
    CHECK(th_connect(t, G, C1, "3", "\"user_limit\":0")); /* 0 = unlimited */
    th_free(t);
}

TEST(five_connections_per_user_per_guild)
{
    th *t = th_new(NULL);
    for (int i = 0; i < 5; i++)
        CHECK(th_connect(t, G, i % 2 ? C1 : C2, "1", NULL));
    json_t *r;
    CHECK_EQ_INT(th_rpc(t, "voice.connect",
                        "{\"guild_id\":\"100\",\"channel_id\":\"201\",\"user_id\":\"1\","
                        "\"session_id\":\"s\"}",
                        &r),
                 403);
    CHECK_EQ_STR(jstr(r, "code"), "VOICE_CONNECTION_LIMIT_REACHED");
    CHECK(th_connect(t, "101", C1, "1", NULL)); /* another guild is another budget */
    th_free(t);
}

TEST(permissions_force_suppress_and_flags)
{
    th *t = th_new(NULL);
    json_t *r;
    CHECK_EQ_INT(th_rpc(t, "voice.connect",
                        "{\"guild_id\":\"100\",\"channel_id\":\"201\",\"user_id\":\"1\","
                        "\"session_id\":\"s\",\"can_speak\":false,\"can_stream\":false,"
                        "\"self_stream\":true,\"self_video\":true,\"can_video\":false}",
                        &r),
                 200);
    CHECK_EQ_INT(jbool(r, "voice_state.suppress"), 1);
    CHECK_EQ_INT(jbool(r, "voice_state.self_stream"), 0);
    CHECK_EQ_INT(jbool(r, "voice_state.self_video"), 0);
    char cid[64];
    snprintf(cid, sizeof cid, "%s", jstr(r, "voice_state.connection_id"));
    th_drop_events(t);
    /* asking to stream without the permission changes nothing */
    CHECK_EQ_INT(rpcf(t, "voice.update", &r,
                      "{\"connection_id\":\"%s\",\"user_id\":\"1\",\"self_stream\":true%s}", cid,
                      ""),
                 200);
    CHECK_EQ_INT(jbool(r, "changed"), 0);
    CHECK_EQ_INT(jbool(r, "voice_state.self_stream"), 0);
    CHECK_EQ_INT(th_nevents(t), 0);
    /* granting speak lifts suppress: version+1 */
    CHECK_EQ_INT(th_rpc(t, "voice.set_permissions",
                        "{\"guild_id\":\"100\",\"user_id\":\"1\",\"can_speak\":true}", &r),
                 200);
    CHECK_EQ_INT(jbool(r, "voice_states.0.suppress"), 0);
    CHECK_EQ_INT(jint(r, "voice_states.0.version"), 1);
    CHECK_EQ_INT(th_nevents(t), 1);
    th_free(t);
}

TEST(set_permissions_revokes_stream_and_video)
{
    th *t = th_new(NULL);
    char cid[64];
    snprintf(cid, sizeof cid, "%s",
             th_connect(t, G, C1, "1", "\"self_stream\":true,\"self_video\":true"));
    th_drop_events(t);
    json_t *r;
    CHECK_EQ_INT(th_rpc(t, "voice.set_permissions",
                        "{\"guild_id\":\"100\",\"user_id\":\"1\",\"can_stream\":false,"
                        "\"can_video\":false,\"can_speak\":false}",
                        &r),
                 200);
    CHECK_EQ_INT(jbool(r, "voice_states.0.self_stream"), 0);
    CHECK_EQ_INT(jbool(r, "voice_states.0.self_video"), 0);
    CHECK_EQ_INT(jbool(r, "voice_states.0.suppress"), 1);
    CHECK_EQ_INT(jint(r, "voice_states.0.version"), 1);
    CHECK_EQ_INT(th_nevents(t), 1);
    th_free(t);
}

TEST(server_mute_applies_to_all_connections_in_guild_and_later_ones)
{
    th *t = th_new(NULL);
    CHECK(th_connect(t, G, C1, "1", NULL));
    CHECK(th_connect(t, G, C2, "1", NULL));
    CHECK(th_connect(t, "101", C1, "1", NULL));
    CHECK(th_connect(t, G, C1, "2", NULL));
    th_drop_events(t);
    json_t *r;
    CHECK_EQ_INT(th_rpc(t, "voice.set_server_state",
                        "{\"guild_id\":\"100\",\"user_id\":\"1\",\"mute\":true}", &r),
                 200);
    CHECK_EQ_INT(json_array_size(jget(r, "voice_states")), 2);
    CHECK_EQ_INT(jbool(r, "voice_states.0.mute"), 1);
    CHECK_EQ_INT(jint(r, "voice_states.0.version"), 1);
    CHECK_EQ_INT(jint(r, "voice_states.1.version"), 1);
    CHECK_EQ_INT(th_nevents(t), 2);
    th_drop_events(t);
    /* the same again: no change, no event */
    CHECK_EQ_INT(th_rpc(t, "voice.set_server_state",
                        "{\"guild_id\":\"100\",\"user_id\":\"1\",\"mute\":true}", &r),
                 200);
    CHECK_EQ_INT(th_nevents(t), 0);
    /* other guild untouched */
    CHECK_EQ_INT(th_rpc(t, "voice.get", "{\"guild_id\":\"101\"}", &r), 200);
    CHECK_EQ_INT(jbool(r, "voice_states.0.mute"), 0);
    /* a new connection in the guild inherits it */
    CHECK_EQ_INT(th_rpc(t, "voice.connect",
                        "{\"guild_id\":\"100\",\"channel_id\":\"201\",\"user_id\":\"1\","
                        "\"session_id\":\"s2\"}",
                        &r),
                 200);
    CHECK_EQ_INT(jbool(r, "voice_state.mute"), 1);
    /* deaf separately; unmute keeps deaf */
    CHECK_EQ_INT(th_rpc(t, "voice.set_server_state",
                        "{\"guild_id\":\"100\",\"user_id\":\"1\",\"deaf\":true}", &r),
                 200);
    CHECK_EQ_INT(th_rpc(t, "voice.set_server_state",
                        "{\"guild_id\":\"100\",\"user_id\":\"1\",\"mute\":false}", &r),
                 200);
    CHECK_EQ_INT(jbool(r, "voice_states.0.mute"), 0);
    CHECK_EQ_INT(jbool(r, "voice_states.0.deaf"), 1);
    th_free(t);
}

static char *key_of(const char *guild, const char *chan, const char *cid)
{
    return xasprintf("%s:%s:%s", guild, chan, cid);
}

TEST(viewer_stream_keys_must_name_a_connection_in_the_channel)
{
    th *t = th_new(NULL);
    char a[64], b[64], far[64];
    snprintf(a, sizeof a, "%s", th_connect(t, G, C1, "1", "\"self_stream\":true"));
    snprintf(b, sizeof b, "%s", th_connect(t, G, C1, "2", NULL));
    snprintf(far, sizeof far, "%s", th_connect(t, G, C2, "3", "\"self_stream\":true"));
    json_t *r;
    char *k = key_of(G, C1, a);
    CHECK_EQ_INT(
        rpcf(t, "voice.update", &r,
             "{\"connection_id\":\"%s\",\"user_id\":\"2\",\"viewer_stream_keys\":[\"%s\"]}", b, k),
        200);
    CHECK_EQ_STR(jstr(r, "voice_state.viewer_stream_keys.0"), k);
    CHECK_EQ_INT(jint(r, "voice_state.version"), 1);
    free(k);
    k = key_of(G, C2, far); /* a connection in another channel */
    CHECK_EQ_INT(
        rpcf(t, "voice.update", &r,
             "{\"connection_id\":\"%s\",\"user_id\":\"2\",\"viewer_stream_keys\":[\"%s\"]}", b, k),
        400);
    CHECK_EQ_STR(jstr(r, "code"), "INVALID_STREAM_KEY");
    CHECK_EQ_STR(jstr(r, "field"), "params.viewer_stream_keys[0]");
    free(k);
    CHECK_EQ_INT(
        rpcf(t, "voice.update", &r,
             "{\"connection_id\":\"%s\",\"user_id\":\"2\",\"viewer_stream_keys\":[\"%s\"]}", b,
             "garbage"),
        400);
    CHECK_EQ_STR(jstr(r, "code"), "INVALID_STREAM_KEY");
    k = key_of(G, C1, "AAAAAAAAAAAAAAAAAAAAAA"); /* well-formed, names nobody */
    CHECK_EQ_INT(
        rpcf(t, "voice.update", &r,
             "{\"connection_id\":\"%s\",\"user_id\":\"2\",\"viewer_stream_keys\":[\"%s\"]}", b, k),
        400);
    free(k);
    /* the refused updates changed nothing */
    CHECK_EQ_INT(rpcf(t, "voice.get", &r, "{\"connection_id\":\"%s\"%s}", b, ""), 200);
    CHECK_EQ_INT(jint(r, "voice_states.0.version"), 1);
    th_free(t);
}

TEST(move_is_one_event_naming_old_and_new_channel)
{
    th *t = th_new(NULL);
    char a[64], v[64];
    snprintf(a, sizeof a, "%s", th_connect(t, G, C1, "1", "\"self_stream\":true"));
    snprintf(v, sizeof v, "%s", th_connect(t, G, C1, "2", NULL));
    json_t *r;
    char *k = key_of(G, C1, a);
    rpcf(t, "voice.update", &r,
         "{\"connection_id\":\"%s\",\"user_id\":\"2\",\"viewer_stream_keys\":[\"%s\"]}", v, k);
    free(k);
    k = key_of(G, C1, v);
    rpcf(t, "voice.update", &r,
         "{\"connection_id\":\"%s\",\"user_id\":\"1\",\"viewer_stream_keys\":[\"%s\"]}", a, k);
    free(k);
    th_drop_events(t);
    CHECK_EQ_INT(
        rpcf(t, "voice.move", &r, "{\"connection_id\":\"%s\",\"channel_id\":\"%s\"}", a, C2), 200);
    CHECK_EQ_STR(jstr(r, "voice_state.channel_id"), C2);
    CHECK_EQ_STR(jstr(r, "voice_state.connection_id"), a);
    CHECK_EQ_INT(jint(r, "voice_state.version"), 2);
    CHECK_EQ_INT(json_array_size(jget(r, "voice_state.viewer_stream_keys")), 0);
    CHECK(json_is_null(jget(r, "voice_server")));
    /* one event for the mover, never a channel_id:null blip; then the viewer losing its key */
    CHECK_EQ_INT(th_nevents(t), 2);
    json_t *e = th_event(t);
    CHECK_EQ_STR(jstr(e, "data.connection_id"), a);
    CHECK_EQ_STR(jstr(e, "data.channel_id"), C2);
    CHECK_EQ_STR(jstr(e, "scope.channel_ids.0"), C2);
    CHECK_EQ_STR(jstr(e, "scope.channel_ids.1"), C1);
    json_decref(e);
    e = th_event(t);
    CHECK_EQ_STR(jstr(e, "data.connection_id"), v);
    CHECK_EQ_INT(json_array_size(jget(e, "data.viewer_stream_keys")), 0);
    CHECK_EQ_INT(jint(e, "data.version"), 2);
    json_decref(e);
    /* moving to where it already is changes nothing */
    CHECK_EQ_INT(
        rpcf(t, "voice.move", &r, "{\"connection_id\":\"%s\",\"channel_id\":\"%s\"}", a, C2), 200);
    CHECK_EQ_INT(jint(r, "voice_state.version"), 2);
    CHECK_EQ_INT(th_nevents(t), 0);
    th_free(t);
}

TEST(move_respects_user_limit_and_permissions)
{
    th *t = th_new(NULL);
    char a[64];
    snprintf(a, sizeof a, "%s", th_connect(t, G, C1, "1", NULL));
    CHECK(th_connect(t, G, C2, "2", NULL));
    json_t *r;
    CHECK_EQ_INT(rpcf(t, "voice.move", &r,
                      "{\"connection_id\":\"%s\",\"channel_id\":\"%s\",\"user_limit\":1}", a, C2),
                 403);
    CHECK_EQ_STR(jstr(r, "code"), "VOICE_CHANNEL_FULL");
    CHECK_EQ_INT(rpcf(t, "voice.move", &r,
                      "{\"connection_id\":\"%s\",\"channel_id\":\"%s\",\"can_speak\":false}", a,
                      C2),
                 200);
    CHECK_EQ_INT(jbool(r, "voice_state.suppress"), 1);
    CHECK_EQ_INT(jint(r, "voice_state.version"), 1);
    th_free(t);
}

TEST(disconnect_is_one_leave_with_version_plus_one)
{
    th *t = th_new(NULL);
    char a[64];
    snprintf(a, sizeof a, "%s", th_connect(t, G, C1, "1", NULL));
    th_drop_events(t);
    json_t *r;
    CHECK_EQ_INT(
        rpcf(t, "voice.disconnect", &r, "{\"connection_id\":\"%s\",\"user_id\":\"%s\"}", a, "2"),
        403);
    CHECK_EQ_INT(
        rpcf(t, "voice.disconnect", &r, "{\"connection_id\":\"%s\",\"user_id\":\"%s\"}", a, "1"),
        200);
    CHECK_EQ_INT(jint(r, "disconnected"), 1);
    CHECK_EQ_INT(th_nevents(t), 1);
    json_t *e = th_event(t);
    CHECK(json_is_null(jget(e, "data.channel_id")));
    CHECK_EQ_STR(jstr(e, "data.guild_id"), G);
    CHECK_EQ_INT(jint(e, "data.version"), 1);
    CHECK_EQ_STR(jstr(e, "scope.channel_ids.0"), C1);
    json_decref(e);
    CHECK_EQ_INT(rpcf(t, "voice.disconnect", &r, "{\"connection_id\":\"%s\"%s}", a, ""), 404);
    CHECK_EQ_STR(jstr(r, "code"), "VOICE_CONNECTION_NOT_FOUND");
    th_free(t);
}

TEST(disconnect_selectors)
{
    th *t = th_new(NULL);
    CHECK(th_connect(t, G, C1, "1", NULL));
    CHECK(th_connect(t, G, C2, "1", NULL));
    CHECK(th_connect(t, G, C1, "2", NULL));
    CHECK(th_connect(t, G, C1, "3", NULL));
    json_t *r;
    CHECK_EQ_INT(th_rpc(t, "voice.disconnect", "{\"guild_id\":\"100\",\"user_id\":\"1\"}", &r),
                 200);
    CHECK_EQ_INT(jint(r, "disconnected"), 2);
    CHECK_EQ_INT(th_rpc(t, "voice.disconnect", "{\"session_id\":\"s-2\"}", &r), 200);
    CHECK_EQ_INT(jint(r, "disconnected"), 1);
    CHECK_EQ_INT(
        th_rpc(t, "voice.disconnect",
               "{\"guild_id\":\"100\",\"channel_id\":\"201\",\"reason\":\"channel_deleted\"}", &r),
        200);
    CHECK_EQ_INT(jint(r, "disconnected"), 1);
    CHECK_EQ_INT(th_rpc(t, "voice.get", "{\"guild_id\":\"100\"}", &r), 200);
    CHECK_EQ_INT(json_array_size(jget(r, "voice_states")), 0);
    /* ambiguous selector */
    CHECK_EQ_INT(th_rpc(t, "voice.disconnect", "{\"session_id\":\"x\",\"guild_id\":\"100\"}", &r),
                 400);
    CHECK_EQ_INT(th_rpc(t, "voice.disconnect", "{\"session_id\":\"x\",\"reason\":\"boom\"}", &r),
                 400);
    CHECK_EQ_STR(jstr(r, "field"), "params.reason");
    th_free(t);
}

TEST(session_gone_drops_only_that_session)
{
    th *t = th_new(NULL);
    CHECK(th_connect(t, G, C1, "1", NULL));
    CHECK(th_connect(t, "101", C1, "1", NULL));
    CHECK(th_connect(t, G, C1, "2", NULL));
    th_drop_events(t);
    json_t *r;
    CHECK_EQ_INT(th_rpc(t, "session.gone", "{\"session_id\":\"s-1\"}", &r), 200);
    CHECK_EQ_INT(jint(r, "disconnected"), 2);
    CHECK_EQ_INT(th_nevents(t), 2);
    CHECK_EQ_INT(th_rpc(t, "voice.get", "{\"user_id\":\"2\"}", &r), 200);
    CHECK_EQ_INT(json_array_size(jget(r, "voice_states")), 1);
    th_free(t);
}

TEST(pending_join_expires_after_30s_unless_confirmed)
{
    th *t = th_new(NULL);
    char a[64], b[64];
    snprintf(a, sizeof a, "%s", th_connect(t, G, C1, "1", NULL));
    snprintf(b, sizeof b, "%s", th_connect(t, G, C1, "2", NULL));
    CHECK_EQ_INT(sig_conn_confirm(t->c, b, t->now), 0);
    CHECK_EQ_INT(sig_conn_confirm(t->c, "nope", t->now), -ENOENT);
    th_drop_events(t);
    th_advance(t, 29999);
    CHECK_EQ_INT(th_nevents(t), 0);
    th_advance(t, 1);
    CHECK_EQ_INT(th_nevents(t), 1);
    json_t *e = th_event(t);
    CHECK_EQ_STR(jstr(e, "data.connection_id"), a);
    CHECK(json_is_null(jget(e, "data.channel_id")));
    json_decref(e);
    sig_stats st;
    sig_get_stats(t->c, &st);
    CHECK_EQ_INT(st.reaped_pending, 1);
    CHECK_EQ_INT(st.conns_active, 1);
    CHECK_EQ_INT(st.conns_pending, 0);
    th_advance(t, 600000);
    CHECK_EQ_INT(th_nevents(t), 0); /* the confirmed one stays */
    th_free(t);
}

/* a dead transport (after the reap time) and a client's goodbye (D27) both remove the connection
 * with one leave; only the first is a ghost reap */
TEST(transport_reap_and_goodbye_are_one_leave_each)
{
    th *t = th_new(NULL);
    char a[64], b[64];
    snprintf(a, sizeof a, "%s", th_connect(t, G, C1, "1", NULL));
    snprintf(b, sizeof b, "%s", th_connect(t, G, C1, "2", NULL));
    CHECK_EQ_INT(sig_conn_confirm(t->c, a, t->now), 0);
    CHECK_EQ_INT(sig_conn_confirm(t->c, b, t->now), 0);
    th_drop_events(t);
    CHECK_EQ_INT(sig_conn_reap_transport(t->c, a, t->now), 0);
    CHECK_EQ_INT(sig_conn_goodbye(t->c, b, t->now), 0);
    th_advance(t, 0); /* takes the steps' effects */
    CHECK_EQ_INT(th_nevents(t), 2);
    const char *ids[2] = {a, b};
    for (int i = 0; i < 2; i++) {
        json_t *e = th_event(t);
        CHECK_EQ_STR(jstr(e, "data.connection_id"), ids[i]);
        CHECK(json_is_null(jget(e, "data.channel_id")));
        CHECK_EQ_INT(jint(e, "data.version"), 1);
        json_decref(e);
    }
    sig_stats st;
    sig_get_stats(t->c, &st);
    CHECK_EQ_INT(st.reaped_transport, 1); /* the goodbye is no ghost */
    CHECK_EQ_INT(st.conns_active, 0);
    CHECK_EQ_INT(sig_conn_goodbye(t->c, b, t->now), -ENOENT);
    CHECK_EQ_INT(sig_conn_reap_transport(t->c, a, t->now), -ENOENT);
    th_advance(t, 0);
    CHECK_EQ_INT(th_nevents(t), 0);
    th_free(t);
}

TEST(leaving_viewer_target_strips_keys)
{
    th *t = th_new(NULL);
    char a[64], v[64];
    snprintf(a, sizeof a, "%s", th_connect(t, G, C1, "1", "\"self_stream\":true"));
    snprintf(v, sizeof v, "%s", th_connect(t, G, C1, "2", NULL));
    json_t *r;
    char *k = key_of(G, C1, a);
    rpcf(t, "voice.update", &r,
         "{\"connection_id\":\"%s\",\"user_id\":\"2\",\"viewer_stream_keys\":[\"%s\"]}", v, k);
    free(k);
    th_drop_events(t);
    CHECK_EQ_INT(rpcf(t, "voice.disconnect", &r, "{\"connection_id\":\"%s\"%s}", a, ""), 200);
    CHECK_EQ_INT(th_nevents(t), 2);
    json_t *e = th_event(t);
    CHECK_EQ_STR(jstr(e, "data.connection_id"), a); /* the leave first */
    json_decref(e);
    e = th_event(t);
    CHECK_EQ_STR(jstr(e, "data.connection_id"), v);
    CHECK_EQ_INT(json_array_size(jget(e, "data.viewer_stream_keys")), 0);
    json_decref(e);
    th_free(t);
}

TEST(voice_get_selectors_and_order)
{
    th *t = th_new(NULL);
    CHECK(th_connect(t, G, C2, "9", NULL));
    CHECK(th_connect(t, G, C1, "5", NULL));
    CHECK(th_connect(t, G, C1, "3", NULL));
    json_t *r;
    CHECK_EQ_INT(th_rpc(t, "voice.get", "{\"guild_id\":\"100\"}", &r), 200);
    CHECK_EQ_INT(json_array_size(jget(r, "voice_states")), 3);
    CHECK_EQ_STR(jstr(r, "voice_states.0.user_id"), "3");
    CHECK_EQ_STR(jstr(r, "voice_states.1.user_id"), "5");
    CHECK_EQ_STR(jstr(r, "voice_states.2.user_id"), "9");
    CHECK_EQ_INT(th_rpc(t, "voice.get", "{\"guild_id\":\"100\",\"channel_id\":\"202\"}", &r), 200);
    CHECK_EQ_INT(json_array_size(jget(r, "voice_states")), 1);
    CHECK_EQ_INT(th_rpc(t, "voice.get", "{}", &r), 400);
    th_free(t);
}

TEST(writes_are_returned_for_persistence)
{
    th *t = th_new(NULL);
    char a[64];
    snprintf(a, sizeof a, "%s", th_connect(t, G, C1, "1", NULL));
    /* the connect step asked for the state and the grant's nonce to be persisted */
    int conn_put = 0, nonce_put = 0;
    size_t i;
    json_t *w;
    json_array_foreach(t->writes, i, w)
    {
        conn_put += jint(w, "kind") == SIG_W_CONN_PUT && strcmp(jstr(w, "key"), a) == 0;
        nonce_put += jint(w, "kind") == SIG_W_NONCE_PUT;
    }
    CHECK_EQ_INT(conn_put, 1);
    CHECK_EQ_INT(nonce_put, 1);
    json_t *r;
    rpcf(t, "voice.disconnect", &r, "{\"connection_id\":\"%s\"%s}", a, "");
    CHECK_EQ_INT(jint(t->writes, "0.kind"), SIG_W_CONN_DEL);
    th_free(t);
}

int main(void)
{
    RUN(connect_creates_state_version_0_with_grant);
    RUN(connection_ids_are_distinct_base64url);
    RUN(update_bumps_version_by_one_and_noop_changes_nothing);
    RUN(update_by_other_user_is_refused);
    RUN(base_version_more_than_one_behind_is_stale);
    RUN(user_limit_counts_distinct_users);
    RUN(five_connections_per_user_per_guild);
    RUN(permissions_force_suppress_and_flags);
    RUN(set_permissions_revokes_stream_and_video);
    RUN(server_mute_applies_to_all_connections_in_guild_and_later_ones);
    RUN(viewer_stream_keys_must_name_a_connection_in_the_channel);
    RUN(move_is_one_event_naming_old_and_new_channel);
    RUN(move_respects_user_limit_and_permissions);
    RUN(disconnect_is_one_leave_with_version_plus_one);
    RUN(disconnect_selectors);
    RUN(session_gone_drops_only_that_session);
    RUN(pending_join_expires_after_30s_unless_confirmed);
    RUN(transport_reap_and_goodbye_are_one_leave_each);
    RUN(leaving_viewer_target_strips_keys);
    RUN(voice_get_selectors_and_order);
    RUN(writes_are_returned_for_persistence);
    return test_summary();
}
