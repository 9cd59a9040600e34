/*
 * tests/bench/wrtc_fwd_bench.c — the media worker's forwarding cost per packet with participants
 * on the webrtc transport compared to srtp (issue 5), in one process and one thread, through
 * rtp_worker_inject() (a worker that is never started runs the packet path synchronously on the
 * caller's thread: demux → unprotect → parse → room → slot rewrite → protect → sendmmsg).
 *
 * Per case a room of three on one worker: one speaker, two listeners, each a UDP socket of ours on
 * 127.0.0.1 (what the worker sends lands there). srtp participants get fixed keys and are latched
 * by an authenticated SRTCP packet, as voxclient's first packet does. webrtc participants are
 * brought up for real: an ICE-lite Binding request with USE-CANDIDATE, MESSAGE-INTEGRITY (HMAC-SHA1
 * with the participant's ice-pwd) and FINGERPRINT; then the DTLS handshake with the in-process
 * OpenSSL client of the unit tests (tests/unit/webrtc/dtls_client.h), its datagrams injected from
 * the participant's socket address and the worker's flights read back from that socket; the keys
 * both sides export then protect what the client sends and unprotect what it receives; an SRTCP
 * packet latches it. The worker's DTLS timer never runs here (its loop is not run), which does not
 * matter on loopback: nothing is lost, nothing is retransmitted.
 *
 * Measured: the thread's CPU time (CLOCK_THREAD_CPUTIME_ID) of the rtp_worker_inject() calls only
 * — the speaker's packets are protected beforehand, the listeners' sockets drained (and a sample
 * of what arrives unprotected and checked) outside the timed sections. Each injected packet is
 * forwarded to both listeners, and each inject ends with one sendmmsg of its two datagrams (the
 * running worker batches up to 32 received datagrams per sendmmsg, so the syscall weighs more
 * here than in production). Figure: ns of worker CPU per forwarded packet, per transport and SRTP
 * profile, and the webrtc/srtp ratio. Rounds alternate between the cases, so load from other jobs
 * on a shared machine hits them alike; the best round of each is reported too.
 *
 *   build/tests/bench/wrtc_fwd_bench [seconds per case]   (default 2)
 */
#include "rtp/rtp.h"
#include "tests/unit/webrtc/dtls_client.h"
#include "webrtc/webrtc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <srtp2/srtp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define NP      3 /* participants per room: 0 speaks, 1 and 2 listen */
#define N_SLOTS 3
#define BATCH   1000 /* packets protected ahead, then injected in one timed section */
#define PKT_MAX (200 + SRTP_MAX_TRAILER_LEN)
#define PAYLOAD 100 /* bytes of "Opus" per 20 ms packet (≈ 40 kbit/s) */

#define DIE(...)                                                                                   \
    do {                                                                                           \
        fprintf(stderr, "wrtc_fwd_bench: " __VA_ARGS__);                                           \
        fprintf(stderr, "\n");                                                                     \
        exit(1);                                                                                   \
    } while (0)

typedef struct peer {
    rtp_worker_participant p;
    int fd;
    struct sockaddr_in addr;
    srtp_t tx, rx; /* the client's side: protects with its write key, unprotects the node's */
    tclient dtls;  /* webrtc */
} peer;

typedef struct bcase {
    const char *name;
    bool webrtc;
    rtp_srtp_profile prof;
    uint32_t room;
    peer peers[NP];
    uint16_t seq;
    uint32_t ts;
    double cpu_s, best_ns;
    uint64_t fwd;
    uint8_t pkts[BATCH][PKT_MAX];
    int lens[BATCH];
} bcase;

static rtp_worker *w;
static wrtc_dtls_ctx *dctx;

