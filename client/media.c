/*
 * client/media.c — vc_media (client/media.h): the client's UDP transport on a libuv loop.
 *
 * Sending: a one-shot timer re-armed for the next 20 ms deadline (frame k is due at start + k·20
 * ms on uv_hrtime, so pacing does not drift; at most VC_BURST late frames are caught up, beyond
 * that the schedule restarts from now). Per frame: tone -> level -> header (vc_rtp_header) ->
 * Opus into the same buffer -> srtp_protect -> uv_udp_try_send (no request to allocate; a full
 * socket buffer counts as a send drop). RTCP every 2 s, protected with the same srtp_t.
 *
 * Receiving: one preallocated datagram buffer (uv's alloc callback hands it out every time: the
 * recv callback runs before the next read). A datagram goes through small stages: demux (RTCP by
 * its second byte) -> srtp_unprotect -> rtp_parse -> slot by SSRC -> statistics -> decode (PLC for
 * up to VC_MAX_PLC missing frames before it; late or duplicate packets are not decoded) -> the
 * slot's and its speaker's 1 s rings of PCM, which vc_media_report() analyses with vc_freq.
 *
 * SRTP: one srtp_t per direction; outbound ssrc_any_outbound with send_key, inbound
 * ssrc_any_inbound with recv_key (the node's slot SSRCs, any of them).
 */
#include "client/media.h"

#include "client/vc.h"
#include "lib/hmap.h"
#include "lib/log.h"
#include "lib/util.h"
#include "rtp/rtp.h"

#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <srtp2/srtp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#define FRAME_NS     20000000ull
#define RTCP_MS      2000
#define VC_BURST     5
#define VC_MAX_PLC   5
#define RING         VC_RATE /* 1 s of decoded audio per slot and per speaker */
#define DATAGRAM_MAX 1500
#define SRTCP_EXTRA  (SRTP_MAX_TRAILER_LEN + 4)
#define DEC_MAX      5760 /* 120 ms at 48 kHz: the longest Opus frame */
#define USER_ID_MAX  24

typedef struct vc_ring {
    int16_t *pcm; /* RING samples */
    size_t pos, fill;
} vc_ring;

typedef struct vc_spk {
    char user_id[USER_ID_MAX];
    uint64_t packets;
    vc_ring ring;
} vc_spk;

typedef struct vc_rslot {
    uint32_t ssrc;
    uint64_t packets, plc_frames, decode_errors, late;
    uint64_t lost_before; /* lost under the slot's previous SSRCs (a later Session Description) */
    vc_seq seq;
    vc_latency lat;
    vc_decoder *dec;
    bool have_last;
    uint16_t last_seq;
    vc_ring ring;
    vc_spk *spk; /* current speaker (borrowed from m->speakers), NULL: nobody/unknown */
} vc_rslot;

struct vc_media {
    uv_loop_t *loop;
    uv_udp_t udp;
    uv_timer_t tx_timer, rtcp_timer;
    int open_handles;
    void (*done)(void *);
    void *done_arg;
    vc_media_config cfg;
    bool started;
    vc_sdesc sd;
    struct sockaddr_storage remote;
    srtp_t tx, rx;
    /* sending */
    vc_tone tone;
    vc_encoder *enc;
    uint64_t next_due_ns;
    uint16_t seq;
    uint32_t ts;
    bool first;
    uint64_t sent, sent_octets, rtcp_sent, send_drops;
    int16_t pcm[VC_FRAME];
    uint8_t txbuf[VC_RTP_HDR_LEN + VC_MAX_PACKET + SRTP_MAX_TRAILER_LEN];
    uint8_t rtcpbuf[64 + SRTCP_EXTRA];
    /* receiving */
    uint8_t rxbuf[DATAGRAM_MAX + SRTCP_EXTRA];
    int16_t dec[DEC_MAX];
    vc_rslot slots[VC_MAX_SLOTS];
    hmap *speakers; /* user_id -> vc_spk */
    uint64_t rx_datagrams, rx_rtcp, rx_auth_fail, rx_parse_fail, rx_unknown_ssrc, rx_not_rtp;
    uint64_t rx_no_send_time;
};

static int64_t realtime_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

/* ---- pure pieces ---------------------------------------------------------------------------- */

uint8_t vc_audio_level(const int16_t *pcm, size_t n, bool *voice)
{
    double sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += (double)pcm[i] * pcm[i];
    double rms = n ? sqrt(sum / (double)n) : 0;
    double dbov = rms > 0 ? -20.0 * log10(rms / 32768.0) : 127.0;
    uint8_t level = dbov <= 0 ? 0 : dbov >= 127 ? 127 : (uint8_t)lrint(dbov);
    if (voice) *voice = level < 60;
    return level;
}

