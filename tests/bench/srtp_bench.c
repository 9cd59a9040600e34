/*
 * tests/bench/srtp_bench.c — CPU cost of libsrtp2 per packet, for the backend it is linked with.
 *
 *   srtp_bench [--ms N] [--sessions N,N,...]   table of ns per srtp_protect / srtp_unprotect
 *                                    (default 250 ms CPU per cell, sessions 1,1000)
 *   srtp_bench --cross-write FILE    protect a fixed set of packets, write plain+protected to FILE
 *   srtp_bench --cross-read FILE     unprotect FILE's packets; also re-protect and compare bytes
 *
 * The same source is built twice (Makefile): build/tests/bench/srtp_bench against Debian's
 * libsrtp2 package (NSS backend) and build/tests/bench/srtp_bench_openssl against the static
 * library from scripts/build-libsrtp.sh (OpenSSL backend). Two libsrtp builds cannot live in one
 * process (same symbols), so the cross-check between them goes through a file:
 * scripts/bench-srtp.sh writes with one binary and reads with the other, both ways.
 *
 * Workload: 92-byte RTP packets (12-byte header + 80-byte payload, a 20 ms Opus frame), profiles
 * AES_CM_128_HMAC_SHA1_80 and AEAD_AES_128_GCM, with 1 and with 1,000 sessions. A session is a
 * pair of srtp_t (sender, receiver) with its own key and SSRC, as a relay holds one srtp_t per peer
 * transport; packets go round robin over the sessions so consecutive packets never share one.
 * Per cycle a chunk of packets is built and protected in place (timed), then unprotected in place
 * (timed) and checked (untimed). Time is this thread's CPU time (CLOCK_THREAD_CPUTIME_ID): the
 * machines are shared, and the relay's budget is CPU-seconds. Buffers leave SRTP_MAX_TRAILER_LEN
 * (+4 for RTCP) past the packet, as libsrtp requires. Measures, never judges.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <srtp2/srtp.h>

#ifndef SRTP_BENCH_BACKEND
#define SRTP_BENCH_BACKEND "debian-libsrtp2"
#endif

#define RTP_HDR 12
#define PAYLOAD 80
#define PKT_LEN (RTP_HDR + PAYLOAD)
#define PKT_CAP 352  /* >= 200 (largest cross-check packet) + SRTP_MAX_TRAILER_LEN (144) + 4 */
#define CHUNK   1024 /* packets per timed phase: ~130 KB of them touched, stays in L2 */

_Static_assert(PKT_CAP >= 200 + SRTP_MAX_TRAILER_LEN + 4, "packet buffers too small");

enum profile { P_AES_CM, P_GCM, P_COUNT };
static const char *const profile_name[P_COUNT] = {"AES_CM_128_HMAC_SHA1_80", "AEAD_AES_128_GCM"};
static const int profile_key_len[P_COUNT] = {SRTP_AES_ICM_128_KEY_LEN_WSALT,
                                             SRTP_AES_GCM_128_KEY_LEN_WSALT};

typedef struct session {
    srtp_t tx, rx;
    uint32_t ssrc;
    uint16_t seq;
    uint32_t ts;
} session;

typedef struct packet {
    int len;
    session *s;
    _Alignas(16) uint8_t b[PKT_CAP];
} packet;

static void die(const char *what, srtp_err_status_t st)
{
    fprintf(stderr, "srtp_bench: %s failed (srtp_err_status %d)\n", what, (int)st);
    exit(1);
}

static uint64_t cpu_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

/* Deterministic key material: session i of profile p always gets the same key. */
static void make_key(uint8_t *key, int len, enum profile p, uint32_t i)
{
    uint32_t x = 0x9e3779b9u * (i + 1) ^ (uint32_t)(p + 1) * 0x85ebca6bu;
    for (int k = 0; k < len; k++) {
        x ^= x << 13, x ^= x >> 17, x ^= x << 5;
        key[k] = (uint8_t)x;
    }
}

static srtp_err_status_t make_srtp(srtp_t *out, enum profile p, uint8_t *key, int outbound)
{
    srtp_policy_t pol;
    memset(&pol, 0, sizeof pol);
    if (p == P_AES_CM) {
        srtp_crypto_policy_set_rtp_default(&pol.rtp);
        srtp_crypto_policy_set_rtcp_default(&pol.rtcp);
    } else {
        srtp_crypto_policy_set_aes_gcm_128_16_auth(&pol.rtp);
        srtp_crypto_policy_set_aes_gcm_128_16_auth(&pol.rtcp);
    }
    pol.ssrc.type = outbound ? ssrc_any_outbound : ssrc_any_inbound;
    pol.key = key;
    pol.window_size = 128;
    return srtp_create(out, &pol);
}

