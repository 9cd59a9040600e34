/*
 * Unit tests of the room's forwarding decisions (rtp_room_*): who hears whom on which slot, as a
 * listener would notice it — the speakers it receives, on which slot, whether the slot's stream
 * stays continuous, and the Speaking changes the node would send. The clock is the test's: one
 * packet per speaker every 20 ms.
 *
 * No allocation after rtp_room_create(): counted by a shim over glibc's allocator below (not
 * under AddressSanitizer, which has its own; there it holds by construction — rtp_room.c
 * allocates only in rtp_room_create()).
 */
#include "rtp/rtp.h"
#include "tests/unit/test.h"

#include <errno.h>
#include <stdlib.h>

/* counting allocator: this test binary's malloc/calloc/realloc/free, over glibc's own */
#if !defined(__SANITIZE_ADDRESS__)
#define COUNT_ALLOCS 1
extern void *__libc_malloc(size_t n);
extern void *__libc_calloc(size_t n, size_t size);
extern void *__libc_realloc(void *p, size_t n);
extern void __libc_free(void *p);
static long allocs;

void *malloc(size_t n)
{
    allocs++;
    return __libc_malloc(n);
}

void *calloc(size_t n, size_t size)
{
    allocs++;
    return __libc_calloc(n, size);
}

void *realloc(void *p, size_t n)
{
    allocs++;
    return __libc_realloc(p, n);
}

void free(void *p)
{
    __libc_free(p);
}
#else
#define COUNT_ALLOCS 0
static long allocs;
#endif

#define MAXP  600
#define TICK  20  /* ms between two packets of a speaker */
#define STEP  960 /* 20 ms at 48 kHz */
#define QUIET 127

static rtp_room_dest dests[MAXP];
static rtp_room_change changes[8192];

static rtp_room *mk(uint32_t max, uint8_t n, uint32_t ring)
{
    rtp_room_config c = {.max_participants = max, .n_slots = n, .change_ring = ring};
    rtp_room *r = NULL;
    if (rtp_room_create(&c, &r) != 0) abort();
    return r;
}

static uint32_t slot_ssrc(uint32_t id, unsigned s)
{
    return 0x5000000u + id * 16 + s;
}

static int join(rtp_room *r, uint32_t id, unsigned flags)
{
    rtp_room_slot_cfg c[RTP_ROOM_MAX_SLOTS];
    for (unsigned s = 0; s < RTP_ROOM_MAX_SLOTS; s++)
        c[s] = (rtp_room_slot_cfg){
            .ssrc = slot_ssrc(id, s), .seq = (uint16_t)(id * 1000 + s * 7), .ts = id * 100000u + s};
    return rtp_room_join(r, id, flags, c);
}

/* One packet of `id` at `level` (QUIET: a silence packet, V flag clear). */
static int pkt(rtp_room *r, uint32_t id, uint8_t level, uint32_t now, rtp_room_drop *why)
{
    return rtp_room_packet(r, id, level < QUIET, level, now, dests, MAXP, why);
}

/* dests of the last packet: the slot index given to listener q, or -1 */
static int dest_slot(int n, uint32_t q)
{
    for (int i = 0; i < n; i++)
        if (dests[i].listener == q) return dests[i].slot_index;
    return -1;
}

static size_t drain_all(rtp_room *r, bool *resend)
{
    return rtp_room_drain(r, changes, sizeof changes / sizeof changes[0], resend);
}

static int speaker_on(rtp_room *r, uint32_t q, unsigned s)
{
    uint32_t spk;
    return rtp_room_slot_speaker(r, q, s, &spk) == 0 ? (int)spk : -1;
}

