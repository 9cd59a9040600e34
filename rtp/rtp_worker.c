/*
 * rtp_worker — one media worker: a thread with its own libuv loop, one UDP socket, its rooms and
 * the SRTP sessions of their participants (D20). How it works:
 *
 * Socket: we create the non-blocking UDP socket ourselves and watch it with a uv_poll_t rather
 * than a uv_udp_t with UV_UDP_RECVMMSG. libuv 1.44's batched receive still hands us one datagram
 * per callback out of one big buffer it asks for (64 KiB per slot), gives no "end of batch" signal
 * we could flush sends on, and has no batched send at all. With uv_poll the readable callback
 * calls recvmmsg() itself into the worker's preallocated RTP_WORKER_BATCH buffers, runs the whole
 * batch through the stages, and flushes every resulting packet with one sendmmsg() on the same fd
 * — one receive and one send syscall per batch.
 *
 * Packet path (one pkt_ctx per datagram, small stages, no lock, no allocation here — but libsrtp
 * 2.5's HMAC-SHA1 on OpenSSL 3 mallocs twice per AES_CM operation; GCM does not; docs/media.md):
 *   demux → lookup the participant by SSRC (open-addressing table sized at new) → srtp_unprotect
 *   with its inbound srtp_t (refusal counted, dropped) → latch the source address on the first
 *   success (EV_LATCHED) → rtp_parse + rtp_audio_level → rtp_room_packet → per destination: copy
 *   into a preallocated out buffer with the header rewritten by rtp_slot_map, srtp_protect with
 *   the listener's outbound srtp_t, queue for sendmmsg to the listener's latched address.
 *   RTCP: srtp_unprotect_rtcp for liveness, then dropped. It is attributed by its first SSRC,
 *   so a client sends RTCP under its upstream SSRC (browsers use their sender's).
 * Out buffers: up to RTP_WORKER_OUT datagrams; the queue is flushed when full and at the end of
 * each batch. A readable callback reads at most RTP_WORKER_ROUNDS batches, then yields to the loop.
 *
 * SRTP: one srtp_t per direction per participant. Inbound: a policy for the client's SSRC.
 * Outbound: one policy per slot SSRC (all created up front, so libsrtp allocates no stream on the
 * first packet). Buffers leave SRTP_MAX_TRAILER_LEN after the largest datagram.
 *
 * Latching: the first packet that authenticates fixes the participant's destination address; later
 * packets from elsewhere are accepted (they authenticated) but do not move it (re-latching on NAT
 * rebinding is later work). Liveness: every authenticated RTP or RTCP packet; a timer ticking
 * every silence_ms/4 emits EV_SILENT once per silence.
 *
 * Commands and events: two bounded rings, each under its own mutex (commands and events are rare;
 * the packet path never touches them except to queue EV_LATCHED). Stop is a command too: the
 * worker closes its handles and its loop ends; the thread then checks uv_loop_close() == 0.
 *
 * Tests and fuzzers: rtp_worker_inject() runs the readable callback's work (commands, one datagram
 * through stage_demux and on, the send, the slot changes) on the caller's thread, for a worker
 * whose thread was never started (tests/fuzz/fuzz_srtp.c).
 */
#include "rtp/rtp.h"
#include "webrtc/webrtc.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <srtp2/srtp.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#define RTP_WORKER_MTU         1500
#define RTP_WORKER_BUF         (RTP_WORKER_MTU + SRTP_MAX_TRAILER_LEN + 16)
#define RTP_WORKER_OUT         256   /* out datagrams queued before a sendmmsg */
#define RTP_WORKER_ROUNDS      8     /* recvmmsg batches per readable callback */
#define RTP_WORKER_NO_LEVEL    50    /* -dBov assumed for a packet without the audio level (D24) */
#define RTP_WORKER_HS_TICK_MS  50    /* DTLS retransmission timer granularity */
#define RTP_WORKER_HS_DEADLINE 20000 /* a DTLS handshake must end within this */

_Static_assert((int)WRTC_SRTP_AES_CM_128_HMAC_SHA1_80 == (int)RTP_SRTP_AES_CM_128_HMAC_SHA1_80 &&
                   (int)WRTC_SRTP_AEAD_AES_128_GCM == (int)RTP_SRTP_AEAD_AES_128_GCM &&
                   WRTC_SRTP_KEY_MAX == RTP_SRTP_KEY_MAX,
               "webrtc's SRTP keys are rtp's");

#define RTP_WORKER_ROOM_START 16 /* a room's first capacity; it grows ×4 up to its bound */

typedef struct wroom {
    bool used;
    bool dirty; /* on the dirty list: its slot changes are drained after the batch */
    uint32_t id;
    rtp_room *room;
    rtp_room_config cfg; /* cfg.max_participants: its capacity now */
    uint32_t max_cap;    /* the bound the owner gave */
} wroom;

typedef struct part {
    bool used;
    bool latched;
    bool silent_sent;
    bool vad_seen; /* a packet of it had the audio level's V flag set: it does VAD (D25) */
    bool keyed;    /* its SRTP sessions exist (srtp: from the start; webrtc: after DTLS) */
    bool ice;      /* webrtc: an authenticated STUN check came; addr is its ICE address */
    bool in_addr;  /* webrtc: in by_addr under addr */
    bool in_hs;    /* webrtc: on the handshake list */
    uint8_t transport;
    uint8_t level_id, pt;
    uint8_t n_slots;
    unsigned flags; /* its room flags (a room that grows re-joins it with them) */
    uint32_t handle;
    uint32_t ssrc; /* webrtc: 0 until learnt */
    wroom *room;
    srtp_t in, out;
    uint64_t last_rx_ms;
    struct sockaddr_storage addr;
    socklen_t addr_len;
    /* webrtc */
    uint32_t ufrag_key;
    char ufrag[RTP_ICE_UFRAG_LEN + 1], pwd[RTP_ICE_PWD_LEN + 1];
    wrtc_dtls *dtls;
    uint64_t hs_deadline_ms;
    uint32_t slot_ssrc[RTP_ROOM_MAX_SLOTS];
} part;

/* uint32 key → participant index + 1 (0 = empty); linear probing, backward-shift delete. A key
 * and its value share a cache line; the table starts small and doubles while it is over half full
 * (up to twice the bound it was made for), so a worker with few participants keeps its tables in
 * cache. Growth happens when commands add entries (do_add reserves what the packet path may add
 * later: a browser's SSRC, its ICE address), never on the packet path. */
typedef struct u32ent {
    uint32_t key, val;
} u32ent;
typedef struct u32map {
    u32ent *e;
    uint32_t mask, count, max_cap;
} u32map;

typedef struct cmd {
    rtp_worker_cmd_kind kind;
    uint32_t id;
    unsigned flags;
    rtp_room_config room_cfg;
    rtp_worker_participant p;
} cmd;

typedef struct ring {
    pthread_mutex_t mu;
    void *items;
    size_t size, cap, head, len;
} ring;

struct rtp_worker {
    rtp_worker_config cfg;
    uv_loop_t loop;
    uv_poll_t poll;
    uv_async_t async;
    uv_timer_t timer;
    int fd;
    uint16_t port;
    pthread_t thread;
    bool started;
    int loop_close_rc;

    ring cmds, events;

    wroom *rooms;
    part *parts;
    uint32_t parts_end; /* one past the highest used index: scans stop there, not at the bound */
    u32map by_ssrc, by_handle, by_room;
    u32map by_ufrag, by_addr; /* webrtc: our ufrag's value; a hash of the ICE address */
    uint32_t *hs;             /* webrtc: participants in a DTLS handshake (indexes) */
    uint32_t nhs;
    uv_timer_t hs_timer;
    uint32_t *dirty; /* indexes of rooms with possibly queued slot changes */
    uint32_t ndirty;
    rtp_room_change *changes;
    uint64_t rx_read_ns;   /* CLOCK_REALTIME when the current batch was read (no kernel stamp) */
    uint64_t timer_due_ns; /* when the timer should fire next (loop lag) */

