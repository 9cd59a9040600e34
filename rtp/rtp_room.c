/*
 * rtp/rtp_room.c — the forwarding decisions of one room (decision D20): speaker selection per
 * room, N fixed slots per listener, sticky assignment. Pure: no sockets, threads or clock; all
 * memory is allocated by rtp_room_create().
 *
 * How it works, per packet from participant P with RFC 6464 level L at now_ms:
 *
 *   1. Muted or suppressed P: dropped with that reason (counted by the caller), nothing updated.
 *   2. Loudness. x = 127 - L for a voiced packet (V flag set and L < 127), else 0 (silence).
 *      P's smoothed loudness follows x as an exponential moving average with a time constant of
 *      ROOM_TAU_MS (300 ms): loud += (x - loud) * dt / (ROOM_TAU_MS + dt), dt = time since P's
 *      previous packet (at most ROOM_DT_MAX_MS). A speaker that becomes active starts at its
 *      packet's x, not at 0, so a newcomer is judged at once. Fixed point, 1/256 dB.
 *      P is *active* while its last voiced packet is less than ROOM_ACTIVE_MS (500 ms) old: a
 *      speaker that sends nothing, or only silence, for 500 ms is no longer active.
 *   3. Selection (per room, not per listener): an ordered list of at most N+1 active speakers
 *      (N = slots per listener). On every packet, members no longer active leave it (those below
 *      move up). An active P not in it enters if there is room, or replaces the quietest member
 *      if P is louder than it by ROOM_MARGIN (6 dB); it takes that member's place in the order.
 *      A member moves above the one before it only when louder by the same margin. So two voices
 *      within 6 dB of each other never swap places, and nothing changes for a louder voice until
 *      it is 6 dB louder: no flapping.
 *   4. Listeners. Listener Q's top N is the selection without Q: all of it when Q is selected
 *      (at most N others), its first N otherwise. If P (selected, at rank r) is in Q's top N —
 *      r < N, or Q is selected — P is sent on one of Q's slots: the slot P already holds
 *      (sticky), else the lowest free slot, else the lowest slot whose speaker is no longer in
 *      Q's top N (one always exists: Q's top N has at most N members). A slot is taken over
 *      lazily, by the next packet of its new speaker, so a speaker's slot stays its own until
 *      someone needs it, and the rtp_slot carries on its sequence and timestamps (rtp_slot_map
 *      rule 3). Deaf listeners are skipped; P is never its own destination.
 *   5. Every change of a slot's speaker is queued in a ring (listener, slot, speaker or none) for
 *      Speaking notices. When the ring is full it is emptied and a "resend everything" flag set;
 *      changes are then not queued until the next drain, where the caller reads the full state.
 *   6. Leave, mute and suppress take the speaker out of the selection at once and free the slots
 *      holding it in every listener (queued as changes to none); deafening frees the listener's
 *      own slots. A leaver's own slots are not reported, and changes still queued for it are
 *      dropped. Those are control-plane events: they walk every participant and the ring.
 *
 * Cost per packet: O(1) to find P (open-addressing table), O(N) for the selection, and O(M × N)
 * for the fan-out over the M participants present (a dense list, not the room's bound) — the
 * caller sends M copies anyway. No allocation: participants, the list of those present, slots,
 * the id table and the change ring are arrays sized at creation.
 */
#include "rtp/rtp.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define ROOM_TAU_MS    300        /* loudness smoothing time constant */
#define ROOM_ACTIVE_MS 500        /* silence after which a speaker is no longer active */
#define ROOM_DT_MAX_MS 1000       /* longest gap one packet's update accounts for */
#define ROOM_MARGIN    (6 * 256)  /* hysteresis: 6 dB, in 1/256 dB */
#define ROOM_SILENCE   127        /* RFC 6464 level of digital silence */
#define NONE           UINT32_MAX /* no participant (index) */
#define ROOM_FLAGS     (RTP_ROOM_MUTED | RTP_ROOM_SUPPRESSED | RTP_ROOM_DEAF)