TEST(three_talking_hear_each_other_on_fixed_slots)
{
    rtp_room *r = mk(8, 0, 0);
    CHECK_EQ_INT(rtp_room_n_slots(r), 3);
    for (uint32_t id = 1; id <= 3; id++)
        CHECK_EQ_INT(join(r, id, 0), 0);
    CHECK_EQ_INT(join(r, 2, 0), -EEXIST);
    const uint8_t level[4] = {0, 30, 35, 40};
    int slot_of[4][4]; /* [listener][speaker] */
    memset(slot_of, 0xff, sizeof slot_of);
    uint32_t now = 1000;
    for (int i = 0; i < 1000; i++, now += TICK) {
        for (uint32_t p = 1; p <= 3; p++) {
            rtp_room_drop why;
            int n = pkt(r, p, level[p], now, &why);
            CHECK_EQ_INT(n, 2);
            CHECK_EQ_INT(why, RTP_ROOM_FORWARD);
            for (uint32_t q = 1; q <= 3; q++) {
                int s = dest_slot(n, q);
                if (q == p) {
                    CHECK_EQ_INT(s, -1);
                    continue;
                }
                CHECK(s >= 0);
                if (slot_of[q][p] < 0) slot_of[q][p] = s;
                CHECK_EQ_INT(s, slot_of[q][p]); /* the same slot for 1,000 packets */
            }
        }
    }
    for (uint32_t q = 1; q <= 3; q++) {
        uint32_t a = q % 3 + 1, b = (q + 1) % 3 + 1;
        CHECK(slot_of[q][a] != slot_of[q][b]);
    }
    /* each (listener, speaker) assignment reported once: 3 listeners x 2 speakers */
    bool resend = true;
    CHECK_EQ_INT(drain_all(r, &resend), 6);
    CHECK(!resend);
    for (int i = 0; i < 6; i++) {
        CHECK(changes[i].has_speaker);
        CHECK(changes[i].listener != changes[i].speaker);
        CHECK_EQ_INT(slot_of[changes[i].listener][changes[i].speaker], changes[i].slot_index);
    }
    rtp_room_destroy(r);
}

TEST(five_talking_each_hears_the_loudest_three_others)
{
    rtp_room *r = mk(8, 3, 0);
    for (uint32_t id = 1; id <= 5; id++)
        CHECK_EQ_INT(join(r, id, 0), 0);
    /* speaker k at level 10k dBov: 1 is loudest, 5 quietest; 10 dB apart */
    uint32_t now = 5000;
    int dropped5 = 0;
    int held[6][6]; /* [listener][speaker]: the slot last delivered on, -1 once displaced */
    memset(held, 0xff, sizeof held);
    for (int round = 0; round < 150; round++, now += TICK) {
        int heard[6][6] = {{0}};
        for (uint32_t p = 5; p >= 1; p--) { /* quietest first: the selection must re-sort */
            rtp_room_drop why;
            int n = pkt(r, p, (uint8_t)(10 * p), now, &why);
            CHECK(n >= 0);
            if (p == 5 && why == RTP_ROOM_DROP_NOT_SELECTED) dropped5++;
            for (int i = 0; i < n; i++) {
                uint32_t q = dests[i].listener;
                heard[q][p] = 1;
                int concurrent = 0;
                for (uint32_t o = 1; o <= 5; o++) {
                    if (o != p && held[q][o] == dests[i].slot_index) held[q][o] = -1;
                    if (o != p) CHECK(held[q][o] != dests[i].slot_index);
                }
                held[q][p] = dests[i].slot_index;
                for (uint32_t o = 1; o <= 5; o++)
                    concurrent += held[q][o] >= 0;
                CHECK(concurrent <= 3); /* at any time at most 3 speakers, one per slot */
            }
        }
        for (uint32_t q = 1; q <= 5; q++) {
            int distinct = 0;
            for (uint32_t p = 1; p <= 5; p++)
                distinct += heard[q][p];
            /* within one 20 ms round too, once the first round has sorted the speakers (in it,
             * listener 1 hears 5, 4, 3, then 2 on 5's slot when 1 itself is selected) */
            if (round > 0) CHECK(distinct <= 3);
            if (now >= 6000) { /* after 1 s: exactly the loudest three others */
                CHECK_EQ_INT(distinct, 3);
                uint32_t want = 1;
                for (int k = 0; k < 3; k++, want++) {
                    if (want == q) want++;
                    CHECK(heard[q][want]);
                }
                for (unsigned s = 0; s < 3; s++)
                    CHECK(speaker_on(r, q, s) != 5 || q == 5);
            }
        }
    }
    CHECK(dropped5 >= 140); /* the quietest is not forwarded (a few rounds while it sorts out) */
    rtp_room_destroy(r);
}

