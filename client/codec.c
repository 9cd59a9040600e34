/*
 * client/codec — thin wrappers of libopus for voxclient: one encoder and one decoder per stream,
 * 48 kHz mono, OPUS_APPLICATION_VOIP at VC_BITRATE, 20 ms frames.
 *
 * The encoder and decoder states are libopus' own (opus_encoder_create / opus_decoder_create),
 * wrapped in an opaque struct so that opus.h stays out of client/vc.h. vc_decode() with no packet
 * asks libopus for packet loss concealment of exactly one frame (passing data == NULL and a frame
 * size of 20 ms, as opus_decode() requires for PLC).
 *
 * This file is the module edge for libopus: its negative OPUS_* codes become negative errnos in
 * opus_errno() and are logged here, once. Encode/decode errors are on the per-packet path, so they
 * are rate-limited per object: the 1st, 2nd, 4th, 8th, ... error is logged with the running count.
 */
#include "client/vc.h"

#include <errno.h>
#include <opus.h>
#include <stdlib.h>

#include "lib/log.h"
#include "lib/util.h"

struct vc_encoder {
    OpusEncoder *enc;
    uint64_t errors;
};

struct vc_decoder {
    OpusDecoder *dec;
    uint64_t errors;
};

static int opus_errno(int oe)
{
    switch (oe) {
    case OPUS_BAD_ARG:
        return -EINVAL;
    case OPUS_BUFFER_TOO_SMALL:
        return -ENOBUFS;
    case OPUS_INVALID_PACKET:
        return -EBADMSG;
    case OPUS_ALLOC_FAIL:
        return -ENOMEM;
    case OPUS_UNIMPLEMENTED:
        return -ENOTSUP;
    default: /* OPUS_INTERNAL_ERROR, OPUS_INVALID_STATE, anything newer */
        return -EIO;
    }
}

/* logs the 1st, 2nd, 4th, 8th, ... error of an object; returns the errno */
static int opus_fail(uint64_t *errors, const char *what, int oe)
{
    uint64_t n = ++*errors;
    if ((n & (n - 1)) == 0)
        LOGC(LOG_WARN, "vc", "%s: %s (opus %d; %llu so far)", what, opus_strerror(oe), oe,
             (unsigned long long)n);
    return opus_errno(oe);
}

int vc_encoder_create(vc_encoder **out, int complexity)
{
    int oe = OPUS_OK;
    if (!out || complexity < 0 || complexity > 10) return -EINVAL;
    vc_encoder *e = xcalloc(1, sizeof *e);
    e->enc = opus_encoder_create(VC_RATE, 1, OPUS_APPLICATION_VOIP, &oe);
    if (!e->enc) goto fail;
    if ((oe = opus_encoder_ctl(e->enc, OPUS_SET_BITRATE(VC_BITRATE))) != OPUS_OK) goto fail;
    if ((oe = opus_encoder_ctl(e->enc, OPUS_SET_COMPLEXITY(complexity))) != OPUS_OK) goto fail;
    *out = e;
    return 0;
fail:
    LOGC(LOG_ERROR, "vc", "opus encoder: %s (opus %d)", opus_strerror(oe), oe);
    vc_encoder_destroy(e);
    return opus_errno(oe);
}

void vc_encoder_destroy(vc_encoder *e)
{
    if (!e) return;
    if (e->enc) opus_encoder_destroy(e->enc);
    free(e);
}

int vc_encode(vc_encoder *e, const int16_t *pcm, uint8_t *out, size_t cap)
{
    if (!e || !pcm || !out || cap == 0) return -EINVAL;
    opus_int32 max = cap > VC_MAX_PACKET ? VC_MAX_PACKET : (opus_int32)cap;
    opus_int32 n = opus_encode(e->enc, pcm, VC_FRAME, out, max);
    if (n < 0) return opus_fail(&e->errors, "opus_encode", n);
    return n;
}

int vc_decoder_create(vc_decoder **out)
{
    int oe = OPUS_OK;
    if (!out) return -EINVAL;
    vc_decoder *d = xcalloc(1, sizeof *d);
    d->dec = opus_decoder_create(VC_RATE, 1, &oe);
    if (!d->dec) {
        LOGC(LOG_ERROR, "vc", "opus decoder: %s (opus %d)", opus_strerror(oe), oe);
        free(d);
        return opus_errno(oe);
    }
    *out = d;
    return 0;
}

void vc_decoder_destroy(vc_decoder *d)
{
    if (!d) return;
    if (d->dec) opus_decoder_destroy(d->dec);
    free(d);
}

int vc_decode(vc_decoder *d, const uint8_t *pkt, size_t n, int16_t *pcm, size_t cap)
{
    if (!d || !pcm || cap < VC_FRAME) return -EINVAL;
    int r;
    if (!pkt || n == 0) {
        r = opus_decode(d->dec, NULL, 0, pcm, VC_FRAME, 0);
    } else {
        if (n > 0x7fffffff) return -EINVAL;
        /* 120 ms is the longest an Opus packet can carry */
        int frame = cap > (size_t)VC_RATE / 1000 * 120 ? VC_RATE / 1000 * 120 : (int)cap;
        r = opus_decode(d->dec, pkt, (opus_int32)n, pcm, frame, 0);
    }
    if (r < 0) return opus_fail(&d->errors, pkt ? "opus_decode" : "opus_decode (PLC)", r);
    return r;
}