typedef struct part {
    uint32_t id;
    bool used;
    bool heard;    /* has had a voiced packet (last_voice_ms is meaningful) */
    bool has_last; /* last_ms is meaningful */
    unsigned flags;
    int rank;          /* place in the selection, -1 when not selected */
    uint32_t live_pos; /* its place in rtp_room.live */
    int32_t loud;      /* smoothed loudness above silence, 1/256 dB */
    uint32_t last_ms;
    uint32_t last_voice_ms;
    uint32_t spk[RTP_ROOM_MAX_SLOTS]; /* index of the speaker on each slot, NONE when free */
} part;

struct rtp_room {
    unsigned n;   /* slots per listener */
    uint32_t max; /* participants */
    uint32_t count;
    uint32_t min_ts_step;
    part *parts;     /* [max] */
    uint32_t *live;  /* [count]: indices of the participants present, in no particular order */
    rtp_slot *slots; /* [max * n]: participant i's slots at i * n */
    uint32_t *table; /* id -> index, open addressing, [tmask + 1], NONE when empty */
    uint32_t tmask;
    uint32_t sel[RTP_ROOM_MAX_SLOTS + 1]; /* the selection, loudest first (with hysteresis) */
    unsigned nsel;
    rtp_room_change *ring; /* [ring_cap] */
    uint32_t ring_cap, ring_head, ring_len;
    bool ring_overflow;
};

/* ---- id table -------------------------------------------------------------------------------- */

static uint32_t hash_id(uint32_t id)
{
    id ^= id >> 16;
    id *= 0x7feb352dU;
    id ^= id >> 15;
    id *= 0x846ca68bU;
    return id ^ (id >> 16);
}

static uint32_t find(const rtp_room *r, uint32_t id)
{
    for (uint32_t h = hash_id(id) & r->tmask;; h = (h + 1) & r->tmask) {
        uint32_t i = r->table[h];
        if (i == NONE) return NONE;
        if (r->parts[i].id == id) return i;
    }
}

static void table_put(rtp_room *r, uint32_t id, uint32_t idx)
{
    uint32_t h = hash_id(id) & r->tmask;
    while (r->table[h] != NONE)
        h = (h + 1) & r->tmask;
    r->table[h] = idx;
}

/* Linear-probing deletion by backward shift: no tombstones, probes stay short. */
static void table_del(rtp_room *r, uint32_t id)
{
    uint32_t h = hash_id(id) & r->tmask;
    while (r->parts[r->table[h]].id != id)
        h = (h + 1) & r->tmask;
    uint32_t hole = h;
    for (uint32_t j = (hole + 1) & r->tmask; r->table[j] != NONE; j = (j + 1) & r->tmask) {
        uint32_t home = hash_id(r->parts[r->table[j]].id) & r->tmask;
        /* the entry at j may move to the hole if its home is not in (hole, j] (cyclically) */
        if (((j - home) & r->tmask) >= ((j - hole) & r->tmask)) {
            r->table[hole] = r->table[j];
            hole = j;
        }
    }
    r->table[hole] = NONE;
}

/* ---- change ring ----------------------------------------------------------------------------- */

static void push_change(rtp_room *r, uint32_t q, unsigned s, uint32_t spk)
{
    if (r->ring_overflow) return; /* the full state is resent at the next drain */
    if (r->ring_len == r->ring_cap) {
        r->ring_overflow = true;
        r->ring_len = 0;
        return;
    }
    rtp_room_change *c = &r->ring[(r->ring_head + r->ring_len) % r->ring_cap];
    c->listener = r->parts[q].id;
    c->slot_index = (uint8_t)s;
    c->has_speaker = spk != NONE;
    c->speaker = spk != NONE ? r->parts[spk].id : 0;
    r->ring_len++;
}

/* Drops queued changes addressed to listener `id` (it left: nobody to tell). */
static void ring_purge(rtp_room *r, uint32_t id)
{
    uint32_t kept = 0;
    for (uint32_t k = 0; k < r->ring_len; k++) {
        const rtp_room_change *c = &r->ring[(r->ring_head + k) % r->ring_cap];
        if (c->listener != id) r->ring[(r->ring_head + kept++) % r->ring_cap] = *c;
    }
    r->ring_len = kept;
}

static void slot_set(rtp_room *r, uint32_t q, unsigned s, uint32_t spk)
{
    if (r->parts[q].spk[s] == spk) return;
    r->parts[q].spk[s] = spk;
    push_change(r, q, s, spk);
}

