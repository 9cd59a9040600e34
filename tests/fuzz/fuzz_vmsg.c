/*
 * Fuzzer of the voice WebSocket message decoder (sig_vmsg_decode): the first byte picks the
 * connection's state (hello / ready / media, modulo 3), the rest is the message.
 * Invariants checked (abort on violation): the result is 0 or -EPROTO; a refusal carries one of
 * the documented close codes and a reason; an accepted message is an op allowed in that state
 * with every field it promises (Identify's token, Select Protocol's "srtp" and a supported mode
 * or "webrtc" and an SDP string, Resume's three strings); decoding is deterministic (a second
 * decode gives the same result); nothing leaks (sig_vmsg_clear releases the parsed message).
 */
#include "signalling/sig.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK_(c)                                                                                  \
    do {                                                                                           \
        if (!(c)) abort();                                                                         \
    } while (0)

static void check_refusal(const sig_vmsg *m, sig_vstate st)
{
    switch (m->close_code) {
    case 4002:
    case 4004: /* Identify without d.token */
        break;
    case 4001:
        CHECK_(st != SIG_VSTATE_HELLO);
        break;
    case 4003:
        CHECK_(st == SIG_VSTATE_HELLO);
        break;
    case 4005:
        CHECK_(st != SIG_VSTATE_HELLO);
        break;
    case 4012:
    case 4016:
        CHECK_(st == SIG_VSTATE_READY && m->op == SIG_VOP_SELECT_PROTOCOL);
        break;
    default:
        abort();
    }
    CHECK_(m->close_reason && m->close_reason[0]);
}

static void check_accepted(const sig_vmsg *m, sig_vstate st)
{
    CHECK_(m->close_code == 0 && m->close_reason == NULL && m->root);
    switch (m->op) {
    case SIG_VOP_IDENTIFY:
        CHECK_(st == SIG_VSTATE_HELLO && m->token);
        break;
    case SIG_VOP_SELECT_PROTOCOL:
        CHECK_(st == SIG_VSTATE_READY && m->protocol);
        if (strcmp(m->protocol, "webrtc") == 0) { /* the offer is judged later (media_open) */
            CHECK_(m->sdp != NULL);
            break;
        }
        CHECK_(strcmp(m->protocol, "srtp") == 0);
        CHECK_(m->mode == RTP_SRTP_AES_CM_128_HMAC_SHA1_80 || m->mode == RTP_SRTP_AEAD_AES_128_GCM);
        break;
    case SIG_VOP_HEARTBEAT:
        break;
    case SIG_VOP_SPEAKING:
        CHECK_(st != SIG_VSTATE_HELLO);
        break;
    case SIG_VOP_RESUME:
        CHECK_(st == SIG_VSTATE_HELLO && m->connection_id && m->session_id && m->resume_token);
        break;
    default:
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    sig_vstate st = (sig_vstate)(data[0] % 3);
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    sig_vmsg m, again;
    int rc = sig_vmsg_decode(text, len, st, &m);
    CHECK_(rc == 0 || rc == -EPROTO);
    if (rc == 0)
        check_accepted(&m, st);
    else
        check_refusal(&m, st);
    int rc2 = sig_vmsg_decode(text, len, st, &again);
    CHECK_(rc2 == rc && again.close_code == m.close_code && again.op == m.op &&
           again.mode == m.mode && again.speaking == m.speaking);
    if (rc == 0 && m.token) CHECK_(strcmp(m.token, again.token) == 0);
    sig_vmsg_clear(&again);
    sig_vmsg_clear(&m);
    return 0;
}