TEST(hysteresis_no_flapping_and_a_louder_voice_takes_over)
{
    rtp_room *r = mk(8, 1, 0); /* one slot: only the loudest is heard */
    for (uint32_t id = 1; id <= 4; id++)
        CHECK_EQ_INT(join(r, id, 0), 0);
    uint32_t now = 0;
    /* A (1) and B (2) 2 dB apart, swapping who is louder every 400 ms, for 10 s; L (3) listens */
    for (int i = 0; i < 500; i++, now += TICK) {
        bool phase = (i / 20) % 2;
        pkt(r, 1, phase ? 40 : 42, now, NULL);
        pkt(r, 2, phase ? 42 : 40, now, NULL);
    }
    bool resend;
    size_t nc = drain_all(r, &resend);
    int l_changes = 0;
    for (size_t i = 0; i < nc; i++)
        l_changes += changes[i].listener == 3;
    CHECK_EQ_INT(l_changes, 1); /* the first assignment only: no flapping */
    int first = speaker_on(r, 3, 0);
    CHECK(first == 1 || first == 2);

    /* a newcomer 4 dB louder (level 36) does not take over either */
    for (int i = 0; i < 100; i++, now += TICK) {
        pkt(r, 1, 40, now, NULL);
        pkt(r, 2, 40, now, NULL);
        rtp_room_drop why;
        pkt(r, 4, 36, now, &why);
        CHECK_EQ_INT(why, RTP_ROOM_DROP_NOT_SELECTED);
    }
    CHECK_EQ_INT(speaker_on(r, 3, 0), first);
    CHECK_EQ_INT(rtp_room_leave(r, 4), 0);
    drain_all(r, NULL);

    /* C (4 rejoined), 10 dB louder: it starts at its own level, so L hears it from its first
     * packet, and then only C */
    CHECK_EQ_INT(join(r, 4, 0), 0);
    uint32_t start = now, took = 0;
    for (int i = 0; i < 100; i++, now += TICK) {
        pkt(r, 1, 40, now, NULL);
        pkt(r, 2, 40, now, NULL);
        int n = pkt(r, 4, 30, now, NULL);
        if (!took && dest_slot(n, 3) == 0) took = now - start + 1;
    }
    CHECK_EQ_INT(took - 1, 0); /* ms from its first packet to L hearing it */
    CHECK_EQ_INT(speaker_on(r, 3, 0), 4);
    nc = drain_all(r, NULL);
    l_changes = 0;
    for (size_t i = 0; i < nc; i++)
        l_changes += changes[i].listener == 3;
    CHECK_EQ_INT(l_changes, 1);
    rtp_room_destroy(r);
}

/* Sends one real packet of speaker p (ssrc = p, its own seq/ts) and maps it on every destination
 * slot; records the listener-visible seq/ts per (listener, slot). */
typedef struct stream {
    bool started;
    uint16_t seq;
    uint32_t ts;
    uint32_t ssrc;
} stream;

static uint16_t src_seq[16];
static uint32_t src_ts[16];

static int send_mapped(rtp_room *r, uint32_t p, uint8_t level, uint32_t now, stream out[][3],
                       int *gaps)
{
    uint8_t buf[RTP_HDR_LEVEL_LEN + 3];
    rtp_hdr_params h = {.pt = 111,
                        .seq = src_seq[p]++,
                        .ts = src_ts[p],
                        .ssrc = p,
                        .level_id = 1,
                        .voice = level < QUIET,
                        .level = level};
    src_ts[p] += STEP;
    rtp_write_hdr(buf, sizeof buf, &h);
    memcpy(buf + RTP_HDR_LEVEL_LEN, "\x78\x01\x02", 3);
    rtp_pkt in;
    if (rtp_parse(buf, sizeof buf, &in, NULL) != 0) abort();
    bool voice;
    uint8_t lv;
    if (rtp_audio_level(&in, 1, &voice, &lv) != 0) abort();
    int n = rtp_room_packet(r, p, voice, lv, now, dests, MAXP, NULL);
    for (int i = 0; i < n; i++) {
        uint8_t copy[sizeof buf];
        memcpy(copy, buf, sizeof buf);
        if (rtp_slot_map(dests[i].slot, &in, now * 48, copy, NULL) != 0) abort();
        rtp_pkt o;
        if (rtp_parse(copy, sizeof copy, &o, NULL) != 0) abort();
        stream *st = &out[dests[i].listener][dests[i].slot_index];
        if (st->started && (uint16_t)(st->seq + 1) != o.seq) (*gaps)++;
        if (st->started && (int32_t)(o.ts - st->ts) < (int32_t)STEP) (*gaps)++;
        if (o.ssrc != slot_ssrc(dests[i].listener, dests[i].slot_index)) (*gaps)++;
        st->started = true;
        st->seq = o.seq;
        st->ts = o.ts;
    }
    return n;
}