static void build_rtp(uint8_t *b, int payload_len, uint32_t ssrc, uint16_t seq, uint32_t ts)
{
    b[0] = 0x80;
    b[1] = 111; /* dynamic PT, Opus */
    b[2] = (uint8_t)(seq >> 8), b[3] = (uint8_t)seq;
    b[4] = (uint8_t)(ts >> 24), b[5] = (uint8_t)(ts >> 16), b[6] = (uint8_t)(ts >> 8),
    b[7] = (uint8_t)ts;
    b[8] = (uint8_t)(ssrc >> 24), b[9] = (uint8_t)(ssrc >> 16), b[10] = (uint8_t)(ssrc >> 8),
    b[11] = (uint8_t)ssrc;
    for (int k = 0; k < payload_len; k++)
        b[RTP_HDR + k] = (uint8_t)(seq + ts + (uint32_t)k);
}

/* ---- benchmark ------------------------------------------------------------------------------ */

typedef struct result {
    double protect_ns, unprotect_ns, create_ns;
    uint64_t packets;
} result;

static result run_cell(enum profile p, int nsess, uint64_t budget_ns)
{
    session *ss = calloc((size_t)nsess, sizeof *ss);
    packet *pk = calloc(CHUNK, sizeof *pk);
    if (!ss || !pk) {
        fprintf(stderr, "srtp_bench: out of memory\n");
        exit(1);
    }
    result r = {0};

    uint64_t t0 = cpu_ns();
    for (int i = 0; i < nsess; i++) {
        uint8_t key[SRTP_MAX_KEY_LEN];
        make_key(key, profile_key_len[p], p, (uint32_t)i);
        srtp_err_status_t st;
        if ((st = make_srtp(&ss[i].tx, p, key, 1)) || (st = make_srtp(&ss[i].rx, p, key, 0)))
            die("srtp_create", st);
        ss[i].ssrc = 0x10000000u + (uint32_t)i * 7919u;
        ss[i].seq = (uint16_t)(i * 31u);
        ss[i].ts = (uint32_t)i * 1000u;
    }
    r.create_ns = (double)(cpu_ns() - t0) / (2.0 * nsess);

    uint64_t prot_ns = 0, unprot_ns = 0, packets = 0;
    int rr = 0;
    for (int cycle = 0;; cycle++) {
        /* protect: build each packet as a receive would leave it, then protect in place */
        uint64_t a = cpu_ns();
        for (int i = 0; i < CHUNK; i++) {
            session *s = &ss[rr];
            rr = rr + 1 == nsess ? 0 : rr + 1;
            packet *q = &pk[i];
            q->s = s;
            q->len = PKT_LEN;
            build_rtp(q->b, PAYLOAD, s->ssrc, s->seq++, s->ts += 960);
            srtp_err_status_t st = srtp_protect(s->tx, q->b, &q->len);
            if (st) die("srtp_protect", st);
        }
        uint64_t b = cpu_ns();
        for (int i = 0; i < CHUNK; i++) {
            srtp_err_status_t st = srtp_unprotect(pk[i].s->rx, pk[i].b, &pk[i].len);
            if (st) die("srtp_unprotect", st);
        }
        uint64_t c = cpu_ns();
        for (int i = 0; i < CHUNK; i++) { /* untimed: the round trip gave the plaintext back */
            uint8_t want[PKT_CAP];
            const uint8_t *h = pk[i].b;
            build_rtp(want, PAYLOAD, pk[i].s->ssrc, (uint16_t)(h[2] << 8 | h[3]),
                      (uint32_t)h[4] << 24 | (uint32_t)h[5] << 16 | (uint32_t)h[6] << 8 | h[7]);
            if (pk[i].len != PKT_LEN || memcmp(want, h, PKT_LEN) != 0) {
                fprintf(stderr, "srtp_bench: round trip changed a packet\n");
                exit(1);
            }
        }
        if (cycle == 0) continue; /* warm-up: first packet of each SSRC clones a stream */
        prot_ns += b - a;
        unprot_ns += c - b;
        packets += CHUNK;
        if (prot_ns + unprot_ns >= budget_ns && packets >= (uint64_t)nsess * 4) break;
    }
    r.protect_ns = (double)prot_ns / (double)packets;
    r.unprotect_ns = (double)unprot_ns / (double)packets;
    r.packets = packets;

    for (int i = 0; i < nsess; i++) {
        srtp_dealloc(ss[i].tx);
        srtp_dealloc(ss[i].rx);
    }
    free(pk);
    free(ss);
    return r;
}

