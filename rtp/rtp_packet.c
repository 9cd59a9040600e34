/*
 * rtp/rtp_packet.c — the first stages of the packet path: demultiplexing the shared UDP port by
 * first byte (RFC 7983 / RFC 9443), parsing an RTP header into the caller's rtp_pkt, RFC 8285
 * header extensions, the RFC 6464 audio level, and writing the relay's own headers.
 *
 * How it works: rtp_parse() reads the fixed header, then takes each variable part in order (CSRC
 * list, extension, padding at the tail), checking before every read that the bytes are there, so
 * that a refusal is always a clean -EINVAL with a reason and never a read past `n`. Extension
 * blocks in the one-byte or two-byte form are walked once during the parse (ext_walk) so that a
 * later rtp_ext_find() walks a block already known to be sound. Opaque profiles are kept as bytes.
 */
#include "rtp/rtp.h"
#include "rtp/rtp_internal.h"

#include <errno.h>
#include <string.h>

/* ---- demux ---------------------------------------------------------------------------------- */

rtp_kind rtp_demux(const uint8_t *p, size_t n)
{
    if (n == 0) return RTP_KIND_UNKNOWN;
    uint8_t b = p[0];
    if (b <= 3) return RTP_KIND_STUN;
    if (b >= 16 && b <= 19) return RTP_KIND_ZRTP;
    if (b >= 20 && b <= 63) return RTP_KIND_DTLS;
    if (b >= 64 && b <= 79) return RTP_KIND_TURN;
    if (b >= 128 && b <= 191) {
        if (n < 2) return RTP_KIND_UNKNOWN;
        return (p[1] >= 192 && p[1] <= 223) ? RTP_KIND_RTCP : RTP_KIND_RTP;
    }
    return RTP_KIND_UNKNOWN;
}

const char *rtp_kind_name(rtp_kind k)
{
    switch (k) {
    case RTP_KIND_STUN:
        return "stun";
    case RTP_KIND_ZRTP:
        return "zrtp";
    case RTP_KIND_DTLS:
        return "dtls";
    case RTP_KIND_TURN:
        return "turn";
    case RTP_KIND_RTP:
        return "rtp";
    case RTP_KIND_RTCP:
        return "rtcp";
    case RTP_KIND_UNKNOWN:
        break;
    }
    return "unknown";
}

const char *rtp_err_name(rtp_err e)
{
    static const char *const names[RTP_ERR_COUNT_] = {
        [RTP_OK] = "ok",
        [RTP_ERR_TRUNCATED] = "truncated",
        [RTP_ERR_VERSION] = "bad_version",
        [RTP_ERR_PADDING] = "bad_padding",
        [RTP_ERR_EXTENSION] = "bad_extension",
        [RTP_ERR_RTCP_TYPE] = "bad_rtcp_type",
        [RTP_ERR_RTCP_BODY] = "bad_rtcp_body",
        [RTP_ERR_SLOT_STALE] = "slot_stale",
    };
    if ((unsigned)e >= RTP_ERR_COUNT_) return "unknown";
    return names[e];
}

/* ---- extensions ----------------------------------------------------------------------------- */

enum { EXT_OPAQUE, EXT_ONE_BYTE, EXT_TWO_BYTE };

static int ext_form(uint16_t profile)
{
    if (profile == 0xBEDE) return EXT_ONE_BYTE;
    if ((profile & 0xFFF0) == 0x1000) return EXT_TWO_BYTE;
    return EXT_OPAQUE;
}

/* Walks an RFC 8285 block. With want_id != 0, stops at that element (returns 0, *data and *len set)
 * or returns -ENOENT; with want_id == 0 validates the whole block (0 or -EINVAL). */
static int ext_walk(int form, const uint8_t *b, size_t n, uint8_t want_id, const uint8_t **data,
                    size_t *len)
{
    size_t i = 0;
    while (i < n) {
        uint8_t id;
        size_t l, hl;
        if (form == EXT_ONE_BYTE) {
            if (b[i] == 0) { /* padding byte */
                i++;
                continue;
            }
            id = b[i] >> 4;
            l = (size_t)(b[i] & 0x0f) + 1;
            hl = 1;
            if (id == 15 || id == 0) break; /* reserved: the rest of the block is ignored */
        } else {
            id = b[i];
            if (id == 0) { /* padding byte */
                i++;
                continue;
            }
            if (n - i < 2) return want_id ? -ENOENT : -EINVAL;
            l = b[i + 1];
            hl = 2;
        }
        if (n - i - hl < l) return want_id ? -ENOENT : -EINVAL;
        if (want_id && id == want_id) {
            *data = l ? b + i + hl : NULL;
            *len = l;
            return 0;
        }
        i += hl + l;
    }
    return want_id ? -ENOENT : 0;
}

