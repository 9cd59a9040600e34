/*
 * client — the audio core of voxclient, the native test client: a sine generator (vc_tone), thin
 * libopus wrappers (vc_encoder / vc_decoder), dominant-frequency detection on decoded PCM
 * (vc_freq_*) and per-stream receive statistics (vc_seq: loss and reordering from RTP sequence
 * numbers; vc_latency: one-way latency percentiles from send/receive time pairs).
 *
 * Audio is always 48 kHz mono signed 16-bit PCM in 20 ms frames (VC_FRAME samples).
 *
 * Pure code: no sockets, no threads, no clock. Depends on lib/ only (and libopus, which stays
 * behind this header: callers never see an OpusEncoder). Ownership: vc_encoder and vc_decoder are
 * opaque, created by *_create and freed by *_destroy (which accept NULL); vc_tone, vc_seq and
 * vc_latency are small structs the caller owns (stack, or embedded in its own objects) — their
 * fields are read-only outside client/. Every PCM and packet buffer is the caller's. No function
 * allocates per packet or per sample (vc_freq_* allocates its FFT workspace once per call).
 * Nothing keeps global state: any thread may call any function, one thread at a time per object.
 *
 * Errors: 0 (or a count) on success, a negative errno otherwise. libopus' codes are translated
 * here (OPUS_BAD_ARG -> -EINVAL, OPUS_BUFFER_TOO_SMALL -> -ENOBUFS, OPUS_INVALID_PACKET ->
 * -EBADMSG, OPUS_ALLOC_FAIL -> -ENOMEM, OPUS_UNIMPLEMENTED -> -ENOTSUP, others -> -EIO) and
 * logged once, here, so callers need not log them again.
 */
#ifndef VOXD_VC_H
#define VOXD_VC_H

#include <stddef.h>
#include <stdint.h>

#define VC_RATE       48000 /* samples per second */
#define VC_FRAME      960   /* samples per 20 ms frame */
#define VC_BITRATE    32000 /* bit/s */
#define VC_MAX_PACKET 1275  /* largest Opus packet for one frame (RFC 6716 §3.2.1) */

/* ---- tone ------------------------------------------------------------------------------------ */

/* A sine generator whose phase runs on across calls, so consecutive frames join without a click. */
typedef struct vc_tone {
    double phase; /* radians, in [0, 2π) */
    double step;  /* radians per sample */
    double amp;   /* peak, in samples (0 .. 32767) */
} vc_tone;

/* freq_hz in (0, 24000); amplitude in [0, 1] of full scale. 0 or -EINVAL (t left untouched). */
int vc_tone_init(vc_tone *t, double freq_hz, double amplitude);
/* Writes the next n samples into pcm. */
void vc_tone_fill(vc_tone *t, int16_t *pcm, size_t n);
/* Adds the next n samples to pcm, saturating at the int16 range (to mix tones). */
void vc_tone_add(vc_tone *t, int16_t *pcm, size_t n);

/* ---- Opus ------------------------------------------------------------------------------------ */

typedef struct vc_encoder vc_encoder;
typedef struct vc_decoder vc_decoder;

/* 48 kHz mono, OPUS_APPLICATION_VOIP, VC_BITRATE, complexity 0..10. 0 or -EINVAL / -ENOMEM. */
int vc_encoder_create(vc_encoder **out, int complexity);
void vc_encoder_destroy(vc_encoder *e);
/* Encodes one frame of VC_FRAME samples into out (cap bytes; VC_MAX_PACKET is always enough).
 * Returns the packet length (> 0) or a negative errno. */
int vc_encode(vc_encoder *e, const int16_t *pcm, uint8_t *out, size_t cap);

int vc_decoder_create(vc_decoder **out);
void vc_decoder_destroy(vc_decoder *d);
/* Decodes one packet into pcm (cap samples, at least VC_FRAME). pkt == NULL (or n == 0) means the
 * next 20 ms frame is missing: packet loss concealment writes exactly VC_FRAME samples. Returns the
 * number of samples written or a negative errno (-EBADMSG for a packet that is not Opus). */
