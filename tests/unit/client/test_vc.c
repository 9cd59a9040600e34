/*
 * tests/unit/client/test_vc.c — the audio core of voxclient: a known tone through real libopus
 * (encode, drop frames, decode with concealment) must come out as the same tone, and the receive
 * statistics must count what a user would read off a report (loss, reordering, latency).
 * Figures measured are printed as "# ..." lines.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>

#include "client/vc.h"
#include "tests/unit/test.h"

#define SECONDS 2
#define NFRAMES (SECONDS * 1000 / 20)
#define NSAMP   (NFRAMES * VC_FRAME)

static int16_t out_pcm[NSAMP];
static int complexity = 5; /* of the encoder through_opus() makes */

/* deterministic PRNG (xorshift32) so a loss pattern is the same on every run */
static uint32_t rng = 2463534242u;
static uint32_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 17;
    rng ^= rng << 5;
    return rng;
}

/* Encodes SECONDS of the sum of nf tones (freqs[i] at amps[i] of full scale), drops loss_pct % of
 * the frames at random, decodes the rest (PLC for the dropped) into out_pcm. Returns frames lost,
 * or -1 on any codec error. */
static int through_opus(const double *freqs, const double *amps, int nf, int loss_pct)
{
    vc_tone tones[4];
    vc_encoder *enc = NULL;
    vc_decoder *dec = NULL;
    int lost = 0, rc = -1;
    rng = 2463534242u; /* the same loss pattern whichever test ran before */
    for (int i = 0; i < nf; i++)
        if (vc_tone_init(&tones[i], freqs[i], amps[i]) != 0) return -1;
    if (vc_encoder_create(&enc, complexity) != 0) goto out;
    if (vc_decoder_create(&dec) != 0) goto out;
    for (int f = 0; f < NFRAMES; f++) {
        int16_t in[VC_FRAME] = {0};
        uint8_t pkt[VC_MAX_PACKET];
        for (int i = 0; i < nf; i++)
            vc_tone_add(&tones[i], in, VC_FRAME);
        int n = vc_encode(enc, in, pkt, sizeof pkt);
        if (n <= 0) goto out;
        int drop = loss_pct && f > 0 && (int)(rnd() % 100) < loss_pct;
        lost += drop;
        int got = vc_decode(dec, drop ? NULL : pkt, drop ? 0 : (size_t)n, out_pcm + f * VC_FRAME,
                            VC_FRAME);
        if (got != VC_FRAME) goto out;
    }
    rc = lost;
out:
    vc_encoder_destroy(enc);
    vc_decoder_destroy(dec);
    return rc;
}

TEST(tone_phase_is_continuous_across_frames)
{
    vc_tone a, b;
    int16_t one[2 * VC_FRAME], two[2 * VC_FRAME];
    CHECK_EQ_INT(vc_tone_init(&a, 440.0, 0.5), 0);
    CHECK_EQ_INT(vc_tone_init(&b, 440.0, 0.5), 0);
    vc_tone_fill(&a, one, 2 * VC_FRAME);
    vc_tone_fill(&b, two, VC_FRAME);
    vc_tone_fill(&b, two + VC_FRAME, VC_FRAME);
    CHECK(memcmp(one, two, sizeof one) == 0);
    int16_t peak = 0;
    for (int i = 0; i < 2 * VC_FRAME; i++)
        if (one[i] > peak) peak = one[i];
    CHECK(peak >= 16380 && peak <= 16384); /* 0.5 of full scale */
    CHECK_EQ_INT(vc_tone_init(&a, 0.0, 0.5), -EINVAL);
    CHECK_EQ_INT(vc_tone_init(&a, 24000.0, 0.5), -EINVAL);
    CHECK_EQ_INT(vc_tone_init(&a, 440.0, 1.5), -EINVAL);
}

static void check_single_tone(double hz)
{
    vc_peak p[2];
    double level;
    CHECK_EQ_INT(through_opus(&hz, (double[]){0.3}, 1, 0), 0);
    int n = vc_freq_peaks(out_pcm, NSAMP, p, 2, &level);
    printf("# %.0f Hz through Opus (complexity %d): %d peak(s), %.2f Hz ratio %.4f%s level %.1f "
           "dBFS\n",
           hz, complexity, n, p[0].freq_hz, p[0].ratio, n > 1 ? " (+ a second)" : "", level);
    CHECK(n >= 1);
    CHECK(fabs(p[0].freq_hz - hz) <= 5.0);
    CHECK(p[0].ratio > 0.8);
    /* nothing else loud: any second peak holds under 5 % of the energy */
    CHECK(n == 1 || p[1].ratio < 0.05);
}