/* A (1, level 30), B (2, 35), C (3, 40) talk and E (5, 50) talks quieter — selected 4th, not
 * heard by the listener D (4) — until t = 1000, when A goes silent: it stops sending
 * (send_silence false) or sends silence packets. Returns when D first got E, when D last got A,
 * the slot A had on D and the one E got, the continuity faults seen on every slot, and D's
 * Speaking changes after t = 1000. */
typedef struct silence_run {
    uint32_t e_first, a_last;
    int a_slot, e_slot, gaps, d_changes, d_change_ok;
} silence_run;

static silence_run run_silence(bool send_silence)
{
    silence_run res = {.a_slot = -1, .e_slot = -1, .d_change_ok = 1};
    rtp_room *r = mk(8, 3, 0);
    for (uint32_t id = 1; id <= 5; id++)
        if (join(r, id, 0) != 0) abort();
    static stream out[8][3];
    memset(out, 0, sizeof out);
    uint32_t now = 0;
    for (; now < 1000; now += TICK) {
        send_mapped(r, 1, 30, now, out, &res.gaps);
        send_mapped(r, 2, 35, now, out, &res.gaps);
        send_mapped(r, 3, 40, now, out, &res.gaps);
        if (dest_slot(send_mapped(r, 5, 50, now, out, &res.gaps), 4) >= 0) res.gaps += 1000;
    }
    for (unsigned s = 0; s < 3; s++)
        if (speaker_on(r, 4, s) == 1) res.a_slot = (int)s;
    drain_all(r, NULL);
    for (; now < 2000; now += TICK) {
        if (send_silence && dest_slot(send_mapped(r, 1, QUIET, now, out, &res.gaps), 4) >= 0)
            res.a_last = now;
        send_mapped(r, 2, 35, now, out, &res.gaps);
        send_mapped(r, 3, 40, now, out, &res.gaps);
        int n = send_mapped(r, 5, 50, now, out, &res.gaps);
        if (!res.e_first && dest_slot(n, 4) >= 0) {
            res.e_first = now;
            res.e_slot = dest_slot(n, 4);
        }
    }
    size_t nc = drain_all(r, NULL);
    for (size_t i = 0; i < nc; i++)
        if (changes[i].listener == 4) {
            res.d_changes++;
            if (changes[i].slot_index != res.a_slot || changes[i].speaker != 5) res.d_change_ok = 0;
        }
    rtp_room_destroy(r);
    return res;
}

TEST(silent_speaker_frees_its_place_and_the_slot_stays_continuous)
{
    /* A stops sending after its packet at 980: no longer active at 980 + 500 = 1480; E, moved up
     * to third, takes A's slot on D with its next packet */
    silence_run a = run_silence(false);
    CHECK(a.a_slot >= 0);
    CHECK_EQ_INT(a.e_first, 1480);
    CHECK_EQ_INT(a.e_slot, a.a_slot);
    CHECK_EQ_INT(a.gaps, 0); /* every slot of every listener: seq +1, ts advancing, slot SSRC */
    CHECK_EQ_INT(a.d_changes, 1);
    CHECK(a.d_change_ok);

    /* A sends silence packets: its smoothed loudness falls, and E, talking, passes it by the
     * margin before the 500 ms are over (here after 80 ms); A's silence is forwarded until then */
    silence_run b = run_silence(true);
    CHECK(b.e_first > 1000 && b.e_first < 1480);
    CHECK(b.a_last >= 1000 && b.a_last <= b.e_first);
    CHECK_EQ_INT(b.e_slot, b.a_slot);
    CHECK_EQ_INT(b.gaps, 0);
    CHECK_EQ_INT(b.d_changes, 1);
    CHECK(b.d_change_ok);
}