int vc_decode(vc_decoder *d, const uint8_t *pkt, size_t n, int16_t *pcm, size_t cap);

/* ---- dominant frequency ---------------------------------------------------------------------- */

#define VC_FREQ_WINDOW  4096  /* FFT window, samples (85 ms; bins 11.7 Hz apart) */
#define VC_FREQ_SILENCE -60.0 /* dBFS: below this RMS level a stream carries nothing */

typedef struct vc_peak {
    double freq_hz; /* interpolated between bins: within ~1 Hz for a clean tone */
    double ratio;   /* share of the analysed energy (DC excluded) within ±35 Hz of it, 0..1 */
} vc_peak;

/* Finds up to k of the strongest tones in pcm (n >= VC_FREQ_WINDOW samples; the power spectra of
 * half-overlapping windows are averaged), strongest first. *level_dbfs (if not NULL) gets the
 * RMS level of pcm in dBFS (-120 for digital silence). Returns the number of peaks written:
 * 0 when the level is below VC_FREQ_SILENCE; fewer than k when nothing else has at least 1 % of
 * the energy. -EINVAL if n < VC_FREQ_WINDOW or k == 0. */
int vc_freq_peaks(const int16_t *pcm, size_t n, vc_peak *peaks, size_t k, double *level_dbfs);
/* The strongest tone: 0 with *out filled, -ENODATA for silence, -EINVAL as above. */
int vc_freq_dominant(const int16_t *pcm, size_t n, vc_peak *out);

/* ---- loss and reordering from RTP sequence numbers --------------------------------------------
 */

/* One received stream (one SSRC). Sequence numbers are extended to 64 bits across the 16-bit wrap;
 * a packet more than 32767 behind the highest seen is treated as late, not as a new cycle. */
typedef struct vc_seq {
    uint64_t received;  /* distinct packets received */
    uint64_t reordered; /* arrived after a higher sequence number (and were not duplicates) */
    uint64_t duplicate; /* seen twice within the last 64 sequence numbers; not counted received */
    uint64_t too_late;  /* 64 or more behind the highest: counted received, may be a duplicate */
    uint64_t base;      /* lowest extended sequence number (the first, or a late one before it) */
    uint64_t max;       /* highest extended sequence number */
    uint64_t window;    /* bit i: max - i was received */
    int started;
} vc_seq;

void vc_seq_init(vc_seq *s);
void vc_seq_add(vc_seq *s, uint16_t seq);
/* Packets expected from the first to the highest sequence number. */
uint64_t vc_seq_expected(const vc_seq *s);
/* Expected minus received (0 if more arrived than expected). */
uint64_t vc_seq_lost(const vc_seq *s);
/* vc_seq_lost / vc_seq_expected, 0 when nothing arrived. */
double vc_seq_loss_ratio(const vc_seq *s);

/* ---- one-way latency ------------------------------------------------------------------------- */

/* A log-linear histogram of latencies in ns: exact below 64 ns, then 64 buckets per power of two,
 * so a quantile is within 1/64 (1.6 %) of the true sample, and min/max are exact. ~15 KB, no
 * allocation. Samples with recv < send (clocks disagree) are counted in `negative` only. */
#define VC_LAT_SUB     64
#define VC_LAT_BUCKETS (59 * VC_LAT_SUB)

typedef struct vc_latency {
    uint64_t count;    /* samples in the histogram */
    uint64_t negative; /* samples refused: recv_ns < send_ns */
    int64_t min_ns, max_ns;
    uint32_t bucket[VC_LAT_BUCKETS];
} vc_latency;

void vc_latency_init(vc_latency *l);
void vc_latency_add(vc_latency *l, int64_t send_ns, int64_t recv_ns);
/* The q-quantile (0 <= q <= 1; 0.5 for p50, 0.99 for p99) in ns: the smallest recorded latency
 * that at least q of the samples do not exceed, to within 1.6 % (exact for the smallest and the
 * largest sample, and below 128 ns), clamped to [min, max].
 * -ENODATA if there are no samples, -EINVAL if q is outside [0, 1]. */
int64_t vc_latency_quantile(const vc_latency *l, double q);

#endif