static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static void policy(srtp_policy_t *pol, const rtp_srtp_key *k, bool any, uint32_t ssrc)
{
    memset(pol, 0, sizeof *pol);
    if (k->profile == RTP_SRTP_AEAD_AES_128_GCM) {
        srtp_crypto_policy_set_aes_gcm_128_16_auth(&pol->rtp);
        srtp_crypto_policy_set_aes_gcm_128_16_auth(&pol->rtcp);
    } else {
        srtp_crypto_policy_set_aes_cm_128_hmac_sha1_80(&pol->rtp);
        srtp_crypto_policy_set_aes_cm_128_hmac_sha1_80(&pol->rtcp);
    }
    pol->key = (unsigned char *)k->key;
    pol->window_size = 128;
    pol->ssrc.type = any ? ssrc_any_inbound : ssrc_specific;
    pol->ssrc.value = ssrc;
}

static void inject(const peer *pe, const uint8_t *buf, size_t len)
{
    if (rtp_worker_inject(w, buf, len, (const struct sockaddr *)&pe->addr, sizeof pe->addr) != 0)
        DIE("rtp_worker_inject refused");
}

/* One datagram the worker sent to pe (it is already there: inject sends before it returns), or
 * 0 when there is none. */
static int take(peer *pe, uint8_t *buf, size_t cap)
{
    ssize_t r = recv(pe->fd, buf, cap, MSG_DONTWAIT);
    return r > 0 ? (int)r : 0;
}

/* The client's side of the keys: its write key protects, the node's write key unprotects. */
static void client_sessions(peer *pe, const rtp_srtp_key *client_write,
                            const rtp_srtp_key *node_write)
{
    srtp_policy_t pt, pr;
    policy(&pt, client_write, false, pe->p.ssrc);
    policy(&pr, node_write, true, 0);
    if (srtp_create(&pe->tx, &pt) != srtp_err_status_ok ||
        srtp_create(&pe->rx, &pr) != srtp_err_status_ok)
        DIE("srtp_create");
}

/* An ICE-lite connectivity check as a browser sends it (RFC 8445 §7.2.2, RFC 8489 §14.5/14.7). */
static size_t stun_request(const peer *pe, uint8_t *b)
{
    size_t n = 20;
    put16(b, 0x0001);
    put32(b + 4, WRTC_STUN_COOKIE);
    for (int i = 0; i < 12; i++)
        b[8 + i] = (uint8_t)(0x40 + i);
    char user[32];
    int ul = snprintf(user, sizeof user, "%s:abcd", pe->p.ice_ufrag);
    put16(b + n, 0x0006);
    put16(b + n + 2, (uint16_t)ul);
    memcpy(b + n + 4, user, (size_t)ul);
    n += 4 + (((size_t)ul + 3) & ~(size_t)3);
    put16(b + n, 0x802A); /* ICE-CONTROLLING */
    put16(b + n + 2, 8);
    memset(b + n + 4, 0x11, 8);
    n += 12;
    put16(b + n, 0x0025); /* USE-CANDIDATE */
    put16(b + n + 2, 0);
    n += 4;
    put16(b + 2, (uint16_t)(n + 24 - 20));
    unsigned ml = 0;
    put16(b + n, 0x0008);
    put16(b + n + 2, 20);
    if (!HMAC(EVP_sha1(), pe->p.ice_pwd, (int)strlen(pe->p.ice_pwd), b, n, b + n + 4, &ml) ||
        ml != 20)
        DIE("HMAC");
    n += 24;
    put16(b + 2, (uint16_t)(n + 8 - 20));
    uint32_t crc = wrtc_crc32(b, n) ^ 0x5354554Eu;
    put16(b + n, 0x8028);
    put16(b + n + 2, 4);
    put32(b + n + 4, crc);
    return n + 8;
}

