/*
 * tests/unit/client/test_media.c — vc_media without a node: two engines on 127.0.0.1 keyed
 * crosswise (A's send key is B's receive key and the other way round; each one's slot 0 SSRC is
 * the other's SSRC) send each other a tone for about a second through the whole chain: tone ->
 * level -> header with extensions -> Opus -> SRTP -> UDP -> SRTP -> parse -> decode -> frequency.
 * Each must hear the other's frequency, count no loss on loopback, measure a latency from the
 * send-time extension, and attribute the packets to the speaker Speaking named. A receiver with
 * the wrong key must decode nothing (every packet refused by SRTP). Also the pure pieces: audio
 * level and the header voxclient writes, read back by rtp_parse.
 * Figures measured are printed as "# ..." lines.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <uv.h>

#include "client/media.h"
#include "client/vc.h"
#include "rtp/rtp.h"
#include "tests/unit/test.h"

/* counting allocator over glibc's own (not under AddressSanitizer, which has its own): counts
 * while `counting` is set; the loop runs on this one thread */
#if !defined(__SANITIZE_ADDRESS__)
#define COUNT_ALLOCS 1
extern void *__libc_malloc(size_t n);
extern void *__libc_calloc(size_t n, size_t size);
extern void *__libc_realloc(void *p, size_t n);
extern void __libc_free(void *p);
static bool counting;
static long allocs;

void *malloc(size_t n)
{
    allocs += counting;
    return __libc_malloc(n);
}

void *calloc(size_t n, size_t size)
{
    allocs += counting;
    return __libc_calloc(n, size);
}

void *realloc(void *p, size_t n)
{
    allocs += counting;
    return __libc_realloc(p, n);
}

void free(void *p)
{
    __libc_free(p);
}
#else
#define COUNT_ALLOCS 0
static bool counting;
static long allocs;
#endif

TEST(audio_level_from_rms)
{
    int16_t pcm[VC_FRAME];
    bool voice;
    vc_tone t;
    memset(pcm, 0, sizeof pcm);
    CHECK_EQ_INT(vc_audio_level(pcm, VC_FRAME, &voice), 127);
    CHECK(!voice);
    /* a full-scale sine: RMS 1/sqrt(2) of full scale = -3 dBov */
    vc_tone_init(&t, 1000, 1.0);
    vc_tone_fill(&t, pcm, VC_FRAME);
    CHECK_EQ_INT(vc_audio_level(pcm, VC_FRAME, &voice), 3);
    CHECK(voice);
    /* 0.3 of full scale: -3 - 10.5 = -13.5 dBov */
    vc_tone_init(&t, 1000, 0.3);
    vc_tone_fill(&t, pcm, VC_FRAME);
    uint8_t l = vc_audio_level(pcm, VC_FRAME, &voice);
    CHECK(l == 13 || l == 14);
    /* -70 dBov: no voice */
    vc_tone_init(&t, 1000, pow(10, -67.0 / 20));
    vc_tone_fill(&t, pcm, VC_FRAME);
    l = vc_audio_level(pcm, VC_FRAME, &voice);
    CHECK(l >= 69 && l <= 71);
    CHECK(!voice);
}