TEST(mute_suppress_leave_the_selection_at_once_deaf_is_never_a_destination)
{
    rtp_room *r = mk(8, 3, 0);
    for (uint32_t id = 1; id <= 5; id++)
        CHECK_EQ_INT(join(r, id, 0), 0);
    uint32_t now = 0;
    /* 1, 2, 3 loud, 5 quiet (selected 4th), 4 listens */
    for (; now < 1000; now += TICK) {
        pkt(r, 1, 30, now, NULL);
        pkt(r, 2, 32, now, NULL);
        pkt(r, 3, 34, now, NULL);
        CHECK_EQ_INT(dest_slot(pkt(r, 5, 50, now, NULL), 4), -1);
    }
    drain_all(r, NULL);
    CHECK_EQ_INT(rtp_room_set_flags(r, 1, RTP_ROOM_MUTED), 0);
    /* its slots are freed in every listener at once: 2, 3, 4 and 5 each had it */
    size_t nc = drain_all(r, NULL);
    CHECK_EQ_INT(nc, 4);
    for (size_t i = 0; i < nc; i++)
        CHECK(!changes[i].has_speaker);
    rtp_room_drop why;
    CHECK_EQ_INT(pkt(r, 1, 10, now, &why), 0);
    CHECK_EQ_INT(why, RTP_ROOM_DROP_MUTED);
    CHECK_EQ_STR(rtp_room_drop_name(why), "muted");
    /* the quiet one is now in 4's top three, on its next packet, without waiting */
    CHECK(dest_slot(pkt(r, 5, 50, now, NULL), 4) >= 0);

    CHECK_EQ_INT(rtp_room_set_flags(r, 2, RTP_ROOM_SUPPRESSED), 0);
    CHECK_EQ_INT(pkt(r, 2, 10, now, &why), 0);
    CHECK_EQ_INT(why, RTP_ROOM_DROP_SUPPRESSED);
    CHECK_EQ_STR(rtp_room_drop_name(why), "suppressed");
    for (unsigned s = 0; s < 3; s++)
        CHECK(speaker_on(r, 4, s) != 2 && speaker_on(r, 4, s) != 1);

    /* unmuted, 1 is a newcomer again and (20 dB louder) comes back at once */
    CHECK_EQ_INT(rtp_room_set_flags(r, 1, 0), 0);
    now += TICK;
    CHECK_EQ_INT(pkt(r, 1, 30, now, &why), 4); /* 3, 4, 5 and 2 (suppressed, still listens) */
    CHECK_EQ_INT(why, RTP_ROOM_FORWARD);

    /* deaf: 4 is never a destination, and can still speak */
    CHECK_EQ_INT(rtp_room_set_flags(r, 4, RTP_ROOM_DEAF), 0);
    for (unsigned s = 0; s < 3; s++)
        CHECK_EQ_INT(speaker_on(r, 4, s), -1);
    for (int i = 0; i < 100; i++, now += TICK) {
        for (uint32_t p = 1; p <= 5; p++) {
            if (p == 4) continue;
            int n = pkt(r, p, (uint8_t)(30 + p), now, NULL);
            CHECK_EQ_INT(dest_slot(n, 4), -1);
        }
        int n = pkt(r, 4, 20, now, &why);
        CHECK_EQ_INT(why, RTP_ROOM_FORWARD);
        CHECK_EQ_INT(n, 4); /* 1, 3, 5 and 2 (suppressed, still listens) */
        CHECK(dest_slot(n, 2) >= 0);
    }
    CHECK_EQ_INT(pkt(r, 99, 20, now, &why), 0);
    CHECK_EQ_INT(why, RTP_ROOM_DROP_UNKNOWN);
    rtp_room_destroy(r);
}

