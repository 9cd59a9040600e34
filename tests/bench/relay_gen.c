/*
 * relay_gen — SRTP load generator for the relay benchmark (scripts/bench-relay.sh, docs/media.md
 * "Relay benchmark"). Figures printed, never pass/fail; exits non-zero only when the run is
 * meaningless (nothing delivered, or packets that do not decrypt with the keys the relay gave).
 *
 *   relay_gen --mode static|rtpengine|voxd --participants N --room-size R --speakers K
 *             --seconds D [--warmup W] [--relay-pid PID [--relay-threads PREFIX]]
 *             [--relay 127.0.0.1:P | --ng 127.0.0.1:P |
 *              --rpc 127.0.0.1:P --secret-file F [--guild ID | --guild-per-room]]
 *             [--rss-base-kb K] [--label TEXT] [--active-rooms M]
 *
 * How it works. Participant i is in room i / R and speaks when i % R < K and its room is one of
 * the first M (--active-rooms, default all: the rest only listen, for a memory figure with many
 * connected participants and a bounded packet rate). Every participant has
 * its own source address — 127.1.0.1 + i, on loopback, with one UDP port shared by all — so a
 * relay that latches per source address sees N distinct peers, while the generator needs only
 * one socket: it sends with IP_PKTINFO (the source address per datagram) in sendmmsg batches and
 * receives with recvmmsg, the destination address (IP_PKTINFO) naming the receiver and the
 * kernel's receive timestamp (SO_TIMESTAMPNS) dating it. Its own socket drops are read from
 * SO_RXQ_OVFL, so they are not blamed on the relay.
 *
 * Setup (gen.h) fills keys, SSRCs and relay addresses. Then two threads: the sender paces 20 ms
 * Opus frames (a 440 Hz tone encoded once at start, ~80-byte payloads at 32 kbit/s, reused),
 * speakers spread evenly over the 20 ms, each packet with an RFC 6464 audio level (ID 1, V=1,
 * level 20) and an 8-byte send time (ID 2, CLOCK_MONOTONIC ns, big-endian) stamped just before
 * srtp_protect; listeners send an SRTCP receiver report every second (latching, liveness). The
 * receiver unprotects every packet with the receiver's key, and for packets sent inside the
 * measured window counts them and adds their latency (kernel receive time minus send time).
 *
 * Measured window: after --warmup seconds, --seconds long. Before and after it the relay's CPU
 * (every thread of --relay-pid, or only those whose name starts with --relay-threads — voxd's
 * "voxd-media-N" workers, not its signalling loop: /proc/PID/task/TID/schedstat, ns on CPU;
 * relay_threads= in the result says how many were counted), UDP RcvbufErrors
 * (/proc/net/snmp, system-wide) and the relay's RSS are read. Loss compares what was delivered
 * with what should have been: each voiced packet sent in the window is expected at every other
 * member of its room (R - 1 receivers; speakers per room must not exceed the relay's slots).
 * No allocation after setup; bounded in participants (RB_MAX_PARTS) and time. Its SRTP is
 * libsrtp with voxd's HMAC-SHA1 (rtp_srtp_init, D35): the cheaper the generator, the less it
 * competes with the relay for the two cores; the relays' figures do not depend on it.
 */
#include "client/vc.h"
#include "lib/util.h"
#include "rtp/rtp.h"
#include "tests/bench/relay/gen.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <pthread.h>
#include <srtp2/srtp.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define ADDR_BASE   0x7f010001u /* 127.1.0.1 */
#define BATCH       64
#define BUF_LEN     (1500 + SRTP_MAX_TRAILER_LEN)
#define N_FRAMES    50 /* 1 s of pre-encoded Opus, reused */
#define HDR_LEN     28 /* 12 + 0xBEDE header 4 + level 2 + send time 9 + 1 padding */
/* The sender wakes every 250 µs and sends the speakers whose turn it is (each speaker every
 * 20 ms, speakers spread evenly): arrivals at the relay come in small bursts, as from many
 * independent clients behind a NIC's interrupt moderation, not as one burst per millisecond. */
#define TICK_NS     250000LL
#define FRAME_TICKS 80   /* ticks per 20 ms frame */
#define MS_NS       1000000LL
#define RTCP_PERIOD 4000 /* ticks (1 s) between a listener's receiver reports */

typedef struct opts {
    const char *mode, *relay, *ng, *rpc, *secret_file, *guild, *label, *relay_threads;
    bool guild_per_room;
    uint32_t n, room_size, speakers, active_rooms; /* active_rooms 0: all */
    double seconds, warmup;
    int relay_pid;
    long rss_base_kb;
    uint64_t seed;
    bool verbose;
} opts;