    /* receive batch */
    uint8_t (*rx_buf)[RTP_WORKER_BUF];
    struct mmsghdr rx_msg[RTP_WORKER_BATCH];
    struct iovec rx_iov[RTP_WORKER_BATCH];
    struct sockaddr_storage rx_addr[RTP_WORKER_BATCH];
    union {
        char buf[CMSG_SPACE(sizeof(struct timespec))];
        struct cmsghdr align;
    } rx_ctl[RTP_WORKER_BATCH]; /* SO_TIMESTAMPNS: when the kernel received the datagram */

    /* send queue */
    uint8_t (*tx_buf)[RTP_WORKER_BUF];
    struct mmsghdr tx_msg[RTP_WORKER_OUT];
    struct iovec tx_iov[RTP_WORKER_OUT];
    uint64_t tx_arrival_ns[RTP_WORKER_OUT]; /* its source's arrival (realtime ns); 0: not media */
    size_t tx_len;

    rtp_room_dest *dests;
    rtp_worker_stats st;
};

/* ---- small pieces --------------------------------------------------------------------------- */

static int ring_init(ring *r, size_t size, size_t cap)
{
    r->items = calloc(cap, size);
    if (!r->items) return -ENOMEM;
    r->size = size;
    r->cap = cap;
    r->head = r->len = 0;
    pthread_mutex_init(&r->mu, NULL);
    return 0;
}

static void ring_fini(ring *r)
{
    if (!r->items) return;
    pthread_mutex_destroy(&r->mu);
    free(r->items);
    r->items = NULL;
}

static bool ring_push(ring *r, const void *item)
{
    bool ok = false;
    pthread_mutex_lock(&r->mu);
    if (r->len < r->cap) {
        memcpy((uint8_t *)r->items + ((r->head + r->len) % r->cap) * r->size, item, r->size);
        r->len++;
        ok = true;
    }
    pthread_mutex_unlock(&r->mu);
    return ok;
}

static bool ring_pop(ring *r, void *item)
{
    bool ok = false;
    pthread_mutex_lock(&r->mu);
    if (r->len > 0) {
        memcpy(item, (uint8_t *)r->items + r->head * r->size, r->size);
        explicit_bzero((uint8_t *)r->items + r->head * r->size, r->size); /* keys: no copies */
        r->head = (r->head + 1) % r->cap;
        r->len--;
        ok = true;
    }
    pthread_mutex_unlock(&r->mu);
    return ok;
}

static int map_init(u32map *m, uint32_t n)
{
    uint32_t cap = 16;
    while (cap < 2 * n)
        cap <<= 1;
    m->max_cap = cap;
    cap = cap < 64 ? cap : 64;
    m->e = calloc(cap, sizeof *m->e);
    if (!m->e) return -ENOMEM;
    m->mask = cap - 1;
    m->count = 0;
    return 0;
}

static void map_fini(u32map *m)
{
    free(m->e);
}

static uint32_t map_slot(uint32_t mask, uint32_t k)
{
    return (k * 2654435761u) & mask;
}

/* index + 1, or 0 */
static uint32_t map_get(const u32map *m, uint32_t k)
{
    for (uint32_t i = map_slot(m->mask, k);; i = (i + 1) & m->mask) {
        if (!m->e[i].val) return 0;
        if (m->e[i].key == k) return m->e[i].val;
    }
}

static int map_grow(u32map *m)
{
    uint32_t cap = (m->mask + 1) * 2;
    if (cap > m->max_cap) return -ENOSPC;
    u32ent *e = calloc(cap, sizeof *e);
    if (!e) return -ENOMEM;
    for (uint32_t i = 0; i <= m->mask; i++) {
        if (!m->e[i].val) continue;
        uint32_t j = map_slot(cap - 1, m->e[i].key);
        while (e[j].val)
            j = (j + 1) & (cap - 1);
        e[j] = m->e[i];
    }
    free(m->e);
    m->e = e;
    m->mask = cap - 1;
    return 0;
}

/* Room for `extra` more entries without growing later. */
static void map_reserve(u32map *m, uint32_t extra)
{
    while ((m->count + extra) * 2 > m->mask + 1 && map_grow(m) == 0) {
    }
}

/* Never full: at most half of max_cap is ever used (the bound it was made for). */
static void map_put(u32map *m, uint32_t k, uint32_t v)
{
    if ((m->count + 1) * 2 > m->mask + 1) map_grow(m); /* a failure leaves it fuller, not full */
    uint32_t i = map_slot(m->mask, k);
    while (m->e[i].val && m->e[i].key != k)
        i = (i + 1) & m->mask;
    if (!m->e[i].val) m->count++;
    m->e[i].key = k;
    m->e[i].val = v;
}

static void map_del(u32map *m, uint32_t k)
{
    uint32_t i = map_slot(m->mask, k);
    while (m->e[i].val && m->e[i].key != k)
        i = (i + 1) & m->mask;
    if (!m->e[i].val) return;
    m->e[i].val = 0;
    m->count--;
    for (uint32_t j = (i + 1) & m->mask; m->e[j].val; j = (j + 1) & m->mask) {
        uint32_t home = map_slot(m->mask, m->e[j].key);
        /* move j back to the hole i if its home is not in (i, j] (cyclically) */
        if (((j - home) & m->mask) >= ((j - i) & m->mask)) {
            m->e[i] = m->e[j];
            m->e[j].val = 0;
            i = j;
        }
    }
}

static uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void emit(rtp_worker *w, const rtp_worker_event *ev)
{
    if (!ring_push(&w->events, ev)) {
        w->st.events_dropped++;
        return;
    }
    if (w->cfg.event_async) uv_async_send(w->cfg.event_async);
}

/* ---- SRTP ----------------------------------------------------------------------------------- */

static int srtp_policy_for(srtp_policy_t *pol, const rtp_srtp_key *k)
{
    memset(pol, 0, sizeof *pol);
    switch (k->profile) {
    case RTP_SRTP_AES_CM_128_HMAC_SHA1_80:
        srtp_crypto_policy_set_aes_cm_128_hmac_sha1_80(&pol->rtp);
        srtp_crypto_policy_set_aes_cm_128_hmac_sha1_80(&pol->rtcp);
        break;
    case RTP_SRTP_AEAD_AES_128_GCM:
        srtp_crypto_policy_set_aes_gcm_128_16_auth(&pol->rtp);
        srtp_crypto_policy_set_aes_gcm_128_16_auth(&pol->rtcp);
        break;
    default:
        return -EINVAL;
    }
    pol->key = (unsigned char *)k->key;
    pol->window_size = 128;
    pol->allow_repeat_tx = 0;
    return 0;
}

/* inbound: the client's SSRC (any, for a webrtc browser: its RTCP comes from several);
 * outbound: one policy per slot SSRC. libsrtp 2.5 keeps a session's streams in a linked list,
 * inserts each new one at its head and walks it on every protect (one cache miss per stream
 * passed): the policies are chained last slot first, so slot 0 — the one a lone speaker is on,
 * the one used most — ends up at the head. */
static int srtp_sessions_for(const rtp_srtp_key *kin, const rtp_srtp_key *kout, uint32_t ssrc,
                             bool any_in, const uint32_t *slot_ssrc, unsigned n_slots, srtp_t *in,
                             srtp_t *out)
{
    srtp_policy_t pin, pout[RTP_ROOM_MAX_SLOTS];
    if (n_slots < 1 || n_slots > RTP_ROOM_MAX_SLOTS) return -EINVAL;
    if (srtp_policy_for(&pin, kin) < 0) return -EINVAL;
    pin.ssrc.type = any_in ? ssrc_any_inbound : ssrc_specific;
    pin.ssrc.value = ssrc;
    for (unsigned i = 0; i < n_slots; i++) {
        if (srtp_policy_for(&pout[i], kout) < 0) return -EINVAL;
        pout[i].ssrc.type = ssrc_specific;
        pout[i].ssrc.value = slot_ssrc[i];
        pout[i].next = i > 0 ? &pout[i - 1] : NULL;
    }
    if (srtp_create(in, &pin) != srtp_err_status_ok) return -EACCES;
    if (srtp_create(out, &pout[n_slots - 1]) != srtp_err_status_ok) {
        srtp_dealloc(*in);
        *in = NULL;
        return -EACCES;
    }
    return 0;
}

/* ---- commands (worker thread) --------------------------------------------------------------- */

