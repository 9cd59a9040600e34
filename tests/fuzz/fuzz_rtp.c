/*
 * Fuzzer of the media packet path as far as it exists (rtp/): any bytes through demux, then RTP
 * parse -> extension lookup -> audio level -> slot rewrite, and RTCP compound iteration. Both
 * parsers see every input whatever the demux says, so the seeds of one feed the other.
 * Invariants checked (abort on violation): every parsed pointer and length lies within the input;
 * hdr_len + payload_len + pad_len == size; the rewritten header has the input's length, parses
 * back to the same layout with the slot's SSRC, and equals the in-place rewrite; a late packet
 * from before a source's first is refused and leaves the slot unchanged; a switch of source
 * continues the slot's sequence by exactly +1 with a timestamp moved on by at least the step.
 * Deterministic: a fresh slot per input.
 */
#include "rtp/rtp.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define STEP 960u
#define CHECK_(c)                                                                                  \
    do {                                                                                           \
        if (!(c)) abort();                                                                         \
    } while (0)

static int within(const uint8_t *base, size_t n, const uint8_t *p, size_t len)
{
    if (len == 0) return 1;
    return p && p >= base && p <= base + n && len <= (size_t)(base + n - p);
}

static uint16_t get16(const uint8_t *p)
{
    return (uint16_t)((p[0] << 8) | p[1]);
}

static uint32_t get32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static int slot_eq(const rtp_slot *a, const rtp_slot *b)
{
    return a->ssrc_out == b->ssrc_out && a->init_seq == b->init_seq && a->init_ts == b->init_ts &&
           a->min_ts_step == b->min_ts_step && a->active == b->active &&
           a->src_ssrc == b->src_ssrc && a->seq_delta == b->seq_delta &&
           a->ts_delta == b->ts_delta && a->first_seq_ext == b->first_seq_ext &&
           a->max_seq_ext == b->max_seq_ext && a->first_ts_ext == b->first_ts_ext &&
           a->max_ts_ext == b->max_ts_ext && a->max_seq_out == b->max_seq_out &&
           a->max_ts_out == b->max_ts_out && a->max_ts_now == b->max_ts_now;
}

static void fuzz_extensions(const rtp_pkt *k)
{
    for (unsigned id = 0; id < 256; id++) {
        const uint8_t *d;
        size_t l;
        int rc = rtp_ext_find(k, (uint8_t)id, &d, &l);
        CHECK_(rc == 0 || rc == -ENOENT);
        if (rc == 0) CHECK_(within(k->ext, k->ext_len, d, l) && (l > 0) == (d != NULL));
        bool voice;
        uint8_t level = 0xff;
        rc = rtp_audio_level(k, (uint8_t)id, &voice, &level);
        CHECK_(rc == 0 || rc == -ENOENT || rc == -EINVAL);
        if (rc == 0) CHECK_(level <= 127);
    }
}

