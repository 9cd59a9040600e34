/*
 * client/freq — which tone does a decoded stream carry, and how cleanly?
 *
 * Method: Welch's averaged periodogram with a radix-2 FFT. The PCM is cut into half-overlapping
 * windows of VC_FREQ_WINDOW (4096) samples; each has its mean removed, is multiplied by a Hann
 * window and transformed; the power spectra are averaged. The strongest bin is a peak; its
 * frequency is refined by Gaussian interpolation (a parabola through the logs of the three bins
 * around it, exact for a Gaussian and within ~1 Hz of a Hann-windowed sine at 11.7 Hz per bin), and
 * its energy is the sum of the ±3 bins that hold the Hann main lobe (±2 bins, plus one for a tone
 * between bins). The ratio is that energy over the energy of the whole spectrum above 23 Hz (bins 0
 * and 1 hold what is left of DC). The lobe is then masked and the next peak sought, up to k.
 *
 * Why an FFT and not Goertzel: the receiver of a slot does not know which sender's tone it will
 * carry, and "this stream carries 440 Hz and nothing else loud" needs the energy that is *not* at
 * the tone — noise, Opus artefacts, a second talker — which a few Goertzel filters at candidate
 * frequencies cannot see. A 4096-point FFT gives the whole spectrum for ~N log N work. Averaging
 * windows makes the estimate robust to what Opus does on a frame or two (its start-up, a
 * concealed frame, a short burst of coding noise): these move a little energy from the peak into
 * the rest of the spectrum, they do not move the peak.
 *
 * The FFT workspace (~100 KB) is allocated once per call: this runs per report, not per packet.
 */
#include "client/vc.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>

#include "lib/util.h"

#define W        VC_FREQ_WINDOW
#define HALF     (W / 2)
#define LOBE     3    /* bins either side of a peak that count as the peak */
#define MIN_BIN  2    /* bins below carry DC leakage */
#define MIN_PEAK 0.01 /* a peak needs at least this share of the energy */

/* In-place iterative radix-2 decimation-in-time FFT of n (a power of two) points. */
static void fft(double *re, double *im, size_t n)
{
    for (size_t i = 1, j = 0; i < n; i++) {
        size_t bit = n >> 1;
        for (; j & bit; bit >>= 1)
            j ^= bit;
        j |= bit;
        if (i < j) {
            double t = re[i];
            re[i] = re[j];
            re[j] = t;
            t = im[i];
            im[i] = im[j];
            im[j] = t;
        }
    }
    for (size_t len = 2; len <= n; len <<= 1) {
        double a = -2.0 * M_PI / (double)len;
        double wr = cos(a), wi = sin(a);
        for (size_t i = 0; i < n; i += len) {
            double cr = 1.0, ci = 0.0;
            for (size_t k = 0; k < len / 2; k++) {
                size_t p = i + k, q = i + k + len / 2;
                double tr = re[q] * cr - im[q] * ci;
                double ti = re[q] * ci + im[q] * cr;
                re[q] = re[p] - tr;
                im[q] = im[p] - ti;
                re[p] += tr;
                im[p] += ti;
                double ncr = cr * wr - ci * wi;
                ci = cr * wi + ci * wr;
                cr = ncr;
            }
        }
    }
}

static double level_dbfs(const int16_t *pcm, size_t n)
{
    double sum = 0.0;
    for (size_t i = 0; i < n; i++)
        sum += (double)pcm[i] * pcm[i];
    double ms = sum / (double)n / (32768.0 * 32768.0);
    if (ms <= 1e-12) return -120.0;
    return 10.0 * log10(ms);
}

/* averaged power spectrum of pcm into pw[0..HALF] */
static void spectrum(const int16_t *pcm, size_t n, double *pw, double *re, double *im, double *hann)
{
    for (size_t i = 0; i < W; i++)
        hann[i] = 0.5 - 0.5 * cos(2.0 * M_PI * (double)i / (double)W);
    for (size_t i = 0; i <= HALF; i++)
        pw[i] = 0.0;
    for (size_t off = 0; off + W <= n; off += HALF) {
        double mean = 0.0;
        for (size_t i = 0; i < W; i++)
            mean += pcm[off + i];
        mean /= W;
        for (size_t i = 0; i < W; i++) {
            re[i] = (pcm[off + i] - mean) * hann[i];
            im[i] = 0.0;
        }
        fft(re, im, W);
        for (size_t i = 0; i <= HALF; i++)
            pw[i] += re[i] * re[i] + im[i] * im[i];
    }
}

/* Gaussian interpolation of the peak at bin b: offset in bins, within (-0.5, 0.5) */
static double interpolate(const double *pw, size_t b)
{
    double a = log(pw[b - 1] + 1e-30), m = log(pw[b] + 1e-30), c = log(pw[b + 1] + 1e-30);
    double den = a - 2.0 * m + c;
    if (den >= 0.0) return 0.0; /* not a maximum: keep the bin */
    double d = 0.5 * (a - c) / den;
    return d < -0.5 ? -0.5 : d > 0.5 ? 0.5 : d;
}

int vc_freq_peaks(const int16_t *pcm, size_t n, vc_peak *peaks, size_t k, double *level)
{
    if (!pcm || !peaks || k == 0 || n < W) return -EINVAL;
    double lv = level_dbfs(pcm, n);
    if (level) *level = lv;
    if (lv < VC_FREQ_SILENCE) return 0;

    double *pw = xmalloc((HALF + 1 + 3 * W) * sizeof *pw);
    double *re = pw + HALF + 1, *im = re + W, *hann = im + W;
    unsigned char *masked = (unsigned char *)hann; /* hann is done with after spectrum() */
    spectrum(pcm, n, pw, re, im, hann);
    for (size_t i = 0; i <= HALF; i++)
        masked[i] = i < MIN_BIN || i == HALF;

    double total = 0.0;
    for (size_t i = MIN_BIN; i <= HALF; i++)
        total += pw[i];

    size_t found = 0;
    while (found < k && total > 0.0) {
        size_t b = 0;
        for (size_t i = MIN_BIN; i < HALF; i++)
            if (!masked[i] && (b == 0 || pw[i] > pw[b])) b = i;
        if (b == 0) break;
        size_t lo = b >= MIN_BIN + LOBE ? b - LOBE : MIN_BIN;
        size_t hi = b + LOBE < HALF ? b + LOBE : HALF - 1;
        double e = 0.0;
        for (size_t i = lo; i <= hi; i++) {
            if (!masked[i]) e += pw[i];
            masked[i] = 1;
        }
        if (e / total < MIN_PEAK) break;
        peaks[found].freq_hz = ((double)b + interpolate(pw, b)) * VC_RATE / W;
        peaks[found].ratio = e / total;
        found++;
    }
    free(pw);
    return (int)found;
}

int vc_freq_dominant(const int16_t *pcm, size_t n, vc_peak *out)
{
    if (!out) return -EINVAL;
    int r = vc_freq_peaks(pcm, n, out, 1, NULL);
    if (r < 0) return r;
    return r == 0 ? -ENODATA : 0;
}