static wroom *room_find(rtp_worker *w, uint32_t id)
{
    uint32_t v = map_get(&w->by_room, id);
    return v ? &w->rooms[v - 1] : NULL;
}

static void room_mark(rtp_worker *w, wroom *r)
{
    if (r->dirty) return;
    r->dirty = true;
    w->dirty[w->ndirty++] = (uint32_t)(r - w->rooms);
}

static void emit_speaking(rtp_worker *w, uint32_t listener, uint8_t slot, bool has,
                          uint32_t speaker)
{
    rtp_worker_event ev = {.kind = RTP_WORKER_EV_SPEAKING,
                           .id = listener,
                           .slot = slot,
                           .has_speaker = has,
                           .speaker = has ? speaker : 0};
    emit(w, &ev);
}

/* Turns the slot changes of the rooms touched since the last call into EV_SPEAKING events. */
static void drain_changes(rtp_worker *w)
{
    size_t cap = (size_t)w->cfg.max_participants;
    for (uint32_t i = 0; i < w->ndirty; i++) {
        wroom *r = &w->rooms[w->dirty[i]];
        r->dirty = false;
        if (!r->used) continue;
        bool resend = false;
        size_t n;
        while ((n = rtp_room_drain(r->room, w->changes, cap, &resend)) > 0)
            for (size_t k = 0; k < n; k++)
                emit_speaking(w, w->changes[k].listener, w->changes[k].slot_index,
                              w->changes[k].has_speaker, w->changes[k].speaker);
        if (!resend) continue;
        /* the room's ring overflowed: every listener's every slot, as it is now */
        for (uint32_t p = 0; p < w->parts_end; p++) {
            part *pt = &w->parts[p];
            if (!pt->used || pt->room != r) continue;
            for (unsigned s = 0; s < rtp_room_n_slots(r->room); s++) {
                uint32_t spk = 0;
                bool has = rtp_room_slot_speaker(r->room, pt->handle, s, &spk) == 0;
                emit_speaking(w, pt->handle, (uint8_t)s, has, spk);
            }
        }
    }
    w->ndirty = 0;
}

static part *part_by_handle(rtp_worker *w, uint32_t handle)
{
    uint32_t v = map_get(&w->by_handle, handle);
    return v ? &w->parts[v - 1] : NULL;
}

static int do_create_room(rtp_worker *w, const cmd *c)
{
    if (room_find(w, c->id)) return -EEXIST;
    for (uint32_t i = 0; i < w->cfg.max_rooms; i++) {
        wroom *r = &w->rooms[i];
        if (r->used) continue;
        r->cfg = c->room_cfg;
        r->max_cap = c->room_cfg.max_participants;
        if (r->cfg.max_participants > RTP_WORKER_ROOM_START)
            r->cfg.max_participants = RTP_WORKER_ROOM_START;
        r->cfg.change_ring = 0; /* its default scales with the capacity */
        int rc = rtp_room_create(&r->cfg, &r->room);
        if (rc < 0) return rc;
        r->used = true;
        r->id = c->id;
        map_put(&w->by_room, c->id, i + 1);
        return 0;
    }
    return -ENOSPC;
}

/* A full room is replaced by one 4 times larger (up to its bound): every participant re-joins
 * with its flags, and each listener's slots go on with their numbering (rtp_room_slot_continue);
 * the slots start free in the new room, so their speakers are announced as gone and come back
 * with the next packets. Rooms start small so that the many small ones stay in cache (D23). */
static int room_grow(rtp_worker *w, wroom *r)
{
    if (r->cfg.max_participants >= r->max_cap) return -ENOSPC;
    rtp_room_config cfg = r->cfg;
    cfg.max_participants =
        r->cfg.max_participants * 4 < r->max_cap ? r->cfg.max_participants * 4 : r->max_cap;
    rtp_room *nr;
    int rc = rtp_room_create(&cfg, &nr);
    if (rc < 0) return rc;
    uint32_t now_rtp = (uint32_t)uv_now(&w->loop) * 48u;
    for (uint32_t i = 0; i < w->parts_end; i++) {
        part *pt = &w->parts[i];
        if (!pt->used || pt->room != r) continue;
        rtp_room_slot_cfg next[RTP_ROOM_MAX_SLOTS];
        for (unsigned k = 0; k < pt->n_slots; k++) {
            uint32_t spk;
            if (rtp_room_slot_speaker(r->room, pt->handle, k, &spk) == 0)
                emit_speaking(w, pt->handle, (uint8_t)k, false, 0);
            rtp_room_slot_continue(r->room, pt->handle, k, now_rtp, &next[k]);
        }
        rtp_room_join(nr, pt->handle, pt->flags, next); /* fits: it is larger */
    }
    rtp_room_destroy(r->room);
    r->room = nr;
    r->cfg = cfg;
    w->st.room_grows++;
    return 0;
}

/* rtp_room_join, growing the room when it is full. */
static int room_join(rtp_worker *w, wroom *r, uint32_t handle, unsigned flags,
                     const rtp_room_slot_cfg *slots)
{
    int rc = rtp_room_join(r->room, handle, flags, slots);
    while (rc == -ENOSPC && room_grow(w, r) == 0)
        rc = rtp_room_join(r->room, handle, flags, slots);
    return rc;
}

static uint32_t ufrag_value(const char *u, size_t n)
{
    if (n != RTP_ICE_UFRAG_LEN) return 0;
    uint32_t v = 0;
    for (size_t i = 0; i < n; i++) {
        char ch = u[i];
        uint32_t d = ch >= '0' && ch <= '9'   ? (uint32_t)(ch - '0')
                     : ch >= 'a' && ch <= 'f' ? (uint32_t)(ch - 'a' + 10)
                                              : 16;
        if (d == 16) return 0;
        v = v << 4 | d;
    }
    return v;
}

static void hs_start(rtp_worker *w, uint32_t idx);
static void on_hs_timer(uv_timer_t *t);

static int do_add(rtp_worker *w, const cmd *c)
{
    const rtp_worker_participant *p = &c->p;
    bool webrtc = p->transport == RTP_TRANSPORT_WEBRTC;
    wroom *r = room_find(w, p->room);
    if (!r) return -ENOENT;
    if (part_by_handle(w, p->handle) || (p->ssrc && map_get(&w->by_ssrc, p->ssrc))) return -EEXIST;
    if (p->n_slots != rtp_room_n_slots(r->room)) return -EINVAL;
    if (p->transport > RTP_TRANSPORT_WEBRTC || (!webrtc && !p->ssrc)) return -EINVAL;
    uint32_t ukey = 0;
    if (webrtc) {
        ukey = ufrag_value(p->ice_ufrag, strnlen(p->ice_ufrag, sizeof p->ice_ufrag));
        if (!w->cfg.dtls || !ukey || strnlen(p->ice_pwd, sizeof p->ice_pwd) != RTP_ICE_PWD_LEN)
            return -EINVAL;
        if (map_get(&w->by_ufrag, ukey)) return -EEXIST;
    }
    uint32_t idx = 0;
    while (idx < w->cfg.max_participants && w->parts[idx].used)
        idx++;
    if (idx == w->cfg.max_participants) return -ENOSPC;
    part *pt = &w->parts[idx];
    memset(pt, 0, sizeof *pt);
    for (unsigned i = 0; i < p->n_slots; i++)
        pt->slot_ssrc[i] = p->slots[i].ssrc;
    pt->n_slots = p->n_slots;
    int rc = 0;
    if (webrtc) {
        rc = wrtc_dtls_new(w->cfg.dtls, p->remote_fp, &pt->dtls);
        if (rc < 0) return rc;
    } else {
        rc = srtp_sessions_for(&p->in, &p->out, p->ssrc, false, pt->slot_ssrc, p->n_slots, &pt->in,
                               &pt->out);
        if (rc < 0) return rc;
        pt->keyed = true;
    }
    rc = room_join(w, r, p->handle, p->flags, p->slots);
    if (rc < 0) {
        if (pt->keyed) {
            srtp_dealloc(pt->in);
            srtp_dealloc(pt->out);
        }
        wrtc_dtls_free(pt->dtls);
        memset(pt, 0, sizeof *pt);
        return rc;
    }
    pt->used = true;
    if (idx >= w->parts_end) w->parts_end = idx + 1;
    pt->flags = p->flags;
    pt->transport = p->transport;
    pt->level_id = p->level_ext_id ? p->level_ext_id : w->cfg.level_ext_id;
    pt->pt = p->payload_type;
    pt->handle = p->handle;
    pt->ssrc = p->ssrc;
    pt->room = r;
    map_reserve(&w->by_ssrc, 1); /* a webrtc SSRC may be adopted on the packet path */
    map_reserve(&w->by_addr, 1); /* and its ICE address set there */
    map_put(&w->by_handle, p->handle, idx + 1);
    if (p->ssrc) map_put(&w->by_ssrc, p->ssrc, idx + 1);
    if (webrtc) {
        pt->ufrag_key = ukey;
        memcpy(pt->ufrag, p->ice_ufrag, sizeof pt->ufrag);
        pt->ufrag[RTP_ICE_UFRAG_LEN] = 0;
        memcpy(pt->pwd, p->ice_pwd, sizeof pt->pwd);
        pt->pwd[RTP_ICE_PWD_LEN] = 0;
        map_put(&w->by_ufrag, ukey, idx + 1);
        hs_start(w, idx);
    }
    return 0;
}