int vc_rtp_header(uint8_t *buf, size_t cap, uint8_t pt, bool marker, uint16_t seq, uint32_t ts,
                  uint32_t ssrc, uint8_t level_id, bool voice, uint8_t level, int64_t send_ns)
{
    if (cap < VC_RTP_HDR_LEN) return -ENOSPC;
    if (level_id < 1 || level_id > 14 || level_id == VC_EXT_SEND_TIME || level > 127)
        return -EINVAL;
    rtp_hdr_params h = {.pt = pt, .marker = marker, .seq = seq, .ts = ts, .ssrc = ssrc};
    int n = rtp_write_hdr(buf, cap, &h);
    if (n != RTP_HDR_MIN) return n < 0 ? n : -EINVAL;
    buf[0] |= 0x10; /* X */
    uint8_t *x = buf + RTP_HDR_MIN;
    x[0] = 0xBE;
    x[1] = 0xDE;
    x[2] = 0;
    x[3] = 3; /* words */
    x[4] = (uint8_t)(level_id << 4);
    x[5] = (uint8_t)((voice ? 0x80 : 0) | level);
    x[6] = (uint8_t)(VC_EXT_SEND_TIME << 4 | 7);
    uint64_t t = (uint64_t)send_ns;
    for (int i = 0; i < 8; i++)
        x[7 + i] = (uint8_t)(t >> (56 - 8 * i));
    x[15] = 0; /* padding */
    return VC_RTP_HDR_LEN;
}

static void ring_push(vc_ring *r, const int16_t *pcm, size_t n)
{
    if (!r->pcm) return;
    for (size_t i = 0; i < n; i++) {
        r->pcm[r->pos] = pcm[i];
        r->pos = (r->pos + 1) % RING;
    }
    r->fill = r->fill + n > RING ? RING : r->fill + n;
}

/* The ring's dominant tone; -ENODATA when it holds too little or silence. */
static int ring_peak(const vc_ring *r, vc_peak *out)
{
    if (!r->pcm || r->fill < VC_FREQ_WINDOW) return -ENODATA;
    int16_t *lin = xmalloc(r->fill * sizeof *lin);
    size_t start = (r->pos + RING - r->fill) % RING;
    for (size_t i = 0; i < r->fill; i++)
        lin[i] = r->pcm[(start + i) % RING];
    int rc = vc_freq_dominant(lin, r->fill, out);
    free(lin);
    return rc;
}

/* ---- sending -------------------------------------------------------------------------------- */

static void send_dgram(vc_media *m, const uint8_t *p, size_t n)
{
    uv_buf_t b = uv_buf_init((char *)p, (unsigned)n);
    int rc = uv_udp_try_send(&m->udp, &b, 1, (const struct sockaddr *)&m->remote);
    if (rc < 0) m->send_drops++;
}

static void send_frame(vc_media *m)
{
    vc_tone_fill(&m->tone, m->pcm, VC_FRAME);
    bool voice;
    uint8_t level = vc_audio_level(m->pcm, VC_FRAME, &voice);
    int h = vc_rtp_header(m->txbuf, sizeof m->txbuf, m->sd.payload_type, m->first, m->seq, m->ts,
                          m->sd.ssrc, m->sd.level_ext_id, voice, level, realtime_ns());
    if (h < 0) return;
    int n = vc_encode(m->enc, m->pcm, m->txbuf + h, VC_MAX_PACKET);
    m->seq++;
    m->ts += VC_FRAME;
    if (n <= 0) return;
    m->first = false;
    int len = h + n;
    if (srtp_protect(m->tx, m->txbuf, &len) != srtp_err_status_ok) {
        m->send_drops++;
        return;
    }
    send_dgram(m, m->txbuf, (size_t)len);
    m->sent++;
    m->sent_octets += (uint64_t)n;
}

