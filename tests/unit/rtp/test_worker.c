/*
 * Unit tests of the media worker (rtp_worker_*) over real UDP on 127.0.0.1 with real libsrtp on
 * both sides: the test plays the owner (its own uv loop and event async) and the clients (plain
 * UDP sockets with their own srtp_t per direction). What a user would notice: each client hears
 * exactly the other talkers, each on one slot SSRC with a continuous sequence; a server-muted
 * talker reaches nobody; forged, unknown and garbage datagrams change nothing but counters.
 *
 * Every wait is bounded (poll() with a timeout on client sockets, a uv timer on the owner loop);
 * nothing sleeps. Ordering instead of time: loopback UDP from one socket arrives in order and the
 * worker handles its socket in arrival order, so "the last packet a client expects has arrived"
 * means every packet that could have been sent to it before has arrived too.
 */
#include "rtp/rtp.h"
#include "tests/unit/test.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <srtp2/srtp.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

/* counting allocator: allocations made by threads other than the test's main thread (the worker),
 * over glibc's own; not under Address/ThreadSanitizer, which have their own allocators */
#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
#define COUNT_ALLOCS 1
extern void *__libc_malloc(size_t n);
extern void *__libc_calloc(size_t n, size_t size);
extern void *__libc_realloc(void *p, size_t n);
extern void __libc_free(void *p);
static pthread_t main_thread;
static bool main_thread_set;
static long worker_allocs;

static void count_alloc(void)
{
    if (main_thread_set && !pthread_equal(pthread_self(), main_thread))
        __atomic_add_fetch(&worker_allocs, 1, __ATOMIC_RELAXED);
}

void *malloc(size_t n)
{
    count_alloc();
    return __libc_malloc(n);
}

void *calloc(size_t n, size_t size)
{
    count_alloc();
    return __libc_calloc(n, size);
}

void *realloc(void *p, size_t n)
{
    count_alloc();
    return __libc_realloc(p, n);
}

void free(void *p)
{
    __libc_free(p);
}
#else
#define COUNT_ALLOCS 0
static long worker_allocs;
#endif

static long worker_allocs_now(void)
{
    return __atomic_load_n(&worker_allocs, __ATOMIC_RELAXED);
}

#define LEVEL_ID   1
#define N_SLOTS    3
#define WAIT_MS    3000
#define MAX_EVENTS 256

/* ---- the owner: a loop, the event async, bounded waits -------------------------------------- */

static uv_loop_t owner;
static uv_async_t ev_async;
static uv_timer_t deadline;
static rtp_worker *cur; /* the worker whose events the async drains */
static rtp_worker_event evs[MAX_EVENTS];
static size_t n_evs;
static bool timed_out;

static void on_events(uv_async_t *a)
{
    (void)a;
    if (cur) n_evs += rtp_worker_events(cur, evs + n_evs, MAX_EVENTS - n_evs);
}

static void on_deadline(uv_timer_t *t)
{
    (void)t;
    timed_out = true;
}

static void owner_init(void)
{
    uv_loop_init(&owner);
    uv_async_init(&owner, &ev_async, on_events);
    uv_timer_init(&owner, &deadline);
    n_evs = 0;
}

static int owner_fini(void)
{
    uv_close((uv_handle_t *)&ev_async, NULL);
    uv_close((uv_handle_t *)&deadline, NULL);
    uv_run(&owner, UV_RUN_DEFAULT);
    return uv_loop_close(&owner);
}

static size_t count_ev(rtp_worker_event_kind kind, int err)
{
    size_t n = 0;
    for (size_t i = 0; i < n_evs; i++)
        if (evs[i].kind == kind && (kind != RTP_WORKER_EV_DONE || evs[i].err == err)) n++;
    return n;
}

/* runs the owner loop until `want` events of `kind` (DONE: with err) have arrived, or WAIT_MS */
static bool await_ev(rtp_worker_event_kind kind, int err, size_t want)
{
    timed_out = false;
    uv_timer_start(&deadline, on_deadline, WAIT_MS, 0);
    while (count_ev(kind, err) < want && !timed_out)
        uv_run(&owner, UV_RUN_ONCE);
    uv_timer_stop(&deadline);
    return count_ev(kind, err) >= want;
}

/* ---- clients -------------------------------------------------------------------------------- */

typedef struct client {
    uint32_t handle, ssrc;
    int fd;
    uint16_t port;
    srtp_t tx, rx;
    uint16_t seq;
    uint32_t ts;
    rtp_worker_participant p;
} client;

static struct sockaddr_in worker_addr;