/* Frees every slot, in every listener, that carries speaker `idx`. */
static void free_slots_holding(rtp_room *r, uint32_t idx)
{
    for (uint32_t k = 0; k < r->count; k++) {
        uint32_t q = r->live[k];
        if (q == idx) continue;
        for (unsigned s = 0; s < r->n; s++)
            if (r->parts[q].spk[s] == idx) slot_set(r, q, s, NONE);
    }
}

/* ---- selection ------------------------------------------------------------------------------- */

static bool is_active(const part *p, uint32_t now)
{
    return p->heard && (int32_t)(now - p->last_voice_ms) < ROOM_ACTIVE_MS;
}

static void sel_remove(rtp_room *r, uint32_t idx)
{
    int k = r->parts[idx].rank;
    if (k < 0) return;
    for (unsigned j = (unsigned)k; j + 1 < r->nsel; j++) {
        r->sel[j] = r->sel[j + 1];
        r->parts[r->sel[j]].rank = (int)j;
    }
    r->nsel--;
    r->parts[idx].rank = -1;
}

static void sel_expire(rtp_room *r, uint32_t now)
{
    for (unsigned j = r->nsel; j-- > 0;)
        if (!is_active(&r->parts[r->sel[j]], now)) sel_remove(r, r->sel[j]);
}

static void sel_admit(rtp_room *r, uint32_t idx)
{
    part *p = &r->parts[idx];
    if (r->nsel < r->n + 1) {
        r->sel[r->nsel] = idx;
        p->rank = (int)r->nsel++;
        return;
    }
    unsigned weakest = 0;
    for (unsigned j = 1; j < r->nsel; j++)
        if (r->parts[r->sel[j]].loud < r->parts[r->sel[weakest]].loud) weakest = j;
    if (p->loud < r->parts[r->sel[weakest]].loud + ROOM_MARGIN) return;
    r->parts[r->sel[weakest]].rank = -1; /* its slots are taken over lazily */
    r->sel[weakest] = idx;
    p->rank = (int)weakest;
}

static void sel_promote(rtp_room *r, uint32_t idx)
{
    part *p = &r->parts[idx];
    while (p->rank > 0) {
        unsigned k = (unsigned)p->rank;
        uint32_t above = r->sel[k - 1];
        if (p->loud < r->parts[above].loud + ROOM_MARGIN) break;
        r->sel[k - 1] = idx;
        r->sel[k] = above;
        r->parts[above].rank = (int)k;
        p->rank = (int)k - 1;
    }
}

static void update_loudness(part *p, bool voice, uint8_t level, uint32_t now)
{
    if (level > ROOM_SILENCE) level = ROOM_SILENCE;
    bool voiced = voice && level < ROOM_SILENCE;
    int32_t x = voiced ? (ROOM_SILENCE - level) * 256 : 0;
    if (voiced && !is_active(p, now)) {
        p->loud = x;
    } else {
        int32_t dt = p->has_last ? (int32_t)(now - p->last_ms) : 0;
        if (dt < 0) dt = 0;
        if (dt > ROOM_DT_MAX_MS) dt = ROOM_DT_MAX_MS;
        p->loud += (x - p->loud) * dt / (ROOM_TAU_MS + dt);
    }
    p->has_last = true;
    p->last_ms = now;
    if (voiced) {
        p->heard = true;
        p->last_voice_ms = now;
    } else if (!is_active(p, now)) {
        p->heard = false; /* so that 2^32 ms of silence later it does not look recent again */
    }
}

/* ---- public ---------------------------------------------------------------------------------- */