TEST(header_read_back_by_rtp_parse)
{
    uint8_t buf[64];
    int64_t t = 1790000000123456789;
    CHECK_EQ_INT(
        vc_rtp_header(buf, sizeof buf, 111, true, 65535, 4000000000u, 0xdeadbeef, 1, true, 13, t),
        VC_RTP_HDR_LEN);
    memcpy(buf + VC_RTP_HDR_LEN, "opus", 4);
    rtp_pkt p;
    CHECK_EQ_INT(rtp_parse(buf, VC_RTP_HDR_LEN + 4, &p, NULL), 0);
    CHECK_EQ_INT(p.pt, 111);
    CHECK(p.marker);
    CHECK_EQ_INT(p.seq, 65535);
    CHECK_EQ_INT(p.ts, 4000000000u);
    CHECK_EQ_INT(p.ssrc, 0xdeadbeef);
    CHECK_EQ_INT(p.hdr_len, VC_RTP_HDR_LEN);
    CHECK_EQ_INT(p.payload_len, 4);
    bool voice;
    uint8_t level;
    CHECK_EQ_INT(rtp_audio_level(&p, 1, &voice, &level), 0);
    CHECK(voice);
    CHECK_EQ_INT(level, 13);
    const uint8_t *x;
    size_t xl;
    CHECK_EQ_INT(rtp_ext_find(&p, VC_EXT_SEND_TIME, &x, &xl), 0);
    CHECK_EQ_INT(xl, 8);
    uint64_t got = 0;
    for (int i = 0; i < 8; i++)
        got = got << 8 | x[i];
    CHECK_EQ_INT((int64_t)got, t);
    /* refusals */
    CHECK_EQ_INT(vc_rtp_header(buf, 27, 111, false, 0, 0, 1, 1, true, 1, 0), -ENOSPC);
    CHECK_EQ_INT(vc_rtp_header(buf, sizeof buf, 111, false, 0, 0, 1, 15, true, 1, 0), -EINVAL);
    CHECK_EQ_INT(vc_rtp_header(buf, sizeof buf, 111, false, 0, 0, 1, VC_EXT_SEND_TIME, true, 1, 0),
                 -EINVAL);
    CHECK_EQ_INT(vc_rtp_header(buf, sizeof buf, 128, false, 0, 0, 1, 1, true, 1, 0), -EINVAL);
}

/* ---- loopback ------------------------------------------------------------------------------- */

typedef struct pair {
    vc_media *a, *b;
    json_t *ra, *rb;
    int closed;
    uint64_t ops0, ops; /* datagrams sent + received by both engines: window start, in window */
    long allocs;        /* allocations in the window */
    uint16_t port_a, port_b;
    void (*mid)(struct pair *p); /* called at 500 ms, if set */
} pair;

static void on_mid(uv_timer_t *t)
{
    pair *p = t->data;
    p->mid(p);
    uv_close((uv_handle_t *)t, NULL);
}

static uint64_t pair_ops(const pair *p)
{
    uint64_t s1, r1, s2, r2;
    vc_media_counts(p->a, &s1, &r1);
    vc_media_counts(p->b, &s2, &r2);
    return s1 + r1 + s2 + r2;
}

/* the steady-state window [400 ms, 900 ms): both engines sending and receiving */
static void on_window(uv_timer_t *t)
{
    pair *p = t->data;
    if (!counting) {
        p->ops0 = pair_ops(p);
        allocs = 0;
        counting = true;
        uv_timer_start(t, on_window, 500, 0);
        return;
    }
    counting = false;
    p->allocs = allocs;
    p->ops = pair_ops(p) - p->ops0;
    uv_close((uv_handle_t *)t, NULL);
}

static void closed(void *arg)
{
    ((pair *)arg)->closed++;
}

static void on_stop(uv_timer_t *t)
{
    pair *p = t->data;
    p->ra = vc_media_report(p->a);
    p->rb = vc_media_report(p->b);
    vc_media_close(p->a, closed, p);
    vc_media_close(p->b, closed, p);
    uv_close((uv_handle_t *)t, NULL);
}

static void sdesc_for(vc_sdesc *sd, vc_mode mode, uint32_t ssrc, uint32_t peer, uint16_t port,
                      uint8_t send_seed, uint8_t recv_seed)
{
    memset(sd, 0, sizeof *sd);
    sd->mode = mode;
    strcpy(sd->address, "127.0.0.1");
    sd->port = port;
    sd->ssrc = ssrc;
    sd->payload_type = 111;
    sd->level_ext_id = 1;
    sd->key_len = vc_mode_key_len(mode);
    for (size_t i = 0; i < sd->key_len; i++) {
        sd->send_key[i] = (uint8_t)(send_seed + i * 7);
        sd->recv_key[i] = (uint8_t)(recv_seed + i * 7);
    }
    sd->n_slots = 1;
    sd->slots[0].slot = 0;
    sd->slots[0].ssrc = peer;
}