static int bench(long ms, const int *sessions, int nsessions)
{
    printf("srtp_bench: %s, backend %s; %d-byte RTP (12 + %d payload); %ld ms CPU per cell; "
           "ns of thread CPU per packet\n",
           srtp_get_version_string(), SRTP_BENCH_BACKEND, PKT_LEN, PAYLOAD, ms);
    printf("%-24s %8s %11s %11s %9s %10s\n", "profile", "sessions", "protect", "unprotect",
           "create", "packets");
    for (int p = 0; p < P_COUNT; p++) {
        for (int k = 0; k < nsessions; k++) {
            result r = run_cell((enum profile)p, sessions[k], (uint64_t)ms * 1000000u);
            printf("%-24s %8d %11.0f %11.0f %9.0f %10llu\n", profile_name[p], sessions[k],
                   r.protect_ns, r.unprotect_ns, r.create_ns, (unsigned long long)r.packets);
            fflush(stdout);
        }
    }
    return 0;
}

/* ---- cross-check ---------------------------------------------------------------------------- *
 * File: records of [kind u8: 0 RTP, 1 RTCP][profile u8][plain_len u16][prot_len u16][plain][prot],
 * little endian. RTP sequence numbers cross 65535 -> 0 so the rollover counter is exercised too.
 */
#define CROSS_RTP  300
#define CROSS_RTCP 20

static int cross_packet(enum profile p, int kind, int n, uint8_t *b)
{
    int payload = 1 + (n * 37) % 188; /* 1..188 bytes: plaintext of 13..200 */
    if (kind == 0) {
        build_rtp(b, payload, 0xcafe0000u + (uint32_t)p, (uint16_t)(65500 + n),
                  1000u * (uint32_t)n);
        return RTP_HDR + payload;
    }
    /* RTCP: a receiver report header (8 bytes) followed by filler; libsrtp treats it as opaque */
    int words = (8 + payload + 3) / 4;
    memset(b, 0, (size_t)words * 4);
    b[0] = 0x80, b[1] = 201, b[2] = (uint8_t)((words - 1) >> 8), b[3] = (uint8_t)(words - 1);
    b[4] = 0xca, b[5] = 0xfe, b[6] = 0, b[7] = (uint8_t)p;
    for (int k = 8; k < words * 4; k++)
        b[k] = (uint8_t)(n * 3 + k);
    return words * 4;
}

static srtp_err_status_t protect_any(srtp_t s, int kind, uint8_t *b, int *len)
{
    return kind == 0 ? srtp_protect(s, b, len) : srtp_protect_rtcp(s, b, len);
}

static srtp_err_status_t unprotect_any(srtp_t s, int kind, uint8_t *b, int *len)
{
    return kind == 0 ? srtp_unprotect(s, b, len) : srtp_unprotect_rtcp(s, b, len);
}

static void put16(FILE *f, int v)
{
    fputc(v & 0xff, f);
    fputc((v >> 8) & 0xff, f);
}

static int cross_write(const char *path)
{
    FILE *f = fopen(path, "wb");
    if (!f) {
        fprintf(stderr, "srtp_bench: %s: %s\n", path, strerror(errno));
        return 1;
    }
    for (int p = 0; p < P_COUNT; p++) {
        uint8_t key[SRTP_MAX_KEY_LEN];
        make_key(key, profile_key_len[p], (enum profile)p, 4242);
        srtp_t tx;
        srtp_err_status_t st = make_srtp(&tx, (enum profile)p, key, 1);
        if (st) die("srtp_create", st);
        for (int kind = 0; kind < 2; kind++) {
            for (int n = 0; n < (kind ? CROSS_RTCP : CROSS_RTP); n++) {
                uint8_t plain[PKT_CAP], prot[PKT_CAP];
                int plen = cross_packet((enum profile)p, kind, n, plain), len = plen;
                memcpy(prot, plain, (size_t)plen);
                if ((st = protect_any(tx, kind, prot, &len))) die("protect", st);
                fputc(kind, f);
                fputc(p, f);
                put16(f, plen);
                put16(f, len);
                fwrite(plain, 1, (size_t)plen, f);
                fwrite(prot, 1, (size_t)len, f);
            }
        }
        srtp_dealloc(tx);
    }
    if (fclose(f) != 0) {
        fprintf(stderr, "srtp_bench: %s: %s\n", path, strerror(errno));
        return 1;
    }
    printf("cross-write: %s, backend %s: %d packets per profile written to %s\n",
           srtp_get_version_string(), SRTP_BENCH_BACKEND, CROSS_RTP + CROSS_RTCP, path);
    return 0;
}

static int get16(FILE *f)
{
    int lo = fgetc(f), hi = fgetc(f);
    return lo < 0 || hi < 0 ? -1 : lo | hi << 8;
}