/* per participant, media phase: tx is the sender thread's, rx the receiver's */
typedef struct part_rt {
    srtp_t tx, rx;
    uint16_t seq;
    uint32_t ts;
    uint32_t rtcp_pkts;
    bool started;
} part_rt;

typedef struct run {
    gen_ctx g;
    part_rt *rt;
    int fd;
    uint32_t *speakers, n_speakers;
    uint32_t *listeners, n_listeners;
    uint8_t frames[N_FRAMES][VC_MAX_PACKET];
    int frame_len[N_FRAMES];
    int64_t t0, win_start, win_end, stop_send, stop_recv;
    /* sender results */
    uint64_t sent, sent_win, expected_win, rtcp_sent, tx_fail;
    int64_t max_lag_ns;
    bool sender_rt; /* the sender thread runs SCHED_FIFO */
    /* receiver results */
    uint64_t rx, rx_win, rx_auth_fail, rx_stray, rx_rtcp, rx_no_ts, rx_bad_ssrc;
    atomic_uint sock_drops; /* SO_RXQ_OVFL: the generator socket's drops so far */
    vc_latency lat;
} run;

static void die(const char *what)
{
    fprintf(stderr, "relay_gen: %s\n", what);
    exit(2);
}

static int64_t mono_ns(void)
{
    return time_mono_ns();
}

static void sleep_until(int64_t t)
{
    struct timespec ts = {.tv_sec = t / 1000000000LL, .tv_nsec = t % 1000000000LL};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
    }
}

static uint32_t group_size(const gen_ctx *g, uint32_t group)
{
    uint32_t first = group * g->room_size;
    uint32_t left = g->n - first;
    return left < g->room_size ? left : g->room_size;
}

/* ---- relay-side readings --------------------------------------------------------------------- */

/* ns on CPU of every thread of pid whose name (comm) starts with prefix (NULL: all), from
 * schedstat's first field; *threads counts them. -1 when the process is gone. */
static int64_t proc_cpu_ns(int pid, const char *prefix, int *threads)
{
    *threads = 0;
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task", pid);
    DIR *d = opendir(path);
    if (!d) return -1;
    int64_t sum = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char p2[128];
        if (prefix) {
            char comm[32] = "";
            snprintf(p2, sizeof p2, "/proc/%d/task/%.20s/comm", pid, e->d_name);
            FILE *c = fopen(p2, "r");
            if (!c) continue;
            bool ok = fgets(comm, sizeof comm, c) && strncmp(comm, prefix, strlen(prefix)) == 0;
            fclose(c);
            if (!ok) continue;
        }
        snprintf(p2, sizeof p2, "/proc/%d/task/%.20s/schedstat", pid, e->d_name);
        FILE *f = fopen(p2, "r");
        if (!f) continue; /* the thread just ended */
        long long ns = 0;
        if (fscanf(f, "%lld", &ns) == 1) {
            sum += ns;
            (*threads)++;
        }
        fclose(f);
    }
    closedir(d);
    return sum;
}

static long proc_rss_kb(int pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    long kb = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld", &kb) == 1) break;
    fclose(f);
    return kb;
}

/* Udp RcvbufErrors from /proc/net/snmp (system-wide), or -1 */
static long long udp_rcvbuf_errors(void)
{
    FILE *f = fopen("/proc/net/snmp", "r");
    if (!f) return -1;
    char hdr[1024], val[1024];
    long long out = -1;
    while (fgets(hdr, sizeof hdr, f)) {
        if (strncmp(hdr, "Udp:", 4) != 0) continue;
        if (!fgets(val, sizeof val, f)) break;
        char *sh, *sv;
        char *h = strtok_r(hdr, " \n", &sh), *v = strtok_r(val, " \n", &sv);
        while (h && v) {
            if (strcmp(h, "RcvbufErrors") == 0) {
                out = atoll(v);
                break;
            }
            h = strtok_r(NULL, " \n", &sh);
            v = strtok_r(NULL, " \n", &sv);
        }
        break;
    }
    fclose(f);
    return out;
}

/* ---- packets --------------------------------------------------------------------------------- */