static int do_destroy_room(rtp_worker *w, const cmd *c)
{
    wroom *r = room_find(w, c->id);
    if (!r) return -ENOENT;
    if (rtp_room_count(r->room) > 0) return -EBUSY;
    rtp_room_destroy(r->room);
    r->room = NULL;
    r->used = false;
    map_del(&w->by_room, c->id);
    return 0;
}

static int do_move(rtp_worker *w, const cmd *c)
{
    const rtp_worker_participant *p = &c->p;
    part *pt = part_by_handle(w, p->handle);
    if (!pt) return -ENOENT;
    wroom *to = room_find(w, p->room);
    if (!to) return -ENOENT;
    if (to == pt->room) {
        int frc = rtp_room_set_flags(to->room, p->handle, p->flags);
        if (frc == 0) pt->flags = p->flags;
        return frc;
    }
    if (p->n_slots != rtp_room_n_slots(to->room)) return -EINVAL;
    /* the slots go on where they were (same SSRCs and key: numbers must never repeat) */
    rtp_room_slot_cfg next[RTP_ROOM_MAX_SLOTS];
    uint32_t now_rtp = (uint32_t)uv_now(&w->loop) * 48u;
    for (unsigned i = 0; i < p->n_slots; i++)
        if (rtp_room_slot_continue(pt->room->room, p->handle, i, now_rtp, &next[i]) < 0)
            return -EINVAL;
    int rc = room_join(w, to, p->handle, p->flags, next);
    if (rc < 0) return rc;
    rtp_room_leave(pt->room->room, pt->handle);
    room_mark(w, pt->room);
    pt->room = to;
    pt->flags = p->flags;
    return 0;
}

static void hs_stop(rtp_worker *w, part *pt);
static uint32_t addr_hash(const struct sockaddr_storage *a);
static part *part_by_addr(rtp_worker *w, const struct sockaddr_storage *from);

static void part_drop(rtp_worker *w, part *pt)
{
    rtp_room_leave(pt->room->room, pt->handle);
    room_mark(w, pt->room);
    map_del(&w->by_handle, pt->handle);
    if (pt->ssrc) map_del(&w->by_ssrc, pt->ssrc);
    if (pt->keyed) {
        srtp_dealloc(pt->in);
        srtp_dealloc(pt->out);
    }
    if (pt->transport == RTP_TRANSPORT_WEBRTC) {
        hs_stop(w, pt);
        map_del(&w->by_ufrag, pt->ufrag_key);
        if (pt->in_addr) map_del(&w->by_addr, addr_hash(&pt->addr));
        wrtc_dtls_free(pt->dtls);
    }
    explicit_bzero(pt, sizeof *pt);
    while (w->parts_end > 0 && !w->parts[w->parts_end - 1].used)
        w->parts_end--;
}

static void on_closed(uv_handle_t *h)
{
    (void)h;
}

static void worker_close(rtp_worker *w)
{
    uv_close((uv_handle_t *)&w->poll, on_closed);
    uv_close((uv_handle_t *)&w->async, on_closed);
    uv_close((uv_handle_t *)&w->timer, on_closed);
    uv_close((uv_handle_t *)&w->hs_timer, on_closed);
}

/* Applies the queued commands in order; false when one of them was the stop. */
static bool apply_cmds(rtp_worker *w)
{
    cmd c;
    while (ring_pop(&w->cmds, &c)) {
        int rc = 0;
        uint32_t id = c.id;
        switch (c.kind) {
        case RTP_WORKER_CMD_CREATE_ROOM:
            rc = do_create_room(w, &c);
            break;
        case RTP_WORKER_CMD_ADD:
            rc = do_add(w, &c);
            id = c.p.handle;
            break;
        case RTP_WORKER_CMD_SET_FLAGS: {
            part *pt = part_by_handle(w, c.id);
            rc = pt ? rtp_room_set_flags(pt->room->room, c.id, c.flags) : -ENOENT;
            if (pt && rc == 0) pt->flags = c.flags;
            if (pt) room_mark(w, pt->room);
            break;
        }
        case RTP_WORKER_CMD_MOVE:
            rc = do_move(w, &c);
            break;
        case RTP_WORKER_CMD_DESTROY_ROOM:
            rc = do_destroy_room(w, &c);
            break;
        case RTP_WORKER_CMD_REMOVE: {
            part *pt = part_by_handle(w, c.id);
            if (pt)
                part_drop(w, pt);
            else
                rc = -ENOENT;
            break;
        }
        case RTP_WORKER_CMD_STOP_:
            worker_close(w);
            return false;
        }
        explicit_bzero(&c.p, sizeof c.p); /* libsrtp keeps its own copy of the keys */
        rtp_worker_event ev = {.kind = RTP_WORKER_EV_DONE, .cmd = c.kind, .id = id, .err = rc};
        emit(w, &ev);
    }
    return true;
}

static void on_async(uv_async_t *a)
{
    rtp_worker *w = a->data;
    if (apply_cmds(w)) drain_changes(w);
}

/* ---- packet path (worker thread) ------------------------------------------------------------ */

typedef struct pkt_ctx {
    uint8_t *buf;
    int len;
    uint64_t arrival_ns; /* CLOCK_REALTIME: the kernel's receive stamp, else when it was read */
    const struct sockaddr_storage *from;
    socklen_t from_len;
    part *src;
    rtp_pkt rtp;
    bool voice;
    uint8_t level;
} pkt_ctx;

static const uint64_t lat_bounds_us[RTP_WORKER_LAT_N] = RTP_WORKER_LAT_BOUNDS_US;

static uint64_t realtime_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static void lat_observe(rtp_worker *w, uint64_t ns)
{
    unsigned b = 0;
    while (b < RTP_WORKER_LAT_N && ns > lat_bounds_us[b] * 1000)
        b++;
    w->st.fwd_lat[b]++;
    w->st.fwd_lat_sum_ns += ns;
}

static void tx_flush(rtp_worker *w)
{
    size_t off = 0;
    while (off < w->tx_len) {
        int n = sendmmsg(w->fd, &w->tx_msg[off], (unsigned)(w->tx_len - off), 0);
        if (n < 0) {
            if (errno == EINTR) continue;
            w->st.drop_send++; /* this one; the rest get another try */
            off++;
            continue;
        }
        w->st.tx_batches++;
        for (int i = 0; i < n; i++)
            w->st.tx_bytes += w->tx_msg[off + i].msg_len;
        w->st.tx_datagrams += (uint64_t)n;
        uint64_t now = realtime_ns();
        for (int i = 0; i < n; i++) {
            uint64_t a = w->tx_arrival_ns[off + (size_t)i];
            if (a) lat_observe(w, now > a ? now - a : 0); /* 0 after a clock step back */
        }
        off += (size_t)n;
    }
    w->tx_len = 0;
}

