/*
 * ceiling_relay — the simplest batched SRTP relay, the ceiling the relay targets are measured
 * against (docs/shared performance targets: "≥ 80 % of the fan-out-1 / fan-out-9 ceiling measured
 * in the same run"). One thread, one UDP socket on 127.0.0.1: recvmmsg a batch, for each RTP
 * packet srtp_unprotect with the sender's key, then for every other latched member of its room a
 * copy srtp_protect-ed with that member's key, all sent with sendmmsg. No speaker selection, no
 * slot rewrite (the sender's SSRC is kept), no parsing beyond the SSRC; SRTCP is unprotected
 * (it latches listeners) and dropped. Static topology of tests/bench/relay/rb.h: room size 2 is
 * fan-out 1 (a 1:1 call), room size 10 with one speaker fan-out 9.
 *
 *   ceiling_relay --port P --participants N --room-size R [--seed S] [--hmac voxd|libsrtp]
 *
 * --hmac voxd (the default) runs libsrtp with voxd's HMAC-SHA1 (rtp_srtp_init, rtp/rtp_hmac.c,
 * D35), the SRTP voxd's worker runs, so voxd ÷ ceiling measures what the relay does around the
 * crypto; --hmac libsrtp keeps libsrtp's own OpenSSL glue (the "ceiling-libsrtp" row).
 *
 * Prints "READY port=P rss_empty_kb=A rss_kb=B participants=N" once its sessions exist, runs
 * until SIGTERM/SIGINT, prints its counters to stderr. Allocates nothing per packet (libsrtp's
 * HMAC on OpenSSL 3 does, as in the worker; docs/media.md).
 */
#include "rtp/rtp.h"
#include "tests/bench/relay/rb.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <srtp2/srtp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define IN_BATCH  32
#define OUT_BATCH 256
#define BUF_LEN   (1500 + SRTP_MAX_TRAILER_LEN)

typedef struct member {
    srtp_t in, out;
    struct sockaddr_in addr;
    bool latched;
} member;

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

static long rss_kb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    if (!f) return -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld", &kb) == 1) break;
    fclose(f);
    return kb;
}

static int session(srtp_t *s, uint64_t seed, uint32_t i, int dir)
{
    uint8_t key[RB_KEY_LEN];
    srtp_policy_t pol;
    memset(&pol, 0, sizeof pol);
    srtp_crypto_policy_set_aes_cm_128_hmac_sha1_80(&pol.rtp);
    srtp_crypto_policy_set_aes_cm_128_hmac_sha1_80(&pol.rtcp);
    rb_static_key(seed, i, dir, key);
    pol.key = key;
    pol.window_size = 128;
    if (dir == RB_DIR_UP) {
        pol.ssrc.type = ssrc_specific;
        pol.ssrc.value = RB_SSRC_BASE + i;
    } else {
        pol.ssrc.type = ssrc_any_outbound;
    }
    return srtp_create(s, &pol) == srtp_err_status_ok ? 0 : -EACCES;
}

typedef struct out_q {
    struct mmsghdr msg[OUT_BATCH];
    struct iovec iov[OUT_BATCH];
    uint8_t buf[OUT_BATCH][BUF_LEN];
    unsigned n;
} out_q;