static void wr32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* RTP with the audio level and the send time; returns the unprotected length */
static int build_rtp(run *r, uint32_t i, uint8_t *b, int64_t now)
{
    part_rt *rt = &r->rt[i];
    const gen_part *p = &r->g.parts[i];
    b[0] = 0x90; /* V=2, X=1 */
    b[1] = (uint8_t)(RB_PT | (rt->started ? 0 : 0x80));
    b[2] = (uint8_t)(rt->seq >> 8);
    b[3] = (uint8_t)rt->seq;
    wr32(b + 4, rt->ts);
    wr32(b + 8, p->ssrc);
    b[12] = 0xBE;
    b[13] = 0xDE;
    b[14] = 0;
    b[15] = 3; /* 3 words of elements */
    b[16] = RB_EXT_LEVEL << 4 | 0;
    b[17] = 0x80 | 20; /* V=1, -20 dBov */
    b[18] = RB_EXT_SENDTIME << 4 | 7;
    for (int k = 0; k < 8; k++)
        b[19 + k] = (uint8_t)((uint64_t)now >> (56 - 8 * k));
    b[27] = 0;
    unsigned f = rt->seq % N_FRAMES;
    memcpy(b + HDR_LEN, r->frames[f], (size_t)r->frame_len[f]);
    rt->started = true;
    rt->seq++;
    rt->ts += VC_FRAME;
    return HDR_LEN + r->frame_len[f];
}

/* an empty receiver report (RFC 3550 6.4.2, RC = 0) */
static int build_rr(run *r, uint32_t i, uint8_t *b)
{
    b[0] = 0x80;
    b[1] = 201;
    b[2] = 0;
    b[3] = 1;
    wr32(b + 4, r->g.parts[i].ssrc);
    return 8;
}

/* ---- sender thread --------------------------------------------------------------------------- */

typedef struct txbatch {
    struct mmsghdr msg[BATCH];
    struct iovec iov[BATCH];
    uint8_t buf[BATCH][BUF_LEN];
    union {
        char c[CMSG_SPACE(sizeof(struct in_pktinfo))];
        struct cmsghdr align;
    } ctl[BATCH];
    unsigned n;
} txbatch;

static void tx_flush(run *r, txbatch *t)
{
    unsigned off = 0;
    while (off < t->n) {
        int k = sendmmsg(r->fd, t->msg + off, t->n - off, 0);
        if (k <= 0) {
            r->tx_fail += t->n - off; /* EAGAIN or an error: counted, not retried */
            break;
        }
        off += (unsigned)k;
    }
    t->n = 0;
}

static uint8_t *tx_slot(run *r, txbatch *t, uint32_t i)
{
    if (t->n == BATCH) tx_flush(r, t);
    unsigned k = t->n;
    struct mmsghdr *m = &t->msg[k];
    memset(&m->msg_hdr, 0, sizeof m->msg_hdr);
    m->msg_hdr.msg_name = &r->g.parts[i].relay;
    m->msg_hdr.msg_namelen = sizeof r->g.parts[i].relay;
    m->msg_hdr.msg_iov = &t->iov[k];
    m->msg_hdr.msg_iovlen = 1;
    m->msg_hdr.msg_control = t->ctl[k].c;
    m->msg_hdr.msg_controllen = sizeof t->ctl[k].c;
    struct cmsghdr *c = CMSG_FIRSTHDR(&m->msg_hdr);
    c->cmsg_level = IPPROTO_IP;
    c->cmsg_type = IP_PKTINFO;
    c->cmsg_len = CMSG_LEN(sizeof(struct in_pktinfo));
    struct in_pktinfo pi = {.ipi_spec_dst = r->g.parts[i].src.sin_addr};
    memcpy(CMSG_DATA(c), &pi, sizeof pi);
    t->iov[k].iov_base = t->buf[k];
    return t->buf[k];
}

static void *sender_main(void *arg)
{
    run *r = arg;
    /* The send time is stamped before the batch is protected and sent: a sender preempted in
     * between (two shared cores, a relay and a receiver busy on them) would add its own wait to
     * the relay's latency. Real-time priority (root only; best effort, sender_rt= in the result)
     * keeps it from being preempted; its work per tick is bounded (the speakers of 250 µs). */
    struct sched_param sp = {.sched_priority = 1};
    r->sender_rt = pthread_setschedparam(pthread_self(), SCHED_FIFO, &sp) == 0;
    txbatch *t = xcalloc(1, sizeof *t);
    int64_t next = r->t0;
    uint64_t tick = 0;
    while (next < r->stop_send) {
        sleep_until(next);
        int64_t lag = mono_ns() - next;
        if (lag > r->max_lag_ns && next >= r->win_start && next < r->win_end) r->max_lag_ns = lag;
        unsigned k = (unsigned)(tick % FRAME_TICKS);
        uint32_t a = (uint32_t)((uint64_t)k * r->n_speakers / FRAME_TICKS);
        uint32_t b = (uint32_t)((uint64_t)(k + 1) * r->n_speakers / FRAME_TICKS);
        for (uint32_t s = a; s < b; s++) {
            uint32_t i = r->speakers[s];
            uint8_t *buf = tx_slot(r, t, i);
            int64_t now = mono_ns();
            int len = build_rtp(r, i, buf, now);
            if (srtp_protect(r->rt[i].tx, buf, &len) != srtp_err_status_ok) die("srtp_protect");
            t->iov[t->n].iov_len = (size_t)len;
            t->n++;
            r->sent++;
            if (now >= r->win_start && now < r->win_end) {
                r->sent_win++;
                r->expected_win += group_size(&r->g, r->g.parts[i].group) - 1;
            }
        }
        unsigned m = (unsigned)(tick % RTCP_PERIOD);
        a = (uint32_t)((uint64_t)m * r->n_listeners / RTCP_PERIOD);
        b = (uint32_t)((uint64_t)(m + 1) * r->n_listeners / RTCP_PERIOD);
        for (uint32_t s = a; s < b; s++) {
            uint32_t i = r->listeners[s];
            uint8_t *buf = tx_slot(r, t, i);
            int len = build_rr(r, i, buf);
            if (srtp_protect_rtcp(r->rt[i].tx, buf, &len) != srtp_err_status_ok)
                die("srtp_protect_rtcp");
            t->iov[t->n].iov_len = (size_t)len;
            t->n++;
            r->rtcp_sent++;
        }
        tx_flush(r, t);
        tick++;
        next += TICK_NS;
    }
    free(t);
    return NULL;
}

