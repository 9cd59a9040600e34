/*
 * Unit tests of the voice WebSocket message decoder (sig_vmsg_decode): every message a client may
 * send in every connection state, and every close code path of docs/protocol.md with its reason
 * text (what the client reads in the close frame).
 */
#include "signalling/sig.h"
#include "tests/unit/test.h"

#include <errno.h>
#include <stdlib.h>

#define H SIG_VSTATE_HELLO
#define R SIG_VSTATE_READY
#define M SIG_VSTATE_MEDIA

static sig_vmsg m;

static int dec(const char *text, sig_vstate st)
{
    sig_vmsg_clear(&m);
    return sig_vmsg_decode(text, strlen(text), st, &m);
}

/* refused with `code` and a reason that starts with `reason` */
static int refused(const char *text, sig_vstate st, int code, const char *reason)
{
    int rc = dec(text, st);
    int ok = rc == -EPROTO && m.close_code == code && m.close_reason &&
             strncmp(m.close_reason, reason, strlen(reason)) == 0;
    if (!ok)
        fprintf(stderr, "%s (state %d): rc %d code %d reason %s\n", text, (int)st, rc, m.close_code,
                m.close_reason ? m.close_reason : "(null)");
    return ok;
}

TEST(identify_in_hello)
{
    CHECK_EQ_INT(dec("{\"op\":0,\"d\":{\"token\":\"eyJ.a.b\"}}", H), 0);
    CHECK_EQ_INT(m.op, SIG_VOP_IDENTIFY);
    CHECK_EQ_INT(m.close_code, 0);
    CHECK_EQ_STR(m.token, "eyJ.a.b");
    sig_vmsg_clear(&m);
}

TEST(identify_refusals)
{
    /* 4004: no d, d not an object, token not a string, another key */
    CHECK(refused("{\"op\":0}", H, 4004, "authentication failed: identify needs d.token"));
    CHECK(refused("{\"op\":0,\"d\":\"tok\"}", H, 4004, "authentication failed"));
    CHECK(refused("{\"op\":0,\"d\":{\"token\":5}}", H, 4004, "authentication failed"));
    CHECK(refused("{\"op\":0,\"d\":{}}", H, 4004, "authentication failed"));
    CHECK(refused("{\"op\":0,\"d\":{\"token\":\"t\",\"x\":1}}", H, 4004, "authentication failed"));
    /* 4005 once identified, whatever d is (also after a protocol was selected or a resume) */
    CHECK(refused("{\"op\":0,\"d\":{\"token\":\"t\"}}", R, 4005, "already identified"));
    CHECK(refused("{\"op\":0}", R, 4005, "already identified"));
    CHECK(refused("{\"op\":0,\"d\":{\"token\":\"t\"}}", M, 4005, "already identified"));
    sig_vmsg_clear(&m);
}