TEST(opus_440_hz_arrives_as_440_hz)
{
    check_single_tone(440.0);
}

TEST(opus_660_hz_arrives_as_660_hz)
{
    check_single_tone(660.0);
}

TEST(opus_880_hz_arrives_as_880_hz)
{
    check_single_tone(880.0);
}

TEST(opus_complexity_0_and_10_both_carry_the_tone)
{
    const int cx[2] = {0, 10};
    for (int i = 0; i < 2; i++) {
        complexity = cx[i];
        check_single_tone(440.0);
        complexity = 5;
        if (test_failed_) return;
    }
}

TEST(opus_mix_of_440_and_880_shows_both)
{
    const double hz[2] = {440.0, 880.0};
    vc_peak p[2];
    CHECK_EQ_INT(through_opus(hz, (double[]){0.25, 0.25}, 2, 0), 0);
    int n = vc_freq_peaks(out_pcm, NSAMP, p, 2, NULL);
    printf("# 440+880 Hz through Opus: %d peaks, %.2f Hz ratio %.4f, %.2f Hz ratio %.4f\n", n,
           p[0].freq_hz, p[0].ratio, n > 1 ? p[1].freq_hz : 0.0, n > 1 ? p[1].ratio : 0.0);
    CHECK_EQ_INT(n, 2);
    double lo = p[0].freq_hz < p[1].freq_hz ? p[0].freq_hz : p[1].freq_hz;
    double hi = p[0].freq_hz < p[1].freq_hz ? p[1].freq_hz : p[0].freq_hz;
    CHECK(fabs(lo - 440.0) <= 5.0);
    CHECK(fabs(hi - 880.0) <= 5.0);
    CHECK(p[0].ratio > 0.3 && p[1].ratio > 0.3);
    CHECK(p[0].ratio + p[1].ratio > 0.8);
}

TEST(opus_silence_has_no_tone)
{
    vc_peak p[1];
    double level = 0.0;
    CHECK_EQ_INT(through_opus(NULL, NULL, 0, 0), 0);
    int n = vc_freq_peaks(out_pcm, NSAMP, p, 1, &level);
    printf("# silence through Opus: level %.1f dBFS\n", level);
    CHECK_EQ_INT(n, 0);
    CHECK(level < VC_FREQ_SILENCE);
    CHECK_EQ_INT(vc_freq_dominant(out_pcm, NSAMP, p), -ENODATA);
}

TEST(opus_10_percent_frame_loss_is_concealed)
{
    double hz = 440.0;
    vc_peak p;
    int lost = through_opus(&hz, (double[]){0.3}, 1, 10);
    CHECK(lost >= 0);
    CHECK_EQ_INT(vc_freq_dominant(out_pcm, NSAMP, &p), 0);
    printf("# 440 Hz with %d of %d frames lost (PLC): %.2f Hz ratio %.4f\n", lost, NFRAMES,
           p.freq_hz, p.ratio);
    CHECK(lost >= 5 && lost <= 20); /* the seed really drops about 10 % */
    CHECK(fabs(p.freq_hz - hz) <= 5.0);
    CHECK(p.ratio > 0.8);
}

TEST(freq_is_within_1_hz_between_bins)
{
    /* no codec: the analysis alone, at frequencies that fall anywhere between two bins */
    double worst = 0.0, least = 1.0;
    for (double hz = 100.0; hz < 8000.0; hz += 137.7) {
        vc_tone t;
        vc_peak p;
        CHECK_EQ_INT(vc_tone_init(&t, hz, 0.5), 0);
        vc_tone_fill(&t, out_pcm, VC_RATE / 2);
        CHECK_EQ_INT(vc_freq_dominant(out_pcm, VC_RATE / 2, &p), 0);
        if (fabs(p.freq_hz - hz) > worst) worst = fabs(p.freq_hz - hz);
        if (p.ratio < least) least = p.ratio;
    }
    printf("# 58 tones 100..7950 Hz, 0.5 s each: worst error %.3f Hz, least ratio %.4f\n", worst,
           least);
    CHECK(worst < 1.0);
    CHECK(least > 0.99);
}