static void on_tx(uv_timer_t *t)
{
    vc_media *m = t->data;
    uint64_t now = uv_hrtime();
    int burst = 0;
    while (m->next_due_ns <= now && burst++ < VC_BURST) {
        send_frame(m);
        m->next_due_ns += FRAME_NS;
    }
    if (m->next_due_ns <= now) m->next_due_ns = now + FRAME_NS; /* too far behind: restart */
    uint64_t wait_ms = (m->next_due_ns - now + 999999) / 1000000;
    uv_timer_start(&m->tx_timer, on_tx, wait_ms, 0);
}

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static void on_rtcp(uv_timer_t *t)
{
    vc_media *m = t->data;
    uint8_t *p = m->rtcpbuf;
    int len;
    if (!m->cfg.silent && m->sent) { /* SR, no report blocks */
        int64_t now = realtime_ns();
        uint64_t sec = (uint64_t)(now / 1000000000) + 2208988800ull;
        uint64_t frac = ((uint64_t)(now % 1000000000) << 32) / 1000000000ull;
        p[0] = 0x80;
        p[1] = RTP_RTCP_SR;
        p[2] = 0;
        p[3] = 6;
        put32(p + 4, m->sd.ssrc);
        put32(p + 8, (uint32_t)sec);
        put32(p + 12, (uint32_t)frac);
        put32(p + 16, m->ts);
        put32(p + 20, (uint32_t)m->sent);
        put32(p + 24, (uint32_t)m->sent_octets);
        len = 28;
    } else { /* RR, no report blocks */
        p[0] = 0x80;
        p[1] = RTP_RTCP_RR;
        p[2] = 0;
        p[3] = 1;
        put32(p + 4, m->sd.ssrc);
        len = 8;
    }
    if (srtp_protect_rtcp(m->tx, p, &len) != srtp_err_status_ok) {
        m->send_drops++;
        return;
    }
    send_dgram(m, p, (size_t)len);
    m->rtcp_sent++;
}

/* ---- receiving ------------------------------------------------------------------------------ */

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
    vc_media *m = h->data;
    *b = uv_buf_init((char *)m->rxbuf, DATAGRAM_MAX);
}

static vc_rslot *slot_by_ssrc(vc_media *m, uint32_t ssrc)
{
    for (unsigned i = 0; i < m->sd.n_slots; i++)
        if (m->slots[i].ssrc == ssrc) return &m->slots[i];
    return NULL;
}

static void rx_audio(vc_rslot *s, const int16_t *pcm, size_t n)
{
    ring_push(&s->ring, pcm, n);
    if (s->spk) ring_push(&s->spk->ring, pcm, n);
}

static void rx_rtp(vc_media *m, int len)
{
    rtp_pkt pkt;
    if (rtp_parse(m->rxbuf, (size_t)len, &pkt, NULL) < 0) {
        m->rx_parse_fail++;
        return;
    }
    vc_rslot *s = slot_by_ssrc(m, pkt.ssrc);
    if (!s) {
        m->rx_unknown_ssrc++;
        return;
    }
    s->packets++;
    if (s->spk) s->spk->packets++;
    vc_seq_add(&s->seq, pkt.seq);
    const uint8_t *x;
    size_t xl;
    if (rtp_ext_find(&pkt, VC_EXT_SEND_TIME, &x, &xl) == 0 && xl == 8) {
        uint64_t t = 0;
        for (int i = 0; i < 8; i++)
            t = t << 8 | x[i];
        vc_latency_add(&s->lat, (int64_t)t, realtime_ns());
    } else {
        m->rx_no_send_time++;
    }
    int16_t d = (int16_t)(uint16_t)(pkt.seq - s->last_seq);
    if (s->have_last && d <= 0) {
        s->late++; /* reordered or duplicate: not decoded */
        return;
    }
    if (s->have_last && d > 1 && d <= VC_MAX_PLC + 1) {
        for (int i = 1; i < d; i++) {
            int got = vc_decode(s->dec, NULL, 0, m->dec, DEC_MAX);
            if (got > 0) {
                rx_audio(s, m->dec, (size_t)got);
                s->plc_frames++;
            }
        }
    }
    s->have_last = true;
    s->last_seq = pkt.seq;
    int got = vc_decode(s->dec, pkt.payload, pkt.payload_len, m->dec, DEC_MAX);
    if (got < 0) {
        s->decode_errors++;
        return;
    }
    rx_audio(s, m->dec, (size_t)got);
}

static void on_recv(uv_udp_t *u, ssize_t nread, const uv_buf_t *b, const struct sockaddr *addr,
                    unsigned flags)
{
    vc_media *m = u->data;
    if (nread <= 0 || !m->started) return;
    m->rx_datagrams++;
    int len = (int)nread;
    rtp_kind k = rtp_demux(m->rxbuf, (size_t)len);
    if (k == RTP_KIND_RTCP) {
        if (srtp_unprotect_rtcp(m->rx, m->rxbuf, &len) != srtp_err_status_ok)
            m->rx_auth_fail++;
        else
            m->rx_rtcp++;
        return;
    }
    if (k != RTP_KIND_RTP) {
        m->rx_not_rtp++;
        return;
    }
    if (srtp_unprotect(m->rx, m->rxbuf, &len) != srtp_err_status_ok) {
        m->rx_auth_fail++;
        return;
    }
    rx_rtp(m, len);
}