/* ---- receiver thread ------------------------------------------------------------------------- */

typedef struct rxbatch {
    struct mmsghdr msg[BATCH];
    struct iovec iov[BATCH];
    struct sockaddr_in from[BATCH];
    uint8_t buf[BATCH][BUF_LEN];
    union {
        char c[CMSG_SPACE(sizeof(struct in_pktinfo)) + CMSG_SPACE(sizeof(struct timespec)) +
               CMSG_SPACE(sizeof(uint32_t))];
        struct cmsghdr align;
    } ctl[BATCH];
} rxbatch;

static void rx_one(run *r, struct msghdr *h, uint8_t *buf, int len, int64_t rt_to_mono)
{
    uint32_t dst = 0;
    int64_t rx_ns = 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(h); c; c = CMSG_NXTHDR(h, c)) {
        if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO) {
            struct in_pktinfo pi;
            memcpy(&pi, CMSG_DATA(c), sizeof pi);
            dst = ntohl(pi.ipi_addr.s_addr);
        } else if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS) {
            struct timespec ts;
            memcpy(&ts, CMSG_DATA(c), sizeof ts);
            rx_ns = (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec - rt_to_mono;
        } else if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SO_RXQ_OVFL) {
            uint32_t d;
            memcpy(&d, CMSG_DATA(c), sizeof d);
            atomic_store_explicit(&r->sock_drops, d, memory_order_relaxed);
        }
    }
    if (dst < ADDR_BASE || dst - ADDR_BASE >= r->g.n || len < RTP_HDR_MIN) {
        r->rx_stray++;
        return;
    }
    uint32_t i = dst - ADDR_BASE;
    if (rtp_demux(buf, (size_t)len) == RTP_KIND_RTCP) {
        r->rx_rtcp++; /* relays drop RTCP here; counted, not checked */
        return;
    }
    if (srtp_unprotect(r->rt[i].rx, buf, &len) != srtp_err_status_ok) {
        r->rx_auth_fail++;
        return;
    }
    r->rx++;
    const gen_part *gp = &r->g.parts[i];
    if (gp->n_slots) { /* the relay said which SSRCs its slots carry: hold it to that */
        uint32_t ssrc =
            (uint32_t)buf[8] << 24 | (uint32_t)buf[9] << 16 | (uint32_t)buf[10] << 8 | buf[11];
        unsigned s = 0;
        while (s < gp->n_slots && gp->slot_ssrc[s] != ssrc)
            s++;
        if (s == gp->n_slots) r->rx_bad_ssrc++;
    }
    rtp_pkt pkt;
    const uint8_t *e;
    size_t elen;
    if (rtp_parse(buf, (size_t)len, &pkt, NULL) != 0 ||
        rtp_ext_find(&pkt, RB_EXT_SENDTIME, &e, &elen) != 0 || elen != 8) {
        r->rx_no_ts++;
        return;
    }
    uint64_t sent = 0;
    for (int k = 0; k < 8; k++)
        sent = sent << 8 | e[k];
    if ((int64_t)sent < r->win_start || (int64_t)sent >= r->win_end) return;
    r->rx_win++;
    if (!rx_ns) rx_ns = mono_ns();
    vc_latency_add(&r->lat, (int64_t)sent, rx_ns);
}

