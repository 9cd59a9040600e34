/*
 * Unit tests of the slot rewrite (rtp_slot_map): what a listener sees on one downstream slot while
 * the forwarding unit puts different speakers on it — one continuous stream — and what a speaker's
 * own loss, reordering and wraparound become on it (the same, shifted).
 */
#include "rtp/rtp.h"
#include "tests/unit/rtp/rtp_samples.h"
#include "tests/unit/test.h"

#include <errno.h>
#include <stdlib.h>

#define SLOT_SSRC 0x51075107u
#define STEP      960u /* 20 ms of Opus at 48 kHz */

typedef struct out_hdr {
    int rc;
    uint16_t seq;
    uint32_t ts;
    uint32_t ssrc;
    bool marker;
} out_hdr;

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

/* Builds a packet of source `ssrc` (with an audio level extension and a 3-byte payload), maps it
 * through the slot out of place and in place, checks both agree and that everything but the
 * rewritten fields is unchanged, and returns the rewritten fields as the listener parses them. */
static out_hdr map(rtp_slot *s, uint32_t ssrc, uint16_t seq, uint32_t ts, bool marker, uint32_t now)
{
    out_hdr o = {0};
    uint8_t pkt[RTP_HDR_LEVEL_LEN + 3];
    rtp_hdr_params h = {.pt = 111,
                        .marker = marker,
                        .seq = seq,
                        .ts = ts,
                        .ssrc = ssrc,
                        .level_id = 1,
                        .voice = true,
                        .level = 40};
    rtp_write_hdr(pkt, sizeof pkt, &h);
    memcpy(pkt + RTP_HDR_LEVEL_LEN, "\x78\xaa\xbb", 3);
    rtp_pkt in;
    rtp_err why;
    if (rtp_parse(pkt, sizeof pkt, &in, &why) != 0) abort();

    rtp_slot copy = *s;
    uint8_t hdr[RTP_HDR_LEVEL_LEN];
    memset(hdr, 0xee, sizeof hdr);
    o.rc = rtp_slot_map(s, &in, now, hdr, &why);
    if (o.rc < 0) {
        if (why != RTP_ERR_SLOT_STALE || !slot_eq(&copy, s)) abort();
        if (hdr[0] != 0xee) abort(); /* nothing written */
        return o;
    }
    /* the same mapping in place, from the state before */
    uint8_t inplace[sizeof pkt];
    memcpy(inplace, pkt, sizeof pkt);
    if (rtp_slot_map(&copy, &in, now, inplace, NULL) != 0) abort();
    if (memcmp(inplace, hdr, sizeof hdr) != 0) abort();
    if (memcmp(inplace + sizeof hdr, pkt + sizeof hdr, 3) != 0) abort();
    if (!slot_eq(&copy, s)) abort();

    rtp_pkt out;
    if (rtp_parse(inplace, sizeof inplace, &out, &why) != 0) abort();
    if (out.hdr_len != in.hdr_len || out.pt != 111 || out.payload_len != 3) abort();
    if (memcmp(hdr + 12, pkt + 12, sizeof hdr - 12) != 0) abort(); /* extension kept */
    if (hdr[0] != pkt[0]) abort();
    o.seq = out.seq;
    o.ts = out.ts;
    o.ssrc = out.ssrc;
    o.marker = out.marker;
    return o;
}

TEST(one_source_is_shifted_onto_the_slot)
{
    rtp_slot s;
    rtp_slot_init(&s, SLOT_SSRC, 1000, 5000, STEP);
    for (unsigned i = 0; i < 10; i++) {
        out_hdr o = map(&s, 0xA, (uint16_t)(100 + i), 7777 + i * STEP, false, i * STEP);
        CHECK_EQ_INT(o.rc, 0);
        CHECK_EQ_INT(o.seq, 1000 + i);
        CHECK_EQ_INT(o.ts, 5000 + i * STEP);
        CHECK_EQ_INT(o.ssrc, SLOT_SSRC);
        CHECK_EQ_INT(o.marker, i == 0); /* the first packet on the slot starts a talkspurt */
    }
    /* the source's own marker passes through */
    out_hdr o = map(&s, 0xA, 110, 7777 + 10 * STEP, true, 10 * STEP);
    CHECK(o.marker);
}

