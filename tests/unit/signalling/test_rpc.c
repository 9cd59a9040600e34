/*
 * Unit tests of the RPC envelope: every refusal with its code and field, idempotency.
 */
#include "tests/unit/sig_harness.h"
#include "tests/unit/test.h"
#include "lib/util.h"

#include <stdlib.h>

static int raw(th *t, const char *body, json_t **r)
{
    return th_reply(t, th_submit(t, body), r);
}

TEST(malformed_json_and_non_objects)
{
    th *t = th_new(NULL);
    json_t *r;
    CHECK_EQ_INT(raw(t, "{\"method\":", &r), 400);
    CHECK_EQ_STR(jstr(r, "code"), "INVALID_REQUEST");
    CHECK(strstr(jstr(r, "message"), "malformed JSON") != NULL);
    CHECK_EQ_INT(raw(t, "[1,2]", &r), 400);
    CHECK_EQ_INT(raw(t, "", &r), 400);
    CHECK_EQ_INT(raw(t, "{\"method\":\"node.status\",\"params\":{}}garbage", &r), 400);
    th_free(t);
}

TEST(duplicate_keys_are_refused_at_any_depth)
{
    th *t = th_new(NULL);
    json_t *r;
    CHECK_EQ_INT(
        raw(t, "{\"method\":\"node.status\",\"method\":\"node.status\",\"params\":{}}", &r), 400);
    CHECK(strstr(jstr(r, "message"), "duplicate") != NULL);
    CHECK_EQ_INT(
        raw(t, "{\"method\":\"voice.get\",\"params\":{\"guild_id\":\"1\",\"guild_id\":\"2\"}}", &r),
        400);
    th_free(t);
}

TEST(envelope_fields)
{
    th *t = th_new(NULL);
    json_t *r;
    CHECK_EQ_INT(raw(t, "{\"params\":{}}", &r), 400);
    CHECK_EQ_STR(jstr(r, "field"), "method");
    CHECK_EQ_INT(raw(t, "{\"method\":5,\"params\":{}}", &r), 400);
    CHECK_EQ_STR(jstr(r, "field"), "method");
    CHECK_EQ_INT(raw(t, "{\"method\":\"voice.nope\",\"params\":{}}", &r), 404);
    CHECK_EQ_STR(jstr(r, "code"), "UNKNOWN_METHOD");
    CHECK_EQ_INT(raw(t, "{\"method\":\"node.status\"}", &r), 400);
    CHECK_EQ_STR(jstr(r, "field"), "params");
    CHECK_EQ_INT(raw(t, "{\"method\":\"node.status\",\"params\":[]}", &r), 400);
    CHECK_EQ_INT(raw(t, "{\"method\":\"node.status\",\"params\":{},\"extra\":1}", &r), 400);
    CHECK_EQ_STR(jstr(r, "field"), "extra");
    CHECK_EQ_INT(raw(t, "{\"method\":\"node.status\",\"params\":{},\"request_id\":\"\"}", &r), 400);
    CHECK_EQ_STR(jstr(r, "field"), "request_id");
    CHECK_EQ_INT(raw(t, "{\"method\":\"node.status\",\"params\":{},\"request_id\":7}", &r), 400);
    CHECK_EQ_INT(raw(t, "{\"method\":\"node.status\",\"params\":{}}", &r), 200);
    CHECK_EQ_STR(jstr(r, "node_id"), "voxd-1");
    th_free(t);
}

TEST(params_types_missing_unknown_are_named)
{
    th *t = th_new(NULL);
    json_t *r;
    CHECK_EQ_INT(th_rpc(t, "voice.connect",
                        "{\"guild_id\":\"1\",\"channel_id\":\"2\","
                        "\"session_id\":\"s\"}",
                        &r),
                 400);
    CHECK_EQ_STR(jstr(r, "field"), "params.user_id");
    CHECK(strstr(jstr(r, "message"), "required") != NULL);
    CHECK_EQ_INT(th_rpc(t, "voice.connect",
                        "{\"guild_id\":\"1\",\"channel_id\":\"2\","
                        "\"user_id\":\"3\",\"session_id\":\"s\","
                        "\"self_mute\":\"yes\"}",
                        &r),
                 400);
    CHECK_EQ_STR(jstr(r, "field"), "params.self_mute");
    CHECK(strstr(jstr(r, "message"), "boolean") != NULL);
    CHECK_EQ_INT(th_rpc(t, "voice.connect",
                        "{\"guild_id\":\"1\",\"channel_id\":\"2\","
                        "\"user_id\":\"3\",\"session_id\":\"s\","
                        "\"self_mutee\":true}",
                        &r),
                 400);
    CHECK_EQ_STR(jstr(r, "field"), "params.self_mutee");
    CHECK_EQ_INT(th_rpc(t, "voice.connect",
                        "{\"guild_id\":\"1\",\"channel_id\":\"2\","
                        "\"user_id\":\"3\",\"session_id\":\"s\","
                        "\"user_limit\":-1}",
                        &r),
                 400);
    CHECK_EQ_STR(jstr(r, "field"), "params.user_limit");
    th_free(t);
}