int rtp_ext_find(const rtp_pkt *pkt, uint8_t id, const uint8_t **data, size_t *len)
{
    if (!pkt->extension || id == 0) return -ENOENT;
    int form = ext_form(pkt->ext_profile);
    if (form == EXT_OPAQUE) return -ENOENT;
    if (form == EXT_ONE_BYTE && id >= 15) return -ENOENT;
    return ext_walk(form, pkt->ext, pkt->ext_len, id, data, len);
}

int rtp_audio_level(const rtp_pkt *pkt, uint8_t id, bool *voice, uint8_t *level)
{
    const uint8_t *d;
    size_t l;
    int rc = rtp_ext_find(pkt, id, &d, &l);
    if (rc < 0) return rc;
    if (l != 1) return -EINVAL;
    *voice = (d[0] & 0x80) != 0;
    *level = d[0] & 0x7f;
    return 0;
}

/* ---- parse ---------------------------------------------------------------------------------- */

static int refuse(rtp_err *why, rtp_err e)
{
    if (why) *why = e;
    return -EINVAL;
}

int rtp_parse(const uint8_t *p, size_t n, rtp_pkt *out, rtp_err *why)
{
    if (n < RTP_HDR_MIN) return refuse(why, RTP_ERR_TRUNCATED);
    memset(out, 0, sizeof *out);
    out->data = p;
    out->len = n;
    out->version = p[0] >> 6;
    if (out->version != 2) return refuse(why, RTP_ERR_VERSION);
    out->padding = (p[0] & 0x20) != 0;
    out->extension = (p[0] & 0x10) != 0;
    out->cc = p[0] & 0x0f;
    out->marker = (p[1] & 0x80) != 0;
    out->pt = p[1] & 0x7f;
    out->seq = rd16(p + 2);
    out->ts = rd32(p + 4);
    out->ssrc = rd32(p + 8);

    size_t off = RTP_HDR_MIN;
    if (out->cc) {
        size_t cl = (size_t)out->cc * 4;
        if (n - off < cl) return refuse(why, RTP_ERR_TRUNCATED);
        out->csrc = p + off;
        off += cl;
    }
    if (out->extension) {
        if (n - off < 4) return refuse(why, RTP_ERR_TRUNCATED);
        out->ext_profile = rd16(p + off);
        size_t el = (size_t)rd16(p + off + 2) * 4;
        off += 4;
        if (n - off < el) return refuse(why, RTP_ERR_TRUNCATED);
        out->ext = el ? p + off : NULL;
        out->ext_len = el;
        off += el;
        int form = ext_form(out->ext_profile);
        if (form != EXT_OPAQUE && ext_walk(form, out->ext, el, 0, NULL, NULL) < 0)
            return refuse(why, RTP_ERR_EXTENSION);
    }
    out->hdr_len = off;
    size_t body = n - off;
    if (out->padding) {
        if (body == 0) return refuse(why, RTP_ERR_PADDING);
        uint8_t pl = p[n - 1];
        if (pl == 0 || pl > body) return refuse(why, RTP_ERR_PADDING);
        out->pad_len = pl;
        body -= pl;
    }
    out->payload = body ? p + off : NULL;
    out->payload_len = body;
    if (why) *why = RTP_OK;
    return 0;
}

/* ---- write ---------------------------------------------------------------------------------- */

int rtp_write_hdr(uint8_t *buf, size_t cap, const rtp_hdr_params *h)
{
    if (h->pt > 127 || h->level > 127 || h->level_id > 14) return -EINVAL;
    size_t len = h->level_id ? RTP_HDR_LEVEL_LEN : RTP_HDR_MIN;
    if (cap < len) return -ENOSPC;
    buf[0] = (uint8_t)(0x80 | (h->level_id ? 0x10 : 0));
    buf[1] = (uint8_t)((h->marker ? 0x80 : 0) | h->pt);
    wr16(buf + 2, h->seq);
    wr32(buf + 4, h->ts);
    wr32(buf + 8, h->ssrc);
    if (h->level_id) {
        wr16(buf + 12, 0xBEDE);
        wr16(buf + 14, 1);                     /* one 32-bit word of elements */
        buf[16] = (uint8_t)(h->level_id << 4); /* length field 0: one byte of data */
        buf[17] = (uint8_t)((h->voice ? 0x80 : 0) | h->level);
        buf[18] = 0; /* padding */
        buf[19] = 0;
    }
    return (int)len;
}
