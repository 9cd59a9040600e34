/*
 * worker_relay — voxd's media worker (rtp/rtp_worker.c) alone, in a process of its own, for the
 * relay benchmark: the packet path the node runs (recvmmsg, SRTP unprotect, room selection, slot
 * rewrite, SRTP protect, sendmmsg on one thread), without the node's signalling. Participants
 * follow the static topology of tests/bench/relay/rb.h, so relay_gen --mode static drives it.
 *
 *   worker_relay --port P --participants N --room-size R [--slots 3] [--seed S]
 *
 * Creates one worker on 127.0.0.1:P (0: ephemeral), reads its own RSS, adds ceil(N / R) rooms
 * and N participants (AES_CM_128_HMAC_SHA1_80, rb_static_key keys, slot SSRCs
 * RB_SLOT_SSRC_BASE + 8 i + s), waits until every command is applied, reads its RSS again and
 * prints one line — "READY port=P rss_empty_kb=A rss_kb=B participants=N" — then forwards until
 * SIGTERM or SIGINT, prints the worker's counters to stderr and exits. A bench tool: it sleeps
 * while waiting for the command queue, which the node never does.
 */
#include "rtp/rtp.h"
#include "tests/bench/relay/rb.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

static void nap(void)
{
    struct timespec ts = {0, 1000000};
    nanosleep(&ts, NULL);
}

/* drains events; returns the number of EV_DONE seen, or -1 after a failed command */
static long drain(rtp_worker *w)
{
    rtp_worker_event ev[256];
    long done = 0;
    size_t n;
    while ((n = rtp_worker_events(w, ev, 256)) > 0)
        for (size_t i = 0; i < n; i++) {
            if (ev[i].kind != RTP_WORKER_EV_DONE) continue;
            if (ev[i].err != 0) {
                fprintf(stderr, "worker_relay: command %d for %u failed: %s\n", (int)ev[i].cmd,
                        ev[i].id, strerror(-ev[i].err));
                return -1;
            }
            done++;
        }
    return done;
}

int main(int argc, char **argv)
{
    static const struct option lo[] = {
        {"port", 1, 0, 'p'},  {"participants", 1, 0, 'n'}, {"room-size", 1, 0, 'r'},
        {"slots", 1, 0, 's'}, {"seed", 1, 0, 'S'},         {0, 0, 0, 0},
    };
    unsigned long port = 0, n = 1000, room = 2, slots = 3;
    uint64_t seed = 0x5eed;
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
        case 's':
            slots = strtoul(optarg, NULL, 10);
            break;
        case 'S':
            seed = strtoull(optarg, NULL, 0);
            break;
        default:
            fprintf(stderr, "usage: worker_relay --port P --participants N --room-size R "
                            "[--slots 3] [--seed S]\n");
            return 2;
        }
    }
    if (port > 65535 || n < 2 || n > 65535 || room < 2 || room > n || slots < 1 ||
        slots > RTP_ROOM_MAX_SLOTS) {
        fprintf(stderr, "worker_relay: bad arguments\n");
        return 2;
    }
    uint32_t rooms = (uint32_t)((n + room - 1) / room);

    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL); /* before the worker's thread inherits the mask */

    rtp_worker_config cfg = {.address = "127.0.0.1",
                             .port = (uint16_t)port,
                             .max_rooms = rooms,
                             .max_participants = (uint32_t)n,
                             .queue_len = 4096};
    rtp_worker *w;
    int rc = rtp_worker_new(&cfg, &w);
    if (rc == 0) rc = rtp_worker_start(w);
    if (rc != 0) {
        fprintf(stderr, "worker_relay: cannot start the worker: %s\n", strerror(-rc));
        return 1;
    }
    long rss_empty = rss_kb();

    long pending = 0;
    for (uint32_t r = 0; r < rooms; r++) {
        rtp_room_config rc_cfg = {.max_participants = (uint32_t)room, .n_slots = (uint8_t)slots};
        while ((rc = rtp_worker_create_room(w, r, &rc_cfg)) == -EAGAIN) {
            long d = drain(w);
            if (d < 0) return 1;
            pending -= d;
            nap();
        }
        if (rc != 0) return 1;
        pending++;
    }
    for (uint32_t i = 0; i < n; i++) {
        rtp_worker_participant p = {.room = rb_room_of(i, (uint32_t)room),
                                    .handle = i + 1,
                                    .ssrc = RB_SSRC_BASE + i,
                                    .in.profile = RTP_SRTP_AES_CM_128_HMAC_SHA1_80,
                                    .out.profile = RTP_SRTP_AES_CM_128_HMAC_SHA1_80,
                                    .n_slots = (uint8_t)slots};
        rb_static_key(seed, i, RB_DIR_UP, p.in.key);
        rb_static_key(seed, i, RB_DIR_DOWN, p.out.key);
        for (unsigned s = 0; s < slots; s++)
            p.slots[s] = (rtp_room_slot_cfg){.ssrc = RB_SLOT_SSRC_BASE + 8 * i + s,
                                             .seq = (uint16_t)(i * 31 + s),
                                             .ts = i * 4801u + s};
        while ((rc = rtp_worker_add_participant(w, &p)) == -EAGAIN) {
            long d = drain(w);
            if (d < 0) return 1;
            pending -= d;
            nap();
        }
        if (rc != 0) return 1;
        pending++;
    }
    while (pending > 0) {
        long d = drain(w);
        if (d < 0) return 1;
        pending -= d;
        if (pending > 0) nap();
    }
    printf("READY port=%u rss_empty_kb=%ld rss_kb=%ld participants=%lu rooms=%u\n",
           rtp_worker_port(w), rss_empty, rss_kb(), n, rooms);
    fflush(stdout);

    int sig;
    sigwait(&set, &sig);
    rtp_worker_stats st;
    rtp_worker_stats_read(w, &st);
    fprintf(stderr,
            "worker_relay: rx %" PRIu64 " (%" PRIu64 " batches) tx %" PRIu64 " (%" PRIu64
            " batches) rtp_ok %" PRIu64 " rtcp_ok %" PRIu64 " drop: auth %" PRIu64
            " unknown_ssrc %" PRIu64 " unlatched %" PRIu64 " not_selected %" PRIu64 " send %" PRIu64
            "\n",
            st.rx_datagrams, st.rx_batches, st.tx_datagrams, st.tx_batches, st.rtp_ok, st.rtcp_ok,
            st.drop_auth, st.drop_unknown_ssrc, st.drop_dest_unlatched,
            st.drop_room[RTP_ROOM_DROP_NOT_SELECTED], st.drop_send);
    return rtp_worker_stop_and_free(w) == 0 ? 0 : 1;
}