int rtp_room_create(const rtp_room_config *cfg, rtp_room **out)
{
    if (!cfg || !out || cfg->max_participants < 1 || cfg->max_participants > 65535 ||
        cfg->n_slots > RTP_ROOM_MAX_SLOTS)
        return -EINVAL;
    rtp_room *r = calloc(1, sizeof *r);
    if (!r) return -ENOMEM;
    r->n = cfg->n_slots ? cfg->n_slots : RTP_ROOM_DEFAULT_SLOTS;
    r->max = cfg->max_participants;
    r->min_ts_step = cfg->min_ts_step ? cfg->min_ts_step : 960;
    r->ring_cap = cfg->change_ring ? cfg->change_ring : 2 * r->max * r->n;
    uint32_t tsize = 1;
    while (tsize < 2 * r->max)
        tsize <<= 1;
    r->tmask = tsize - 1;
    r->parts = calloc(r->max, sizeof *r->parts);
    r->live = calloc(r->max, sizeof *r->live);
    r->slots = calloc((size_t)r->max * r->n, sizeof *r->slots);
    r->table = malloc(tsize * sizeof *r->table);
    r->ring = calloc(r->ring_cap, sizeof *r->ring);
    if (!r->parts || !r->live || !r->slots || !r->table || !r->ring) goto fail;
    memset(r->table, 0xff, tsize * sizeof *r->table); /* NONE */
    *out = r;
    return 0;
fail:
    rtp_room_destroy(r);
    return -ENOMEM;
}

void rtp_room_destroy(rtp_room *r)
{
    if (!r) return;
    free(r->ring);
    free(r->table);
    free(r->slots);
    free(r->live);
    free(r->parts);
    free(r);
}

int rtp_room_join(rtp_room *r, uint32_t id, unsigned flags, const rtp_room_slot_cfg *slots)
{
    if (!slots || (flags & ~ROOM_FLAGS)) return -EINVAL;
    if (find(r, id) != NONE) return -EEXIST;
    if (r->count == r->max) return -ENOSPC;
    uint32_t idx = 0;
    while (r->parts[idx].used)
        idx++;
    part *p = &r->parts[idx];
    memset(p, 0, sizeof *p);
    p->used = true;
    p->id = id;
    p->flags = flags;
    p->rank = -1;
    for (unsigned s = 0; s < r->n; s++) {
        p->spk[s] = NONE;
        rtp_slot_init(&r->slots[(size_t)idx * r->n + s], slots[s].ssrc, slots[s].seq, slots[s].ts,
                      r->min_ts_step);
    }
    table_put(r, id, idx);
    p->live_pos = r->count;
    r->live[r->count++] = idx;
    return 0;
}

int rtp_room_leave(rtp_room *r, uint32_t id)
{
    uint32_t idx = find(r, id);
    if (idx == NONE) return -ENOENT;
    sel_remove(r, idx);
    free_slots_holding(r, idx);
    table_del(r, id);
    ring_purge(r, id);
    r->parts[idx].used = false;
    uint32_t last = r->live[--r->count];
    r->live[r->parts[idx].live_pos] = last;
    r->parts[last].live_pos = r->parts[idx].live_pos;
    return 0;
}

int rtp_room_set_flags(rtp_room *r, uint32_t id, unsigned flags)
{
    if (flags & ~ROOM_FLAGS) return -EINVAL;
    uint32_t idx = find(r, id);
    if (idx == NONE) return -ENOENT;
    part *p = &r->parts[idx];
    unsigned added = flags & ~p->flags;
    p->flags = flags;
    if (added & (RTP_ROOM_MUTED | RTP_ROOM_SUPPRESSED)) {
        sel_remove(r, idx);
        free_slots_holding(r, idx);
        p->heard = false; /* starts afresh when it may speak again */
        p->loud = 0;
    }
    if (added & RTP_ROOM_DEAF)
        for (unsigned s = 0; s < r->n; s++)
            slot_set(r, idx, s, NONE);
    return 0;
}

const char *rtp_room_drop_name(rtp_room_drop d)
{
    static const char *const names[RTP_ROOM_DROP_COUNT_] = {
        [RTP_ROOM_FORWARD] = "forward",
        [RTP_ROOM_DROP_UNKNOWN] = "unknown_participant",
        [RTP_ROOM_DROP_MUTED] = "muted",
        [RTP_ROOM_DROP_SUPPRESSED] = "suppressed",
        [RTP_ROOM_DROP_NOT_SELECTED] = "not_selected",
    };
    return (unsigned)d < RTP_ROOM_DROP_COUNT_ ? names[d] : "unknown";
}

/* Is speaker h (selected or not) outside listener q's top N? */
static bool outside_top(const rtp_room *r, uint32_t q, uint32_t h)
{
    int rank = r->parts[h].rank;
    return rank < 0 || (rank == (int)r->n && r->parts[q].rank < 0);
}