/* STUN check, DTLS handshake, keys: a webrtc participant as a browser brings it up. */
static void webrtc_up(peer *pe, const char *profiles)
{
    uint8_t buf[2048];
    size_t n = stun_request(pe, buf);
    inject(pe, buf, n);
    int r = take(pe, buf, sizeof buf);
    if (r < 20 || buf[0] != 0x01 || buf[1] != 0x01) DIE("no STUN success response");
    if (tclient_connect(&pe->dtls) < 0) DIE("tclient_connect");
    rtp_worker_stats st0, st;
    rtp_worker_stats_read(w, &st0);
    for (int round = 0; round < 20; round++) {
        int done = tclient_step(&pe->dtls);
        if (done < 0) DIE("client handshake failed (%s)", profiles);
        size_t m;
        while ((m = tclient_take(&pe->dtls, buf, sizeof buf)) > 0)
            inject(pe, buf, m);
        rtp_worker_stats_read(w, &st);
        bool got = false;
        while ((r = take(pe, buf, sizeof buf)) > 0) {
            tclient_give(&pe->dtls, buf, (size_t)r);
            got = true;
        }
        if (got) done = tclient_step(&pe->dtls);
        if (done == 1 && st.dtls_connected == st0.dtls_connected + 1) break;
    }
    if (st.dtls_connected != st0.dtls_connected + 1 || st.dtls_failed != st0.dtls_failed)
        DIE("the worker's handshake did not complete");
    wrtc_srtp_key cw, sw;
    if (tclient_keys(&pe->dtls, &cw, &sw) < 0) DIE("client keys");
    rtp_srtp_key in, out;
    in.profile = (rtp_srtp_profile)cw.profile;
    out.profile = (rtp_srtp_profile)sw.profile;
    memcpy(in.key, cw.key, sizeof in.key);
    memcpy(out.key, sw.key, sizeof out.key);
    client_sessions(pe, &in, &out);
}

static void setup(bcase *bc, uint32_t room, uint32_t first_handle)
{
    rtp_room_config rc = {.max_participants = NP, .n_slots = N_SLOTS};
    bc->room = room;
    if (rtp_worker_create_room(w, room, &rc) != 0) DIE("create room");
    static const char *const profile_names[] = {"", "SRTP_AES128_CM_SHA1_80",
                                                "SRTP_AEAD_AES_128_GCM"};
    for (int i = 0; i < NP; i++) {
        peer *pe = &bc->peers[i];
        rtp_worker_participant *p = &pe->p;
        memset(pe, 0, sizeof *pe);
        p->room = room;
        p->handle = first_handle + (uint32_t)i;
        p->ssrc = 0x10000000u * (uint32_t)(i + 1) + p->handle;
        p->n_slots = N_SLOTS;
        p->payload_type = 111;
        for (int s = 0; s < N_SLOTS; s++)
            p->slots[s] = (rtp_room_slot_cfg){.ssrc = 0xA0000000u + 16u * p->handle + (uint32_t)s,
                                              .seq = (uint16_t)(1000 * i + s),
                                              .ts = 100000u * (uint32_t)(i + 1)};
        pe->fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (pe->fd < 0) DIE("socket");
        int sz = 4 << 20;
        setsockopt(pe->fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof sz);
        pe->addr.sin_family = AF_INET;
        pe->addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t sl = sizeof pe->addr;
        if (bind(pe->fd, (struct sockaddr *)&pe->addr, sl) < 0 ||
            getsockname(pe->fd, (struct sockaddr *)&pe->addr, &sl) < 0)
            DIE("bind");
        if (bc->webrtc) {
            p->transport = RTP_TRANSPORT_WEBRTC;
            snprintf(p->ice_ufrag, sizeof p->ice_ufrag, "%08x", 0xbe00u + p->handle);
            for (int k = 0; k < RTP_ICE_PWD_LEN; k++)
                p->ice_pwd[k] = "0123456789abcdef"[(k * 7 + (int)p->handle) & 15];
            if (tclient_init(&pe->dtls, profile_names[bc->prof]) < 0) DIE("tclient_init");
            memcpy(p->remote_fp, pe->dtls.fp, sizeof p->remote_fp);
        } else {
            p->transport = RTP_TRANSPORT_SRTP;
            p->in.profile = p->out.profile = bc->prof;
            for (int k = 0; k < RTP_SRTP_KEY_MAX; k++) {
                p->in.key[k] = (uint8_t)(0x10 * i + 3 * k);
                p->out.key[k] = (uint8_t)(0x80 + 0x10 * i + 5 * k);
            }
        }
        if (rtp_worker_add_participant(w, p) != 0) DIE("add participant");
    }
    for (int i = 0; i < NP; i++) {
        peer *pe = &bc->peers[i];
        if (bc->webrtc)
            webrtc_up(pe, profile_names[bc->prof]);
        else
            client_sessions(pe, &pe->p.in, &pe->p.out);
        /* latch: an authenticated SRTCP receiver report */
        uint8_t rr[8 + SRTP_MAX_TRAILER_LEN] = {0x80, 201, 0, 1};
        put32(rr + 4, pe->p.ssrc);
        int len = 8;
        if (srtp_protect_rtcp(pe->tx, rr, &len) != srtp_err_status_ok) DIE("protect rtcp");
        rtp_worker_stats a, b;
        rtp_worker_stats_read(w, &a);
        inject(pe, rr, (size_t)len);
        rtp_worker_stats_read(w, &b);
        if (b.rtcp_ok != a.rtcp_ok + 1) DIE("%s: participant %d did not latch", bc->name, i);
    }
    rtp_worker_event ev[64];
    while (rtp_worker_events(w, ev, 64) > 0) {
    }
}