static void *receiver_main(void *arg)
{
    run *r = arg;
    rxbatch *b = xcalloc(1, sizeof *b);
    while (mono_ns() < r->stop_recv) {
        struct pollfd pfd = {.fd = r->fd, .events = POLLIN};
        if (poll(&pfd, 1, 20) <= 0) continue;
        for (;;) {
            for (unsigned k = 0; k < BATCH; k++) {
                b->iov[k] = (struct iovec){b->buf[k], BUF_LEN - SRTP_MAX_TRAILER_LEN};
                b->msg[k].msg_hdr = (struct msghdr){
                    .msg_name = &b->from[k],
                    .msg_namelen = sizeof b->from[k],
                    .msg_iov = &b->iov[k],
                    .msg_iovlen = 1,
                    .msg_control = b->ctl[k].c,
                    .msg_controllen = sizeof b->ctl[k].c,
                };
            }
            int n = recvmmsg(r->fd, b->msg, BATCH, MSG_DONTWAIT, NULL);
            if (n <= 0) break;
            struct timespec rt, mo;
            clock_gettime(CLOCK_REALTIME, &rt);
            clock_gettime(CLOCK_MONOTONIC, &mo);
            int64_t off =
                ((int64_t)rt.tv_sec - mo.tv_sec) * 1000000000LL + (rt.tv_nsec - mo.tv_nsec);
            for (int k = 0; k < n; k++)
                rx_one(r, &b->msg[k].msg_hdr, b->buf[k], (int)b->msg[k].msg_len, off);
            if (n < BATCH) break;
        }
    }
    free(b);
    return NULL;
}

/* ---- setup ----------------------------------------------------------------------------------- */

static int open_socket(run *r)
{
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    if (fd < 0) return -errno;
    int one = 1, rcv = 64 << 20, snd = 8 << 20;
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcv, sizeof rcv) != 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof rcv);
    if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &snd, sizeof snd) != 0)
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &snd, sizeof snd);
    if (setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &one, sizeof one) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof one) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_RXQ_OVFL, &one, sizeof one) != 0) {
        close(fd);
        return -errno;
    }
    /* INADDR_ANY: the only way to receive on every 127.1.x.y; strays are counted, not used */
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_ANY)};
    socklen_t al = sizeof a;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &al) != 0) {
        int e = -errno;
        close(fd);
        return e;
    }
    r->fd = fd;
    r->g.port = ntohs(a.sin_port);
    return 0;
}

static int parse_addr(const char *s, struct sockaddr_in *out)
{
    char host[64];
    const char *colon = strrchr(s, ':');
    if (!colon || (size_t)(colon - s) >= sizeof host) return -EINVAL;
    memcpy(host, s, (size_t)(colon - s));
    host[colon - s] = 0;
    long port = strtol(colon + 1, NULL, 10);
    memset(out, 0, sizeof *out);
    out->sin_family = AF_INET;
    out->sin_port = htons((uint16_t)port);
    if (port <= 0 || port > 65535 || inet_pton(AF_INET, host, &out->sin_addr) != 1) return -EINVAL;
    return 0;
}

static int setup_static(run *r, const opts *o)
{
    struct sockaddr_in relay;
    if (!o->relay || parse_addr(o->relay, &relay) != 0) die("--relay 127.0.0.1:PORT is needed");
    for (uint32_t i = 0; i < r->g.n; i++) {
        gen_part *p = &r->g.parts[i];
        p->relay = relay;
        p->ssrc = RB_SSRC_BASE + i;
        rb_static_key(o->seed, i, RB_DIR_UP, p->send_key);
        rb_static_key(o->seed, i, RB_DIR_DOWN, p->recv_key);
    }
    return 0;
}

static void srtp_sessions(run *r)
{
    for (uint32_t i = 0; i < r->g.n; i++) {
        srtp_policy_t pol;
        memset(&pol, 0, sizeof pol);
        if (r->g.parts[i].profile == RB_PROFILE_AES_CM_32)
            srtp_crypto_policy_set_aes_cm_128_hmac_sha1_32(&pol.rtp);
        else
            srtp_crypto_policy_set_aes_cm_128_hmac_sha1_80(&pol.rtp);
        srtp_crypto_policy_set_aes_cm_128_hmac_sha1_80(&pol.rtcp); /* RFC 4568: SRTCP keeps _80 */
        pol.key = r->g.parts[i].send_key;
        pol.ssrc.type = ssrc_specific;
        pol.ssrc.value = r->g.parts[i].ssrc;
        pol.window_size = 1024;
        if (srtp_create(&r->rt[i].tx, &pol) != srtp_err_status_ok) die("srtp_create (send)");
        pol.key = r->g.parts[i].recv_key;
        pol.ssrc.type = ssrc_any_inbound;
        pol.ssrc.value = 0;
        if (srtp_create(&r->rt[i].rx, &pol) != srtp_err_status_ok) die("srtp_create (recv)");
        r->rt[i].seq = (uint16_t)(rb_splitmix64(&(uint64_t){i * 7919u + 1}) & 0xffff);
        r->rt[i].ts = (uint32_t)i * 1000u;
    }
}

