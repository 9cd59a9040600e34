/*
 * signalling/sig_vmsg.c — decoding and validation of the voice WebSocket's client messages
 * (docs/protocol.md; the rules are listed at sig_vmsg_decode() in sig.h).
 *
 * How it works: one jansson parse with JSON_REJECT_DUPLICATES, the envelope {"op","d"?} unpacked
 * strictly, then one small function per opcode that checks the connection's state first and the
 * payload second, in the order the close codes are documented (a message that is wrong in two
 * ways gets the first code). Nothing is acted on here: the result is a sig_vmsg whose strings
 * borrow from the parsed message it owns, so the node's WebSocket code keeps only the actions
 * (token redemption, media session open/resume, acks) and this part can be fuzzed alone
 * (tests/fuzz/fuzz_vmsg.c).
 */
#include "signalling/sig.h"

#include <errno.h>
#include <string.h>

#define MODES_MAX 8

static int refuse(sig_vmsg *m, int code, const char *reason)
{
    m->close_code = code;
    m->close_reason = reason;
    return -EPROTO;
}

static int vmode_parse(const char *name, rtp_srtp_profile *out)
{
    if (strcmp(name, "AES_CM_128_HMAC_SHA1_80") == 0)
        *out = RTP_SRTP_AES_CM_128_HMAC_SHA1_80;
    else if (strcmp(name, "AEAD_AES_128_GCM") == 0)
        *out = RTP_SRTP_AEAD_AES_128_GCM;
    else
        return -ENOENT;
    return 0;
}

static int dec_identify(sig_vmsg *m, json_t *d, sig_vstate st)
{
    json_error_t e;
    if (st != SIG_VSTATE_HELLO) return refuse(m, 4005, "already identified");
    if (!d || json_unpack_ex(d, &e, JSON_STRICT, "{s:s}", "token", &m->token) < 0)
        return refuse(m, 4004, "authentication failed: identify needs d.token (a string)");
    return 0;
}

static int dec_select_protocol(sig_vmsg *m, json_t *d, sig_vstate st)
{
    json_t *modes, *x;
    json_error_t e;
    size_t i;
    if (st == SIG_VSTATE_HELLO) return refuse(m, 4003, "not authenticated: identify first");
    if (st == SIG_VSTATE_MEDIA) return refuse(m, 4005, "already selected a protocol");
    if (!json_is_object(d) || json_unpack_ex(d, &e, 0, "{s:s}", "protocol", &m->protocol) < 0)
        return refuse(m, 4002, "decode error: select protocol needs d.protocol (a string)");
    if (strcmp(m->protocol, "webrtc") == 0) {
        if (json_unpack_ex(d, &e, JSON_STRICT, "{s:s,s:s}", "protocol", &m->protocol, "sdp",
                           &m->sdp) < 0)
            return refuse(m, 4002, "decode error: webrtc needs d.sdp (a string) and nothing else");
        return 0;
    }
    if (strcmp(m->protocol, "srtp") != 0) return refuse(m, 4012, "unknown protocol");
    if (json_unpack_ex(d, &e, JSON_STRICT, "{s:s,s:o}", "protocol", &m->protocol, "modes", &modes) <
            0 ||
        !json_is_array(modes) || json_array_size(modes) < 1 || json_array_size(modes) > MODES_MAX)
        return refuse(m, 4002,
                      "decode error: srtp needs d.modes (1 to 8 strings) and nothing else");
    json_array_foreach(modes, i, x)
    {
        if (!json_is_string(x)) return refuse(m, 4002, "decode error: d.modes holds strings");
    }
    json_array_foreach(modes, i, x)
    {
        if (vmode_parse(json_string_value(x), &m->mode) == 0) return 0;
    }
    return refuse(m, 4016, "unknown encryption mode");
}

static int dec_resume(sig_vmsg *m, json_t *d, sig_vstate st)
{
    json_error_t e;
    if (st != SIG_VSTATE_HELLO) return refuse(m, 4005, "already identified");
    if (!d ||
        json_unpack_ex(d, &e, JSON_STRICT, "{s:s,s:s,s:s}", "connection_id", &m->connection_id,
                       "session_id", &m->session_id, "resume_token", &m->resume_token) < 0)
        return refuse(m, 4002,
                      "decode error: resume needs d.connection_id, d.session_id, d.resume_token");
    return 0;
}

static int dec_speaking(sig_vmsg *m, json_t *d, sig_vstate st)
{
    json_error_t e;
    int speaking;
    if (st == SIG_VSTATE_HELLO) return refuse(m, 4003, "not authenticated: identify first");
    if (!d || json_unpack_ex(d, &e, JSON_STRICT, "{s:b}", "speaking", &speaking) < 0)
        return refuse(m, 4002, "decode error: speaking needs d.speaking (a boolean)");
    m->speaking = speaking != 0;
    return 0;
}

int sig_vmsg_decode(const char *text, size_t len, sig_vstate st, sig_vmsg *m)
{
    json_error_t e;
    json_int_t op;
    json_t *d = NULL;
    memset(m, 0, sizeof *m);
    if (len > SIG_VMSG_MAX) return refuse(m, 4002, "decode error: message over 16 KiB");
    m->root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &e);
    if (!m->root || json_unpack_ex(m->root, &e, JSON_STRICT, "{s:I,s?o}", "op", &op, "d", &d) < 0)
        return refuse(m, 4002, "decode error: expected {\"op\": int, \"d\": ...}");
    switch (op) {
    case SIG_VOP_IDENTIFY:
        m->op = SIG_VOP_IDENTIFY;
        return dec_identify(m, d, st);
    case SIG_VOP_SELECT_PROTOCOL:
        m->op = SIG_VOP_SELECT_PROTOCOL;
        return dec_select_protocol(m, d, st);
    case SIG_VOP_HEARTBEAT:
        m->op = SIG_VOP_HEARTBEAT;
        m->heartbeat_d = d;
        return 0;
    case SIG_VOP_SPEAKING:
        m->op = SIG_VOP_SPEAKING;
        return dec_speaking(m, d, st);
    case SIG_VOP_RESUME:
        m->op = SIG_VOP_RESUME;
        return dec_resume(m, d, st);
    default:
        return st != SIG_VSTATE_HELLO ? refuse(m, 4001, "unknown opcode")
                                      : refuse(m, 4003, "not authenticated: identify first");
    }
}

void sig_vmsg_clear(sig_vmsg *m)
{
    if (!m) return;
    json_decref(m->root);
    memset(m, 0, sizeof *m);
}