static void latch(rtp_worker *w, pkt_ctx *c)
{
    part *pt = c->src;
    pt->last_rx_ms = uv_now(&w->loop);
    pt->silent_sent = false;
    if (pt->latched) return;
    pt->latched = true;
    if (pt->transport != RTP_TRANSPORT_WEBRTC) { /* webrtc: the ICE address, set by STUN */
        memcpy(&pt->addr, c->from, c->from_len);
        pt->addr_len = c->from_len;
    }
    rtp_worker_event ev = {.kind = RTP_WORKER_EV_LATCHED, .id = pt->handle};
    memcpy(&ev.addr, c->from, c->from_len);
    ev.addr_len = c->from_len;
    emit(w, &ev);
}

static void stage_rtcp(rtp_worker *w, pkt_ctx *c)
{
    if (c->len < 8) {
        w->st.drop_too_short++;
        return;
    }
    uint32_t v = map_get(&w->by_ssrc, rd32(c->buf + 4));
    c->src = v ? &w->parts[v - 1] : part_by_addr(w, c->from); /* a browser's RTCP: any SSRC */
    if (!c->src) {
        w->st.drop_unknown_ssrc++;
        return;
    }
    if (!c->src->keyed) {
        w->st.drop_rtcp_auth++;
        return;
    }
    if (srtp_unprotect_rtcp(c->src->in, c->buf, &c->len) != srtp_err_status_ok) {
        w->st.drop_rtcp_auth++;
        return;
    }
    w->st.rtcp_ok++;
    latch(w, c);
}

static void stage_forward(rtp_worker *w, pkt_ctx *c, const rtp_room_dest *d)
{
    uint32_t v = map_get(&w->by_handle, d->listener);
    part *to = v ? &w->parts[v - 1] : NULL;
    if (!to || !to->latched || !to->keyed) {
        w->st.drop_dest_unlatched++;
        return;
    }
    if (w->tx_len == RTP_WORKER_OUT) tx_flush(w);
    uint8_t *out = w->tx_buf[w->tx_len];
    uint32_t now_rtp = (uint32_t)uv_now(&w->loop) * 48u;
    rtp_err why;
    if (rtp_slot_map(d->slot, &c->rtp, now_rtp, out, &why) < 0) {
        w->st.drop_slot++;
        return;
    }
    size_t body = c->rtp.len - c->rtp.hdr_len;
    memcpy(out + c->rtp.hdr_len, c->rtp.data + c->rtp.hdr_len, body);
    if (to->pt) out[1] = (uint8_t)((out[1] & 0x80) | to->pt); /* the listener's Opus PT */
    int len = (int)c->rtp.len;
    if (srtp_protect(to->out, out, &len) != srtp_err_status_ok) {
        w->st.drop_protect++;
        return;
    }
    struct mmsghdr *m = &w->tx_msg[w->tx_len];
    w->tx_iov[w->tx_len].iov_len = (size_t)len;
    m->msg_hdr.msg_name = &to->addr;
    m->msg_hdr.msg_namelen = to->addr_len;
    w->tx_arrival_ns[w->tx_len] = c->arrival_ns;
    w->tx_len++;
}

static void stage_rtp(rtp_worker *w, pkt_ctx *c)
{
    if (c->len < RTP_HDR_MIN) {
        w->st.drop_too_short++;
        return;
    }
    uint32_t ssrc = rd32(c->buf + 8);
    uint32_t v = map_get(&w->by_ssrc, ssrc);
    c->src = v ? &w->parts[v - 1] : NULL;
    if (!c->src) {
        /* a browser whose offer named no SSRC: its first packet on the ICE address names it */
        part *pt = part_by_addr(w, c->from);
        if (pt && pt->keyed && !pt->ssrc) c->src = pt;
    }
    if (!c->src) {
        w->st.drop_unknown_ssrc++;
        return;
    }
    if (!c->src->keyed || srtp_unprotect(c->src->in, c->buf, &c->len) != srtp_err_status_ok) {
        w->st.drop_auth++;
        return;
    }
    if (!c->src->ssrc) { /* authenticated: adopt its SSRC */
        c->src->ssrc = ssrc;
        map_put(&w->by_ssrc, ssrc, (uint32_t)(c->src - w->parts) + 1);
    }
    w->st.rtp_ok++;
    latch(w, c);
    if (rtp_parse(c->buf, (size_t)c->len, &c->rtp, NULL) < 0) {
        w->st.drop_parse++;
        return;
    }
    int lv = rtp_audio_level(&c->rtp, c->src->level_id, &c->voice, &c->level);
    if (lv == -ENOENT) { /* a sender without the extension is heard, at a modest level (D24) */
        c->voice = true;
        c->level = RTP_WORKER_NO_LEVEL;
    } else if (lv < 0) { /* a malformed element: silence */
        c->voice = false;
        c->level = 127;
    } else if (c->voice) {
        c->src->vad_seen = true;
    } else if (!c->src->vad_seen) {
        /* a sender that has never set V does no VAD (GStreamer's level element, RFC 6464's
         * vad=off): its level alone decides; 127 is still silence (D25) */
        c->voice = c->level < 127;
    }
    rtp_room_drop why = RTP_ROOM_FORWARD;
    int n = rtp_room_packet(c->src->room->room, c->src->handle, c->voice, c->level,
                            (uint32_t)uv_now(&w->loop), w->dests, w->cfg.max_participants, &why);
    room_mark(w, c->src->room);
    if (n <= 0) {
        if (why != RTP_ROOM_FORWARD && why < RTP_ROOM_DROP_COUNT_) w->st.drop_room[why]++;
        return;
    }
    for (int i = 0; i < n; i++)
        stage_forward(w, c, &w->dests[i]);
}

/* ---- webrtc: ICE-lite STUN and DTLS on the same socket (webrtc/, issue 5) ---------------- */

static uint32_t addr_hash(const struct sockaddr_storage *a)
{
    uint32_t h = 2166136261u;
    const uint8_t *p;
    size_t n;
    uint16_t port;
    if (a->ss_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)a;
        p = (const uint8_t *)&s4->sin_addr;
        n = 4;
        port = s4->sin_port;
    } else {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)a;
        p = (const uint8_t *)&s6->sin6_addr;
        n = 16;
        port = s6->sin6_port;
    }
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 16777619u;
    h = (h ^ (port & 0xff)) * 16777619u;
    h = (h ^ (port >> 8)) * 16777619u;
    return h;
}