TEST(invalid_snowflakes)
{
    th *t = th_new(NULL);
    const char *bad[] = {"\"0\"",
                         "\"-1\"",
                         "\"abc\"",
                         "\"123456789012345678901\"",
                         "\"18446744073709551616\"",
                         "\"\"",
                         "\" 12\"",
                         "12",
                         "null"};
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        char *p = xasprintf("{\"guild_id\":\"1\",\"channel_id\":\"2\",\"user_id\":%s,"
                            "\"session_id\":\"s\"}",
                            bad[i]);
        json_t *r;
        int st = th_rpc(t, "voice.connect", p, &r);
        free(p);
        if (st != 400 || !jstr(r, "field") || strcmp(jstr(r, "field"), "params.user_id") != 0)
            FAIL_("user_id %s: status %d, field %s", bad[i], st, jstr(r, "field"));
    }
    json_t *r;
    CHECK_EQ_INT(th_rpc(t, "voice.connect",
                        "{\"guild_id\":\"1\",\"channel_id\":\"2\","
                        "\"user_id\":\"18446744073709551615\","
                        "\"session_id\":\"s\"}",
                        &r),
                 200);
    th_free(t);
}

TEST(request_id_replays_the_reply_without_acting_twice)
{
    th *t = th_new(NULL);
    const char *body = "{\"method\":\"voice.connect\",\"request_id\":\"r-1\",\"params\":{"
                       "\"guild_id\":\"1\",\"channel_id\":\"2\",\"user_id\":\"3\","
                       "\"session_id\":\"s\"}}";
    json_t *r;
    CHECK_EQ_INT(raw(t, body, &r), 200);
    char *first = json_dumps(r, JSON_COMPACT);
    th_drop_events(t);
    CHECK_EQ_INT(raw(t, body, &r), 200);
    char *second = json_dumps(r, JSON_COMPACT);
    CHECK_EQ_STR(second, first);
    free(first);
    free(second);
    CHECK_EQ_INT(th_nevents(t), 0);
    CHECK_EQ_INT(th_rpc(t, "voice.get", "{\"user_id\":\"3\"}", &r), 200);
    CHECK_EQ_INT(json_array_size(jget(r, "voice_states")), 1);
    /* same id, different request */
    CHECK_EQ_INT(raw(t,
                     "{\"method\":\"voice.connect\",\"request_id\":\"r-1\",\"params\":{"
                     "\"guild_id\":\"1\",\"channel_id\":\"9\",\"user_id\":\"3\","
                     "\"session_id\":\"s\"}}",
                     &r),
                 409);
    CHECK_EQ_STR(jstr(r, "code"), "REQUEST_ID_REUSED");
    /* method errors are remembered too */
    const char *bad = "{\"method\":\"call.get\",\"request_id\":\"r-2\",\"params\":{"
                      "\"channel_id\":\"77\"}}";
    CHECK_EQ_INT(raw(t, bad, &r), 404);
    th_rpc(
        t, "call.create",
        "{\"channel_id\":\"77\",\"message_id\":\"1\",\"caller_id\":\"1\",\"recipients\":[\"1\"]}",
        &r);
    CHECK_EQ_INT(raw(t, bad, &r), 404);
    /* forgotten after the TTL: the id is free again (the call ended meanwhile: idle) */
    th_advance(t, 600001);
    CHECK_EQ_INT(raw(t,
                     "{\"method\":\"voice.connect\",\"request_id\":\"r-1\",\"params\":{"
                     "\"guild_id\":\"1\",\"channel_id\":\"9\",\"user_id\":\"3\","
                     "\"session_id\":\"s\"}}",
                     &r),
                 200);
    th_free(t);
}

TEST(mutating_methods_are_told_apart_from_reads)
{
    CHECK(sig_rpc_mutates("{\"method\":\"voice.update\",\"params\":{}}",
                          strlen("{\"method\":\"voice.update\",\"params\":{}}")));
    CHECK(sig_rpc_mutates("{\"method\":\"call.create\"}", strlen("{\"method\":\"call.create\"}")));
    CHECK(!sig_rpc_mutates("{\"method\":\"voice.get\",\"params\":{}}",
                           strlen("{\"method\":\"voice.get\",\"params\":{}}")));
    CHECK(!sig_rpc_mutates("{\"method\":\"node.status\"}", strlen("{\"method\":\"node.status\"}")));
    CHECK(!sig_rpc_mutates("{\"method\":", strlen("{\"method\":")));
    CHECK(!sig_rpc_mutates(NULL, 0));
}

int main(void)
{
    RUN(malformed_json_and_non_objects);
    RUN(duplicate_keys_are_refused_at_any_depth);
    RUN(envelope_fields);
    RUN(params_types_missing_unknown_are_named);
    RUN(invalid_snowflakes);
    RUN(request_id_replays_the_reply_without_acting_twice);
    RUN(mutating_methods_are_told_apart_from_reads);
    return test_summary();
}
