/*
 * client/stats — what a voxclient receiver measures per downstream stream.
 *
 * vc_seq: loss and reordering from RTP sequence numbers (RFC 3550 §6.4.1, A.1 in spirit).
 * Each 16-bit sequence number is extended to 64 bits by its signed distance from the highest
 * extended number seen so far (so 65535 -> 0 is one step forward, and a late packet from before
 * a wrap lands in the previous cycle). The first packet is placed at 65536 so that late packets
 * from before it never go below zero. A 64-bit window (bit i = "max - i arrived") tells a late
 * packet from a duplicate; a packet more than 63 behind is counted as received and late, but a
 * duplicate of it cannot be told apart. A late packet from before the first lowers the base. Loss
 * is expected (lowest to highest) minus received.
 *
 * vc_latency: one-way latency percentiles without storing samples. A log-linear (HDR-style)
 * histogram of ns: values below 64 have a bucket each; above, each power of two [2^e, 2^(e+1)) is
 * cut into 64 equal buckets, so a bucket is at most 1/64 of its values wide. 3,776 uint32 buckets
 * cover every int64. A quantile walks the buckets (microseconds; this is per report, not per
 * packet) and answers the middle of the bucket holding the rank, clamped to the exact min/max.
 */
#include "client/vc.h"

#include <errno.h>
#include <string.h>

#define SEQ_ORIGIN 65536u

void vc_seq_init(vc_seq *s)
{
    memset(s, 0, sizeof *s);
}

void vc_seq_add(vc_seq *s, uint16_t seq)
{
    if (!s->started) {
        s->started = 1;
        s->base = s->max = SEQ_ORIGIN + seq;
        s->window = 1;
        s->received = 1;
        return;
    }
    int16_t delta = (int16_t)(uint16_t)(seq - (uint16_t)s->max);
    if (delta > 0) {
        s->window = delta >= 64 ? 1 : (s->window << delta) | 1;
        s->max += (uint64_t)delta;
        s->received++;
        return;
    }
    if (delta == 0) {
        s->duplicate++;
        return;
    }
    uint64_t back = (uint64_t)(-(int32_t)delta);
    uint64_t ext = s->max - back;
    if (back < 64) {
        uint64_t bit = (uint64_t)1 << back;
        if (s->window & bit) {
            s->duplicate++;
            return;
        }
        s->window |= bit;
    } else {
        s->too_late++;
    }
    s->received++;
    s->reordered++;
    if (ext < s->base) s->base = ext;
}

uint64_t vc_seq_expected(const vc_seq *s)
{
    return s->started ? s->max - s->base + 1 : 0;
}

uint64_t vc_seq_lost(const vc_seq *s)
{
    uint64_t exp = vc_seq_expected(s);
    return exp > s->received ? exp - s->received : 0;
}

double vc_seq_loss_ratio(const vc_seq *s)
{
    uint64_t exp = vc_seq_expected(s);
    return exp ? (double)vc_seq_lost(s) / (double)exp : 0.0;
}

void vc_latency_init(vc_latency *l)
{
    memset(l, 0, sizeof *l);
}

static size_t lat_index(uint64_t v)
{
    if (v < VC_LAT_SUB) return (size_t)v;
    unsigned shift = (unsigned)(63 - __builtin_clzll(v)) - 6;
    return (size_t)(shift + 1) * VC_LAT_SUB + (size_t)((v >> shift) - VC_LAT_SUB);
}

/* the middle of bucket i */
static uint64_t lat_value(size_t i)
{
    if (i < VC_LAT_SUB) return i;
    unsigned shift = (unsigned)(i / VC_LAT_SUB) - 1;
    uint64_t low = (uint64_t)(VC_LAT_SUB + i % VC_LAT_SUB) << shift;
    return low + (((uint64_t)1 << shift) - 1) / 2;
}

void vc_latency_add(vc_latency *l, int64_t send_ns, int64_t recv_ns)
{
    if (recv_ns < send_ns) {
        l->negative++;
        return;
    }
    int64_t v = (int64_t)((uint64_t)recv_ns - (uint64_t)send_ns);
    if (v < 0) v = INT64_MAX; /* the difference overflowed: latency beyond measure */
    size_t i = lat_index((uint64_t)v);
    if (l->bucket[i] < UINT32_MAX) l->bucket[i]++;
    if (l->count == 0 || v < l->min_ns) l->min_ns = v;
    if (l->count == 0 || v > l->max_ns) l->max_ns = v;
    l->count++;
}

int64_t vc_latency_quantile(const vc_latency *l, double q)
{
    if (!(q >= 0.0 && q <= 1.0)) return -EINVAL;
    if (l->count == 0) return -ENODATA;
    uint64_t rank = (uint64_t)(q * (double)l->count);
    if ((double)rank < q * (double)l->count) rank++; /* ceil */
    if (rank <= 1) return l->min_ns;                 /* the extremes are known exactly */
    if (rank >= l->count) return l->max_ns;
    uint64_t seen = 0;
    size_t i = 0;
    for (; i < VC_LAT_BUCKETS; i++) {
        seen += l->bucket[i];
        if (seen >= rank) break;
    }
    if (i == VC_LAT_BUCKETS) return l->max_ns; /* a bucket saturated at UINT32_MAX */
    int64_t v = (int64_t)lat_value(i);
    return v < l->min_ns ? l->min_ns : v > l->max_ns ? l->max_ns : v;
}