TEST(loss_and_reordering_keep_their_shape)
{
    rtp_slot s;
    rtp_slot_init(&s, SLOT_SSRC, 1000, 5000, STEP);
    /* in: 100, 101, 104 (102 and 103 lost so far), 102 late, 105, 101 duplicate */
    uint16_t in[] = {100, 101, 104, 102, 105, 101};
    for (size_t i = 0; i < sizeof in / sizeof in[0]; i++) {
        uint32_t k = (uint32_t)(in[i] - 100);
        out_hdr o = map(&s, 0xA, in[i], 7777 + k * STEP, false, (uint32_t)i * STEP);
        CHECK_EQ_INT(o.rc, 0);
        CHECK_EQ_INT(o.seq, 1000 + k);
        CHECK_EQ_INT(o.ts, 5000 + k * STEP);
    }
}

TEST(a_new_source_continues_the_slot)
{
    rtp_slot s;
    rtp_slot_init(&s, SLOT_SSRC, 1000, 5000, STEP);
    uint32_t now = 0;
    for (unsigned i = 0; i < 5; i++, now += STEP)
        map(&s, 0xA, (uint16_t)(100 + i), i * STEP, false, now);
    /* last A packet: out seq 1004, ts 5000 + 4*960 = 8840, sent at now 3840. B arrives 100 ms
     * (4800 ticks) after it, with numbers of its own */
    now = 3840 + 4800;
    out_hdr o = map(&s, 0xB, 40000, 123456789, false, now);
    CHECK_EQ_INT(o.rc, 0);
    CHECK_EQ_INT(o.seq, 1005);
    CHECK_EQ_INT(o.ts, 8840 + 4800);
    CHECK(o.marker);
    o = map(&s, 0xB, 40001, 123456789 + STEP, false, now + STEP);
    CHECK_EQ_INT(o.seq, 1006);
    CHECK_EQ_INT(o.ts, 8840 + 4800 + STEP);
    CHECK(!o.marker);
    /* C right away (elapsed 0): the timestamp still moves on by the minimum step */
    o = map(&s, 0xC, 7, 1, false, now + STEP);
    CHECK_EQ_INT(o.seq, 1007);
    CHECK_EQ_INT(o.ts, 8840 + 4800 + 2 * STEP);
    /* back to A: a fresh anchor, not A's old deltas; a clock that went back counts as 0 */
    o = map(&s, 0xA, 105, 5 * STEP, false, 0);
    CHECK_EQ_INT(o.seq, 1008);
    CHECK_EQ_INT(o.ts, 8840 + 4800 + 3 * STEP);
    CHECK(o.marker);
}

TEST(a_late_packet_from_before_the_switch_is_refused)
{
    rtp_slot s;
    rtp_slot_init(&s, SLOT_SSRC, 1000, 5000, STEP);
    map(&s, 0xA, 100, 0, false, 0);
    map(&s, 0xA, 101, STEP, false, STEP);
    /* B takes the slot with its seq 500; its 499 arrives late: it would land on A's 1001 */
    out_hdr o = map(&s, 0xB, 500, 50 * STEP, false, 2 * STEP);
    CHECK_EQ_INT(o.seq, 1002);
    o = map(&s, 0xB, 499, 49 * STEP, false, 2 * STEP);
    CHECK_EQ_INT(o.rc, -EALREADY);
    /* a later B packet with a timestamp from before its first is refused too */
    o = map(&s, 0xB, 501, 10 * STEP, false, 3 * STEP);
    CHECK_EQ_INT(o.rc, 0); /* newer seq with an old timestamp: B restarted its clock (rule 5) */
    CHECK_EQ_INT(o.seq, 1003);
    CHECK(o.marker);
    o = map(&s, 0xB, 502, 11 * STEP, false, 4 * STEP);
    CHECK_EQ_INT(o.seq, 1004);
    o = map(&s, 0xB, 500, 0, false, 4 * STEP); /* late, between first and highest, old ts */
    CHECK_EQ_INT(o.rc, -EALREADY);
    CHECK_EQ_STR(rtp_err_name(RTP_ERR_SLOT_STALE), "slot_stale");
}

TEST(wraparound_of_seq_and_timestamp)
{
    rtp_slot s;
    /* the slot's own numbers wrap: out 65534, 65535, 0, 1; ts across 2^32 */
    rtp_slot_init(&s, SLOT_SSRC, 65534, 0xffffffffu - STEP, STEP);
    uint16_t seq = 65533; /* and the source's wrap one packet later */
    uint32_t ts = 0xffffffffu - 2 * STEP + 1;
    for (unsigned i = 0; i < 6; i++, seq++, ts += STEP) {
        out_hdr o = map(&s, 0xA, seq, ts, false, i * STEP);
        CHECK_EQ_INT(o.rc, 0);
        CHECK_EQ_INT(o.seq, (uint16_t)(65534 + i));
        CHECK_EQ_INT(o.ts, (uint32_t)(0xffffffffu - STEP + i * STEP));
    }
    /* a late packet from before the wrap still maps to its place */
    out_hdr o = map(&s, 0xA, 65535, 0xffffffffu - 2 * STEP + 1 + 2 * STEP, false, 6 * STEP);
    CHECK_EQ_INT(o.rc, 0);
    CHECK_EQ_INT(o.seq, (uint16_t)(65534 + 2));
    /* a switch right after the wrap continues from the highest, not from the late one */
    o = map(&s, 0xB, 9, 9, false, 6 * STEP);
    CHECK_EQ_INT(o.seq, (uint16_t)(65534 + 6));
    CHECK_EQ_INT(o.ts, (uint32_t)(0xffffffffu - STEP + 6 * STEP));
}