TEST(freq_ratio_drops_when_the_tone_is_not_alone)
{
    /* 440 Hz with white noise of the same power: about half the energy is at the tone */
    vc_tone t;
    vc_peak p[2];
    double hz[2] = {440.0, 1000.0};
    CHECK_EQ_INT(vc_tone_init(&t, 440.0, 0.1), 0);
    vc_tone_fill(&t, out_pcm, NSAMP);
    double noise = 0.1 * 32767.0 * sqrt(3.0) / sqrt(2.0); /* uniform in ±noise: power of the sine */
    for (int i = 0; i < NSAMP; i++)
        out_pcm[i] = (int16_t)(out_pcm[i] + ((double)rnd() / 4294967295.0 * 2.0 - 1.0) * noise);
    CHECK_EQ_INT(vc_freq_dominant(out_pcm, NSAMP, &p[0]), 0);
    printf("# 440 Hz + noise at 0 dB SNR: %.2f Hz ratio %.4f\n", p[0].freq_hz, p[0].ratio);
    CHECK(fabs(p[0].freq_hz - 440.0) <= 5.0);
    CHECK(p[0].ratio > 0.4 && p[0].ratio < 0.6);
    /* a second talker 15 dB below the first, through Opus: seen, and small */
    CHECK_EQ_INT(through_opus(hz, (double[]){0.3, 0.3 * pow(10.0, -15.0 / 20.0)}, 2, 0), 0);
    int n = vc_freq_peaks(out_pcm, NSAMP, p, 2, NULL);
    printf("# 440 Hz + 1000 Hz at -15 dB through Opus: %.2f Hz ratio %.4f, %.2f Hz ratio %.4f\n",
           p[0].freq_hz, p[0].ratio, n > 1 ? p[1].freq_hz : 0.0, n > 1 ? p[1].ratio : 0.0);
    CHECK_EQ_INT(n, 2);
    CHECK(fabs(p[0].freq_hz - 440.0) <= 5.0 && p[0].ratio > 0.9);
    CHECK(fabs(p[1].freq_hz - 1000.0) <= 5.0 && p[1].ratio > 0.015 && p[1].ratio < 0.05);
}

TEST(codec_refuses_bad_arguments_and_packets)
{
    vc_encoder *e = NULL;
    vc_decoder *d = NULL;
    int16_t pcm[VC_FRAME];
    CHECK_EQ_INT(vc_encoder_create(&e, 11), -EINVAL);
    CHECK_EQ_INT(vc_encoder_create(&e, -1), -EINVAL);
    CHECK(e == NULL);
    CHECK_EQ_INT(vc_decoder_create(&d), 0);
    /* TOC code 3 (arbitrary frame count) announcing 0 frames: not an Opus packet */
    const uint8_t bad[2] = {0x03, 0x00};
    int r = vc_decode(d, bad, sizeof bad, pcm, VC_FRAME);
    int r2 = vc_decode(d, bad, sizeof bad, pcm, VC_FRAME / 2);
    vc_decoder_destroy(d);
    vc_encoder_destroy(NULL);
    vc_decoder_destroy(NULL);
    CHECK_EQ_INT(r, -EBADMSG);
    CHECK_EQ_INT(r2, -EINVAL);
    CHECK_EQ_INT(vc_freq_peaks(pcm, VC_FRAME, (vc_peak[1]){{0}}, 1, NULL), -EINVAL);
}