int rtp_room_packet(rtp_room *r, uint32_t id, bool voice, uint8_t level, uint32_t now_ms,
                    rtp_room_dest *dests, size_t cap, rtp_room_drop *why)
{
    rtp_room_drop dummy;
    if (!why) why = &dummy;
    *why = RTP_ROOM_FORWARD;
    uint32_t pi = find(r, id);
    if (pi == NONE) return *why = RTP_ROOM_DROP_UNKNOWN, 0;
    part *p = &r->parts[pi];
    if (p->flags & RTP_ROOM_MUTED) return *why = RTP_ROOM_DROP_MUTED, 0;
    if (p->flags & RTP_ROOM_SUPPRESSED) return *why = RTP_ROOM_DROP_SUPPRESSED, 0;

    update_loudness(p, voice, level, now_ms);
    sel_expire(r, now_ms);
    if (p->rank < 0 && is_active(p, now_ms)) sel_admit(r, pi);
    if (p->rank < 0) return *why = RTP_ROOM_DROP_NOT_SELECTED, 0;
    sel_promote(r, pi);

    bool everyone = p->rank < (int)r->n; /* in the top N of every listener */
    size_t nd = 0;
    bool short_cap = false;
    for (uint32_t k = 0; k < r->count; k++) {
        uint32_t q = r->live[k];
        part *l = &r->parts[q];
        if (q == pi || (l->flags & RTP_ROOM_DEAF)) continue;
        if (!everyone && l->rank < 0) continue;
        unsigned s, take = r->n;
        for (s = 0; s < r->n && l->spk[s] != pi; s++) {
            if (l->spk[s] == NONE) {
                if (take == r->n || l->spk[take] != NONE) take = s; /* free beats outside */
            } else if (take == r->n && outside_top(r, q, l->spk[s])) {
                take = s;
            }
        }
        if (s == r->n) {
            if (take == r->n) continue; /* cannot happen: Q's top N has at most N members */
            s = take;
            slot_set(r, q, s, pi);
        }
        if (nd == cap) {
            short_cap = true;
            continue;
        }
        dests[nd].listener = l->id;
        dests[nd].slot_index = (uint8_t)s;
        dests[nd].slot = &r->slots[(size_t)q * r->n + s];
        nd++;
    }
    return short_cap ? -ENOSPC : (int)nd;
}

size_t rtp_room_drain(rtp_room *r, rtp_room_change *out, size_t cap, bool *resend)
{
    if (resend) *resend = r->ring_overflow;
    if (r->ring_overflow) {
        r->ring_overflow = false;
        r->ring_len = 0;
        return 0;
    }
    size_t k = 0;
    for (; k < cap && r->ring_len > 0; k++) {
        out[k] = r->ring[r->ring_head];
        r->ring_head = (r->ring_head + 1) % r->ring_cap;
        r->ring_len--;
    }
    return k;
}

int rtp_room_slot_speaker(const rtp_room *r, uint32_t id, unsigned slot_index, uint32_t *speaker)
{
    uint32_t q = find(r, id);
    if (q == NONE) return -ENOENT;
    if (slot_index >= r->n) return -EINVAL;
    uint32_t h = r->parts[q].spk[slot_index];
    if (h == NONE) return -ENODATA;
    *speaker = r->parts[h].id;
    return 0;
}

int rtp_room_slot_continue(const rtp_room *r, uint32_t id, unsigned slot_index, uint32_t now,
                           rtp_room_slot_cfg *out)
{
    uint32_t q = find(r, id);
    if (q == NONE) return -ENOENT;
    if (slot_index >= r->n) return -EINVAL;
    const rtp_slot *s = &r->slots[(size_t)q * r->n + slot_index];
    out->ssrc = s->ssrc_out;
    if (!s->active) {
        out->seq = s->init_seq;
        out->ts = s->init_ts;
        return 0;
    }
    uint32_t elapsed = now - s->max_ts_now;
    if ((int32_t)elapsed < (int32_t)s->min_ts_step) elapsed = s->min_ts_step;
    out->seq = (uint16_t)(s->max_seq_out + 1);
    out->ts = s->max_ts_out + elapsed;
    return 0;
}

unsigned rtp_room_n_slots(const rtp_room *r)
{
    return r->n;
}

unsigned rtp_room_count(const rtp_room *r)
{
    return r->count;
}
