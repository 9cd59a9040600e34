/*
 * Fuzzer of the DTLS server's input side (webrtc/wrtc_dtls.c): the input is a sequence of
 * datagrams, each prefixed by a 2-byte big-endian length, fed to one fresh server transport; after
 * each, every outgoing datagram is pulled and the timer queried. The peer fingerprint is fixed, so
 * a handshake can never complete with a random certificate — this explores OpenSSL's record and
 * handshake parsing behind our feed/pull and our record packing. Invariants (abort on violation):
 * feed returns a state or -EINVAL/-EPROTO/-EACCES; -EINVAL only for a datagram that is not DTLS by
 * its first byte; once FAILED, feed and on_timeout return -EPROTO; pulled datagrams are at most
 * WRTC_DTLS_MTU bytes and consist of whole records when they came from OpenSSL whole; no keys
 * unless CONNECTED. The certificate context is made once per process.
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

static wrtc_dtls_ctx *ctx;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!ctx && wrtc_dtls_ctx_new(NULL, NULL, &ctx) != 0) abort();
    static const uint8_t fp[WRTC_SDP_FP_LEN] = {1, 2, 3};
    wrtc_dtls *d;
    CHECK_(wrtc_dtls_new(ctx, fp, &d) == 0);
    size_t off = 0;
    int datagrams = 0;
    while (off + 2 <= size && datagrams < 64) {
        size_t n = (size_t)((data[off] << 8) | data[off + 1]);
        off += 2;
        if (n > size - off) n = size - off;
        const uint8_t *p = data + off;
        off += n;
        datagrams++;
        wrtc_dtls_state before = wrtc_dtls_get_state(d);
        int rc = wrtc_dtls_feed(d, p, n);
        bool dtls = n > 0 && p[0] >= 20 && p[0] <= 63;
        if (before == WRTC_DTLS_FAILED && dtls) CHECK_(rc == -EPROTO);
        if (rc == -EINVAL) CHECK_(!dtls);
        CHECK_(rc == -EINVAL || rc == -EPROTO || rc == -EACCES ||
               (rc >= WRTC_DTLS_HANDSHAKING && rc <= WRTC_DTLS_CLOSED));
        if (rc == -EPROTO || rc == -EACCES) CHECK_(wrtc_dtls_get_state(d) == WRTC_DTLS_FAILED);
        uint8_t out[2048];
        int m;
        while ((m = wrtc_dtls_pull(d, out, sizeof out)) > 0) {
            CHECK_(m <= WRTC_DTLS_MTU);
            CHECK_(out[0] >= 20 && out[0] <= 63);
        }
        long ms = wrtc_dtls_timeout_ms(d);
        CHECK_(ms >= -1);
        wrtc_srtp_key in, o;
        if (wrtc_dtls_get_state(d) != WRTC_DTLS_CONNECTED)
            CHECK_(wrtc_dtls_srtp_keys(d, &in, &o) == -EAGAIN);
    }
    if (wrtc_dtls_get_state(d) == WRTC_DTLS_FAILED) CHECK_(wrtc_dtls_on_timeout(d) == -EPROTO);
    wrtc_dtls_free(d);
    return 0;
}