/* ---- lifecycle ------------------------------------------------------------------------------ */

static int to_sockaddr(const char *addr, uint16_t port, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof *ss);
    if (uv_ip4_addr(addr, port, (struct sockaddr_in *)ss) == 0) return 0;
    if (uv_ip6_addr(addr, port, (struct sockaddr_in6 *)ss) == 0) return 0;
    return -EINVAL;
}

int vc_media_new(void *loop, const vc_media_config *cfg, vc_media **out)
{
    if (rtp_srtp_init() < 0) return -EIO;
    vc_media *m = xcalloc(1, sizeof *m);
    m->loop = loop;
    m->cfg = *cfg;
    if (m->cfg.freq_hz <= 0) m->cfg.freq_hz = 440;
    if (m->cfg.amplitude <= 0) m->cfg.amplitude = 0.3;
    struct sockaddr_storage local;
    int rc = vc_tone_init(&m->tone, m->cfg.freq_hz, m->cfg.amplitude);
    if (rc == 0) rc = to_sockaddr(cfg->bind_addr ? cfg->bind_addr : "0.0.0.0", 0, &local);
    if (rc == 0) rc = vc_encoder_create(&m->enc, cfg->complexity);
    if (rc < 0) goto fail;
    m->speakers = hmap_new();
    uv_udp_init(m->loop, &m->udp);
    uv_timer_init(m->loop, &m->tx_timer);
    uv_timer_init(m->loop, &m->rtcp_timer);
    m->udp.data = m->tx_timer.data = m->rtcp_timer.data = m;
    m->open_handles = 3;
    rc = uv_udp_bind(&m->udp, (const struct sockaddr *)&local, 0);
    if (rc < 0) {
        LOG(LOG_ERROR, "media: cannot bind %s: %s", cfg->bind_addr ? cfg->bind_addr : "0.0.0.0",
            uv_strerror(rc));
        vc_media_close(m, NULL, NULL);
        return rc;
    }
    *out = m;
    return 0;
fail:
    vc_encoder_destroy(m->enc);
    free(m);
    return rc;
}