TEST(leave_frees_slots_changes_once_ring_overflow_asks_for_resend)
{
    rtp_room *r = mk(8, 3, 0);
    for (uint32_t id = 1; id <= 4; id++)
        CHECK_EQ_INT(join(r, id, 0), 0);
    uint32_t now = 0;
    for (; now < 200; now += TICK)
        for (uint32_t p = 1; p <= 3; p++)
            pkt(r, p, (uint8_t)(30 + p), now, NULL);
    CHECK_EQ_INT(drain_all(r, NULL), 3 * 2 + 3); /* 1..3 hear 2 others, 4 hears 3 */
    CHECK_EQ_INT(rtp_room_leave(r, 1), 0);
    CHECK_EQ_INT(rtp_room_leave(r, 1), -ENOENT);
    CHECK_EQ_INT(rtp_room_count(r), 3);
    size_t nc = drain_all(r, NULL);
    CHECK_EQ_INT(nc, 3); /* 2, 3, 4: one change each, to nobody */
    for (size_t i = 0; i < nc; i++) {
        CHECK(!changes[i].has_speaker);
        CHECK_EQ_INT(speaker_on(r, changes[i].listener, changes[i].slot_index), -1);
    }
    CHECK_EQ_INT(drain_all(r, NULL), 0); /* reported exactly once */
    for (; now < 400; now += TICK)
        for (uint32_t p = 2; p <= 3; p++)
            CHECK(dest_slot(pkt(r, p, 30, now, NULL), 1) == -1);
    CHECK_EQ_INT(drain_all(r, NULL), 0); /* nothing moved */
    rtp_room_destroy(r);

    /* a listener that leaves before the drain: the changes queued for it are dropped */
    r = mk(8, 3, 0);
    for (uint32_t id = 1; id <= 4; id++)
        CHECK_EQ_INT(join(r, id, 0), 0);
    for (uint32_t p = 1; p <= 3; p++)
        pkt(r, p, 30, 0, NULL);
    CHECK_EQ_INT(rtp_room_leave(r, 4), 0);
    nc = drain_all(r, NULL);
    CHECK_EQ_INT(nc, 6);
    for (size_t i = 0; i < nc; i++)
        CHECK(changes[i].listener != 4);
    rtp_room_destroy(r);

    /* a ring of 4 and 9 assignments: overflow, one resend, then normal again */
    r = mk(8, 3, 4);
    for (uint32_t id = 1; id <= 4; id++)
        CHECK_EQ_INT(join(r, id, 0), 0);
    for (uint32_t p = 1; p <= 3; p++)
        pkt(r, p, 30, 0, NULL);
    bool resend = false;
    CHECK_EQ_INT(drain_all(r, &resend), 0);
    CHECK(resend);
    for (unsigned s = 0; s < 3; s++)
        CHECK(speaker_on(r, 4, s) >= 1); /* the full state */
    CHECK_EQ_INT(drain_all(r, &resend), 0);
    CHECK(!resend);
    CHECK_EQ_INT(rtp_room_leave(r, 2), 0);
    CHECK_EQ_INT(drain_all(r, &resend), 3);
    CHECK(!resend);
    rtp_room_destroy(r);
}