TEST(a_long_lived_source_is_never_stale)
{
    /* 200,000 packets (three seq wraps) one second of timestamp apart (two ts wraps) */
    rtp_slot s;
    rtp_slot_init(&s, SLOT_SSRC, 0, 0, STEP);
    uint16_t want_seq = 0;
    uint32_t want_ts = 0;
    for (uint32_t i = 0; i < 200000; i++) {
        rtp_pkt in = {0};
        uint8_t b[12] = {0x80, 111};
        rtp_hdr_params h = {
            .pt = 111, .seq = (uint16_t)(777 + i), .ts = 99 + i * 48000u, .ssrc = 0xA};
        rtp_write_hdr(b, sizeof b, &h);
        rtp_parse(b, sizeof b, &in, NULL);
        CHECK_EQ_INT(rtp_slot_map(&s, &in, i * 48000u, b, NULL), 0);
        CHECK_EQ_INT((b[2] << 8) | b[3], want_seq);
        CHECK_EQ_INT(((uint32_t)b[4] << 24) | ((uint32_t)b[5] << 16) | (b[6] << 8) | b[7], want_ts);
        want_seq++;
        want_ts += 48000;
    }
}

TEST(a_source_that_restarts_its_sequence_is_reanchored)
{
    rtp_slot s;
    rtp_slot_init(&s, SLOT_SSRC, 1000, 5000, STEP);
    for (unsigned i = 0; i < 300; i++)
        map(&s, 0xA, (uint16_t)(20000 + i), i * STEP, false, i * STEP);
    /* the same SSRC comes back at seq 3 (e.g. a client that rebuilt its sender) */
    out_hdr o = map(&s, 0xA, 3, 0, false, 300 * STEP);
    CHECK_EQ_INT(o.rc, 0);
    CHECK_EQ_INT(o.seq, 1300);
    CHECK_EQ_INT(o.ts, 5000 + 300 * STEP); /* 299 * STEP + max(elapsed = STEP, STEP) */
    CHECK(o.marker);
    o = map(&s, 0xA, 4, STEP, false, 301 * STEP);
    CHECK_EQ_INT(o.seq, 1301);
    /* but within RTP_SLOT_MAX_MISORDER it is just late (and here, before the anchor: refused) */
    o = map(&s, 0xA, 2, 0, false, 301 * STEP);
    CHECK_EQ_INT(o.rc, -EALREADY);
}

TEST(csrcs_and_padding_are_kept)
{
    rtp_slot s;
    rtp_slot_init(&s, SLOT_SSRC, 1, 2, STEP);
    uint8_t b[] = {0xa1, 0x6f, 0, 1, 0, 0, 0, 160, 0, 0, 0, 9, 0, 0, 0, 1, 0xaa, 0, 2};
    rtp_pkt in;
    CHECK_EQ_INT(rtp_parse(b, sizeof b, &in, NULL), 0);
    uint8_t out[16];
    CHECK_EQ_INT(in.hdr_len, sizeof out);
    CHECK_EQ_INT(rtp_slot_map(&s, &in, 0, out, NULL), 0);
    static const uint8_t want[] = {0xa1, 0xef, 0,    1,    0, 0, 0, 2,
                                   0x51, 0x07, 0x51, 0x07, 0, 0, 0, 1};
    CHECK(memcmp(out, want, sizeof want) == 0);
}

int main(void)
{
    RUN(one_source_is_shifted_onto_the_slot);
    RUN(loss_and_reordering_keep_their_shape);
    RUN(a_new_source_continues_the_slot);
    RUN(a_late_packet_from_before_the_switch_is_refused);
    RUN(wraparound_of_seq_and_timestamp);
    RUN(a_long_lived_source_is_never_stale);
    RUN(a_source_that_restarts_its_sequence_is_reanchored);
    RUN(csrcs_and_padding_are_kept);
    return test_summary();
}