static bool addr_eq(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    if (a->ss_family != b->ss_family) return false;
    if (a->ss_family == AF_INET) {
        const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
        return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
    return x->sin6_port == y->sin6_port && !memcmp(&x->sin6_addr, &y->sin6_addr, 16);
}

/* The webrtc participant whose ICE address is `from`, or NULL. */
static part *part_by_addr(rtp_worker *w, const struct sockaddr_storage *from)
{
    uint32_t v = map_get(&w->by_addr, addr_hash(from));
    if (!v) return NULL;
    part *pt = &w->parts[v - 1];
    return pt->used && pt->in_addr && addr_eq(&pt->addr, from) ? pt : NULL;
}

/* Queues one datagram of ours (a STUN response, a DTLS flight) for the batch's sendmmsg. `to`
 * must stay valid until the flush (the receive batch's address, or a participant's). */
static void tx_queue_to(rtp_worker *w, const uint8_t *data, size_t len,
                        const struct sockaddr_storage *to, socklen_t to_len)
{
    if (len > RTP_WORKER_BUF) return;
    if (w->tx_len == RTP_WORKER_OUT) tx_flush(w);
    memcpy(w->tx_buf[w->tx_len], data, len);
    w->tx_iov[w->tx_len].iov_len = len;
    w->tx_msg[w->tx_len].msg_hdr.msg_name = (void *)to;
    w->tx_msg[w->tx_len].msg_hdr.msg_namelen = to_len;
    w->tx_arrival_ns[w->tx_len] = 0; /* ours, not forwarded media: not in the latency histogram */
    w->tx_len++;
}

/* Sets the participant's ICE address (the destination of its DTLS and, once keyed, its media). */
static void ice_address(rtp_worker *w, part *pt, const pkt_ctx *c)
{
    if (pt->in_addr && addr_eq(&pt->addr, c->from)) return;
    if (pt->in_addr) map_del(&w->by_addr, addr_hash(&pt->addr));
    memcpy(&pt->addr, c->from, c->from_len);
    pt->addr_len = c->from_len;
    uint32_t h = addr_hash(&pt->addr), other = map_get(&w->by_addr, h);
    pt->in_addr = !other; /* a hash collision with another transport: not findable by address */
    if (!other) map_put(&w->by_addr, h, (uint32_t)(pt - w->parts) + 1);
    pt->ice = true;
}

static void stage_stun(rtp_worker *w, pkt_ctx *c)
{
    wrtc_stun_msg m;
    wrtc_stun_err why;
    uint8_t resp[WRTC_STUN_RESP_MAX];
    const char *uf;
    size_t ul;
    if (wrtc_stun_parse(c->buf, (size_t)c->len, &m, &why) < 0 || m.cls != 0) {
        w->st.drop_stun++;
        return;
    }
    uint32_t v =
        wrtc_stun_local_ufrag(&m, &uf, &ul) == 0 ? map_get(&w->by_ufrag, ufrag_value(uf, ul)) : 0;
    part *pt = v ? &w->parts[v - 1] : NULL;
    if (pt && (ul != RTP_ICE_UFRAG_LEN || memcmp(uf, pt->ufrag, ul) != 0)) pt = NULL;
    if (!pt || wrtc_stun_check(&m, pt->ufrag, NULL, pt->pwd, &why) < 0) {
        w->st.drop_stun++;
        /* no transport by that ufrag: the rules that drop come first, as wrtc_stun_check orders
         * them (docs/webrtc.md): not a Binding or no FINGERPRINT is not ICE, answered with
         * nothing; then 400 without credentials, else 401 */
        int code = pt                                        ? wrtc_stun_err_code(why)
                   : m.method != 0x001 || !m.has_fingerprint ? 0
                   : !m.username || !m.integrity_off         ? 400
                                                             : 401;
        if (!code) return;
        const char *pwd = pt && (code == 420 || code == 487) ? pt->pwd : NULL;
        int n = wrtc_stun_write_error(&m, code, pwd, resp, sizeof resp);
        if (n > 0) tx_queue_to(w, resp, (size_t)n, c->from, c->from_len);
        return;
    }
    int n =
        wrtc_stun_write_success(&m, (const struct sockaddr *)c->from, pt->pwd, resp, sizeof resp);
    if (n <= 0) {
        w->st.drop_stun++;
        return;
    }
    w->st.stun_ok++;
    tx_queue_to(w, resp, (size_t)n, c->from, c->from_len);
    pt->last_rx_ms = uv_now(&w->loop); /* consent (RFC 7675) is liveness */
    pt->silent_sent = false;
    if (!pt->ice || m.use_candidate) ice_address(w, pt, c);
}

static void dtls_send(rtp_worker *w, part *pt)
{
    uint8_t out[WRTC_DTLS_MTU];
    int n;
    while ((n = wrtc_dtls_pull(pt->dtls, out, sizeof out)) > 0)
        tx_queue_to(w, out, (size_t)n, &pt->addr, pt->addr_len);
}

static void hs_start(rtp_worker *w, uint32_t idx)
{
    part *pt = &w->parts[idx];
    pt->in_hs = true;
    pt->hs_deadline_ms = uv_now(&w->loop) + RTP_WORKER_HS_DEADLINE;
    w->hs[w->nhs++] = idx;
    if (w->nhs == 1)
        uv_timer_start(&w->hs_timer, on_hs_timer, RTP_WORKER_HS_TICK_MS, RTP_WORKER_HS_TICK_MS);
}

static void hs_stop(rtp_worker *w, part *pt)
{
    if (!pt->in_hs) return;
    pt->in_hs = false;
    uint32_t idx = (uint32_t)(pt - w->parts);
    for (uint32_t i = 0; i < w->nhs; i++)
        if (w->hs[i] == idx) {
            w->hs[i] = w->hs[--w->nhs];
            break;
        }
    if (!w->nhs) uv_timer_stop(&w->hs_timer);
}

static void hs_failed(rtp_worker *w, part *pt)
{
    w->st.dtls_failed++;
    hs_stop(w, pt);
}

/* The handshake is done: SRTP sessions from the exported keys. */
static void hs_keyed(rtp_worker *w, part *pt)
{
    wrtc_srtp_key win, wout;
    rtp_srtp_key in, out;
    if (wrtc_dtls_srtp_keys(pt->dtls, &win, &wout) < 0) return;
    in.profile = (rtp_srtp_profile)win.profile;
    out.profile = (rtp_srtp_profile)wout.profile;
    memcpy(in.key, win.key, sizeof in.key);
    memcpy(out.key, wout.key, sizeof out.key);
    int rc =
        srtp_sessions_for(&in, &out, pt->ssrc, true, pt->slot_ssrc, pt->n_slots, &pt->in, &pt->out);
    explicit_bzero(&in, sizeof in);
    explicit_bzero(&out, sizeof out);
    explicit_bzero(&win, sizeof win);
    explicit_bzero(&wout, sizeof wout);
    if (rc < 0) {
        hs_failed(w, pt);
        return;
    }
    pt->keyed = true;
    w->st.dtls_connected++;
    hs_stop(w, pt);
}

/* Whether the datagram frames as DTLS records (RFC 6347 §4.1): each a 13-byte header with a
 * content type OpenSSL handles (change_cipher_spec, alert, handshake, application_data), version
 * major 254 and a length inside the datagram, the last ending at its end. Anything else is
 * garbage, dropped and counted here; OpenSSL would drop it too, but silently. */
static bool dtls_framed(const uint8_t *p, size_t n)
{
    if (!n) return false;
    for (size_t off = 0; off < n;) {
        if (n - off < 13) return false;
        size_t len = (size_t)p[off + 11] << 8 | p[off + 12];
        if (p[off] < 20 || p[off] > 23 || p[off + 1] != 254 || len > n - off - 13) return false;
        off += 13 + len;
    }
    return true;
}

static void stage_dtls(rtp_worker *w, pkt_ctx *c)
{
    part *pt = part_by_addr(w, c->from);
    if (!pt || !pt->dtls || !dtls_framed(c->buf, (size_t)c->len)) {
        w->st.drop_dtls++;
        return;
    }
    int st = wrtc_dtls_feed(pt->dtls, c->buf, (size_t)c->len);
    dtls_send(w, pt);
    if (st == -EINVAL) {
        w->st.drop_dtls++;
    } else if (st < 0 || st == WRTC_DTLS_FAILED) {
        if (pt->in_hs) hs_failed(w, pt);
    } else if (st == WRTC_DTLS_CONNECTED && !pt->keyed) {
        hs_keyed(w, pt);
    }
}

static void on_hs_timer(uv_timer_t *t)
{
    rtp_worker *w = t->data;
    uint64_t now = uv_now(&w->loop);
    for (uint32_t i = 0; i < w->nhs;) {
        part *pt = &w->parts[w->hs[i]];
        uint32_t before = w->nhs;
        if (now >= pt->hs_deadline_ms) {
            hs_failed(w, pt);
        } else if (pt->ice && wrtc_dtls_timeout_ms(pt->dtls) == 0) {
            if (wrtc_dtls_on_timeout(pt->dtls) < 0)
                hs_failed(w, pt);
            else
                dtls_send(w, pt);
        }
        if (w->nhs == before) i++; /* else the last one moved into i */
    }
    tx_flush(w);
}

static void stage_demux(rtp_worker *w, pkt_ctx *c)
{
    switch (rtp_demux(c->buf, (size_t)c->len)) {
    case RTP_KIND_RTP:
        stage_rtp(w, c);
        break;
    case RTP_KIND_RTCP:
        stage_rtcp(w, c);
        break;
    case RTP_KIND_STUN:
        stage_stun(w, c);
        break;
    case RTP_KIND_DTLS:
        stage_dtls(w, c);
        break;
    default:
        w->st.drop_not_rtp++;
        break;
    }
}

/* The kernel's receive time of a datagram (SO_TIMESTAMPNS), so the forwarding latency includes
 * the time it waited in the socket; the batch's read time if the stamp is missing. */
static uint64_t rx_arrival(const rtp_worker *w, const struct msghdr *m)
{
    for (struct cmsghdr *c = CMSG_FIRSTHDR(m); c; c = CMSG_NXTHDR((struct msghdr *)m, c))
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS &&
            c->cmsg_len >= CMSG_LEN(sizeof(struct timespec))) {
            struct timespec ts;
            memcpy(&ts, CMSG_DATA(c), sizeof ts);
            uint64_t ns = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
            return ns && ns <= w->rx_read_ns ? ns : w->rx_read_ns;
        }
    return w->rx_read_ns;
}