/* BATCH packets of the speaker, protected with its client key (outside the timing). */
static void prepare(bcase *bc)
{
    peer *sp = &bc->peers[0];
    for (int i = 0; i < BATCH; i++) {
        uint8_t *b = bc->pkts[i];
        b[0] = 0x90; /* V=2, X=1 */
        b[1] = 111;
        put16(b + 2, bc->seq++);
        put32(b + 4, bc->ts);
        bc->ts += 960;
        put32(b + 8, sp->p.ssrc);
        put16(b + 12, 0xBEDE); /* RFC 8285 one-byte header, one word */
        put16(b + 14, 1);
        b[16] = 0x10;      /* id 1, length 1 */
        b[17] = 0x80 | 30; /* voice, -30 dBov */
        b[18] = b[19] = 0;
        for (int k = 0; k < PAYLOAD; k++)
            b[20 + k] = (uint8_t)(i + k);
        int len = 20 + PAYLOAD;
        if (srtp_protect(sp->tx, b, &len) != srtp_err_status_ok) DIE("protect");
        bc->lens[i] = len;
    }
}

/* What arrived at the listeners: count, and unprotect a few with the client's keys. */
static uint64_t drain(bcase *bc, bool check)
{
    uint64_t n = 0;
    uint8_t buf[2048];
    for (int i = 1; i < NP; i++) {
        int r;
        while ((r = take(&bc->peers[i], buf, sizeof buf)) > 0) {
            n++;
            /* every datagram must unprotect (libsrtp's replay window needs them all in order) */
            int len = r;
            if (check && srtp_unprotect(bc->peers[i].rx, buf, &len) != srtp_err_status_ok)
                DIE("%s: listener %d cannot unprotect a forwarded packet", bc->name, i);
            if (check && len != 20 + PAYLOAD) DIE("%s: forwarded length %d", bc->name, len);
        }
    }
    return n;
}

static void round_of(bcase *bc)
{
    prepare(bc);
    rtp_worker_stats a, b;
    rtp_worker_stats_read(w, &a);
    peer *sp = &bc->peers[0];
    double t0 = cpu_now();
    for (int i = 0; i < BATCH; i++)
        inject(sp, bc->pkts[i], (size_t)bc->lens[i]);
    double dt = cpu_now() - t0;
    rtp_worker_stats_read(w, &b);
    uint64_t fwd = b.tx_datagrams - a.tx_datagrams;
    if (b.rtp_ok - a.rtp_ok != BATCH || fwd != (uint64_t)BATCH * (NP - 1))
        DIE("%s: %lu authenticated, %lu forwarded of %d", bc->name,
            (unsigned long)(b.rtp_ok - a.rtp_ok), (unsigned long)fwd, BATCH);
    uint64_t got = drain(bc, true);
    if (got != fwd)
        DIE("%s: %lu of %lu forwarded packets arrived", bc->name, (unsigned long)got,
            (unsigned long)fwd);
    rtp_worker_event ev[64];
    while (rtp_worker_events(w, ev, 64) > 0) {
    }
    bc->cpu_s += dt;
    bc->fwd += fwd;
    double ns = dt * 1e9 / (double)fwd;
    if (bc->best_ns == 0 || ns < bc->best_ns) bc->best_ns = ns;
}