static int cross_read(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "srtp_bench: %s: %s\n", path, strerror(errno));
        return 1;
    }
    srtp_t rx[P_COUNT], tx[P_COUNT];
    for (int p = 0; p < P_COUNT; p++) {
        uint8_t key[SRTP_MAX_KEY_LEN];
        make_key(key, profile_key_len[p], (enum profile)p, 4242);
        srtp_err_status_t st;
        if ((st = make_srtp(&rx[p], (enum profile)p, key, 0)) ||
            (st = make_srtp(&tx[p], (enum profile)p, key, 1)))
            die("srtp_create", st);
    }
    int ok[P_COUNT][2] = {{0}}, bad = 0, tampered_refused = 0, kind;
    while ((kind = fgetc(f)) != EOF) {
        int p = fgetc(f), plen = get16(f), len = get16(f);
        uint8_t plain[PKT_CAP], prot[PKT_CAP], buf[PKT_CAP];
        if (p < 0 || p >= P_COUNT || kind > 1 || plen <= 0 || len <= 0 ||
            plen + SRTP_MAX_TRAILER_LEN + 4 > PKT_CAP || len > PKT_CAP ||
            fread(plain, 1, (size_t)plen, f) != (size_t)plen ||
            fread(prot, 1, (size_t)len, f) != (size_t)len) {
            fprintf(stderr, "cross-read: %s is truncated or malformed\n", path);
            return 1;
        }
        /* 1. our build protects the same plaintext to the same bytes */
        int mylen = plen;
        memcpy(buf, plain, (size_t)plen);
        srtp_err_status_t st = protect_any(tx[p], kind, buf, &mylen);
        if (st || mylen != len || memcmp(buf, prot, (size_t)len) != 0) {
            fprintf(stderr, "cross-read: %s %s packet differs when protected here (status %d)\n",
                    profile_name[p], kind ? "RTCP" : "RTP", (int)st);
            bad++;
        }
        /* 2. a tampered copy is refused (one bit of the encrypted payload flipped) */
        int tlen = len;
        memcpy(buf, prot, (size_t)len);
        buf[kind ? 8 : RTP_HDR] ^= 0x01;
        if (unprotect_any(rx[p], kind, buf, &tlen) == srtp_err_status_auth_fail) tampered_refused++;
        /* 3. the other build's packet unprotects here to the original plaintext */
        int rlen = len;
        memcpy(buf, prot, (size_t)len);
        st = unprotect_any(rx[p], kind, buf, &rlen);
        if (st || rlen != plen || memcmp(buf, plain, (size_t)plen) != 0) {
            fprintf(stderr, "cross-read: %s %s packet does not unprotect (status %d)\n",
                    profile_name[p], kind ? "RTCP" : "RTP", (int)st);
            bad++;
        } else {
            ok[p][kind]++;
        }
    }
    fclose(f);
    for (int p = 0; p < P_COUNT; p++) {
        srtp_dealloc(rx[p]);
        srtp_dealloc(tx[p]);
    }
    int total = (CROSS_RTP + CROSS_RTCP) * P_COUNT;
    for (int p = 0; p < P_COUNT; p++)
        printf("cross-read: %s, backend %s: %s RTP %d/%d, RTCP %d/%d unprotected and identical\n",
               srtp_get_version_string(), SRTP_BENCH_BACKEND, profile_name[p], ok[p][0], CROSS_RTP,
               ok[p][1], CROSS_RTCP);
    printf("cross-read: %d/%d tampered packets refused (auth_fail), %d mismatches\n",
           tampered_refused, total, bad);
    int good = ok[0][0] + ok[0][1] + ok[1][0] + ok[1][1];
    return bad == 0 && good == total && tampered_refused == total ? 0 : 1;
}

int main(int argc, char **argv)
{
    srtp_err_status_t st = srtp_init();
    if (st) die("srtp_init", st);
    int rc = 2;
    long ms = 250;
    int sessions[16] = {1, 1000}, nsessions = 2;
    if (argc == 3 && strcmp(argv[1], "--cross-write") == 0) {
        rc = cross_write(argv[2]);
    } else if (argc == 3 && strcmp(argv[1], "--cross-read") == 0) {
        rc = cross_read(argv[2]);
    } else {
        int i = 1;
        for (; i + 1 < argc; i += 2) {
            if (strcmp(argv[i], "--ms") == 0 && (ms = atol(argv[i + 1])) > 0) continue;
            if (strcmp(argv[i], "--sessions") != 0) break;
            char *p = argv[i + 1], *end;
            for (nsessions = 0; nsessions < 16 && *p; p = *end == ',' ? end + 1 : end) {
                long n = strtol(p, &end, 10);
                if (end == p || n < 1 || n > 100000 || (*end && *end != ',')) break;
                sessions[nsessions++] = (int)n;
            }
            if (*p || nsessions == 0) break;
        }
        if (i == argc) rc = bench(ms, sessions, nsessions);
    }
    if (rc == 2)
        fprintf(stderr, "usage: srtp_bench [--ms N] [--sessions N,N,...] | --cross-write FILE | "
                        "--cross-read FILE\n");
    srtp_shutdown();
    return rc;
}