static void on_readable(uv_poll_t *h, int status, int events)
{
    rtp_worker *w = h->data;
    if (status < 0) return;
    for (int round = 0; round < RTP_WORKER_ROUNDS; round++) {
        for (int i = 0; i < RTP_WORKER_BATCH; i++) {
            w->rx_iov[i].iov_len = RTP_WORKER_MTU;
            w->rx_msg[i].msg_hdr.msg_namelen = sizeof w->rx_addr[i];
            w->rx_msg[i].msg_hdr.msg_controllen = sizeof w->rx_ctl[i];
            w->rx_msg[i].msg_hdr.msg_flags = 0;
        }
        int n = recvmmsg(w->fd, w->rx_msg, RTP_WORKER_BATCH, MSG_DONTWAIT, NULL);
        if (n <= 0) break; /* EAGAIN (or an error the next readable event will show again) */
        w->rx_read_ns = realtime_ns();
        w->st.rx_batches++;
        w->st.rx_datagrams += (uint64_t)n;
        for (int i = 0; i < n; i++) {
            pkt_ctx c = {.buf = w->rx_buf[i],
                         .len = (int)w->rx_msg[i].msg_len,
                         .arrival_ns = rx_arrival(w, &w->rx_msg[i].msg_hdr),
                         .from = &w->rx_addr[i],
                         .from_len = w->rx_msg[i].msg_hdr.msg_namelen};
            w->st.rx_bytes += (uint64_t)c.len;
            if (w->rx_msg[i].msg_hdr.msg_flags & MSG_TRUNC) {
                w->st.drop_oversize++; /* larger than the MTU: not ours */
                continue;
            }
            stage_demux(w, &c);
        }
        tx_flush(w);
        if (n < RTP_WORKER_BATCH) break;
    }
    drain_changes(w);
}

static void on_timer(uv_timer_t *t)
{
    rtp_worker *w = t->data;
    uint64_t hr = uv_hrtime();
    uint64_t lag = hr > w->timer_due_ns ? hr - w->timer_due_ns : 0;
    w->st.loop_lag_ns = lag;
    if (lag > w->st.loop_lag_max_ns) w->st.loop_lag_max_ns = lag;
    w->timer_due_ns = hr + uv_timer_get_repeat(t) * 1000000u;
    uint64_t now = uv_now(&w->loop);
    for (uint32_t i = 0; i < w->parts_end; i++) {
        part *pt = &w->parts[i];
        if (!pt->used || !pt->latched || pt->silent_sent) continue;
        if (now - pt->last_rx_ms < w->cfg.silence_ms) continue;
        pt->silent_sent = true;
        rtp_worker_event ev = {.kind = RTP_WORKER_EV_SILENT,
                               .id = pt->handle,
                               .silent_ms = (uint32_t)(now - pt->last_rx_ms)};
        emit(w, &ev);
    }
}

/* ---- life cycle (owner thread) -------------------------------------------------------------- */