int main(int argc, char **argv)
{
    static const struct option lo[] = {
        {"port", 1, 0, 'p'},
        {"participants", 1, 0, 'n'},
        {"room-size", 1, 0, 'r'},
        {"seed", 1, 0, 'S'},
        {"hmac", 1, 0, 'H'},
        {0, 0, 0, 0},
    };
    unsigned long port = 0, n = 1000, room = 2;
    uint64_t seed = 0x5eed;
    bool stock_hmac = false;
    int c;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case 'p':
            port = strtoul(optarg, NULL, 10);
            break;
        case 'n':
            n = strtoul(optarg, NULL, 10);
            break;
        case 'r':
            room = strtoul(optarg, NULL, 10);
            break;
        case 'S':
            seed = strtoull(optarg, NULL, 0);
            break;
        case 'H':
            if (strcmp(optarg, "voxd") && strcmp(optarg, "libsrtp")) {
                fprintf(stderr, "ceiling_relay: --hmac voxd|libsrtp\n");
                return 2;
            }
            stock_hmac = !strcmp(optarg, "libsrtp");
            break;
        default:
            fprintf(stderr, "usage: ceiling_relay --port P --participants N --room-size R "
                            "[--seed S] [--hmac voxd|libsrtp]\n");
            return 2;
        }
    }
    if (port > 65535 || n < 2 || n > RB_MAX_PARTS || room < 2 || room > n) {
        fprintf(stderr, "ceiling_relay: bad arguments\n");
        return 2;
    }
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    if (stock_hmac ? srtp_init() != srtp_err_status_ok : rtp_srtp_init() != 0) return 1;

    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    int big = 16 << 20;
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    if (fd < 0) return 1;
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof big) != 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
    if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &big, sizeof big) != 0)
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
    /* as rtp_worker's socket: DF without local fragmentation, so no per-datagram IPv4 ID */
    int pmtu = IP_PMTUDISC_PROBE;
    setsockopt(fd, IPPROTO_IP, IP_MTU_DISCOVER, &pmtu, sizeof pmtu);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &al) != 0) {
        perror("ceiling_relay: bind");
        return 1;
    }
    long rss_empty = rss_kb();
    member *m = calloc(n, sizeof *m);
    out_q *q = calloc(1, sizeof *q);
    static uint8_t in_buf[IN_BATCH][BUF_LEN];
    static struct mmsghdr in_msg[IN_BATCH];
    static struct iovec in_iov[IN_BATCH];
    static struct sockaddr_in in_from[IN_BATCH];
    if (!m || !q) return 1;
    for (uint32_t i = 0; i < n; i++)
        if (session(&m[i].in, seed, i, RB_DIR_UP) != 0 ||
            session(&m[i].out, seed, i, RB_DIR_DOWN) != 0)
            return 1;
    printf("READY port=%u rss_empty_kb=%ld rss_kb=%ld participants=%lu\n", ntohs(a.sin_port),
           rss_empty, rss_kb(), n);
    fflush(stdout);

    uint64_t rx = 0, tx = 0, auth = 0, unknown = 0, send_fail = 0, rtcp = 0;
    while (!stop) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, 100) <= 0) continue;
        for (int round = 0; round < 8; round++) {
            for (unsigned k = 0; k < IN_BATCH; k++) {
                in_iov[k] = (struct iovec){in_buf[k], 1500};
                in_msg[k].msg_hdr = (struct msghdr){.msg_name = &in_from[k],
                                                    .msg_namelen = sizeof in_from[k],
                                                    .msg_iov = &in_iov[k],
                                                    .msg_iovlen = 1};
            }
            int got = recvmmsg(fd, in_msg, IN_BATCH, 0, NULL);
            if (got <= 0) break;
            rx += (uint64_t)got;
            for (int k = 0; k < got; k++) {
                uint8_t *p = in_buf[k];
                int len = (int)in_msg[k].msg_len;
                if (len < 12) continue;
                bool is_rtcp = p[1] >= 192 && p[1] <= 223;
                uint32_t ssrc = (uint32_t)p[is_rtcp ? 4 : 8] << 24 |
                                (uint32_t)p[is_rtcp ? 5 : 9] << 16 |
                                (uint32_t)p[is_rtcp ? 6 : 10] << 8 | p[is_rtcp ? 7 : 11];
                uint32_t i = ssrc - RB_SSRC_BASE;
                if (ssrc < RB_SSRC_BASE || i >= n) {
                    unknown++;
                    continue;
                }
                srtp_err_status_t st = is_rtcp ? srtp_unprotect_rtcp(m[i].in, p, &len)
                                               : srtp_unprotect(m[i].in, p, &len);
                if (st != srtp_err_status_ok) {
                    auth++;
                    continue;
                }
                if (!m[i].latched) {
                    m[i].addr = in_from[k];
                    m[i].latched = true;
                }
                if (is_rtcp) {
                    rtcp++;
                    continue;
                }
                uint32_t first = rb_room_of(i, (uint32_t)room) * (uint32_t)room;
                uint32_t last = first + (uint32_t)room < n ? first + (uint32_t)room : (uint32_t)n;
                for (uint32_t j = first; j < last; j++) {
                    if (j == i || !m[j].latched) continue;
                    if (q->n == OUT_BATCH) {
                        int s = sendmmsg(fd, q->msg, q->n, 0);
                        send_fail += s < 0 ? q->n : q->n - (unsigned)s;
                        tx += s > 0 ? (uint64_t)s : 0;
                        q->n = 0;
                    }
                    unsigned o = q->n;
                    memcpy(q->buf[o], p, (size_t)len);
                    int olen = len;
                    if (srtp_protect(m[j].out, q->buf[o], &olen) != srtp_err_status_ok) continue;
                    q->iov[o] = (struct iovec){q->buf[o], (size_t)olen};
                    q->msg[o].msg_hdr = (struct msghdr){.msg_name = &m[j].addr,
                                                        .msg_namelen = sizeof m[j].addr,
                                                        .msg_iov = &q->iov[o],
                                                        .msg_iovlen = 1};
                    q->n++;
                }
            }
            if (q->n) {
                int s = sendmmsg(fd, q->msg, q->n, 0);
                send_fail += s < 0 ? q->n : q->n - (unsigned)s;
                tx += s > 0 ? (uint64_t)s : 0;
                q->n = 0;
            }
            if (got < IN_BATCH) break;
        }
    }
    fprintf(stderr,
            "ceiling_relay: rx %" PRIu64 " tx %" PRIu64 " rtcp %" PRIu64 " auth %" PRIu64
            " unknown %" PRIu64 " send_fail %" PRIu64 "\n",
            rx, tx, rtcp, auth, unknown, send_fail);
    for (uint32_t i = 0; i < n; i++) {
        srtp_dealloc(m[i].in);
        srtp_dealloc(m[i].out);
    }
    free(q);
    free(m);
    close(fd);
    srtp_shutdown();
    return 0;
}
