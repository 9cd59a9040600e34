/*
 * room_bench — ns per forwarding decision of rtp_room_packet() in rooms of M participants where 3
 * talk (each packet goes to M - 1 listeners) and the others send silence (dropped, not selected).
 * Figures printed, never pass/fail.   build/tests/bench/room_bench [rounds]
 */
#include "lib/util.h"
#include "rtp/rtp.h"

#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
    long rounds = argc > 1 ? atol(argv[1]) : 2000;
    static const uint32_t sizes[] = {5, 50, 500, 1000};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        uint32_t m = sizes[k];
        rtp_room_config cfg = {.max_participants = m};
        rtp_room *r;
        if (rtp_room_create(&cfg, &r) != 0) abort();
        rtp_room_dest *dests = calloc(m, sizeof *dests);
        rtp_room_change *changes = calloc(4096, sizeof *changes);
        if (!dests || !changes) abort();
        for (uint32_t id = 0; id < m; id++) {
            rtp_room_slot_cfg sc[3] = {{id * 4, 1, 1}, {id * 4 + 1, 1, 1}, {id * 4 + 2, 1, 1}};
            if (rtp_room_join(r, id + 100, 0, sc) != 0) abort();
        }
        int64_t t_talk = 0, t_quiet = 0;
        long n_talk = 0, n_quiet = 0, n_dest = 0;
        uint32_t now = 0;
        for (long i = 0; i < rounds; i++, now += 20) {
            int64_t t0 = time_mono_ns();
            for (uint32_t sp = 0; sp < 3; sp++) {
                int n = rtp_room_packet(r, sp + 100, true, (uint8_t)(30 + sp), now, dests, m, NULL);
                if (n < 0) abort();
                n_dest += n;
            }
            int64_t t1 = time_mono_ns();
            uint32_t quiet = m > 3 ? m - 3 : 0;
            if (quiet > 50) quiet = 50; /* a sample per round */
            for (uint32_t q = 0; q < quiet; q++)
                if (rtp_room_packet(r, 103 + (uint32_t)((i * 50 + q) % (m - 3)), false, 127, now,
                                    dests, m, NULL) != 0)
                    abort();
            int64_t t2 = time_mono_ns();
            t_talk += t1 - t0;
            t_quiet += t2 - t1;
            n_talk += 3;
            n_quiet += quiet;
            while (rtp_room_drain(r, changes, 4096, NULL) > 0) {
            }
        }
        printf("room_bench: M=%-5u talking packet %9.1f ns (%6.2f ns per destination, %ld dests)"
               "   silent packet %6.1f ns\n",
               m, (double)t_talk / (double)n_talk, (double)t_talk / (double)(n_dest ? n_dest : 1),
               n_dest / n_talk, n_quiet ? (double)t_quiet / (double)n_quiet : 0.0);
        free(changes);
        free(dests);
        rtp_room_destroy(r);
    }
    return 0;
}