static int open_socket(rtp_worker *w)
{
    struct sockaddr_storage ss;
    socklen_t sl;
    memset(&ss, 0, sizeof ss);
    struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
    if (uv_ip4_addr(w->cfg.address, w->cfg.port, s4) == 0) {
        sl = sizeof *s4;
    } else if (uv_ip6_addr(w->cfg.address, w->cfg.port, s6) == 0) {
        sl = sizeof *s6;
    } else {
        return -EINVAL;
    }
    w->fd = socket(ss.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (w->fd < 0) return -errno;
    if (bind(w->fd, (struct sockaddr *)&ss, sl) < 0) return -errno;
    if (getsockname(w->fd, (struct sockaddr *)&ss, &sl) < 0) return -errno;
    w->port = ntohs(ss.ss_family == AF_INET ? s4->sin_port : s6->sin6_port);
    int sz = 4 << 20; /* best effort: a burst of a few thousand datagrams */
    setsockopt(w->fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof sz);
    setsockopt(w->fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
    if (ss.ss_family == AF_INET) {
        /* Best effort. Linux sets DF on our datagrams anyway (the default IP_PMTUDISC_WANT), but
         * still lets them be fragmented, so every send draws a fresh IPv4 ID from the shared
         * hashed counters (__ip_select_ident: 3-5 % of the relay's CPU in the benchmark). PROBE
         * keeps DF and ignores the learnt path MTU: no fragmentation, the ID is 0 (RFC 6864).
         * Our datagrams are audio and DTLS records under WRTC_DTLS_MTU, far below any MTU. */
        int pmtu = IP_PMTUDISC_PROBE;
        setsockopt(w->fd, IPPROTO_IP, IP_MTU_DISCOVER, &pmtu, sizeof pmtu);
    }
    /* best effort: the kernel's receive time of each datagram, for the forwarding latency */
    int on = 1;
    setsockopt(w->fd, SOL_SOCKET, SO_TIMESTAMPNS, &on, sizeof on);
    return 0;
}

static void worker_free_mem(rtp_worker *w)
{
    if (w->parts)
        for (uint32_t i = 0; i < w->parts_end; i++)
            if (w->parts[i].used) {
                if (w->parts[i].keyed) {
                    srtp_dealloc(w->parts[i].in);
                    srtp_dealloc(w->parts[i].out);
                }
                wrtc_dtls_free(w->parts[i].dtls);
            }
    if (w->rooms)
        for (uint32_t i = 0; i < w->cfg.max_rooms; i++)
            rtp_room_destroy(w->rooms[i].room);
    if (w->fd >= 0) close(w->fd);
    ring_fini(&w->cmds);
    ring_fini(&w->events);
    map_fini(&w->by_ssrc);
    map_fini(&w->by_handle);
    map_fini(&w->by_room);
    map_fini(&w->by_ufrag);
    map_fini(&w->by_addr);
    free(w->hs);
    free(w->dirty);
    free(w->changes);
    free(w->rooms);
    free(w->parts);
    free(w->rx_buf);
    free(w->tx_buf);
    free(w->dests);
    free(w);
}

int rtp_worker_new(const rtp_worker_config *cfg, rtp_worker **out)
{
    if (!cfg || !out || !cfg->address || cfg->max_rooms < 1 || cfg->max_rooms > 65535 ||
        cfg->max_participants < 1 || cfg->max_participants > 65535)
        return -EINVAL;
    int irc = rtp_srtp_init();
    if (irc < 0) return irc;

    rtp_worker *w = calloc(1, sizeof *w);
    if (!w) return -ENOMEM;
    w->fd = -1;
    w->cfg = *cfg;
    if (!w->cfg.level_ext_id) w->cfg.level_ext_id = 1;
    if (!w->cfg.silence_ms) w->cfg.silence_ms = 5000;
    if (!w->cfg.queue_len) w->cfg.queue_len = 1024;
    uint32_t np = w->cfg.max_participants;
    int rc = -ENOMEM;
    w->rooms = calloc(w->cfg.max_rooms, sizeof *w->rooms);
    w->parts = calloc(np, sizeof *w->parts);
    w->rx_buf = calloc(RTP_WORKER_BATCH, sizeof *w->rx_buf);
    w->tx_buf = calloc(RTP_WORKER_OUT, sizeof *w->tx_buf);
    w->dests = calloc(np, sizeof *w->dests);
    w->dirty = calloc(w->cfg.max_rooms, sizeof *w->dirty);
    w->changes = calloc(np, sizeof *w->changes);
    if (!w->rooms || !w->parts || !w->rx_buf || !w->tx_buf || !w->dests || !w->dirty || !w->changes)
        goto fail;
    w->hs = calloc(np, sizeof *w->hs);
    if (!w->hs || map_init(&w->by_ssrc, np) < 0 || map_init(&w->by_handle, np) < 0 ||
        map_init(&w->by_room, w->cfg.max_rooms) < 0 || map_init(&w->by_ufrag, np) < 0 ||
        map_init(&w->by_addr, np) < 0)
        goto fail;
    size_t evcap = w->cfg.queue_len > 4 * (size_t)np ? w->cfg.queue_len : 4 * (size_t)np;
    if (ring_init(&w->cmds, sizeof(cmd), w->cfg.queue_len) < 0 ||
        ring_init(&w->events, sizeof(rtp_worker_event), evcap) < 0)
        goto fail;
    for (int i = 0; i < RTP_WORKER_BATCH; i++) {
        w->rx_iov[i].iov_base = w->rx_buf[i];
        w->rx_msg[i].msg_hdr.msg_iov = &w->rx_iov[i];
        w->rx_msg[i].msg_hdr.msg_iovlen = 1;
        w->rx_msg[i].msg_hdr.msg_name = &w->rx_addr[i];
        w->rx_msg[i].msg_hdr.msg_control = w->rx_ctl[i].buf;
    }
    for (int i = 0; i < RTP_WORKER_OUT; i++) {
        w->tx_iov[i].iov_base = w->tx_buf[i];
        w->tx_msg[i].msg_hdr.msg_iov = &w->tx_iov[i];
        w->tx_msg[i].msg_hdr.msg_iovlen = 1;
    }
    if ((rc = open_socket(w)) < 0) goto fail;
    /* handles are set up here, before the loop runs; from start on only the worker touches it */
    if ((rc = uv_loop_init(&w->loop)) < 0) goto fail;
    uv_async_init(&w->loop, &w->async, on_async);
    uv_timer_init(&w->loop, &w->timer);
    uv_timer_init(&w->loop, &w->hs_timer);
    if ((rc = uv_poll_init_socket(&w->loop, &w->poll, w->fd)) < 0) {
        uv_close((uv_handle_t *)&w->async, NULL);
        uv_close((uv_handle_t *)&w->timer, NULL);
        uv_close((uv_handle_t *)&w->hs_timer, NULL);
        uv_run(&w->loop, UV_RUN_DEFAULT);
        uv_loop_close(&w->loop);
        goto fail;
    }
    w->async.data = w->timer.data = w->poll.data = w->hs_timer.data = w;
    *out = w;
    return 0;
fail:
    worker_free_mem(w);
    return rc;
}

/* The readable callback's work for one datagram, on the caller's thread: the worker's thread is
 * never started, so the caller plays it (commands, the packet path, slot changes, events). The
 * datagram is copied into the first receive buffer as recvmmsg would have read it (truncated to
 * the MTU and flagged oversize past it). */
int rtp_worker_inject(rtp_worker *w, const uint8_t *buf, size_t len, const struct sockaddr *from,
                      socklen_t from_len)
{
    if (w->started) return -EBUSY;
    if ((!buf && len) || !from || from_len > (socklen_t)sizeof w->rx_addr[0]) return -EINVAL;
    apply_cmds(w); /* no stop is ever queued on a worker that was not started */
    size_t n = len < RTP_WORKER_MTU ? len : RTP_WORKER_MTU;
    if (n) memcpy(w->rx_buf[0], buf, n);
    memcpy(&w->rx_addr[0], from, from_len);
    w->rx_read_ns = realtime_ns();
    pkt_ctx c = {.buf = w->rx_buf[0],
                 .len = (int)n,
                 .arrival_ns = w->rx_read_ns,
                 .from = &w->rx_addr[0],
                 .from_len = from_len};
    w->st.rx_batches++;
    w->st.rx_datagrams++;
    w->st.rx_bytes += n;
    if (len > RTP_WORKER_MTU)
        w->st.drop_oversize++;
    else
        stage_demux(w, &c);
    tx_flush(w);
    drain_changes(w);
    return 0;
}

uint16_t rtp_worker_port(const rtp_worker *w)
{
    return w->port;
}

/* Worker threads are named "voxd-media-N" (N counts the workers this process started), so
 * tools can find them in /proc/PID/task/TID/comm (the relay benchmark counts their CPU alone). */
static atomic_uint worker_seq;

static void *worker_main(void *arg)
{
    rtp_worker *w = arg;
    char name[16]; /* the kernel's limit, NUL included */
    snprintf(name, sizeof name, "voxd-media-%u", atomic_fetch_add(&worker_seq, 1) % 1000u);
    pthread_setname_np(pthread_self(), name);
    uv_run(&w->loop, UV_RUN_DEFAULT);
    w->loop_close_rc = uv_loop_close(&w->loop);
    return NULL;
}

int rtp_worker_start(rtp_worker *w)
{
    if (w->started) return -EALREADY;
    uint64_t tick = w->cfg.silence_ms / 4 ? w->cfg.silence_ms / 4 : 1;
    w->timer_due_ns = uv_hrtime() + tick * 1000000u;
    uv_timer_start(&w->timer, on_timer, tick, tick);
    int rc = uv_poll_start(&w->poll, UV_READABLE, on_readable);
    if (rc < 0) return rc;
    rc = pthread_create(&w->thread, NULL, worker_main, w);
    if (rc) return -rc;
    w->started = true;
    /* commands queued before start */
    uv_async_send(&w->async);
    return 0;
}

int rtp_worker_stop_and_free(rtp_worker *w)
{
    if (!w) return 0;
    cmd c = {.kind = RTP_WORKER_CMD_STOP_};
    if (w->started) {
        /* the stop must get through: wait for room in the queue (the worker drains it) */
        while (!ring_push(&w->cmds, &c))
            uv_async_send(&w->async), sched_yield();
        uv_async_send(&w->async);
        pthread_join(w->thread, NULL);
    } else {
        worker_close(w);
        uv_run(&w->loop, UV_RUN_DEFAULT);
        w->loop_close_rc = uv_loop_close(&w->loop);
    }
    int rc = w->loop_close_rc == 0 ? 0 : -EBUSY;
    worker_free_mem(w);
    return rc;
}

/* ---- the owner's side of the queues --------------------------------------------------------- */

static int send_cmd(rtp_worker *w, const cmd *c)
{
    if (!ring_push(&w->cmds, c)) return -EAGAIN;
    if (w->started) uv_async_send(&w->async);
    return 0;
}

int rtp_worker_create_room(rtp_worker *w, uint32_t room, const rtp_room_config *cfg)
{
    if (!cfg) return -EINVAL;
    cmd c = {.kind = RTP_WORKER_CMD_CREATE_ROOM, .id = room, .room_cfg = *cfg};
    return send_cmd(w, &c);
}

int rtp_worker_add_participant(rtp_worker *w, const rtp_worker_participant *p)
{
    if (!p || p->n_slots < 1 || p->n_slots > RTP_ROOM_MAX_SLOTS) return -EINVAL;
    cmd c = {.kind = RTP_WORKER_CMD_ADD, .id = p->handle, .p = *p};
    return send_cmd(w, &c);
}

int rtp_worker_set_flags(rtp_worker *w, uint32_t handle, unsigned flags)
{
    cmd c = {.kind = RTP_WORKER_CMD_SET_FLAGS, .id = handle, .flags = flags};
    return send_cmd(w, &c);
}

int rtp_worker_remove_participant(rtp_worker *w, uint32_t handle)
{
    cmd c = {.kind = RTP_WORKER_CMD_REMOVE, .id = handle};
    return send_cmd(w, &c);
}

int rtp_worker_move_participant(rtp_worker *w, const rtp_worker_participant *p)
{
    if (!p || p->n_slots < 1 || p->n_slots > RTP_ROOM_MAX_SLOTS) return -EINVAL;
    cmd c = {.kind = RTP_WORKER_CMD_MOVE, .id = p->handle, .p = *p};
    return send_cmd(w, &c);
}

int rtp_worker_destroy_room(rtp_worker *w, uint32_t room)
{
    cmd c = {.kind = RTP_WORKER_CMD_DESTROY_ROOM, .id = room};
    return send_cmd(w, &c);
}

size_t rtp_worker_events(rtp_worker *w, rtp_worker_event *out, size_t cap)
{
    size_t n = 0;
    while (n < cap && ring_pop(&w->events, &out[n]))
        n++;
    return n;
}

void rtp_worker_stats_read(const rtp_worker *w, rtp_worker_stats *out)
{
    *out = w->st;
}
