/*
 * rtp/rtp_rtcp.c — iteration over an RTCP compound packet (RFC 3550 §6, feedback per RFC 4585).
 *
 * How it works: an iterator holds the compound and an offset. Each rtp_rtcp_next() reads one
 * 4-byte common header, checks version and type range, checks that the length field
 * ((length+1) * 4 bytes) fits in what is left, strips padding (allowed on the last packet only, per
 * RFC 3550 A.2), then checks the body against the minimum its type and count demand and fills the
 * fields the relay uses (sender SSRC, the SR sender info). The first packet is not required to be
 * an SR or RR: reduced-size RTCP (RFC 5506, `a=rtcp-rsize`, which browsers offer) lifts that
 * rule. A malformed packet ends the iteration: later packets are not trusted either.
 */
#include "rtp/rtp.h"
#include "rtp/rtp_internal.h"

#include <errno.h>
#include <string.h>

#define SENDER_INFO_LEN  20
#define REPORT_BLOCK_LEN 24

void rtp_rtcp_begin(rtp_rtcp_iter *it, const uint8_t *p, size_t n)
{
    it->p = p;
    it->n = n;
    it->off = 0;
}

static int fail(rtp_rtcp_iter *it, rtp_err *why, rtp_err e)
{
    it->off = SIZE_MAX; /* sticky: the rest is not parsed */
    if (why) *why = e;
    return -EINVAL;
}

/* SDES: `count` chunks, each an SSRC, items (type, length, text) up to a zero type byte, then
 * zero padding to the next 32-bit boundary (the terminator counts in it). 0 or -1. */
static int sdes_check(const uint8_t *b, size_t n, unsigned count)
{
    size_t i = 0;
    for (unsigned c = 0; c < count; c++) {
        if (n - i < 4) return -1;
        i += 4;
        for (;;) {
            if (i >= n) return -1;
            if (b[i] == 0) break;
            if (n - i < 2 || n - i - 2 < b[i + 1]) return -1;
            i += 2 + (size_t)b[i + 1];
        }
        i++;                      /* the null item */
        i = (i + 3) & ~(size_t)3; /* chunk padding, relative to the body's 32-bit start */
        if (i > n) return -1;
    }
    return 0;
}

int rtp_rtcp_next(rtp_rtcp_iter *it, rtp_rtcp *out, rtp_err *why)
{
    if (it->off == SIZE_MAX) {
        if (why) *why = RTP_ERR_TRUNCATED;
        return -EINVAL;
    }
    if (it->off == it->n) return -ENODATA;
    size_t left = it->n - it->off;
    const uint8_t *p = it->p + it->off;
    if (left < 4) return fail(it, why, RTP_ERR_TRUNCATED);
    memset(out, 0, sizeof *out);
    if (p[0] >> 6 != 2) return fail(it, why, RTP_ERR_VERSION);
    out->padding = (p[0] & 0x20) != 0;
    out->count = p[0] & 0x1f;
    out->pt = p[1];
    if (out->pt < 192 || out->pt > 223) return fail(it, why, RTP_ERR_RTCP_TYPE);
    size_t len = ((size_t)rd16(p + 2) + 1) * 4;
    if (left < len) return fail(it, why, RTP_ERR_TRUNCATED);
    out->data = p;
    out->len = len;
    size_t body = len - 4;
    if (out->padding) {
        if (len != left) return fail(it, why, RTP_ERR_PADDING); /* not the last packet */
        uint8_t pl = p[len - 1];
        if (pl == 0 || pl > body) return fail(it, why, RTP_ERR_PADDING);
        body -= pl;
    }
    const uint8_t *b = p + 4;
    out->body = body ? b : NULL;
    out->body_len = body;

    switch (out->pt) {
    case RTP_RTCP_SR:
        if (body < 4 + SENDER_INFO_LEN + (size_t)out->count * REPORT_BLOCK_LEN)
            return fail(it, why, RTP_ERR_RTCP_BODY);
        out->ssrc = rd32(b);
        out->ntp = ((uint64_t)rd32(b + 4) << 32) | rd32(b + 8);
        out->rtp_ts = rd32(b + 12);
        out->packets = rd32(b + 16);
        out->octets = rd32(b + 20);
        out->blocks = out->count ? b + 4 + SENDER_INFO_LEN : NULL;
        break;
    case RTP_RTCP_RR:
        if (body < 4 + (size_t)out->count * REPORT_BLOCK_LEN)
            return fail(it, why, RTP_ERR_RTCP_BODY);
        out->ssrc = rd32(b);
        out->blocks = out->count ? b + 4 : NULL;
        break;
    case RTP_RTCP_SDES:
        if (sdes_check(b, body, out->count) < 0) return fail(it, why, RTP_ERR_RTCP_BODY);
        if (out->count) out->ssrc = rd32(b);
        break;
    case RTP_RTCP_BYE: {
        size_t sl = (size_t)out->count * 4;
        if (body < sl) return fail(it, why, RTP_ERR_RTCP_BODY);
        if (body > sl && body - sl - 1 < b[sl]) /* optional reason: length byte + text */
            return fail(it, why, RTP_ERR_RTCP_BODY);
        if (out->count) out->ssrc = rd32(b);
        break;
    }
    case RTP_RTCP_APP:
        if (body < 8) return fail(it, why, RTP_ERR_RTCP_BODY); /* SSRC + 4-byte name */
        out->ssrc = rd32(b);
        break;
    case RTP_RTCP_RTPFB:
    case RTP_RTCP_PSFB:
        if (body < 8) return fail(it, why, RTP_ERR_RTCP_BODY);
        out->ssrc = rd32(b);
        out->media_ssrc = rd32(b + 4);
        break;
    default: /* XR and others: carried, not interpreted */
        if (body >= 4) out->ssrc = rd32(b);
        break;
    }
    it->off += len;
    if (why) *why = RTP_OK;
    return 0;
}