TEST(five_hundred_listeners_three_speakers)
{
    long allocs_before_create = allocs;
    rtp_room *r = mk(503, 3, 0);
    if (COUNT_ALLOCS) CHECK(allocs > allocs_before_create); /* the shim counts */
    long allocs_created = allocs;
    for (uint32_t id = 1; id <= 503; id++)
        CHECK_EQ_INT(join(r, id * 7919u, 0), 0);
    CHECK_EQ_INT(join(r, 1, 0), -ENOSPC);
    uint32_t now = 0;
    static int slot_of[504][3];
    memset(slot_of, 0xff, sizeof slot_of);
    for (int round = 0; round < 200; round++, now += TICK) {
        for (uint32_t sp = 0; sp < 3; sp++) {
            rtp_room_drop why;
            int n = pkt(r, (sp + 1) * 7919u, (uint8_t)(30 + 3 * sp), now, &why);
            CHECK_EQ_INT(n, 502);
            for (int i = 0; i < n; i++) {
                uint32_t q = dests[i].listener / 7919u;
                if (q <= 3) continue; /* the speakers hear each other: checked elsewhere */
                if (slot_of[q][sp] < 0) slot_of[q][sp] = dests[i].slot_index;
                CHECK_EQ_INT(dests[i].slot_index, slot_of[q][sp]);
            }
        }
    }
    /* 503 joins, 600 packets fanned out to 502 listeners each, their slot changes drained */
    CHECK(drain_all(r, NULL) > 0);
    CHECK_EQ_INT(allocs - allocs_created, 0);
    for (uint32_t q = 4; q <= 503; q++) {
        CHECK(slot_of[q][0] >= 0 && slot_of[q][1] >= 0 && slot_of[q][2] >= 0);
        CHECK(slot_of[q][0] != slot_of[q][1] && slot_of[q][1] != slot_of[q][2] &&
              slot_of[q][0] != slot_of[q][2]);
    }
    /* the id table survives leaves (backward-shift deletion) */
    for (uint32_t id = 4; id <= 503; id += 2)
        CHECK_EQ_INT(rtp_room_leave(r, id * 7919u), 0);
    for (uint32_t id = 5; id <= 503; id += 2)
        CHECK(speaker_on(r, id * 7919u, 0) >= 0);
    CHECK_EQ_INT(rtp_room_count(r), 253);
    rtp_room_destroy(r);
}

TEST(the_clock_wraps)
{
    rtp_room *r = mk(4, 3, 0);
    CHECK_EQ_INT(join(r, 1, 0), 0);
    CHECK_EQ_INT(join(r, 2, 0), 0);
    rtp_room_drop why;
    /* talking across the wrap of now_ms */
    uint32_t now = UINT32_MAX - 100;
    for (int i = 0; i < 20; i++, now += TICK) {
        CHECK_EQ_INT(pkt(r, 1, 30, now, &why), 1);
        CHECK_EQ_INT(why, RTP_ROOM_FORWARD);
    }
    /* silent for 2^32 ms: the same now_ms again is not "recent" */
    uint32_t last_voice = now - TICK;
    CHECK_EQ_INT(pkt(r, 1, QUIET, now + 1000, &why), 0);
    CHECK_EQ_INT(why, RTP_ROOM_DROP_NOT_SELECTED);
    CHECK_EQ_INT(pkt(r, 1, QUIET, last_voice + 100, &why), 0);
    CHECK_EQ_INT(why, RTP_ROOM_DROP_NOT_SELECTED);
    rtp_room_destroy(r);
}

TEST(refusals)
{
    rtp_room *r = NULL;
    rtp_room_config c = {.max_participants = 0};
    CHECK_EQ_INT(rtp_room_create(&c, &r), -EINVAL);
    c = (rtp_room_config){.max_participants = 4, .n_slots = RTP_ROOM_MAX_SLOTS + 1};
    CHECK_EQ_INT(rtp_room_create(&c, &r), -EINVAL);
    r = mk(2, 2, 0);
    CHECK_EQ_INT(rtp_room_join(r, 1, 0, NULL), -EINVAL);
    CHECK_EQ_INT(join(r, 1, 0x80), -EINVAL);
    CHECK_EQ_INT(rtp_room_set_flags(r, 7, 0), -ENOENT);
    CHECK_EQ_INT(join(r, 1, 0), 0);
    uint32_t spk;
    CHECK_EQ_INT(rtp_room_slot_speaker(r, 1, 2, &spk), -EINVAL);
    CHECK_EQ_INT(rtp_room_slot_speaker(r, 1, 1, &spk), -ENODATA);
    CHECK_EQ_INT(join(r, 2, 0), 0);
    CHECK_EQ_INT(rtp_room_packet(r, 1, true, 30, 0, dests, 0, NULL), -ENOSPC);
    rtp_room_destroy(r);
    rtp_room_destroy(NULL);
}

/* Random joins, leaves, flag changes and packets (levels, silence, gaps) against the invariants a
 * listener relies on, and a mirror of every listener's slots kept only from the drained changes:
 * it must equal the room's state at every drain (each change reported once, none missed). */
static uint32_t rnd_state = 12345;

static uint32_t rnd(uint32_t n)
{
    rnd_state = rnd_state * 1103515245u + 12345u;
    return (rnd_state >> 8) % n;
}