static void encode_frames(run *r)
{
    vc_encoder *enc;
    vc_tone tone;
    int16_t pcm[VC_FRAME];
    if (vc_encoder_create(&enc, 5) != 0 || vc_tone_init(&tone, 440.0, 0.3) != 0)
        die("opus encoder");
    for (int f = 0; f < N_FRAMES; f++) {
        vc_tone_fill(&tone, pcm, VC_FRAME);
        r->frame_len[f] = vc_encode(enc, pcm, r->frames[f], VC_MAX_PACKET);
        if (r->frame_len[f] <= 0 || r->frame_len[f] > 1500 - HDR_LEN) die("opus encode");
    }
    vc_encoder_destroy(enc);
}

static char *read_secret(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) die("cannot open --secret-file");
    char buf[512];
    if (!fgets(buf, sizeof buf, f)) die("empty --secret-file");
    fclose(f);
    buf[strcspn(buf, "\r\n")] = 0;
    return xstrdup(buf);
}

static void usage(void)
{
    fprintf(stderr,
            "usage: relay_gen --mode static|rtpengine|voxd --participants N --room-size R\n"
            "       --speakers K --seconds D [--warmup W] [--relay-pid PID] [--relay ADDR:PORT]\n"
            "       [--relay-threads PREFIX] [--ng ADDR:PORT]\n"
            "       [--rpc ADDR:PORT --secret-file F [--guild ID | --guild-per-room]] [--seed S]\n"
            "       [--rss-base-kb K] [--label TEXT] [--active-rooms M] [--verbose]\n");
    exit(2);
}

static void parse_opts(int argc, char **argv, opts *o)
{
    static const struct option lo[] = {
        {"mode", 1, 0, 'm'},
        {"participants", 1, 0, 'n'},
        {"room-size", 1, 0, 'r'},
        {"speakers", 1, 0, 'k'},
        {"seconds", 1, 0, 'd'},
        {"warmup", 1, 0, 'w'},
        {"relay-pid", 1, 0, 'p'},
        {"relay", 1, 0, 'R'},
        {"ng", 1, 0, 'N'},
        {"rpc", 1, 0, 'P'},
        {"secret-file", 1, 0, 'S'},
        {"guild", 1, 0, 'G'},
        {"guild-per-room", 0, 0, 'g'},
        {"relay-threads", 1, 0, 'T'},
        {"rss-base-kb", 1, 0, 'b'},
        {"label", 1, 0, 'l'},
        {"seed", 1, 0, 's'},
        {"verbose", 0, 0, 'v'},
        {"active-rooms", 1, 0, 'A'},
        {0, 0, 0, 0},
    };
    *o = (opts){.mode = "static",
                .n = 1000,
                .room_size = 2,
                .speakers = 2,
                .seconds = 5,
                .warmup = 1.5,
                .rss_base_kb = -1,
                .seed = 0x5eed,
                .guild = "1",
                .label = "-"};
    int c;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case 'm':
            o->mode = optarg;
            break;
        case 'n':
            o->n = (uint32_t)strtoul(optarg, NULL, 10);
            break;
        case 'r':
            o->room_size = (uint32_t)strtoul(optarg, NULL, 10);
            break;
        case 'k':
            o->speakers = (uint32_t)strtoul(optarg, NULL, 10);
            break;
        case 'd':
            o->seconds = atof(optarg);
            break;
        case 'w':
            o->warmup = atof(optarg);
            break;
        case 'p':
            o->relay_pid = atoi(optarg);
            break;
        case 'R':
            o->relay = optarg;
            break;
        case 'N':
            o->ng = optarg;
            break;
        case 'P':
            o->rpc = optarg;
            break;
        case 'S':
            o->secret_file = optarg;
            break;
        case 'G':
            o->guild = optarg;
            break;
        case 'g':
            o->guild_per_room = true;
            break;
        case 'T':
            o->relay_threads = optarg;
            break;
        case 'b':
            o->rss_base_kb = atol(optarg);
            break;
        case 'l':
            o->label = optarg;
            break;
        case 's':
            o->seed = strtoull(optarg, NULL, 0);
            break;
        case 'v':
            o->verbose = true;
            break;
        case 'A':
            o->active_rooms = (uint32_t)strtoul(optarg, NULL, 10);
            if (o->active_rooms < 1) usage();
            break;
        default:
            usage();
        }
    }
    if (o->n < 2 || o->n > RB_MAX_PARTS || o->room_size < 2 || o->speakers < 1 ||
        o->speakers > o->room_size || o->seconds <= 0 || o->seconds > 600 || o->warmup < 0 ||
        o->warmup > 60)
        usage();
}