static void fill_key(rtp_srtp_key *k, rtp_srtp_profile prof, uint8_t seed)
{
    k->profile = prof;
    for (int i = 0; i < RTP_SRTP_KEY_MAX; i++)
        k->key[i] = (uint8_t)(seed * 31 + i * 7);
}

static void policy(srtp_policy_t *pol, const rtp_srtp_key *k)
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
}

static uint32_t slot_ssrc(uint32_t handle, unsigned j)
{
    return 0x5000u + handle * 16 + j;
}

/* a client socket and sessions; p describes it to the worker */
static int client_open(client *c, uint32_t room, uint32_t handle, unsigned flags,
                       rtp_srtp_profile prof)
{
    memset(c, 0, sizeof *c);
    c->handle = handle;
    c->ssrc = 0xA0000000u + handle;
    c->seq = (uint16_t)(65500 + handle); /* crosses 65535 → 0 during the test */
    c->ts = 1000u * handle;
    c->fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    if (c->fd < 0 || bind(c->fd, (struct sockaddr *)&a, sizeof a) < 0 ||
        getsockname(c->fd, (struct sockaddr *)&a, &al) < 0)
        return -1;
    c->port = ntohs(a.sin_port);
    rtp_worker_participant *p = &c->p;
    p->room = room;
    p->handle = handle;
    p->flags = flags;
    p->ssrc = c->ssrc;
    fill_key(&p->in, prof, (uint8_t)handle);
    fill_key(&p->out, prof, (uint8_t)(handle + 100));
    p->n_slots = N_SLOTS;
    for (unsigned j = 0; j < N_SLOTS; j++)
        p->slots[j] = (rtp_room_slot_cfg){
            .ssrc = slot_ssrc(handle, j), .seq = (uint16_t)(1000 * handle + 100 * j), .ts = 12345};
    srtp_policy_t pt, pr;
    policy(&pt, &p->in);
    pt.ssrc.type = ssrc_specific;
    pt.ssrc.value = c->ssrc;
    policy(&pr, &p->out);
    pr.ssrc.type = ssrc_any_inbound;
    if (srtp_create(&c->tx, &pt) != srtp_err_status_ok) return -1;
    if (srtp_create(&c->rx, &pr) != srtp_err_status_ok) return -1;
    return 0;
}

static void client_close(client *c)
{
    if (c->fd > 0) close(c->fd);
    if (c->tx) srtp_dealloc(c->tx);
    if (c->rx) srtp_dealloc(c->rx);
}

static void send_raw(const client *c, const void *buf, size_t n)
{
    sendto(c->fd, buf, n, 0, (const struct sockaddr *)&worker_addr, sizeof worker_addr);
}

/* an Opus-like packet carrying (handle, idx) with the audio level (V flag, -dBov), protected into
 * buf (256 bytes); its length */
static int client_packet_level(client *c, uint8_t idx, uint8_t *buf, bool voice, uint8_t level)
{
    rtp_hdr_params h = {.pt = 111,
                        .seq = c->seq++,
                        .ts = c->ts,
                        .ssrc = c->ssrc,
                        .level_id = LEVEL_ID,
                        .voice = voice,
                        .level = level};
    c->ts += 960;
    int n = rtp_write_hdr(buf, 256, &h);
    memset(buf + n, 0x55, 40);
    buf[n] = (uint8_t)c->handle;
    buf[n + 1] = idx;
    int len = n + 40;
    srtp_protect(c->tx, buf, &len);
    return len;
}

/* loud and voiced (V set, -10 dBov) */
static int client_packet(client *c, uint8_t idx, uint8_t *buf)
{
    return client_packet_level(c, idx, buf, true, 10);
}

/* client_packet_level() sent to the worker; corrupt: flip a tag bit */
static void client_send_level(client *c, uint8_t idx, bool corrupt, bool voice, uint8_t level)
{
    uint8_t buf[256];
    int len = client_packet_level(c, idx, buf, voice, level);
    if (corrupt) buf[len - 1] ^= 1;
    send_raw(c, buf, (size_t)len);
}

/* client_packet() sent to the worker; corrupt: flip a tag bit */
static void client_send(client *c, uint8_t idx, bool corrupt)
{
    client_send_level(c, idx, corrupt, true, 10);
}

/* an RR from the client, protected into buf (64 bytes); its length */
static int client_rtcp(client *c, uint8_t *buf)
{
    memset(buf, 0, 64);
    buf[0] = 0x80;
    buf[1] = 201;
    buf[3] = 1;
    buf[4] = (uint8_t)(c->ssrc >> 24);
    buf[5] = (uint8_t)(c->ssrc >> 16);
    buf[6] = (uint8_t)(c->ssrc >> 8);
    buf[7] = (uint8_t)c->ssrc;
    int len = 8;
    srtp_protect_rtcp(c->tx, buf, &len);
    return len;
}

