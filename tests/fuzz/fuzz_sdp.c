/*
 * Fuzzer of the SDP offer parser and answer writer (webrtc/wrtc_sdp.c): any bytes through
 * wrtc_sdp_parse; an accepted offer through wrtc_sdp_answer, whose output is parsed back.
 * Invariants (abort on violation): a refusal has a reason and an accepted offer none; every fixed
 * field of the offer is NUL-terminated within its bound; the accepted section is an audio one with
 * a port; other accepted sections only with BUNDLE; the answer fits WRTC_SDP_MAX_LEN, has as many
 * m-lines as the offer, in the same order, of the same kinds, with a port exactly on the accepted
 * ones, and our own parser reads it back as a well-formed offer refused only for
 * a=setup:passive (so nothing from the offer can break the answer's syntax); a buffer one byte
 * short gives -ENOSPC. Deterministic.
 */
#include "webrtc/webrtc.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK_(c)                                                                                  \
    do {                                                                                           \
        if (!(c)) abort();                                                                         \
    } while (0)

static wrtc_sdp_offer offer, back;
static char ans[WRTC_SDP_MAX_LEN];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    wrtc_sdp_err why = WRTC_SDP_ERR_COUNT_;
    unsigned line = 12345;
    int rc = wrtc_sdp_parse((const char *)data, size, &offer, &why, &line);
    if (rc != 0) {
        CHECK_((rc == -EINVAL || rc == -E2BIG) && why > WRTC_SDP_OK && why < WRTC_SDP_ERR_COUNT_);
        CHECK_((rc == -E2BIG) == (why == WRTC_SDP_OVERSIZE));
        CHECK_(line != 12345);
        return 0;
    }
    CHECK_(why == WRTC_SDP_OK && line == 0);
    CHECK_(offer.n_mlines >= 1 && offer.n_mlines <= WRTC_SDP_MAX_MLINES);
    CHECK_(offer.audio < offer.n_mlines);
    for (unsigned i = 0; i < offer.n_mlines; i++) {
        const wrtc_sdp_mline *m = &offer.m[i];
        CHECK_(memchr(m->kind, 0, sizeof m->kind) && memchr(m->proto, 0, sizeof m->proto));
        CHECK_(memchr(m->fmt, 0, sizeof m->fmt) && memchr(m->mid, 0, sizeof m->mid));
    }
    CHECK_(strcmp(offer.m[offer.audio].kind, "audio") == 0 && offer.m[offer.audio].port != 0);
    CHECK_(strlen(offer.ice_ufrag) >= 4 && strlen(offer.ice_pwd) >= 22);
    CHECK_(memchr(offer.opus_fmtp, 0, sizeof offer.opus_fmtp));
    CHECK_(offer.opus_pt <= 127 && offer.level_ext_id != 15);
    CHECK_(offer.m[offer.audio].accepted && offer.n_audio >= 1 && offer.n_recv <= offer.n_audio);
    CHECK_(offer.n_audio == 1 || offer.bundle);

    static const uint32_t slots[8] = {1, 2, 3, 4, 5, 6, 7, 0xFFFFFFFFu};
    wrtc_sdp_answer_params a = {
        .ice_ufrag = "Xk3p",
        .ice_pwd = "hN7rQe2mVb9sLw4tYc6zAa",
        .fingerprint = "AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:"
                       "22:33:44:55:66:77:88:99",
        .ip = size % 2 ? "2001:db8::1" : "192.0.2.1",
        .port = 65535,
        .session_id = 1,
        .cname = "voxd",
        .stream_id = "voxd",
        .slot_ssrcs = slots,
        .n_slots = 8,
    };
    int n = wrtc_sdp_answer(&offer, &a, ans, sizeof ans);
    CHECK_(n > 0 && (size_t)n < sizeof ans && strlen(ans) == (size_t)n);
    CHECK_(wrtc_sdp_parse(ans, (size_t)n, &back, &why, &line) == -EINVAL);
    CHECK_(why == WRTC_SDP_BAD_SETUP);
    CHECK_(back.n_mlines == offer.n_mlines && back.audio == offer.audio);
    for (unsigned i = 0; i < offer.n_mlines; i++) {
        CHECK_(strcmp(back.m[i].kind, offer.m[i].kind) == 0);
        CHECK_(strcmp(back.m[i].mid, offer.m[i].mid) == 0);
        CHECK_((back.m[i].port != 0) == offer.m[i].accepted);
        CHECK_(back.m[i].accepted == offer.m[i].accepted);
    }
    static char small[WRTC_SDP_MAX_LEN];
    CHECK_(wrtc_sdp_answer(&offer, &a, small, (size_t)n) == -ENOSPC);
    return 0;
}