/* Runs A (440 Hz) and B (880 Hz) for ~1 s; B's receive key is off by one byte if bad_key. */
static int run_pair(vc_mode mode, bool bad_key, pair *p)
{
    uv_loop_t loop;
    uv_timer_t stop, window, mid;
    void (*midf)(pair *) = p->mid;
    memset(p, 0, sizeof *p);
    p->mid = midf;
    uv_loop_init(&loop);
    vc_media_config ca = {.bind_addr = "127.0.0.1", .freq_hz = 440, .complexity = 5};
    vc_media_config cb = {.bind_addr = "127.0.0.1", .freq_hz = 880, .complexity = 5};
    if (vc_media_new(&loop, &ca, &p->a) < 0 || vc_media_new(&loop, &cb, &p->b) < 0) return -1;
    vc_sdesc sa, sb;
    sdesc_for(&sa, mode, 1111, 2222, vc_media_port(p->b), 10, 20);
    sdesc_for(&sb, mode, 2222, 1111, vc_media_port(p->a), 20, bad_key ? 11 : 10);
    if (vc_media_start(p->a, &sa) < 0 || vc_media_start(p->b, &sb) < 0) return -1;
    p->port_a = vc_media_port(p->a);
    p->port_b = vc_media_port(p->b);
    uv_timer_init(&loop, &mid);
    mid.data = p;
    if (p->mid)
        uv_timer_start(&mid, on_mid, 500, 0);
    else
        uv_close((uv_handle_t *)&mid, NULL);
    vc_media_set_speaker(p->a, 0, "22");
    vc_media_set_speaker(p->b, 0, "11");
    uv_timer_init(&loop, &stop);
    stop.data = p;
    uv_timer_start(&stop, on_stop, 1000, 0);
    uv_timer_init(&loop, &window);
    window.data = p;
    uv_timer_start(&window, on_window, 400, 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    return p->closed == 2 && uv_loop_close(&loop) == 0 ? 0 : -1;
}

static double num(json_t *r, const char *path)
{
    /* "slots.0.freq_hz" style */
    char buf[128];
    snprintf(buf, sizeof buf, "%s", path);
    json_t *v = r;
    for (char *tok = strtok(buf, "."); tok && v; tok = strtok(NULL, "."))
        v = json_is_array(v) ? json_array_get(v, (size_t)atoi(tok)) : json_object_get(v, tok);
    return json_is_number(v) ? json_number_value(v) : NAN;
}

static int hears(json_t *r, double f, const char *who, const char *label)
{
    double sf = num(r, "slots.0.freq_hz"), ratio = num(r, "slots.0.ratio");
    double pk = num(r, "slots.0.packets"), lost = num(r, "slots.0.lost");
    double p50 = num(r, "slots.0.latency_ms.p50"), p99 = num(r, "slots.0.latency_ms.p99");
    char key[64];
    snprintf(key, sizeof key, "speakers.%s.freq_hz", who);
    double spf = num(r, key);
    snprintf(key, sizeof key, "speakers.%s.packets", who);
    double spp = num(r, key);
    printf("# %s: heard %.1f Hz (ratio %.3f) in %.0f packets, %.0f lost, latency p50 %.3f ms p99 "
           "%.3f ms; speaker %s %.1f Hz in %.0f packets\n",
           label, sf, ratio, pk, lost, p50, p99, who, spf, spp);
    return fabs(sf - f) < 3 && ratio > 0.5 && pk >= 40 && lost == 0 && p50 >= 0 && p50 < 100 &&
           fabs(spf - f) < 3 && spp == pk;
}

TEST(loopback_aes_cm_each_hears_the_other)
{
    pair p = {0};
    CHECK_EQ_INT(run_pair(VC_MODE_AES_CM, false, &p), 0);
    CHECK(hears(p.ra, 880, "22", "aes_cm A"));
    CHECK(hears(p.rb, 440, "11", "aes_cm B"));
    CHECK(num(p.ra, "sent") >= 45 && num(p.ra, "sent") <= 55);
    CHECK(num(p.ra, "rtcp_sent") >= 1);
    CHECK(num(p.rb, "rx.rtcp") >= 1); /* A's SRTCP authenticated by B */
    CHECK_EQ_INT(num(p.rb, "rx.auth_fail"), 0);
    /* ours allocate nothing per packet; libsrtp's HMAC-SHA1 on OpenSSL 3 allocates twice per
     * operation (docs/media.md), so at most 2 per datagram sent or received */
    printf("# aes_cm: %ld allocations for %llu datagrams sent+received in the steady state\n",
           p.allocs, (unsigned long long)p.ops);
    CHECK(p.ops >= 80);
    if (COUNT_ALLOCS) CHECK(p.allocs <= 2 * (long)p.ops);
    json_decref(p.ra);
    json_decref(p.rb);
}

TEST(loopback_gcm_each_hears_the_other)
{
    pair p = {0};
    CHECK_EQ_INT(run_pair(VC_MODE_GCM, false, &p), 0);
    CHECK(hears(p.ra, 880, "22", "gcm A"));
    CHECK(hears(p.rb, 440, "11", "gcm B"));
    /* GCM: no allocation at all on the media path, ours or libsrtp's */
    printf("# gcm: %ld allocations for %llu datagrams sent+received in the steady state\n",
           p.allocs, (unsigned long long)p.ops);
    CHECK(p.ops >= 80);
    if (COUNT_ALLOCS) CHECK_EQ_INT(p.allocs, 0);
    json_decref(p.ra);
    json_decref(p.rb);
}

TEST(loopback_wrong_key_hears_nothing)
{
    pair p = {0};
    CHECK_EQ_INT(run_pair(VC_MODE_AES_CM, true, &p), 0);
    CHECK(hears(p.ra, 880, "22", "A (right key)"));
    CHECK_EQ_INT(num(p.rb, "slots.0.packets"), 0);
    CHECK(num(p.rb, "rx.auth_fail") >= 45); /* RTP and RTCP refused by SRTP */
    CHECK(json_is_null(
        json_object_get(json_array_get(json_object_get(p.rb, "slots"), 0), "freq_hz")));
    json_decref(p.ra);
    json_decref(p.rb);
}

/* midway, as if a moved connection's Session Description brought a new SSRC and key for A */
static void renew_a(pair *p)
{
    vc_sdesc sa, sb;
    sdesc_for(&sa, VC_MODE_AES_CM, 3333, 2222, p->port_b, 30, 20);
    sdesc_for(&sb, VC_MODE_AES_CM, 2222, 3333, p->port_a, 20, 30);
    vc_media_start(p->a, &sa);
    vc_media_start(p->b, &sb);
}

TEST(later_description_with_new_ssrc_and_key_is_followed)
{
    pair p = {.mid = renew_a};
    CHECK_EQ_INT(run_pair(VC_MODE_AES_CM, false, &p), 0);
    CHECK(hears(p.ra, 880, "22", "A (unchanged)"));
    CHECK(hears(p.rb, 440, "11", "B (A renewed midway)"));
    CHECK_EQ_INT(num(p.rb, "slots.0.ssrc"), 3333);
    printf("# renewed: B refused %.0f datagrams in flight under the old key\n",
           num(p.rb, "rx.auth_fail"));
    CHECK(num(p.rb, "rx.auth_fail") <= 2);
    json_decref(p.ra);
    json_decref(p.rb);
}

int main(void)
{
    RUN(audio_level_from_rms);
    RUN(header_read_back_by_rtp_parse);
    RUN(loopback_aes_cm_each_hears_the_other);
    RUN(loopback_gcm_each_hears_the_other);
    RUN(loopback_wrong_key_hears_nothing);
    RUN(later_description_with_new_ssrc_and_key_is_followed);
    return test_summary();
}