int main(int argc, char **argv)
{
    double secs = argc > 1 ? atof(argv[1]) : 2.0;
    if (!(secs > 0)) secs = 2.0;
    if (wrtc_dtls_ctx_new(NULL, NULL, &dctx) != 0) DIE("DTLS context");
    rtp_worker_config cfg = {
        .address = "127.0.0.1", .max_rooms = 4, .max_participants = 4 * NP, .dtls = dctx};
    if (rtp_worker_new(&cfg, &w) != 0) DIE("rtp_worker_new");
    static bcase cases[4] = {
        {.name = "srtp   AES_CM_128_HMAC_SHA1_80", .prof = RTP_SRTP_AES_CM_128_HMAC_SHA1_80},
        {.name = "webrtc AES_CM_128_HMAC_SHA1_80",
         .webrtc = true,
         .prof = RTP_SRTP_AES_CM_128_HMAC_SHA1_80},
        {.name = "srtp   AEAD_AES_128_GCM", .prof = RTP_SRTP_AEAD_AES_128_GCM},
        {.name = "webrtc AEAD_AES_128_GCM", .webrtc = true, .prof = RTP_SRTP_AEAD_AES_128_GCM},
    };
    for (int c = 0; c < 4; c++)
        setup(&cases[c], 100 + (uint32_t)c, 10 * (uint32_t)c + 1);
    /* warm-up: libsrtp's streams, caches */
    for (int c = 0; c < 4; c++) {
        round_of(&cases[c]);
        cases[c].cpu_s = 0;
        cases[c].fwd = 0;
        cases[c].best_ns = 0;
    }
    while (cases[0].cpu_s < secs || cases[1].cpu_s < secs || cases[2].cpu_s < secs ||
           cases[3].cpu_s < secs)
        for (int c = 0; c < 4; c++)
            round_of(&cases[c]);
    printf("%-32s %10s %8s %12s %12s\n", "transport, SRTP profile", "forwarded", "cpu_s",
           "ns/packet", "best round");
    for (int c = 0; c < 4; c++)
        printf("%-32s %10lu %8.3f %12.0f %12.0f\n", cases[c].name, (unsigned long)cases[c].fwd,
               cases[c].cpu_s, cases[c].cpu_s * 1e9 / (double)cases[c].fwd, cases[c].best_ns);
    for (int c = 0; c < 4; c += 2) {
        double s = cases[c].cpu_s / (double)cases[c].fwd,
               r = cases[c + 1].cpu_s / (double)cases[c + 1].fwd;
        printf("webrtc/srtp %-20s %.3f (best rounds %.3f)\n",
               c ? "AEAD_AES_128_GCM" : "AES_CM_128_HMAC_SHA1_80", r / s,
               cases[c + 1].best_ns / cases[c].best_ns);
    }
    for (int c = 0; c < 4; c++)
        for (int i = 0; i < NP; i++) {
            peer *pe = &cases[c].peers[i];
            srtp_dealloc(pe->tx);
            srtp_dealloc(pe->rx);
            close(pe->fd);
            if (cases[c].webrtc) tclient_free(&pe->dtls);
        }
    if (rtp_worker_stop_and_free(w) != 0) DIE("rtp_worker_stop_and_free");
    wrtc_dtls_ctx_free(dctx);
    return 0;
}