static void fuzz_slot(const uint8_t *data, size_t size, const rtp_pkt *k)
{
    rtp_slot s;
    rtp_slot_init(&s, 0x51075107u, (uint16_t)(k->seq ^ 0x5a5a), k->ts ^ 0xa5a5a5a5u, STEP);
    static uint8_t hdr[RTP_HDR_MIN + 15 * 4 + 4 + 65535 * 4];
    static uint8_t copy[1 << 19];
    CHECK_(k->hdr_len <= sizeof hdr);

    /* out of place */
    rtp_err why;
    rtp_slot before = s;
    CHECK_(rtp_slot_map(&s, k, 1000, hdr, &why) == 0 && why == RTP_OK);
    /* in place, from the same state */
    if (size > sizeof copy) return;
    memcpy(copy, data, size);
    rtp_pkt kc;
    CHECK_(rtp_parse(copy, size, &kc, NULL) == 0);
    CHECK_(rtp_slot_map(&before, &kc, 1000, copy, NULL) == 0);
    CHECK_(slot_eq(&before, &s));
    CHECK_(memcmp(copy, hdr, k->hdr_len) == 0);
    CHECK_(memcmp(copy + k->hdr_len, data + k->hdr_len, size - k->hdr_len) == 0);
    /* the rewritten packet parses back to the same layout */
    rtp_pkt o;
    CHECK_(rtp_parse(copy, size, &o, NULL) == 0);
    CHECK_(o.hdr_len == k->hdr_len && o.payload_len == k->payload_len && o.pad_len == k->pad_len &&
           o.ext_len == k->ext_len && o.cc == k->cc);
    CHECK_(o.ssrc == 0x51075107u && o.pt == k->pt && o.marker);
    CHECK_(o.seq == (uint16_t)(k->seq ^ 0x5a5a) && o.ts == (k->ts ^ 0xa5a5a5a5u));

    /* the packet just before it, late: refused, slot unchanged */
    rtp_pkt late = *k;
    late.seq = (uint16_t)(k->seq - 1);
    before = s;
    CHECK_(rtp_slot_map(&s, &late, 1000, hdr, &why) == -EALREADY && why == RTP_ERR_SLOT_STALE);
    CHECK_(slot_eq(&before, &s));

    /* the next one of the same source: shifted like the first */
    rtp_pkt next = *k;
    next.seq = (uint16_t)(k->seq + 1);
    next.ts = k->ts + STEP;
    next.marker = false;
    CHECK_(rtp_slot_map(&s, &next, 1000 + STEP, hdr, NULL) == 0);
    CHECK_(get16(hdr + 2) == (uint16_t)(o.seq + 1) && get32(hdr + 4) == o.ts + STEP);
    CHECK_((hdr[1] & 0x80) == 0);

    /* another source takes the slot: +1, and at least the step later */
    rtp_pkt other = *k;
    other.ssrc = k->ssrc + 1;
    other.seq = get16(data + 2) ^ 0xffff;
    CHECK_(rtp_slot_map(&s, &other, 1000, hdr, NULL) == 0);
    CHECK_(get16(hdr + 2) == (uint16_t)(o.seq + 2));
    CHECK_(get32(hdr + 4) == o.ts + 2 * STEP);
    CHECK_((hdr[1] & 0x80) != 0);
}

static void fuzz_rtp(const uint8_t *data, size_t size)
{
    rtp_pkt k;
    rtp_err why = RTP_ERR_COUNT_;
    int rc = rtp_parse(data, size, &k, &why);
    if (rc < 0) {
        CHECK_(rc == -EINVAL && why > RTP_OK && why < RTP_ERR_COUNT_);
        return;
    }
    CHECK_(rc == 0 && why == RTP_OK && k.version == 2);
    CHECK_(k.hdr_len + k.payload_len + k.pad_len == size);
    CHECK_(k.hdr_len == RTP_HDR_MIN + 4u * k.cc + (k.extension ? 4 + k.ext_len : 0));
    CHECK_(within(data, size, k.csrc, 4u * k.cc) && within(data, size, k.ext, k.ext_len));
    CHECK_(within(data, size, k.payload, k.payload_len));
    CHECK_(k.ext_len % 4 == 0 && k.pt < 128);
    fuzz_extensions(&k);
    fuzz_slot(data, size, &k);
}

static void fuzz_rtcp(const uint8_t *data, size_t size)
{
    rtp_rtcp_iter it;
    rtp_rtcp r;
    rtp_err why = RTP_ERR_COUNT_;
    rtp_rtcp_begin(&it, data, size);
    size_t total = 0;
    int rc;
    while ((rc = rtp_rtcp_next(&it, &r, &why)) == 0) {
        CHECK_(why == RTP_OK && r.data == data + total && r.len >= 4 && r.len % 4 == 0);
        CHECK_(within(data, size, r.data, r.len) && within(r.data, r.len, r.body, r.body_len));
        CHECK_(r.pt >= 192 && r.pt <= 223 && r.count < 32);
        if (r.blocks) CHECK_(within(r.body, r.body_len, r.blocks, 24u * r.count));
        total += r.len;
    }
    if (rc == -ENODATA) {
        CHECK_(total == size);
    } else {
        CHECK_(rc == -EINVAL && why > RTP_OK && why < RTP_ERR_COUNT_);
        CHECK_(rtp_rtcp_next(&it, &r, NULL) == -EINVAL);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    rtp_kind kind = rtp_demux(data, size);
    CHECK_(kind >= RTP_KIND_UNKNOWN && kind <= RTP_KIND_RTCP);
    CHECK_(rtp_kind_name(kind) != NULL);
    fuzz_rtp(data, size);
    fuzz_rtcp(data, size);
    return 0;
}