TEST(envelope_refusals_4002)
{
    const char *bad[] = {
        "",
        "not json",
        "[]",
        "3",
        "{\"op\":\"0\"}",
        "{\"op\":1.5}",
        "{\"op\":null}",
        "{\"d\":{}}",
        "{\"op\":3,\"d\":1,\"x\":2}",
        "{\"op\":3,\"op\":3}",
        "{\"op\":0,\"d\":{\"token\":\"a\",\"token\":\"b\"}}",
        "{\"op\":3,\"d\":1",
        "{\"op\":3} trailing",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        for (int st = H; st <= M; st++)
            CHECK(refused(bad[i], (sig_vstate)st, 4002, "decode error: expected {\"op\": int"));
    sig_vmsg_clear(&m);
}

TEST(over_16_kib_is_4002)
{
    size_t n = SIG_VMSG_MAX + 1;
    char *big = malloc(n);
    CHECK(big != NULL);
    memset(big, ' ', n);
    memcpy(big, "{\"op\":3,\"d\":1}", 14);
    int rc = sig_vmsg_decode(big, n, R, &m);
    CHECK_EQ_INT(rc, -EPROTO);
    CHECK_EQ_INT(m.close_code, 4002);
    CHECK_EQ_STR(m.close_reason, "decode error: message over 16 KiB");
    /* exactly 16 KiB (whitespace after the object) is fine */
    rc = sig_vmsg_decode(big, n - 1, R, &m);
    free(big);
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_INT(m.op, SIG_VOP_HEARTBEAT);
    sig_vmsg_clear(&m);
}

TEST(heartbeat_in_every_state)
{
    for (int st = H; st <= M; st++) {
        CHECK_EQ_INT(dec("{\"op\":3,\"d\":1234}", (sig_vstate)st), 0);
        CHECK_EQ_INT(m.op, SIG_VOP_HEARTBEAT);
        CHECK(json_is_integer(m.heartbeat_d) && json_integer_value(m.heartbeat_d) == 1234);
        CHECK_EQ_INT(dec("{\"op\":3}", (sig_vstate)st), 0);
        CHECK(m.heartbeat_d == NULL);
        CHECK_EQ_INT(dec("{\"op\":3,\"d\":{\"nonce\":[1,\"x\",null]}}", (sig_vstate)st), 0);
        CHECK(json_is_object(m.heartbeat_d));
    }
    sig_vmsg_clear(&m);
}

TEST(unknown_opcodes)
{
    const char *ops[] = {"{\"op\":2}", "{\"op\":4,\"d\":{}}", "{\"op\":6}",  "{\"op\":8}",
                         "{\"op\":9}", "{\"op\":12}",         "{\"op\":-1}", "{\"op\":4294967296}"};
    for (size_t i = 0; i < sizeof ops / sizeof *ops; i++) {
        CHECK(refused(ops[i], H, 4003, "not authenticated: identify first"));
        CHECK(refused(ops[i], R, 4001, "unknown opcode"));
        CHECK(refused(ops[i], M, 4001, "unknown opcode"));
    }
    sig_vmsg_clear(&m);
}

TEST(select_protocol_picks_first_supported_in_client_order)
{
    CHECK_EQ_INT(dec("{\"op\":1,\"d\":{\"protocol\":\"srtp\",\"modes\":[\"AEAD_AES_128_GCM\","
                     "\"AES_CM_128_HMAC_SHA1_80\"]}}",
                     R),
                 0);
    CHECK_EQ_INT(m.op, SIG_VOP_SELECT_PROTOCOL);
    CHECK_EQ_STR(m.protocol, "srtp");
    CHECK_EQ_INT(m.mode, RTP_SRTP_AEAD_AES_128_GCM);
    CHECK_EQ_INT(
        dec("{\"op\":1,\"d\":{\"modes\":[\"xsalsa20_poly1305\",\"AES_CM_128_HMAC_SHA1_80\","
            "\"AEAD_AES_128_GCM\"],\"protocol\":\"srtp\"}}",
            R),
        0);
    CHECK_EQ_INT(m.mode, RTP_SRTP_AES_CM_128_HMAC_SHA1_80);
    sig_vmsg_clear(&m);
}

TEST(select_protocol_refusals)
{
    const char *ok = "{\"op\":1,\"d\":{\"protocol\":\"srtp\",\"modes\":[\"AEAD_AES_128_GCM\"]}}";
    CHECK(refused(ok, H, 4003, "not authenticated: identify first"));
    CHECK(refused(ok, M, 4005, "already selected a protocol"));
    /* d.protocol missing or not a string */
    CHECK(refused("{\"op\":1}", R, 4002, "decode error: select protocol needs d.protocol"));
    CHECK(refused("{\"op\":1,\"d\":[]}", R, 4002, "decode error: select protocol needs"));
    CHECK(refused("{\"op\":1,\"d\":{\"modes\":[\"AEAD_AES_128_GCM\"]}}", R, 4002,
                  "decode error: select protocol needs"));
    CHECK(refused("{\"op\":1,\"d\":{\"protocol\":1}}", R, 4002,
                  "decode error: select protocol needs"));
    /* webrtc: exactly {protocol, sdp: string}; the offer itself is the media plane's */
    CHECK_EQ_INT(dec("{\"op\":1,\"d\":{\"protocol\":\"webrtc\",\"sdp\":\"v=0\"}}", R), 0);
    CHECK_EQ_INT(m.op, SIG_VOP_SELECT_PROTOCOL);
    CHECK_EQ_STR(m.protocol, "webrtc");
    CHECK_EQ_STR(m.sdp, "v=0");
    CHECK(refused("{\"op\":1,\"d\":{\"protocol\":\"webrtc\"}}", R, 4002,
                  "decode error: webrtc needs d.sdp"));
    CHECK(refused("{\"op\":1,\"d\":{\"protocol\":\"webrtc\",\"sdp\":1}}", R, 4002,
                  "decode error: webrtc needs d.sdp"));
    CHECK(refused("{\"op\":1,\"d\":{\"protocol\":\"webrtc\",\"sdp\":\"v=0\",\"modes\":[]}}", R,
                  4002, "decode error: webrtc needs d.sdp"));
    /* another protocol: 4012 before anything else is looked at */
    CHECK(refused("{\"op\":1,\"d\":{\"protocol\":\"udp\"}}", R, 4012, "unknown protocol"));
    /* srtp: modes missing, not an array, empty, more than 8, another key */
    const char *mod[] = {
        "{\"op\":1,\"d\":{\"protocol\":\"srtp\"}}",
        "{\"op\":1,\"d\":{\"protocol\":\"srtp\",\"modes\":\"AEAD_AES_128_GCM\"}}",
        "{\"op\":1,\"d\":{\"protocol\":\"srtp\",\"modes\":[]}}",
        "{\"op\":1,\"d\":{\"protocol\":\"srtp\",\"modes\":[\"a\",\"b\",\"c\",\"d\",\"e\",\"f\","
        "\"g\",\"h\",\"AEAD_AES_128_GCM\"]}}",
        "{\"op\":1,\"d\":{\"protocol\":\"srtp\",\"modes\":[\"AEAD_AES_128_GCM\"],\"x\":1}}",
    };
    for (size_t i = 0; i < sizeof mod / sizeof *mod; i++)
        CHECK(refused(mod[i], R, 4002, "decode error: srtp needs d.modes (1 to 8 strings)"));
    /* a non-string mode, even after a supported one */
    CHECK(refused("{\"op\":1,\"d\":{\"protocol\":\"srtp\",\"modes\":[\"AEAD_AES_128_GCM\",1]}}", R,
                  4002, "decode error: d.modes holds strings"));
    /* none supported */
    CHECK(refused("{\"op\":1,\"d\":{\"protocol\":\"srtp\",\"modes\":[\"aead_aes_128_gcm\","
                  "\"AES_CM_128_HMAC_SHA1_32\"]}}",
                  R, 4016, "unknown encryption mode"));
    /* 8 modes, the last supported: fine */
    CHECK_EQ_INT(dec("{\"op\":1,\"d\":{\"protocol\":\"srtp\",\"modes\":[\"a\",\"b\",\"c\",\"d\","
                     "\"e\",\"f\",\"g\",\"AES_CM_128_HMAC_SHA1_80\"]}}",
                     R),
                 0);
    CHECK_EQ_INT(m.mode, RTP_SRTP_AES_CM_128_HMAC_SHA1_80);
    sig_vmsg_clear(&m);
}

TEST(resume_in_hello)
{
    CHECK_EQ_INT(dec("{\"op\":7,\"d\":{\"connection_id\":\"c1\",\"session_id\":\"s1\","
                     "\"resume_token\":\"rt\"}}",
                     H),
                 0);
    CHECK_EQ_INT(m.op, SIG_VOP_RESUME);
    CHECK_EQ_STR(m.connection_id, "c1");
    CHECK_EQ_STR(m.session_id, "s1");
    CHECK_EQ_STR(m.resume_token, "rt");
    sig_vmsg_clear(&m);
}

TEST(resume_refusals)
{
    const char *ok = "{\"op\":7,\"d\":{\"connection_id\":\"c1\",\"session_id\":\"s1\","
                     "\"resume_token\":\"rt\"}}";
    CHECK(refused(ok, R, 4005, "already identified"));
    CHECK(refused(ok, M, 4005, "already identified"));
    const char *bad[] = {
        "{\"op\":7}",
        "{\"op\":7,\"d\":null}",
        "{\"op\":7,\"d\":{\"connection_id\":\"c1\",\"session_id\":\"s1\"}}",
        "{\"op\":7,\"d\":{\"connection_id\":\"c1\",\"session_id\":2,\"resume_token\":\"rt\"}}",
        "{\"op\":7,\"d\":{\"connection_id\":\"c1\",\"session_id\":\"s1\",\"resume_token\":\"rt\","
        "\"x\":0}}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        CHECK(refused(bad[i], H, 4002, "decode error: resume needs d.connection_id"));
    sig_vmsg_clear(&m);
}

TEST(speaking)
{
    CHECK_EQ_INT(dec("{\"op\":5,\"d\":{\"speaking\":true}}", R), 0);
    CHECK_EQ_INT(m.op, SIG_VOP_SPEAKING);
    CHECK(m.speaking);
    CHECK_EQ_INT(dec("{\"op\":5,\"d\":{\"speaking\":false}}", M), 0);
    CHECK(!m.speaking);
    CHECK(refused("{\"op\":5,\"d\":{\"speaking\":true}}", H, 4003, "not authenticated"));
    CHECK(refused("{\"op\":5}", R, 4002, "decode error: speaking needs d.speaking (a boolean)"));
    CHECK(refused("{\"op\":5,\"d\":{\"speaking\":1}}", M, 4002, "decode error: speaking needs"));
    CHECK(refused("{\"op\":5,\"d\":{\"speaking\":true,\"delay\":0}}", M, 4002,
                  "decode error: speaking needs"));
    sig_vmsg_clear(&m);
}

TEST(clear_is_idempotent)
{
    sig_vmsg_clear(NULL);
    CHECK_EQ_INT(dec("{\"op\":3,\"d\":\"x\"}", H), 0);
    sig_vmsg_clear(&m);
    sig_vmsg_clear(&m);
    CHECK(m.root == NULL && m.heartbeat_d == NULL);
}

int main(void)
{
    RUN(identify_in_hello);
    RUN(identify_refusals);
    RUN(envelope_refusals_4002);
    RUN(over_16_kib_is_4002);
    RUN(heartbeat_in_every_state);
    RUN(unknown_opcodes);
    RUN(select_protocol_picks_first_supported_in_client_order);
    RUN(select_protocol_refusals);
    RUN(resume_in_hello);
    RUN(resume_refusals);
    RUN(speaking);
    RUN(clear_is_idempotent);
    return test_summary();
}
