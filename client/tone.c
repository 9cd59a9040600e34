/*
 * client/tone — the sine generator of voxclient.
 *
 * A phase accumulator in double precision: each sample is amp * sin(phase), then phase += step
 * (2π f / 48000) and wraps at 2π. Keeping the phase in the caller's vc_tone makes consecutive
 * frames continue the same sine, so the encoder never sees a discontinuity at a frame edge (which
 * would spread energy over the whole spectrum and spoil the frequency check at the far end). The
 * wrap keeps the argument of sin() small, so hours of tone lose no precision.
 */
#include "client/vc.h"

#include <errno.h>
#include <math.h>

#define TWO_PI (2.0 * M_PI)

int vc_tone_init(vc_tone *t, double freq_hz, double amplitude)
{
    if (!t || !(freq_hz > 0.0 && freq_hz < VC_RATE / 2.0) ||
        !(amplitude >= 0.0 && amplitude <= 1.0))
        return -EINVAL;
    t->phase = 0.0;
    t->step = TWO_PI * freq_hz / VC_RATE;
    t->amp = amplitude * 32767.0;
    return 0;
}

static double next(vc_tone *t)
{
    double v = t->amp * sin(t->phase);
    t->phase += t->step;
    if (t->phase >= TWO_PI) t->phase -= TWO_PI;
    return v;
}

static int16_t clamp16(double v)
{
    if (v > 32767.0) return 32767;
    if (v < -32768.0) return -32768;
    return (int16_t)lrint(v);
}

void vc_tone_fill(vc_tone *t, int16_t *pcm, size_t n)
{
    for (size_t i = 0; i < n; i++)
        pcm[i] = clamp16(next(t));
}

void vc_tone_add(vc_tone *t, int16_t *pcm, size_t n)
{
    for (size_t i = 0; i < n; i++)
        pcm[i] = clamp16(pcm[i] + next(t));
}