uint16_t vc_media_port(const vc_media *m)
{
    struct sockaddr_storage ss;
    int len = sizeof ss;
    if (uv_udp_getsockname(&m->udp, (struct sockaddr *)&ss, &len) < 0) return 0;
    return ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                    : ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

void vc_media_counts(const vc_media *m, uint64_t *sent, uint64_t *received)
{
    *sent = m->sent + m->rtcp_sent;
    *received = m->rx_datagrams;
}

static int srtp_session(srtp_t *out, vc_mode mode, const uint8_t *key, srtp_ssrc_type_t type)
{
    srtp_policy_t p;
    memset(&p, 0, sizeof p);
    if (mode == VC_MODE_AES_CM) {
        srtp_crypto_policy_set_aes_cm_128_hmac_sha1_80(&p.rtp);
        srtp_crypto_policy_set_aes_cm_128_hmac_sha1_80(&p.rtcp);
    } else if (mode == VC_MODE_GCM) {
        srtp_crypto_policy_set_aes_gcm_128_16_auth(&p.rtp);
        srtp_crypto_policy_set_aes_gcm_128_16_auth(&p.rtcp);
    } else {
        return -EINVAL;
    }
    p.ssrc.type = type;
    p.key = (unsigned char *)key;
    p.window_size = 128;
    srtp_err_status_t st = srtp_create(out, &p);
    if (st != srtp_err_status_ok) {
        LOG(LOG_ERROR, "media: srtp_create refused the key (status %d)", (int)st);
        return -EACCES;
    }
    return 0;
}

/* A later Session Description. The protocol re-sends the same keys, SSRC and slots with
 * possibly another port; should keys or SSRCs change anyway, follow them: new SRTP sessions (a
 * fresh replay window), new slot SSRCs (their sequence tracking restarts; the loss counted so far
 * is kept), a marker on our next packet. The slot count must stay. */
static int media_update(vc_media *m, const vc_sdesc *sd, const struct sockaddr_storage *remote)
{
    if (sd->n_slots != m->sd.n_slots) return -EINVAL;
    if (sd->mode != m->sd.mode || memcmp(sd->send_key, m->sd.send_key, VC_KEY_MAX) != 0 ||
        memcmp(sd->recv_key, m->sd.recv_key, VC_KEY_MAX) != 0) {
        srtp_t tx, rx;
        int rc = srtp_session(&tx, sd->mode, sd->send_key, ssrc_any_outbound);
        if (rc < 0) return rc;
        rc = srtp_session(&rx, sd->mode, sd->recv_key, ssrc_any_inbound);
        if (rc < 0) {
            srtp_dealloc(tx);
            return rc;
        }
        srtp_dealloc(m->tx);
        srtp_dealloc(m->rx);
        m->tx = tx;
        m->rx = rx;
        LOG(LOG_INFO, "media: new SRTP keys from a later Session Description");
    }
    if (sd->ssrc != m->sd.ssrc) m->first = true;
    for (unsigned i = 0; i < sd->n_slots; i++) {
        vc_rslot *s = &m->slots[i];
        if (s->ssrc == sd->slots[i].ssrc) continue;
        s->lost_before += vc_seq_lost(&s->seq);
        vc_seq_init(&s->seq);
        s->have_last = false;
        s->ssrc = sd->slots[i].ssrc;
    }
    m->sd = *sd;
    m->remote = *remote;
    return 0;
}

int vc_media_start(vc_media *m, const vc_sdesc *sd)
{
    struct sockaddr_storage remote;
    if (to_sockaddr(sd->address, sd->port, &remote) < 0) return -EINVAL;
    if (m->started) return media_update(m, sd, &remote);
    if (sd->n_slots > VC_MAX_SLOTS) return -EINVAL;
    int rc = srtp_session(&m->tx, sd->mode, sd->send_key, ssrc_any_outbound);
    if (rc < 0) return rc;
    rc = srtp_session(&m->rx, sd->mode, sd->recv_key, ssrc_any_inbound);
    if (rc < 0) {
        srtp_dealloc(m->tx);
        m->tx = NULL;
        return rc;
    }
    for (unsigned i = 0; i < sd->n_slots; i++) {
        vc_rslot *s = &m->slots[i];
        s->ssrc = sd->slots[i].ssrc;
        vc_seq_init(&s->seq);
        vc_latency_init(&s->lat);
        s->ring.pcm = xcalloc(RING, sizeof(int16_t));
        if (vc_decoder_create(&s->dec) < 0) return -ENOMEM;
    }
    m->sd = *sd;
    m->remote = remote;
    m->started = true;
    m->first = true;
    uint32_t r[2];
    if (uv_random(NULL, NULL, r, sizeof r, 0, NULL) < 0) r[0] = r[1] = 1;
    m->seq = (uint16_t)r[0];
    m->ts = r[1];
    uv_udp_recv_start(&m->udp, on_alloc, on_recv);
    uv_timer_start(&m->rtcp_timer, on_rtcp, 0, RTCP_MS);
    if (!m->cfg.silent) {
        m->next_due_ns = uv_hrtime();
        uv_timer_start(&m->tx_timer, on_tx, 0, 0);
    }
    return 0;
}

int vc_media_set_speaker(vc_media *m, unsigned slot, const char *user_id)
{
    if (slot >= VC_MAX_SLOTS || (user_id && strlen(user_id) >= USER_ID_MAX)) return -EINVAL;
    vc_spk *spk = NULL;
    if (user_id) {
        spk = hmap_gets(m->speakers, user_id);
        if (!spk) {
            spk = xcalloc(1, sizeof *spk);
            strcpy(spk->user_id, user_id);
            spk->ring.pcm = xcalloc(RING, sizeof(int16_t));
            hmap_puts(m->speakers, user_id, spk);
        }
    }
    m->slots[slot].spk = spk;
    return 0;
}

/* ---- report --------------------------------------------------------------------------------- */

static void put_peak(json_t *o, const vc_ring *r)
{
    vc_peak pk;
    if (ring_peak(r, &pk) == 0) {
        json_object_set_new(o, "freq_hz", json_real(round(pk.freq_hz * 10) / 10));
        json_object_set_new(o, "ratio", json_real(round(pk.ratio * 1000) / 1000));
    } else {
        json_object_set_new(o, "freq_hz", json_null());
        json_object_set_new(o, "ratio", json_null());
    }
}

json_t *vc_media_report(const vc_media *m)
{
    json_t *slots = json_array(), *spk = json_object();
    for (unsigned i = 0; i < m->sd.n_slots; i++) {
        const vc_rslot *s = &m->slots[i];
        json_t *o = json_pack(
            "{s:i,s:I,s:o,s:I,s:I,s:I,s:I,s:I,s:I}", "slot", (int)i, "ssrc", (json_int_t)s->ssrc,
            "user_id", s->spk ? json_string(s->spk->user_id) : json_null(), "packets",
            (json_int_t)s->packets, "lost", (json_int_t)(s->lost_before + vc_seq_lost(&s->seq)),
            "reordered", (json_int_t)s->seq.reordered, "late", (json_int_t)s->late, "plc_frames",
            (json_int_t)s->plc_frames, "decode_errors", (json_int_t)s->decode_errors);
        put_peak(o, &s->ring);
        int64_t p50 = vc_latency_quantile(&s->lat, 0.5), p99 = vc_latency_quantile(&s->lat, 0.99);
        json_object_set_new(o, "latency_ms",
                            p50 < 0 ? json_null()
                                    : json_pack("{s:f,s:f}", "p50", round(p50 / 1e3) / 1e3, "p99",
                                                round(p99 / 1e3) / 1e3));
        json_array_append_new(slots, o);
    }
    size_t it = 0;
    const void *k;
    size_t kl;
    void *v;
    while (hmap_next(m->speakers, &it, &k, &kl, &v)) {
        const vc_spk *s = v;
        json_t *o = json_pack("{s:I}", "packets", (json_int_t)s->packets);
        put_peak(o, &s->ring);
        json_object_set_new(spk, s->user_id, o);
    }
    return json_pack(
        "{s:I,s:I,s:I,s:{s:I,s:I,s:I,s:I,s:I,s:I,s:I},s:o,s:o}", "sent", (json_int_t)m->sent,
        "rtcp_sent", (json_int_t)m->rtcp_sent, "send_drops", (json_int_t)m->send_drops, "rx",
        "datagrams", (json_int_t)m->rx_datagrams, "rtcp", (json_int_t)m->rx_rtcp, "auth_fail",
        (json_int_t)m->rx_auth_fail, "parse_fail", (json_int_t)m->rx_parse_fail, "unknown_ssrc",
        (json_int_t)m->rx_unknown_ssrc, "not_rtp", (json_int_t)m->rx_not_rtp, "no_send_time",
        (json_int_t)m->rx_no_send_time, "slots", slots, "speakers", spk);
}

void vc_media_progress(const vc_media *m, char *buf, size_t n)
{
    size_t off =
        (size_t)snprintf(buf, n, "sent=%llu rx=%llu auth_fail=%llu", (unsigned long long)m->sent,
                         (unsigned long long)m->rx_datagrams, (unsigned long long)m->rx_auth_fail);
    for (unsigned i = 0; i < m->sd.n_slots && off < n; i++) {
        const vc_rslot *s = &m->slots[i];
        off += (size_t)snprintf(buf + off, n - off, " | slot%u %s pkts=%llu lost=%llu", i,
                                s->spk ? s->spk->user_id : "-", (unsigned long long)s->packets,
                                (unsigned long long)(s->lost_before + vc_seq_lost(&s->seq)));
    }
}

static void media_closed(uv_handle_t *h)
{
    vc_media *m = h->data;
    if (--m->open_handles) return;
    for (unsigned i = 0; i < VC_MAX_SLOTS; i++) {
        vc_decoder_destroy(m->slots[i].dec);
        free(m->slots[i].ring.pcm);
    }
    size_t it = 0;
    const void *k;
    size_t kl;
    void *v;
    while (hmap_next(m->speakers, &it, &k, &kl, &v)) {
        vc_spk *s = v;
        free(s->ring.pcm);
        free(s);
    }
    hmap_free(m->speakers);
    if (m->tx) srtp_dealloc(m->tx);
    if (m->rx) srtp_dealloc(m->rx);
    vc_encoder_destroy(m->enc);
    void (*done)(void *) = m->done;
    void *arg = m->done_arg;
    free(m);
    if (done) done(arg);
}

void vc_media_close(vc_media *m, void (*done)(void *arg), void *arg)
{
    if (!m) return;
    m->done = done;
    m->done_arg = arg;
    uv_close((uv_handle_t *)&m->udp, media_closed);
    uv_close((uv_handle_t *)&m->tx_timer, media_closed);
    uv_close((uv_handle_t *)&m->rtcp_timer, media_closed);
}
