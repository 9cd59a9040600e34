/*
 * rtp/rtp_slot.c — the slot rewrite: maps the packets of whichever source holds a downstream
 * slot onto that slot's one continuous stream (rules in rtp.h and docs/media.md).
 *
 * How it works: a source is mapped by two modular offsets, seq_delta and ts_delta, fixed when the
 * source takes the slot (anchoring its first packet right after the highest numbers the slot has
 * sent), so everything the source does to its own numbering — loss, reordering, duplicates,
 * wraparound — passes through as it is. To tell "late" from "before the anchor" over a long-lived
 * stream, the source's input sequence numbers and output timestamps are extended to 64 bits
 * against the highest seen (an int16 / int32 difference, as RFC 3550 A.1 extends sequence
 * numbers); the slot itself remembers its highest output seq and timestamp, and the `now` at which
 * that timestamp went out, to anchor the next source.
 */
#include "rtp/rtp.h"
#include "rtp/rtp_internal.h"

#include <errno.h>
#include <string.h>

void rtp_slot_init(rtp_slot *s, uint32_t ssrc_out, uint16_t init_seq, uint32_t init_ts,
                   uint32_t min_ts_step)
{
    memset(s, 0, sizeof *s);
    s->ssrc_out = ssrc_out;
    s->init_seq = init_seq;
    s->init_ts = init_ts;
    s->min_ts_step = min_ts_step;
}

/* Rule 3 (and 2 for the slot's first source): anchors `in` as the first packet of a source. */
static void anchor(rtp_slot *s, const rtp_pkt *in, uint32_t now, uint16_t *seq_out,
                   uint32_t *ts_out)
{
    uint16_t oseq;
    uint32_t ots;
    if (!s->active) {
        oseq = s->init_seq;
        ots = s->init_ts;
    } else {
        int32_t elapsed = (int32_t)(now - s->max_ts_now);
        uint32_t step = elapsed > 0 ? (uint32_t)elapsed : 0;
        if (step < s->min_ts_step) step = s->min_ts_step;
        oseq = (uint16_t)(s->max_seq_out + 1);
        ots = s->max_ts_out + step;
    }
    s->active = true;
    s->src_ssrc = in->ssrc;
    s->seq_delta = (uint16_t)(oseq - in->seq);
    s->ts_delta = ots - in->ts;
    s->first_seq_ext = s->max_seq_ext = in->seq;
    s->first_ts_ext = s->max_ts_ext = ots;
    s->max_seq_out = oseq;
    s->max_ts_out = ots;
    s->max_ts_now = now;
    *seq_out = oseq;
    *ts_out = ots;
}

int rtp_slot_map(rtp_slot *s, const rtp_pkt *in, uint32_t now, uint8_t *out, rtp_err *why)
{
    uint16_t oseq;
    uint32_t ots;
    bool marker = in->marker;

    if (!s->active || in->ssrc != s->src_ssrc) {
        anchor(s, in, now, &oseq, &ots);
        marker = true;
    } else {
        int64_t seq_ext = s->max_seq_ext + (int16_t)(uint16_t)(in->seq - (uint16_t)s->max_seq_ext);
        uint32_t t = in->ts + s->ts_delta;
        int64_t ts_ext = s->max_ts_ext + (int32_t)(t - (uint32_t)s->max_ts_ext);
        if (seq_ext < s->max_seq_ext - RTP_SLOT_MAX_MISORDER ||
            (ts_ext < s->first_ts_ext && seq_ext > s->max_seq_ext)) {
            anchor(s, in, now, &oseq, &ots); /* rule 5: the source restarted its numbering */
            marker = true;
        } else if (seq_ext < s->first_seq_ext || ts_ext < s->first_ts_ext) {
            if (why) *why = RTP_ERR_SLOT_STALE;
            return -EALREADY;
        } else {
            oseq = (uint16_t)(in->seq + s->seq_delta);
            ots = t;
            if (seq_ext > s->max_seq_ext) {
                s->max_seq_ext = seq_ext;
                s->max_seq_out = oseq;
            }
            if (ts_ext > s->max_ts_ext) {
                s->max_ts_ext = ts_ext;
                s->max_ts_out = ots;
                s->max_ts_now = now;
            }
        }
    }

    if (out != in->data) memcpy(out, in->data, in->hdr_len);
    out[1] = (uint8_t)((marker ? 0x80 : 0) | in->pt);
    wr16(out + 2, oseq);
    wr32(out + 4, ots);
    wr32(out + 8, s->ssrc_out);
    if (why) *why = RTP_OK;
    return 0;
}