/* an RR from the client: liveness, and its first authenticated packet */
static void client_send_rtcp(client *c)
{
    uint8_t buf[64];
    int len = client_rtcp(c, buf);
    send_raw(c, buf, (size_t)len);
}

typedef struct got {
    uint32_t ssrc;
    uint16_t seq;
    uint8_t from, idx;
} got;

/* receives and unprotects one packet (bounded wait): 1, 0 on timeout, -1 if it did not unprotect
 * or parse */
static int client_recv(client *c, got *g)
{
    struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
    if (poll(&pfd, 1, WAIT_MS) != 1) return 0;
    uint8_t buf[2048];
    ssize_t n = recv(c->fd, buf, sizeof buf, 0);
    int len = (int)n;
    if (n <= 0 || srtp_unprotect(c->rx, buf, &len) != srtp_err_status_ok) return -1;
    rtp_pkt pkt;
    if (rtp_parse(buf, (size_t)len, &pkt, NULL) < 0 || pkt.payload_len < 2) return -1;
    *g = (got){.ssrc = pkt.ssrc, .seq = pkt.seq, .from = pkt.payload[0], .idx = pkt.payload[1]};
    return 1;
}

static rtp_worker *worker_up(void)
{
    rtp_worker_config cfg = {.address = "127.0.0.1",
                             .max_rooms = 4,
                             .max_participants = 16,
                             .level_ext_id = LEVEL_ID,
                             .silence_ms = 300,
                             .event_async = &ev_async};
    rtp_worker *w = NULL;
    if (rtp_worker_new(&cfg, &w) < 0) return NULL;
    worker_addr = (struct sockaddr_in){.sin_family = AF_INET,
                                       .sin_port = htons(rtp_worker_port(w)),
                                       .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cur = w;
    if (rtp_worker_start(w) < 0) {
        rtp_worker_stop_and_free(w);
        return NULL;
    }
    return w;
}

/* ---- tests ---------------------------------------------------------------------------------- */

#define NC 4 /* A, B, C talk; D is server-muted */

TEST(forwarding)
{
    owner_init();
    rtp_worker *w = worker_up();
    CHECK(w != NULL);
    client cl[NC];
    const rtp_srtp_profile prof[NC] = {RTP_SRTP_AES_CM_128_HMAC_SHA1_80,
                                       RTP_SRTP_AES_CM_128_HMAC_SHA1_80, RTP_SRTP_AEAD_AES_128_GCM,
                                       RTP_SRTP_AEAD_AES_128_GCM};
    rtp_room_config rc = {.max_participants = 8, .n_slots = N_SLOTS};
    CHECK_EQ_INT(rtp_worker_create_room(w, 7, &rc), 0);
    for (int i = 0; i < NC; i++) {
        CHECK_EQ_INT(client_open(&cl[i], 7, (uint32_t)i + 1, i == 3 ? RTP_ROOM_MUTED : 0, prof[i]),
                     0);
        CHECK_EQ_INT(rtp_worker_add_participant(w, &cl[i].p), 0);
    }
    CHECK(await_ev(RTP_WORKER_EV_DONE, 0, 1 + NC));
    CHECK_EQ_INT(count_ev(RTP_WORKER_EV_DONE, 0), 1 + NC); /* no command failed */
    if (COUNT_ALLOCS) CHECK(worker_allocs_now() > 0);      /* the shim sees the worker's */

    /* latching: one RTCP each; the event names the client's address */
    for (int i = 0; i < NC; i++)
        client_send_rtcp(&cl[i]);
    CHECK(await_ev(RTP_WORKER_EV_LATCHED, 0, NC));
    for (int i = 0; i < NC; i++) {
        int found = 0;
        for (size_t e = 0; e < n_evs; e++) {
            if (evs[e].kind != RTP_WORKER_EV_LATCHED || evs[e].id != cl[i].handle) continue;
            const struct sockaddr_in *a = (const struct sockaddr_in *)&evs[e].addr;
            CHECK_EQ_INT(a->sin_family, AF_INET);
            CHECK_EQ_INT(ntohs(a->sin_port), cl[i].port);
            found++;
        }
        CHECK_EQ_INT(found, 1);
    }

    long allocs_before = worker_allocs_now();

    /* D (muted) talks first, then A, B, C interleaved, 50 packets each, back to back */
    for (uint8_t k = 0; k < 50; k++)
        client_send(&cl[3], k, false);
    for (uint8_t k = 0; k < 50; k++)
        for (int i = 0; i < 3; i++)
            client_send(&cl[i], k, false);

    /* each listener reads until the last packet it can expect: C's #49 (B's #49 for C) */
    for (int l = 0; l < NC; l++) {
        unsigned from_n[NC + 1] = {0};
        uint32_t slot_of[NC + 1] = {0};
        uint16_t last_seq[N_SLOTS] = {0};
        bool seen[N_SLOTS] = {false};
        uint8_t last_from = l == 2 ? 2 : 3;
        for (;;) {
            got g;
            int r = client_recv(&cl[l], &g);
            if (r <= 0) FAIL_("listener %d: recv %s", l + 1, r == 0 ? "timed out" : "bad packet");
            CHECK(g.from >= 1 && g.from <= 3);
            CHECK(g.from != cl[l].handle);
            CHECK_EQ_INT(g.idx, from_n[g.from]); /* every packet, in order, once */
            from_n[g.from]++;
            unsigned j = g.ssrc - slot_ssrc(cl[l].handle, 0);
            CHECK(j < N_SLOTS); /* on one of the listener's slot SSRCs */
            if (!slot_of[g.from]) slot_of[g.from] = g.ssrc;
            CHECK_EQ_INT(slot_of[g.from], g.ssrc); /* a talker stays on its slot */
            if (seen[j]) CHECK_EQ_INT(g.seq, (uint16_t)(last_seq[j] + 1)); /* continuous */
            seen[j] = true;
            last_seq[j] = g.seq;
            if (g.from == last_from && g.idx == 49) break;
        }
        for (uint32_t t = 1; t <= 3; t++)
            CHECK_EQ_INT(from_n[t], t == cl[l].handle ? 0 : 50);
        CHECK_EQ_INT(from_n[4], 0);
    }

    /* a forged tag, then an unknown SSRC, then a good packet: B sees only the good one */
    client_send(&cl[0], 50, true);
    client intruder;
    CHECK_EQ_INT(client_open(&intruder, 7, 99, 0, RTP_SRTP_AES_CM_128_HMAC_SHA1_80), 0);
    client_send(&intruder, 0, false);
    client_close(&intruder);
    client_send(&cl[0], 51, false);
    got g;
    CHECK_EQ_INT(client_recv(&cl[1], &g), 1);
    CHECK_EQ_INT(g.from, 1);
    CHECK_EQ_INT(g.idx, 51);

    rtp_worker_stats st;
    rtp_worker_stats_read(w, &st);
    CHECK_EQ_INT(st.drop_auth, 1);
    CHECK_EQ_INT(st.drop_unknown_ssrc, 1);
    CHECK_EQ_INT(st.drop_room[RTP_ROOM_DROP_MUTED], 50);
    CHECK_EQ_INT(st.rtcp_ok, NC);
    CHECK_EQ_INT(st.rtp_ok, 50 + 150 + 1);
    CHECK_EQ_INT(st.rx_datagrams, NC + 50 + 150 + 3);
    CHECK_EQ_INT(st.drop_protect + st.drop_slot + st.drop_send + st.drop_dest_unlatched, 0);
    /* every forwarded copy is in the latency histogram once, dated from the kernel's receipt:
     * on loopback, well under a second */
    uint64_t observed = 0;
    for (int b = 0; b <= RTP_WORKER_LAT_N; b++)
        observed += st.fwd_lat[b];
    CHECK(st.tx_datagrams > 0);
    CHECK_EQ_INT(observed, st.tx_datagrams);
    CHECK(st.fwd_lat_sum_ns / st.tx_datagrams < 1000000000u);

    /* A muted at run time: its next packet reaches nobody, C's after it still does */
    size_t done_before = count_ev(RTP_WORKER_EV_DONE, 0);
    CHECK_EQ_INT(rtp_worker_set_flags(w, 1, RTP_ROOM_MUTED), 0);
    CHECK(await_ev(RTP_WORKER_EV_DONE, 0, done_before + 1));
    client_send(&cl[0], 52, false);
    client_send(&cl[2], 50, false);
    CHECK_EQ_INT(client_recv(&cl[1], &g), 1);
    CHECK_EQ_INT(g.from, 3);
    CHECK_EQ_INT(g.idx, 50);
    rtp_worker_stats_read(w, &st);
    CHECK_EQ_INT(st.drop_room[RTP_ROOM_DROP_MUTED], 51);
    /* 206 packets in, 451 out, a flag change: not one allocation. (libsrtp 2.5's own HMAC-SHA1
     * glue on OpenSSL 3 allocated twice per AES_CM protect or unprotect, 612 here; rtp_hmac.c
     * replaces it, D35.) GCM: none either, below. */
    if (COUNT_ALLOCS) CHECK_EQ_INT(worker_allocs_now() - allocs_before, 0);

    /* everyone goes quiet: one EV_SILENT each, after at least silence_ms */
    CHECK(await_ev(RTP_WORKER_EV_SILENT, 0, NC));
    for (size_t e = 0; e < n_evs; e++)
        if (evs[e].kind == RTP_WORKER_EV_SILENT) CHECK(evs[e].silent_ms >= 300);

    /* remove B; flags of someone unknown */
    size_t done_ok = count_ev(RTP_WORKER_EV_DONE, 0);
    CHECK_EQ_INT(rtp_worker_remove_participant(w, 2), 0);
    CHECK_EQ_INT(rtp_worker_set_flags(w, 42, 0), 0);
    CHECK(await_ev(RTP_WORKER_EV_DONE, -ENOENT, 1));
    CHECK_EQ_INT(count_ev(RTP_WORKER_EV_DONE, 0), done_ok + 1);

    for (int i = 0; i < NC; i++)
        client_close(&cl[i]);
    CHECK_EQ_INT(rtp_worker_stop_and_free(w), 0);
    cur = NULL;
    CHECK_EQ_INT(owner_fini(), 0);
}

/* AEAD_AES_128_GCM everywhere: 3 talkers × 20 packets in, 120 out, not one allocation */
TEST(no_allocation_gcm)
{
    owner_init();
    rtp_worker *w = worker_up();
    CHECK(w != NULL);
    rtp_room_config rc = {.max_participants = 4, .n_slots = N_SLOTS};
    CHECK_EQ_INT(rtp_worker_create_room(w, 1, &rc), 0);
    client cl[3];
    for (int i = 0; i < 3; i++) {
        CHECK_EQ_INT(client_open(&cl[i], 1, (uint32_t)i + 1, 0, RTP_SRTP_AEAD_AES_128_GCM), 0);
        CHECK_EQ_INT(rtp_worker_add_participant(w, &cl[i].p), 0);
    }
    CHECK(await_ev(RTP_WORKER_EV_DONE, 0, 4));
    for (int i = 0; i < 3; i++)
        client_send_rtcp(&cl[i]);
    CHECK(await_ev(RTP_WORKER_EV_LATCHED, 0, 3));
    long before = worker_allocs_now();
    for (uint8_t k = 0; k < 20; k++)
        for (int i = 0; i < 3; i++)
            client_send(&cl[i], k, false);
    for (int l = 0; l < 3; l++)
        for (int k = 0; k < 40; k++) {
            got g;
            CHECK_EQ_INT(client_recv(&cl[l], &g), 1);
        }
    CHECK_EQ_INT(worker_allocs_now() - before, 0);
    rtp_worker_stats st;
    rtp_worker_stats_read(w, &st);
    CHECK_EQ_INT(st.rtp_ok, 60);
    for (int i = 0; i < 3; i++)
        client_close(&cl[i]);
    CHECK_EQ_INT(rtp_worker_stop_and_free(w), 0);
    cur = NULL;
    CHECK_EQ_INT(owner_fini(), 0);
}

/* D25: a sender that never sets the V flag (no VAD) is heard by its level; once it has set V,
 * V=0 is silence again. Level 127 is silence either way. */
TEST(level_without_vad)
{
    owner_init();
    rtp_worker *w = worker_up();
    CHECK(w != NULL);
    rtp_room_config rc = {.max_participants = 4, .n_slots = N_SLOTS};
    CHECK_EQ_INT(rtp_worker_create_room(w, 1, &rc), 0);
    client cl[2];
    for (int i = 0; i < 2; i++) {
        CHECK_EQ_INT(client_open(&cl[i], 1, (uint32_t)i + 1, 0, RTP_SRTP_AES_CM_128_HMAC_SHA1_80),
                     0);
        CHECK_EQ_INT(rtp_worker_add_participant(w, &cl[i].p), 0);
    }
    CHECK(await_ev(RTP_WORKER_EV_DONE, 0, 3));
    for (int i = 0; i < 2; i++)
        client_send_rtcp(&cl[i]);
    CHECK(await_ev(RTP_WORKER_EV_LATCHED, 0, 2));
    got g;
    /* A never sets V: V=0 at -127 is silence (dropped), V=0 at -20 dBov is forwarded */
    client_send_level(&cl[0], 0, false, false, 127);
    client_send_level(&cl[0], 1, false, false, 20);
    CHECK_EQ_INT(client_recv(&cl[1], &g), 1);
    CHECK_EQ_INT(g.from, 1);
    CHECK_EQ_INT(g.idx, 1);
    /* B sets V (on a silent packet): from then on its V=0 packets are silence, V=1 is heard */
    client_send_level(&cl[1], 0, false, true, 127);
    client_send_level(&cl[1], 1, false, false, 20);
    client_send_level(&cl[1], 2, false, true, 20);
    CHECK_EQ_INT(client_recv(&cl[0], &g), 1);
    CHECK_EQ_INT(g.from, 2);
    CHECK_EQ_INT(g.idx, 2);
    rtp_worker_stats st;
    rtp_worker_stats_read(w, &st);
    CHECK_EQ_INT(st.rtp_ok, 5);
    CHECK_EQ_INT(st.drop_room[RTP_ROOM_DROP_NOT_SELECTED], 3);
    for (int i = 0; i < 2; i++)
        client_close(&cl[i]);
    CHECK_EQ_INT(rtp_worker_stop_and_free(w), 0);
    cur = NULL;
    CHECK_EQ_INT(owner_fini(), 0);
}

TEST(garbage)
{
    owner_init();
    rtp_worker *w = worker_up();
    CHECK(w != NULL);
    rtp_room_config rc = {.max_participants = 4, .n_slots = N_SLOTS};
    CHECK_EQ_INT(rtp_worker_create_room(w, 1, &rc), 0);
    client a, b;
    CHECK_EQ_INT(client_open(&a, 1, 1, 0, RTP_SRTP_AES_CM_128_HMAC_SHA1_80), 0);
    CHECK_EQ_INT(client_open(&b, 1, 2, 0, RTP_SRTP_AEAD_AES_128_GCM), 0);
    CHECK_EQ_INT(rtp_worker_add_participant(w, &a.p), 0);
    CHECK_EQ_INT(rtp_worker_add_participant(w, &b.p), 0);
    CHECK(await_ev(RTP_WORKER_EV_DONE, 0, 3));
    /* refused: the same handle again, an unknown profile, an unknown room */
    CHECK_EQ_INT(rtp_worker_add_participant(w, &a.p), 0);
    rtp_worker_participant bad = b.p;
    bad.handle = 3;
    bad.ssrc = 3;
    bad.in.profile = 0;
    CHECK_EQ_INT(rtp_worker_add_participant(w, &bad), 0);
    bad.in.profile = RTP_SRTP_AEAD_AES_128_GCM;
    bad.room = 99;
    CHECK_EQ_INT(rtp_worker_add_participant(w, &bad), 0);
    CHECK(await_ev(RTP_WORKER_EV_DONE, -EEXIST, 1));
    CHECK(await_ev(RTP_WORKER_EV_DONE, -EINVAL, 1));
    CHECK(await_ev(RTP_WORKER_EV_DONE, -ENOENT, 1));
    client_send_rtcp(&a);
    client_send_rtcp(&b);
    CHECK(await_ev(RTP_WORKER_EV_LATCHED, 0, 2));

    /* every length 0..100: varied first bytes; the even ones from 12 up look like RTP from A, the
     * odd ones from 8 up like RTCP from A, so they reach SRTP and are refused there */
    uint8_t buf[101];
    for (unsigned len = 0; len <= 100; len++) {
        for (unsigned i = 0; i < len; i++)
            buf[i] = (uint8_t)(len * 37 + i * 11);
        if (len >= 12 && len % 2 == 0) {
            buf[0] = 0x80;
            buf[1] = 111;
            buf[8] = (uint8_t)(a.ssrc >> 24), buf[9] = (uint8_t)(a.ssrc >> 16);
            buf[10] = (uint8_t)(a.ssrc >> 8), buf[11] = (uint8_t)a.ssrc;
        } else if (len >= 8 && len % 2 == 1) {
            buf[0] = 0x80;
            buf[1] = 200;
            buf[4] = (uint8_t)(a.ssrc >> 24), buf[5] = (uint8_t)(a.ssrc >> 16);
            buf[6] = (uint8_t)(a.ssrc >> 8), buf[7] = (uint8_t)a.ssrc;
        }
        send_raw(&a, buf, len);
    }
    /* over the 1,500-byte MTU */
    uint8_t big[2000];
    memset(big, 0x80, sizeof big);
    send_raw(&a, big, sizeof big);
    /* still forwarding */
    client_send(&a, 7, false);
    got g;
    CHECK_EQ_INT(client_recv(&b, &g), 1);
    CHECK_EQ_INT(g.from, 1);
    CHECK_EQ_INT(g.idx, 7);
    rtp_worker_stats st;
    rtp_worker_stats_read(w, &st);
    CHECK_EQ_INT(st.rx_datagrams, 2 + 101 + 1 + 1);
    CHECK_EQ_INT(st.drop_oversize, 1);
    CHECK_EQ_INT(st.rtp_ok, 1);
    CHECK_EQ_INT(st.rtcp_ok, 2);
    CHECK_EQ_INT(st.drop_auth, 45);      /* even lengths 12..100 */
    CHECK_EQ_INT(st.drop_rtcp_auth, 46); /* odd lengths 9..99 */

    client_close(&a);
    client_close(&b);
    CHECK_EQ_INT(rtp_worker_stop_and_free(w), 0);
    cur = NULL;
    CHECK_EQ_INT(owner_fini(), 0);
}

TEST(lifecycle)
{
    /* never started: stop_and_free still closes everything; bad configs are refused */
    rtp_worker_config cfg = {.address = "127.0.0.1", .max_rooms = 1, .max_participants = 1};
    rtp_worker *w = NULL;
    CHECK_EQ_INT(rtp_worker_new(&cfg, &w), 0);
    CHECK(rtp_worker_port(w) != 0);
    CHECK_EQ_INT(rtp_worker_stop_and_free(w), 0);
    cfg.address = "not an address";
    CHECK_EQ_INT(rtp_worker_new(&cfg, &w), -EINVAL);
    cfg.address = "127.0.0.1";
    cfg.max_rooms = 0;
    CHECK_EQ_INT(rtp_worker_new(&cfg, &w), -EINVAL);
    CHECK_EQ_INT(rtp_worker_stop_and_free(NULL), 0);
}

/* rtp_worker_inject: the packet path on the caller's thread, for a worker never started */
static int inject_from(rtp_worker *w, const client *c, const uint8_t *buf, int len)
{
    struct sockaddr_in from = {.sin_family = AF_INET,
                               .sin_port = htons(c->port),
                               .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    return rtp_worker_inject(w, buf, (size_t)len, (const struct sockaddr *)&from, sizeof from);
}

TEST(inject_without_thread)
{
    rtp_worker_config cfg = {
        .address = "127.0.0.1", .max_rooms = 1, .max_participants = 4, .level_ext_id = LEVEL_ID};
    rtp_worker *w = NULL;
    CHECK_EQ_INT(rtp_worker_new(&cfg, &w), 0);
    client a, b;
    rtp_room_config rc = {.max_participants = 4, .n_slots = N_SLOTS};
    CHECK_EQ_INT(rtp_worker_create_room(w, 1, &rc), 0);
    CHECK_EQ_INT(client_open(&a, 1, 1, 0, RTP_SRTP_AES_CM_128_HMAC_SHA1_80), 0);
    CHECK_EQ_INT(client_open(&b, 1, 2, 0, RTP_SRTP_AEAD_AES_128_GCM), 0);
    CHECK_EQ_INT(rtp_worker_add_participant(w, &a.p), 0);
    CHECK_EQ_INT(rtp_worker_add_participant(w, &b.p), 0);
    /* the first injection applies the three commands, then latches a; the next latches b */
    uint8_t buf[256];
    int len = client_rtcp(&a, buf);
    CHECK_EQ_INT(inject_from(w, &a, buf, len), 0);
    len = client_rtcp(&b, buf);
    CHECK_EQ_INT(inject_from(w, &b, buf, len), 0);
    rtp_worker_event ev[16];
    size_t n = rtp_worker_events(w, ev, 16), done = 0, latched = 0;
    for (size_t i = 0; i < n; i++) {
        done += ev[i].kind == RTP_WORKER_EV_DONE && ev[i].err == 0;
        latched += ev[i].kind == RTP_WORKER_EV_LATCHED;
    }
    CHECK_EQ_INT(done, 3);
    CHECK_EQ_INT(latched, 2);
    /* a talks: b hears it on its first slot, sent before inject returned */
    len = client_packet(&a, 9, buf);
    CHECK_EQ_INT(inject_from(w, &a, buf, len), 0);
    got g;
    CHECK_EQ_INT(client_recv(&b, &g), 1);
    CHECK_EQ_INT(g.ssrc, slot_ssrc(2, 0));
    CHECK_EQ_INT(g.from, 1);
    CHECK_EQ_INT(g.idx, 9);
    /* a forged copy and an oversize datagram are counted, not sent */
    len = client_packet(&a, 10, buf);
    buf[len - 1] ^= 1;
    CHECK_EQ_INT(inject_from(w, &a, buf, len), 0);
    static uint8_t big[1600];
    memset(big, 0x80, sizeof big);
    CHECK_EQ_INT(inject_from(w, &a, big, (int)sizeof big), 0);
    rtp_worker_stats st;
    rtp_worker_stats_read(w, &st);
    CHECK_EQ_INT(st.rx_datagrams, 5);
    CHECK_EQ_INT(st.rtcp_ok, 2);
    CHECK_EQ_INT(st.rtp_ok, 1);
    CHECK_EQ_INT(st.drop_auth, 1);
    CHECK_EQ_INT(st.drop_oversize, 1);
    CHECK_EQ_INT(st.tx_datagrams, 1);
    /* once its thread runs, the worker is its own */
    CHECK_EQ_INT(rtp_worker_start(w), 0);
    CHECK_EQ_INT(inject_from(w, &a, buf, len), -EBUSY);
    CHECK_EQ_INT(rtp_worker_stop_and_free(w), 0);
    client_close(&a);
    client_close(&b);
}

/* A room starts small and grows when full (D23): 40 participants in a room created for 100; a
 * listener's slot keeps its SSRC and goes on with the next sequence number across the growth. */
TEST(room_grows)
{
    enum { N = 40 };
    rtp_worker_config cfg = {
        .address = "127.0.0.1", .max_rooms = 1, .max_participants = N, .level_ext_id = LEVEL_ID};
    rtp_worker *w = NULL;
    CHECK_EQ_INT(rtp_worker_new(&cfg, &w), 0);
    rtp_room_config rc = {.max_participants = 100, .n_slots = N_SLOTS};
    CHECK_EQ_INT(rtp_worker_create_room(w, 1, &rc), 0);
    static client c[N];
    uint8_t buf[256];
    int len;
    got g;
    for (int i = 0; i < 2; i++) {
        CHECK_EQ_INT(client_open(&c[i], 1, (uint32_t)i + 1, 0, RTP_SRTP_AEAD_AES_128_GCM), 0);
        CHECK_EQ_INT(rtp_worker_add_participant(w, &c[i].p), 0);
    }
    for (int i = 0; i < 2; i++) {
        len = client_rtcp(&c[i], buf);
        CHECK_EQ_INT(inject_from(w, &c[i], buf, len), 0);
    }
    len = client_packet(&c[0], 1, buf);
    CHECK_EQ_INT(inject_from(w, &c[0], buf, len), 0);
    CHECK_EQ_INT(client_recv(&c[1], &g), 1);
    uint32_t ssrc0 = g.ssrc;
    uint16_t seq0 = g.seq;
    /* 38 more: the room (16 at first) grows twice */
    for (int i = 2; i < N; i++) {
        CHECK_EQ_INT(client_open(&c[i], 1, (uint32_t)i + 1, 0, RTP_SRTP_AEAD_AES_128_GCM), 0);
        CHECK_EQ_INT(rtp_worker_add_participant(w, &c[i].p), 0);
    }
    for (int i = 2; i < N; i++) {
        len = client_rtcp(&c[i], buf);
        CHECK_EQ_INT(inject_from(w, &c[i], buf, len), 0);
    }
    rtp_worker_event ev[4 * N];
    size_t n = rtp_worker_events(w, ev, 4 * N), done = 0;
    for (size_t i = 0; i < n; i++)
        done += ev[i].kind == RTP_WORKER_EV_DONE && ev[i].err == 0;
    CHECK_EQ_INT(done, 1 + N);
    rtp_worker_stats st;
    rtp_worker_stats_read(w, &st);
    CHECK_EQ_INT(st.room_grows, 1); /* 16 -> 64 at the 17th */
    /* the speaker is heard by all 39 others; the first listener's slot went on where it was */
    len = client_packet(&c[0], 2, buf);
    CHECK_EQ_INT(inject_from(w, &c[0], buf, len), 0);
    for (int i = 1; i < N; i++) {
        CHECK_EQ_INT(client_recv(&c[i], &g), 1);
        CHECK_EQ_INT(g.from, 1);
        CHECK_EQ_INT(g.idx, 2);
        if (i == 1) {
            CHECK_EQ_INT(g.ssrc, ssrc0);
            CHECK_EQ_INT(g.seq, (uint16_t)(seq0 + 1));
        }
    }
    CHECK_EQ_INT(rtp_worker_stop_and_free(w), 0);
    for (int i = 0; i < N; i++)
        client_close(&c[i]);
}

int main(void)
{
#if COUNT_ALLOCS
    main_thread = pthread_self();
    main_thread_set = true;
#endif
    RUN(forwarding);
    RUN(no_allocation_gcm);
    RUN(level_without_vad);
    RUN(garbage);
    RUN(lifecycle);
    RUN(inject_without_thread);
    RUN(room_grows);
    return test_summary();
}
