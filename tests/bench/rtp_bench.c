/*
 * rtp_bench — ns per packet of the media packet path's pure stages on a Chrome-shaped Opus packet:
 * demux + parse + audio level, and that plus the in-place slot rewrite. Figures printed, never
 * pass/fail.   build/tests/bench/rtp_bench [packets]
 */
#include "lib/util.h"
#include "rtp/rtp.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const uint8_t OPUS[] = {
    0x90, 0xef, 0x12, 0x34, 0x00, 0xbb, 0x80, 0x00, 0x11, 0x22, 0x33, 0x44, 0xbe, 0xde, 0x00,
    0x03, 0x10, 0xa5, 0x22, 0x12, 0x34, 0x56, 0x31, 0x00, 0x2a, 0x40, 0x30, 0x00, 0x78, 0x0b,
    0xe4, 0xc1, 0x36, 0xec, 0xc5, 0x80, 0x3a, 0x5e, 0x91, 0x07, 0x11, 0x22, 0x33, 0x44,
};

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 20000000;
    uint8_t buf[sizeof OPUS];
    memcpy(buf, OPUS, sizeof buf);
    rtp_slot s;
    rtp_slot_init(&s, 0x51075107u, 1, 2, 960);
    unsigned sink = 0;
    for (int pass = 0; pass < 2; pass++) {
        int64_t t0 = time_mono_ns();
        for (long i = 0; i < n; i++) {
            memcpy(buf, OPUS, 12); /* the source's header again: seq +1, ts +960 */
            buf[2] = (uint8_t)(i >> 8);
            buf[3] = (uint8_t)i;
            uint32_t ts = (uint32_t)i * 960u;
            buf[4] = (uint8_t)(ts >> 24);
            buf[5] = (uint8_t)(ts >> 16);
            buf[6] = (uint8_t)(ts >> 8);
            buf[7] = (uint8_t)ts;
            rtp_pkt k;
            bool v;
            uint8_t level = 0;
            if (rtp_demux(buf, sizeof buf) != RTP_KIND_RTP) abort();
            if (rtp_parse(buf, sizeof buf, &k, NULL) != 0) abort();
            rtp_audio_level(&k, 1, &v, &level);
            sink += level;
            if (pass == 1)
                if (rtp_slot_map(&s, &k, ts, buf, NULL) != 0) abort();
        }
        double ns = (double)(time_mono_ns() - t0) / (double)n;
        printf("rtp_bench: %-38s %6.1f ns/packet (%ld packets)\n",
               pass ? "demux+parse+level+slot rewrite" : "demux+parse+level", ns, n);
    }
    return sink == 0xffffffffu;
}