TEST(seq_counts_loss_and_reordering_across_the_wrap)
{
    /* 65530 .. 9 is 16 packets; 65533 and 2 never arrive, 3 arrives after 4, 4 twice */
    const uint16_t seqs[] = {65530, 65531, 65532, 65534, 65535, 0, 1, 4, 3, 4, 5, 6, 7, 8, 9};
    vc_seq s;
    vc_seq_init(&s);
    CHECK_EQ_INT(vc_seq_expected(&s), 0);
    CHECK(vc_seq_loss_ratio(&s) == 0.0);
    for (size_t i = 0; i < sizeof seqs / sizeof seqs[0]; i++)
        vc_seq_add(&s, seqs[i]);
    CHECK_EQ_INT(vc_seq_expected(&s), 16);
    CHECK_EQ_INT(s.received, 14);
    CHECK_EQ_INT(vc_seq_lost(&s), 2);
    CHECK_EQ_INT(s.reordered, 1);
    CHECK_EQ_INT(s.duplicate, 1);
    CHECK(fabs(vc_seq_loss_ratio(&s) - 2.0 / 16.0) < 1e-12);
    /* the missing 65533 arrives late, from before the wrap: one fewer lost */
    vc_seq_add(&s, 65533);
    CHECK_EQ_INT(vc_seq_lost(&s), 1);
    CHECK_EQ_INT(s.reordered, 2);
    /* a packet from before the first one widens what was expected, it is not a new cycle */
    vc_seq_add(&s, 65529);
    CHECK_EQ_INT(vc_seq_expected(&s), 17);
    CHECK_EQ_INT(vc_seq_lost(&s), 1);
    /* 100 packets later, a packet 100 behind is beyond the duplicate window: received, late */
    for (uint16_t q = 10; q < 110; q++)
        vc_seq_add(&s, q);
    vc_seq_add(&s, 9);
    CHECK_EQ_INT(s.too_late, 1);
    CHECK_EQ_INT(s.reordered, 4); /* 3, 65533, 65529 and 9 */
    /* a long run over several wraps with every 10th packet missing */
    vc_seq_init(&s);
    for (uint32_t i = 0; i < 200000; i++)
        if (i % 10 != 5) vc_seq_add(&s, (uint16_t)(60000 + i));
    CHECK_EQ_INT(vc_seq_expected(&s), 200000);
    CHECK_EQ_INT(vc_seq_lost(&s), 20000);
    CHECK_EQ_INT(s.reordered, 0);
}

TEST(latency_percentiles_of_known_samples)
{
    static vc_latency l;
    vc_latency_init(&l);
    CHECK_EQ_INT(vc_latency_quantile(&l, 0.5), -ENODATA);
    /* 1 ms .. 1000 ms, one sample each, sent at an arbitrary (large) clock value */
    const int64_t t0 = 1764000000000000000;
    for (int64_t ms = 1000; ms >= 1; ms--)
        vc_latency_add(&l, t0 + ms, t0 + ms + ms * 1000000);
    vc_latency_add(&l, t0, t0 - 5); /* receiver's clock behind: refused */
    CHECK_EQ_INT(l.count, 1000);
    CHECK_EQ_INT(l.negative, 1);
    int64_t p50 = vc_latency_quantile(&l, 0.5), p99 = vc_latency_quantile(&l, 0.99);
    printf("# latency 1..1000 ms: p50 %.3f ms, p99 %.3f ms\n", p50 / 1e6, p99 / 1e6);
    CHECK(llabs(p50 - 500000000) <= 500000000 / 64);
    CHECK(llabs(p99 - 990000000) <= 990000000 / 64);
    CHECK_EQ_INT(vc_latency_quantile(&l, 0.0), 1000000);
    CHECK_EQ_INT(vc_latency_quantile(&l, 1.0), 1000000000);
    CHECK_EQ_INT(vc_latency_quantile(&l, 1.5), -EINVAL);
    /* small values are exact: 99 samples of 10 ns and one of 50 ns */
    vc_latency_init(&l);
    for (int i = 0; i < 99; i++)
        vc_latency_add(&l, 0, 10);
    vc_latency_add(&l, 0, 50);
    CHECK_EQ_INT(vc_latency_quantile(&l, 0.5), 10);
    CHECK_EQ_INT(vc_latency_quantile(&l, 0.99), 10);
    CHECK_EQ_INT(vc_latency_quantile(&l, 0.995), 50);
}

int main(void)
{
    RUN(tone_phase_is_continuous_across_frames);
    RUN(opus_440_hz_arrives_as_440_hz);
    RUN(opus_660_hz_arrives_as_660_hz);
    RUN(opus_880_hz_arrives_as_880_hz);
    RUN(opus_complexity_0_and_10_both_carry_the_tone);
    RUN(opus_mix_of_440_and_880_shows_both);
    RUN(opus_silence_has_no_tone);
    RUN(opus_10_percent_frame_loss_is_concealed);
    RUN(freq_is_within_1_hz_between_bins);
    RUN(freq_ratio_drops_when_the_tone_is_not_alone);
    RUN(codec_refuses_bad_arguments_and_packets);
    RUN(seq_counts_loss_and_reordering_across_the_wrap);
    RUN(latency_percentiles_of_known_samples);
    return test_summary();
}