int main(int argc, char **argv)
{
    opts o;
    parse_opts(argc, argv, &o);
    if (rtp_srtp_init() != 0) die("srtp_init");

    run *r = xcalloc(1, sizeof *r);
    r->g = (gen_ctx){
        .n = o.n, .room_size = o.room_size, .speakers_per_room = o.speakers, .verbose = o.verbose};
    r->g.parts = xcalloc(o.n, sizeof *r->g.parts);
    r->rt = xcalloc(o.n, sizeof *r->rt);
    r->speakers = xcalloc(o.n, sizeof *r->speakers);
    r->listeners = xcalloc(o.n, sizeof *r->listeners);
    vc_latency_init(&r->lat);

    long rss_base = o.rss_base_kb >= 0 ? o.rss_base_kb
                    : o.relay_pid      ? proc_rss_kb(o.relay_pid)
                                       : -1;
    if (open_socket(r) != 0) die("socket");
    for (uint32_t i = 0; i < o.n; i++) {
        gen_part *p = &r->g.parts[i];
        p->idx = i;
        p->group = rb_room_of(i, o.room_size);
        p->speaker = i % o.room_size < o.speakers &&
                     (!o.active_rooms || p->group < o.active_rooms);
        p->src = (struct sockaddr_in){.sin_family = AF_INET,
                                      .sin_port = htons(r->g.port),
                                      .sin_addr.s_addr = htonl(ADDR_BASE + i)};
        if (p->speaker)
            r->speakers[r->n_speakers++] = i;
        else
            r->listeners[r->n_listeners++] = i;
    }

    int64_t t_setup = mono_ns();
    gen_voxd *vx = NULL;
    int rc;
    if (strcmp(o.mode, "static") == 0) {
        rc = setup_static(r, &o);
    } else if (strcmp(o.mode, "rtpengine") == 0) {
        struct sockaddr_in ng;
        if (!o.ng || parse_addr(o.ng, &ng) != 0) die("--ng 127.0.0.1:PORT is needed");
        if (o.room_size != 2 || o.speakers != 2)
            die("rtpengine: 1:1 calls only (--room-size 2 --speakers 2)");
        rc = gen_ng_setup(&r->g, &ng);
    } else if (strcmp(o.mode, "voxd") == 0) {
        struct sockaddr_in rpc;
        if (!o.rpc || parse_addr(o.rpc, &rpc) != 0 || !o.secret_file)
            die("--rpc 127.0.0.1:PORT and --secret-file are needed");
        char host[INET_ADDRSTRLEN];
        inet_ntop(AF_INET, &rpc.sin_addr, host, sizeof host);
        char *secret = read_secret(o.secret_file);
        gen_voxd_opts vo = {.rpc_host = host,
                            .rpc_port = ntohs(rpc.sin_port),
                            .secret = secret,
                            .guild = o.guild,
                            .guild_per_room = o.guild_per_room};
        rc = gen_voxd_setup(&r->g, &vo, &vx);
        free(secret);
    } else {
        usage();
        rc = -EINVAL;
    }
    if (rc != 0) {
        fprintf(stderr, "relay_gen: %s setup failed: %s\n", o.mode, strerror(-rc));
        return 2;
    }
    double setup_s = (double)(mono_ns() - t_setup) / 1e9;
    srtp_sessions(r);
    encode_frames(r);

    r->t0 = mono_ns() + 20 * MS_NS;
    r->win_start = r->t0 + (int64_t)(o.warmup * 1e9);
    r->win_end = r->win_start + (int64_t)(o.seconds * 1e9);
    r->stop_send = r->win_end + 300 * MS_NS;
    r->stop_recv = r->stop_send + 300 * MS_NS;
    pthread_t ts, tr;
    if (pthread_create(&tr, NULL, receiver_main, r) != 0 ||
        pthread_create(&ts, NULL, sender_main, r) != 0)
        die("pthread_create");

    sleep_until(r->win_start);
    int threads0 = 0, threads1 = 0;
    int64_t cpu0 = o.relay_pid ? proc_cpu_ns(o.relay_pid, o.relay_threads, &threads0) : -1;
    long long kd0 = udp_rcvbuf_errors();
    struct rusage ru0, ru1;
    getrusage(RUSAGE_SELF, &ru0);
    unsigned sd0 = atomic_load(&r->sock_drops);
    sleep_until(r->win_end);
    int64_t cpu1 = o.relay_pid ? proc_cpu_ns(o.relay_pid, o.relay_threads, &threads1) : -1;
    long long kd1 = udp_rcvbuf_errors();
    getrusage(RUSAGE_SELF, &ru1);
    unsigned sd1 = atomic_load(&r->sock_drops);
    long rss_loaded = o.relay_pid ? proc_rss_kb(o.relay_pid) : -1;
    pthread_join(ts, NULL);
    pthread_join(tr, NULL);
    uint32_t lost = gen_voxd_lost(vx);
    gen_voxd_teardown(vx);
    if (threads0 != threads1 || (o.relay_pid && threads1 == 0)) cpu0 = cpu1 = -1;

    double win = o.seconds;
    double relay_cpu = cpu0 >= 0 && cpu1 >= 0 ? (double)(cpu1 - cpu0) / 1e9 : -1;
    if (o.relay_pid && relay_cpu < 0)
        fprintf(stderr, "relay_gen: the relay's threads (%s) changed or vanished in the window\n",
                o.relay_threads ? o.relay_threads : "all");
    double gen_cpu = (double)(ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec) +
                     (double)(ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec) / 1e6 +
                     (double)(ru1.ru_stime.tv_sec - ru0.ru_stime.tv_sec) +
                     (double)(ru1.ru_stime.tv_usec - ru0.ru_stime.tv_usec) / 1e6;
    double loss = r->expected_win ? 100.0 * (1.0 - (double)r->rx_win / (double)r->expected_win) : 0;
    long long kd = kd0 >= 0 && kd1 >= 0 ? kd1 - kd0 : -1;
    unsigned gen_drops = sd1 - sd0;
    double mem = rss_base >= 0 && rss_loaded >= 0 ? (double)(rss_loaded - rss_base) / o.n : -1;
    int64_t p50 = vc_latency_quantile(&r->lat, 0.5), p99 = vc_latency_quantile(&r->lat, 0.99);

    printf("RESULT label=%s mode=%s participants=%u room_size=%u speakers=%u window_s=%.2f "
           "setup_s=%.2f sent=%" PRIu64 " sent_win=%" PRIu64 " expected=%" PRIu64
           " delivered=%" PRIu64 " loss_pct=%.4f relay_cpu_s=%.4f relay_cpu_pct=%.1f "
           "out_pps=%.0f out_pps_per_cpu=%.0f p50_us=%.1f p99_us=%.1f kdrops=%lld "
           "gen_sock_drops=%u rss_base_kb=%ld rss_kb=%ld mem_per_part_kib=%.2f "
           "gen_cpu_pct=%.1f sender_lag_max_ms=%.2f tx_fail=%" PRIu64 " rx_auth_fail=%" PRIu64
           " rx_no_ts=%" PRIu64 " rx_stray=%" PRIu64 " rx_rtcp=%" PRIu64 " rtcp_sent=%" PRIu64
           " rx_bad_ssrc=%" PRIu64 " relay_threads=%d sessions_lost=%u sender_rt=%d\n",
           o.label, o.mode, o.n, o.room_size, o.speakers, win, setup_s, r->sent, r->sent_win,
           r->expected_win, r->rx_win, loss, relay_cpu, relay_cpu >= 0 ? 100 * relay_cpu / win : -1,
           (double)r->rx_win / win, relay_cpu > 0 ? (double)r->rx_win / relay_cpu : -1,
           p50 > 0 ? (double)p50 / 1e3 : -1, p99 > 0 ? (double)p99 / 1e3 : -1, kd, gen_drops,
           rss_base, rss_loaded, mem, 100 * gen_cpu / win, (double)r->max_lag_ns / 1e6, r->tx_fail,
           r->rx_auth_fail, r->rx_no_ts, r->rx_stray, r->rx_rtcp, r->rtcp_sent, r->rx_bad_ssrc,
           threads1, lost, r->sender_rt ? 1 : 0);

    int code = 0;
    if (r->rx_auth_fail > 0) {
        fprintf(stderr,
                "relay_gen: %" PRIu64 " packets did not unprotect with the keys the relay "
                "gave: figures are meaningless\n",
                r->rx_auth_fail);
        code = 3;
    }
    if (lost > 0) {
        fprintf(stderr,
                "relay_gen: %u voxd sessions ended during the run: figures are meaningless\n",
                lost);
        code = 3;
    }
    if (r->rx_bad_ssrc > 0) {
        fprintf(stderr, "relay_gen: %" PRIu64 " packets arrived on an SSRC that is not a slot\n",
                r->rx_bad_ssrc);
        code = 3;
    }
    if (r->expected_win > 0 && r->rx_win == 0) {
        fprintf(stderr, "relay_gen: nothing delivered in the window\n");
        code = 3;
    }
    for (uint32_t i = 0; i < o.n; i++) {
        srtp_dealloc(r->rt[i].tx);
        srtp_dealloc(r->rt[i].rx);
    }
    close(r->fd);
    free(r->listeners);
    free(r->speakers);
    free(r->rt);
    free(r->g.parts);
    free(r);
    srtp_shutdown();
    return code;
}