TEST(random_operations_keep_the_invariants_and_the_mirror)
{
    enum { P = 12 };
    for (uint8_t n_slots = 1; n_slots <= 3; n_slots++) {
        rtp_room *r = mk(P, n_slots, 0);
        bool in[P + 1] = {0};
        unsigned flags[P + 1] = {0};
        int mirror[P + 1][RTP_ROOM_MAX_SLOTS];
        memset(mirror, 0, sizeof mirror);
        uint32_t now = 0;
        long forwarded = 0;
        for (int step = 0; step < 50000; step++) {
            uint32_t id = 1 + rnd(P);
            uint32_t action = rnd(100);
            now += rnd(4) == 0 ? rnd(700) : rnd(8);
            if (!in[id]) {
                if (action < 30) {
                    flags[id] = rnd(8) == 0 ? RTP_ROOM_DEAF : 0;
                    CHECK_EQ_INT(join(r, id, flags[id]), 0);
                    in[id] = true;
                    memset(mirror[id], 0, sizeof mirror[id]);
                }
            } else if (action < 2) {
                CHECK_EQ_INT(rtp_room_leave(r, id), 0);
                in[id] = false;
            } else if (action < 5) {
                flags[id] = rnd(8);
                CHECK_EQ_INT(rtp_room_set_flags(r, id, flags[id]), 0);
            } else {
                uint8_t level = rnd(5) == 0 ? QUIET : (uint8_t)(20 + 5 * (id % 6) + rnd(4));
                rtp_room_drop why;
                int n = pkt(r, id, level, now, &why);
                CHECK(n >= 0);
                if (flags[id] & RTP_ROOM_MUTED) CHECK_EQ_INT(why, RTP_ROOM_DROP_MUTED);
                for (int i = 0; i < n; i++) {
                    uint32_t q = dests[i].listener;
                    CHECK(q != id && q <= P && in[q] && !(flags[q] & RTP_ROOM_DEAF));
                    CHECK(dests[i].slot_index < n_slots);
                    CHECK_EQ_INT(speaker_on(r, q, dests[i].slot_index), id);
                    for (int j = 0; j < i; j++)
                        CHECK(dests[j].listener != q);
                }
                forwarded += n;
            }
            { /* a step changes at most P - 1 + N slots: the ring (2 x P x N) never fills */
                bool resend;
                size_t nc = drain_all(r, &resend);
                CHECK(!resend);
                for (size_t i = 0; i < nc; i++) {
                    const rtp_room_change *c = &changes[i];
                    CHECK(c->listener <= P && in[c->listener] && c->slot_index < n_slots);
                    int v = c->has_speaker ? (int)c->speaker : 0;
                    CHECK(mirror[c->listener][c->slot_index] != v); /* a real change */
                    mirror[c->listener][c->slot_index] = v;
                }
                for (uint32_t q = 1; q <= P; q++) {
                    if (!in[q]) continue;
                    for (unsigned s = 0; s < n_slots; s++) {
                        int v = speaker_on(r, q, s);
                        CHECK_EQ_INT(mirror[q][s], v < 0 ? 0 : v);
                        if (v > 0) {
                            CHECK(in[v] && (uint32_t)v != q);
                            for (unsigned t = 0; t < s; t++)
                                CHECK(speaker_on(r, q, t) != v);
                        }
                    }
                }
            }
        }
        CHECK(forwarded > 10000);
        rtp_room_destroy(r);
    }
}

int main(void)
{
    RUN(three_talking_hear_each_other_on_fixed_slots);
    RUN(five_talking_each_hears_the_loudest_three_others);
    RUN(hysteresis_no_flapping_and_a_louder_voice_takes_over);
    RUN(silent_speaker_frees_its_place_and_the_slot_stays_continuous);
    RUN(mute_suppress_leave_the_selection_at_once_deaf_is_never_a_destination);
    RUN(leave_frees_slots_changes_once_ring_overflow_asks_for_resend);
    RUN(five_hundred_listeners_three_speakers);
    RUN(random_operations_keep_the_invariants_and_the_mirror);
    RUN(the_clock_wraps);
    RUN(refusals);
    return test_summary();
}
