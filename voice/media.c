/*
 * voice/media.c — the node's side of the media plane: the media workers (rtp/, one thread each)
 * and the media session of every voice connection that selected a protocol (docs/protocol.md
 * "Media", D20, D23).
 *
 * Sessions: one per connection id, created by Select Protocol (voicews.c), holding the SRTP keys
 * (one per direction), the upstream SSRC, the N slot SSRCs, the resume token and the voice
 * WebSocket attached to it (NULL while detached). Handles (uint32) name sessions towards the
 * workers; SSRCs are unique node-wide so that a move between workers never collides.
 *
 * Rooms: one per (guild, channel), pinned to the least loaded worker when its first session
 * arrives, destroyed when its last session leaves. Every session of a room is on the room's
 * worker; a move to a room of another worker removes the participant there and adds it here, and
 * the client gets a new Session Description (same keys, new port).
 *
 * State meets media: after every core step the node hands us the connection ids its writes
 * touched (media_conn_touched); we compare the core's view (sig_conn_get) with the session's:
 * gone → the session ends (4006, roster notices); another channel → move; other flags → the
 * worker's flags (server mute → MUTED, suppress → SUPPRESSED, deaf or self-deaf → DEAF). From the
 * workers (their uv_async on our loop): the first authenticated packet confirms the pending join
 * (sig_conn_confirm), slot changes become Speaking notices.
 *
 * Liveness (D23): the voice WebSocket is the session's liveness. A session whose WebSocket closed
 * is *detached*; a Resume attaches a new one; a session detached for --transport-reap is reaped
 * (sig_conn_reap_transport: one leave broadcast).
 */
#include "voice/node_priv.h"

#include "lib/log.h"
#include "lib/util.h"
#include "webrtc/webrtc.h"

#include <errno.h>
#include <stddef.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ROOM_CAPACITY      2048  /* participants per room (rtp_room allocates this up front) */
#define DM_ROOM_CAPACITY   64    /* a DM or group DM call: 10 recipients, a few connections each */
#define WORKER_MAX_PARTS   16384 /* participants per worker */
#define WORKER_MAX_ROOMS   8192
#define REAP_CHECK_MS      250
#define MEDIA_PAYLOAD_TYPE 111
#define MEDIA_LEVEL_EXT_ID 1
#define CONN_ID_MAX        32 /* sig_identity.connection_id */

typedef struct mroom mroom;

struct msess {
    char conn_id[CONN_ID_MAX];
    char session_id[132];
    char resume_token[32];
    uint64_t user_id, guild_id, channel_id;
    uint32_t handle, ssrc;
    int worker;
    mroom *room;
    unsigned flags;
    rtp_srtp_key in, out; /* in: the client protects with it; out: the node does */
    uint8_t n_slots;
    rtp_room_slot_cfg slots[RTP_ROOM_MAX_SLOTS];
    bool slot_has[RTP_ROOM_MAX_SLOTS];
    uint32_t slot_speaker[RTP_ROOM_MAX_SLOTS]; /* handle */
    uint8_t transport;                         /* rtp_transport */
    uint8_t payload_type;                      /* the Opus PT it receives (111, or its offer's) */
    uint8_t level_ext_id; /* its audio-level extension id (1, or its offer's) */
    char ice_ufrag[RTP_ICE_UFRAG_LEN + 1], ice_pwd[RTP_ICE_PWD_LEN + 1];
    uint8_t remote_fp[32];
    char *answer; /* webrtc: the SDP answer (Session Description) */
    char mids[RTP_ROOM_MAX_SLOTS][WRTC_SDP_MID_MAX + 1]; /* webrtc: slot i's m-section */
    vw_pss *ws;
    int64_t detached_at; /* while ws == NULL */
    bool latched;
    msess *rnext, *rprev; /* the room's sessions */
    msess *dnext, *dprev; /* detached sessions */
};

struct mroom {
    char key[48];
    uint64_t guild;
    int worker;
    uint32_t id;
    msess *head;
    size_t count;
};

typedef struct mguild {
    int worker; /* every room of the guild is on it */
    size_t rooms;
} mguild;

typedef struct mworker {
    rtp_worker *w;
    uv_async_t async;
    size_t load; /* sessions */
    uint16_t port;
} mworker;

struct media {
    voice_node *n;
    int nworkers;
    mworker *workers;
    hmap *by_conn;   /* connection id -> msess */
    hmap *by_handle; /* handle -> msess */
    hmap *ssrcs;     /* ssrc -> msess (every upstream and slot SSRC in use) */
    hmap *rooms;     /* "guild:channel" -> mroom */
    hmap *guilds;    /* guild id -> mguild (while it has rooms) */
    hmap *ufrags;    /* webrtc: ICE ufrag value -> msess */
    wrtc_dtls_ctx *dtls;
    uint64_t offers_refused[WRTC_SDP_ERR_COUNT_];
    uint32_t next_handle, next_room;
    uv_timer_t reap;
    msess *detached;
    size_t nsessions;
    uint64_t opened, resumed, moved, latched, left, worker_errors; /* /metrics */
};

/* ---- helpers ----------------------------------------------------------------------------------
 */

static size_t key_len(rtp_srtp_profile p)
{
    return p == RTP_SRTP_AEAD_AES_128_GCM ? 28 : 30;
}

static const char *mode_name(rtp_srtp_profile p)
{
    return p == RTP_SRTP_AEAD_AES_128_GCM ? "AEAD_AES_128_GCM" : "AES_CM_128_HMAC_SHA1_80";
}

static json_t *b64_key(const rtp_srtp_key *k)
{
    char out[64];
    EVP_EncodeBlock((unsigned char *)out, k->key, (int)key_len(k->profile));
    return json_string(out);
}

static void random_bytes(void *buf, size_t n)
{
    if (RAND_bytes(buf, (int)n) != 1) {
        LOG(LOG_ERROR, "RAND_bytes failed");
        abort();
    }
}

/* An SSRC unused on this node (never 0). */
static uint32_t fresh_ssrc(media *m, msess *s)
{
    uint32_t v;
    do
        random_bytes(&v, sizeof v);
    while (v == 0 || hmap_getu(m->ssrcs, v));
    hmap_putu(m->ssrcs, v, s);
    return v;
}

static unsigned flags_of(const sig_conn_view *v)
{
    return (v->mute ? RTP_ROOM_MUTED : 0) | (v->suppress ? RTP_ROOM_SUPPRESSED : 0) |
           (v->deaf || v->self_deaf ? RTP_ROOM_DEAF : 0);
}

static void room_key(uint64_t guild, uint64_t channel, char out[48])
{
    char g[21], c[21];
    snprintf(out, 48, "%s:%s", snowflake_fmt(guild, g), snowflake_fmt(channel, c));
}

static json_t *user_json(const msess *s)
{
    char uid[21];
    return json_pack("{s:s,s:s}", "user_id", snowflake_fmt(s->user_id, uid), "connection_id",
                     s->conn_id);
}

static void send_op(msess *s, int op, json_t *d)
{
    if (!s->ws) {
        json_decref(d);
        return;
    }
    vw_send_json(s->ws, json_pack("{s:i,s:o}", "op", op, "d", d));
}

/* ---- rooms ------------------------------------------------------------------------------------
 */

static mroom *room_get(media *m, uint64_t guild, uint64_t channel)
{
    char key[48];
    room_key(guild, channel, key);
    mroom *r = hmap_gets(m->rooms, key);
    if (r) return r;
    /* a guild's rooms share a worker (D26), so a move never changes worker; a DM call is alone */
    mguild *g = guild ? hmap_getu(m->guilds, guild) : NULL;
    int best = 0;
    if (g) {
        best = g->worker;
    } else {
        for (int i = 1; i < m->nworkers; i++)
            if (m->workers[i].load < m->workers[best].load) best = i;
        if (guild) {
            g = xcalloc(1, sizeof *g);
            g->worker = best;
            hmap_putu(m->guilds, guild, g);
        }
    }
    if (g) g->rooms++;
    r = xcalloc(1, sizeof *r);
    r->guild = guild;
    memcpy(r->key, key, sizeof key);
    r->worker = best;
    r->id = ++m->next_room;
    rtp_room_config rc = {.max_participants = guild ? ROOM_CAPACITY : DM_ROOM_CAPACITY,
                          .n_slots = RTP_ROOM_DEFAULT_SLOTS};
    int err = rtp_worker_create_room(m->workers[best].w, r->id, &rc);
    if (err < 0) LOG(LOG_ERROR, "media worker %d: cannot queue a room: %s", best, strerror(-err));
    hmap_puts(m->rooms, r->key, r);
    return r;
}

static void room_put(media *m, mroom *r)
{
    if (r->count) return;
    int err = rtp_worker_destroy_room(m->workers[r->worker].w, r->id);
    if (err < 0) LOG(LOG_ERROR, "media worker %d: cannot queue a room's end", r->worker);
    mguild *g = r->guild ? hmap_getu(m->guilds, r->guild) : NULL;
    if (g && --g->rooms == 0) {
        hmap_delu(m->guilds, r->guild);
        free(g);
    }
    hmap_dels(m->rooms, r->key);
    free(r);
}

/* Links s into r and tells both sides of the roster. */
static void room_link(mroom *r, msess *s)
{
    for (msess *o = r->head; o; o = o->rnext) {
        send_op(o, 12, user_json(s));
        send_op(s, 12, user_json(o));
    }
    s->room = r;
    s->rprev = NULL;
    s->rnext = r->head;
    if (r->head) r->head->rprev = s;
    r->head = s;
    r->count++;
}

static void room_unlink(media *m, msess *s)
{
    mroom *r = s->room;
    if (!r) return;
    if (s->rprev)
        s->rprev->rnext = s->rnext;
    else
        r->head = s->rnext;
    if (s->rnext) s->rnext->rprev = s->rprev;
    r->count--;
    s->room = NULL;
    for (msess *o = r->head; o; o = o->rnext)
        send_op(o, 13, user_json(s));
    room_put(m, r);
}

/* ---- sessions ---------------------------------------------------------------------------------
 */

static void detached_link(media *m, msess *s)
{
    s->dprev = NULL;
    s->dnext = m->detached;
    if (m->detached) m->detached->dprev = s;
    m->detached = s;
}

static void detached_unlink(media *m, msess *s)
{
    if (s->dprev)
        s->dprev->dnext = s->dnext;
    else if (m->detached == s)
        m->detached = s->dnext;
    if (s->dnext) s->dnext->dprev = s->dprev;
    s->dnext = s->dprev = NULL;
}

static void fill_participant(const msess *s, rtp_worker_participant *p)
{
    memset(p, 0, sizeof *p);
    p->room = s->room->id;
    p->handle = s->handle;
    p->flags = s->flags;
    p->ssrc = s->ssrc;
    p->in = s->in;
    p->out = s->out;
    p->n_slots = s->n_slots;
    memcpy(p->slots, s->slots, sizeof p->slots);
    p->transport = s->transport;
    p->payload_type = s->payload_type;
    p->level_ext_id = s->level_ext_id;
    memcpy(p->ice_ufrag, s->ice_ufrag, sizeof p->ice_ufrag);
    memcpy(p->ice_pwd, s->ice_pwd, sizeof p->ice_pwd);
    memcpy(p->remote_fp, s->remote_fp, sizeof p->remote_fp);
}

static void worker_add(media *m, msess *s)
{
    rtp_worker_participant p;
    fill_participant(s, &p);
    s->worker = s->room->worker;
    int err = rtp_worker_add_participant(m->workers[s->worker].w, &p);
    explicit_bzero(&p, sizeof p);
    if (err < 0) {
        m->worker_errors++;
        LOG(LOG_ERROR, "media worker %d: cannot queue a participant: %s", s->worker,
            strerror(-err));
    }
    m->workers[s->worker].load++;
}

static void worker_remove(media *m, msess *s)
{
    if (s->worker < 0) return;
    if (rtp_worker_remove_participant(m->workers[s->worker].w, s->handle) < 0) {
        m->worker_errors++;
        LOG(LOG_ERROR, "media worker %d: cannot queue a removal", s->worker);
    }
    m->workers[s->worker].load--;
    s->worker = -1;
}

static void fresh_slots(msess *s)
{
    for (unsigned i = 0; i < s->n_slots; i++) {
        random_bytes(&s->slots[i].seq, sizeof s->slots[i].seq);
        random_bytes(&s->slots[i].ts, sizeof s->slots[i].ts);
        s->slot_has[i] = false;
    }
}

static json_t *description(media *m, const msess *s)
{
    if (s->transport == RTP_TRANSPORT_WEBRTC) {
        json_t *sl = json_array();
        for (unsigned i = 0; i < s->n_slots; i++)
            if (s->mids[i][0])
                json_array_append_new(sl,
                                      json_pack("{s:i,s:I,s:s}", "slot", (int)i, "ssrc",
                                                (json_int_t)s->slots[i].ssrc, "mid", s->mids[i]));
        return json_pack("{s:s,s:s,s:o}", "protocol", "webrtc", "sdp", s->answer, "slots", sl);
    }
    json_t *slots = json_array();
    for (unsigned i = 0; i < s->n_slots; i++)
        json_array_append_new(
            slots, json_pack("{s:i,s:I}", "slot", (int)i, "ssrc", (json_int_t)s->slots[i].ssrc));
    return json_pack("{s:s,s:s,s:s,s:i,s:I,s:i,s:i,s:o,s:o,s:o}", "protocol", "srtp", "mode",
                     mode_name(s->in.profile), "address", m->n->cf->media_addr, "port",
                     (int)m->workers[s->worker].port, "ssrc", (json_int_t)s->ssrc, "payload_type",
                     MEDIA_PAYLOAD_TYPE, "audio_level_ext_id", MEDIA_LEVEL_EXT_ID, "send_key",
                     b64_key(&s->in), "recv_key", b64_key(&s->out), "slots", slots);
}

static json_t *speaking_json(media *m, const msess *s, unsigned slot)
{
    msess *spk = s->slot_has[slot] ? hmap_getu(m->by_handle, s->slot_speaker[slot]) : NULL;
    if (!spk) return json_pack("{s:i,s:n,s:n}", "slot", (int)slot, "user_id", "connection_id");
    json_t *d = user_json(spk);
    json_object_set_new(d, "slot", json_integer(slot));
    return d;
}

/* The full slot table and roster, after Session Description and after Resumed. */
static void send_state(media *m, msess *s, bool roster)
{
    for (unsigned i = 0; i < s->n_slots; i++)
        send_op(s, 5, speaking_json(m, s, i));
    if (!roster || !s->room) return;
    for (msess *o = s->room->head; o; o = o->rnext)
        if (o != s) send_op(s, 12, user_json(o));
}

/* Ends a session: out of its room and worker, its WebSocket (if any) closed with `code`. */
static void session_end(media *m, msess *s, int code, const char *reason)
{
    if (s->ws) {
        vw_pss *ws = s->ws;
        s->ws = NULL;
        vw_detach(ws);
        if (code) vw_end(ws, code, reason);
    } else {
        detached_unlink(m, s);
    }
    worker_remove(m, s); /* before room_unlink, which may queue the room's end (see below) */
    room_unlink(m, s);
    hmap_dels(m->by_conn, s->conn_id);
    hmap_delu(m->by_handle, s->handle);
    if (s->ssrc) hmap_delu(m->ssrcs, s->ssrc);
    for (unsigned i = 0; i < s->n_slots; i++)
        hmap_delu(m->ssrcs, s->slots[i].ssrc);
    if (s->transport == RTP_TRANSPORT_WEBRTC) hmap_delu(m->ufrags, strtoul(s->ice_ufrag, NULL, 16));
    free(s->answer);
    explicit_bzero(s, sizeof *s);
    free(s);
    m->nsessions--;
}

static void hex(const uint8_t *b, size_t n, char *out)
{
    static const char d[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = d[b[i] >> 4];
        out[2 * i + 1] = d[b[i] & 15];
    }
    out[2 * n] = 0;
}

/* A webrtc offer -> the session's ICE credentials, answer and slot m-sections. 0, or -EINVAL
 * with *why (a refusal reason's name). */
static int webrtc_prepare(media *m, msess *s, const char *sdp, const char **why)
{
    wrtc_sdp_offer *o = xmalloc(sizeof *o);
    wrtc_sdp_err err;
    int rc = wrtc_sdp_parse(sdp, strlen(sdp), o, &err, NULL);
    if (rc < 0) {
        if (err < WRTC_SDP_ERR_COUNT_) m->offers_refused[err]++;
        *why = wrtc_sdp_err_name(err);
        free(o);
        return -EINVAL;
    }
    uint32_t u;
    do
        random_bytes(&u, sizeof u);
    while (u == 0 || hmap_getu(m->ufrags, u));
    hmap_putu(m->ufrags, u, s);
    snprintf(s->ice_ufrag, sizeof s->ice_ufrag, "%08x", u);
    uint8_t pw[RTP_ICE_PWD_LEN / 2];
    random_bytes(pw, sizeof pw);
    hex(pw, sizeof pw, s->ice_pwd);
    memcpy(s->remote_fp, o->fingerprint, sizeof s->remote_fp);
    s->payload_type = o->opus_pt;
    s->level_ext_id = o->level_ext_id ? o->level_ext_id : MEDIA_LEVEL_EXT_ID;
    s->ssrc = o->has_ssrc ? o->ssrc : 0;
    if (s->ssrc && hmap_getu(m->ssrcs, s->ssrc)) s->ssrc = 0; /* taken: learnt from its packets */
    if (s->ssrc) hmap_putu(m->ssrcs, s->ssrc, s);
    unsigned k = 0;
    for (unsigned i = 0; i < o->n_mlines && k < s->n_slots; i++)
        if (o->m[i].accepted &&
            (o->m[i].dir == WRTC_SDP_SENDRECV || o->m[i].dir == WRTC_SDP_RECVONLY))
            snprintf(s->mids[k++], sizeof s->mids[0], "%s", o->m[i].mid);
    uint32_t slot_ssrcs[RTP_ROOM_MAX_SLOTS];
    for (unsigned i = 0; i < s->n_slots; i++)
        slot_ssrcs[i] = s->slots[i].ssrc;
    uint64_t sid;
    random_bytes(&sid, sizeof sid);
    mroom *r = s->room;
    wrtc_sdp_answer_params a = {.ice_ufrag = s->ice_ufrag,
                                .ice_pwd = s->ice_pwd,
                                .fingerprint = wrtc_dtls_ctx_fingerprint(m->dtls),
                                .ip = m->n->cf->media_addr,
                                .port = m->workers[r->worker].port,
                                .session_id = sid >> 1,
                                .cname = "voxd",
                                .stream_id = "voxd",
                                .slot_ssrcs = slot_ssrcs,
                                .n_slots = s->n_slots};
    size_t cap = 16384;
    s->answer = xmalloc(cap);
    rc = wrtc_sdp_answer(o, &a, s->answer, cap);
    free(o);
    if (rc < 0) {
        *why = "answer";
        return -EINVAL;
    }
    return 0;
}

int media_open(voice_node *n, vw_pss *ws, const sig_identity *id, const char *resume_token,
               rtp_srtp_profile prof, const char *offer, msess **out, const char **why)
{
    media *m = n->media;
    sig_conn_view v;
    *why = NULL;
    if (sig_conn_get(n->core, id->connection_id, &v) < 0) return -ENOENT;
    if (offer && !m->dtls) {
        *why = "webrtc is not available on this node";
        return -EINVAL;
    }
    msess *old = hmap_gets(m->by_conn, id->connection_id);
    if (old) session_end(m, old, 4011, "session replaced");

    msess *s = xcalloc(1, sizeof *s);
    snprintf(s->conn_id, sizeof s->conn_id, "%s", id->connection_id);
    snprintf(s->session_id, sizeof s->session_id, "%s", id->session_id);
    snprintf(s->resume_token, sizeof s->resume_token, "%s", resume_token);
    s->user_id = v.user_id;
    s->guild_id = v.guild_id;
    s->channel_id = v.channel_id;
    s->flags = flags_of(&v);
    s->handle = ++m->next_handle;
    s->worker = -1;
    s->n_slots = RTP_ROOM_DEFAULT_SLOTS;
    for (unsigned i = 0; i < s->n_slots; i++)
        s->slots[i].ssrc = fresh_ssrc(m, s);
    fresh_slots(s);
    mroom *r = room_get(m, v.guild_id, v.channel_id);
    s->room = r; /* for fill_participant; linked below, after Session Description */
    if (offer) {
        s->transport = RTP_TRANSPORT_WEBRTC;
        if (webrtc_prepare(m, s, offer, why) < 0) {
            for (unsigned i = 0; i < s->n_slots; i++)
                hmap_delu(m->ssrcs, s->slots[i].ssrc);
            if (s->ssrc) hmap_delu(m->ssrcs, s->ssrc);
            if (s->ice_ufrag[0]) hmap_delu(m->ufrags, strtoul(s->ice_ufrag, NULL, 16));
            free(s->answer);
            free(s);
            s = NULL;
            room_put(m, r);
            return -EINVAL;
        }
    } else {
        s->transport = RTP_TRANSPORT_SRTP;
        s->payload_type = MEDIA_PAYLOAD_TYPE;
        s->level_ext_id = MEDIA_LEVEL_EXT_ID;
        s->ssrc = fresh_ssrc(m, s);
        s->in.profile = s->out.profile = prof;
        random_bytes(s->in.key, key_len(prof));
        random_bytes(s->out.key, key_len(prof));
    }
    s->ws = ws;
    hmap_puts(m->by_conn, s->conn_id, s);
    hmap_putu(m->by_handle, s->handle, s);
    m->nsessions++;
    m->opened++;
    worker_add(m, s);
    s->room = NULL;
    send_op(s, 4, description(m, s));
    room_link(r, s);
    send_state(m, s, false);
    *out = s;
    return 0;
}

void media_ws_closed(voice_node *n, msess *s, bool left)
{
    media *m = n->media;
    if (!m || !s->ws) return;
    s->ws = NULL;
    if (left) { /* D27: the client said goodbye (1000): the connection ends now */
        char conn_id[CONN_ID_MAX];
        snprintf(conn_id, sizeof conn_id, "%s", s->conn_id);
        LOGC(LOG_INFO, "media",
             "connection %s: the client closed its voice WebSocket (1000): "
             "it left",
             conn_id);
        m->left++;
        session_end(m, s, 0, NULL);
        if (sig_conn_goodbye(n->core, conn_id, time_now_ms()) == 0) node_after_step(n);
        return;
    }
    s->detached_at = (time_mono_ns() / 1000000);
    detached_link(m, s);
    LOGC(LOG_INFO, "media", "connection %s detached: reaped in %lld ms unless resumed", s->conn_id,
         (long long)n->cf->transport_reap_ms);
}

int media_resume(voice_node *n, vw_pss *ws, const char *conn_id, const char *session_id,
                 const char *token, msess **out, sig_identity *id)
{
    media *m = n->media;
    msess *s = hmap_gets(m->by_conn, conn_id);
    size_t tl = strlen(token);
    if (!s || strcmp(s->session_id, session_id) != 0 || tl != strlen(s->resume_token) ||
        !ct_equal(token, s->resume_token, tl))
        return -ENOENT;
    if (s->ws) {
        vw_pss *old = s->ws;
        s->ws = NULL;
        vw_detach(old);
        vw_end(old, 4011, "session replaced");
    } else {
        detached_unlink(m, s);
    }
    s->ws = ws;
    m->resumed++;
    memset(id, 0, sizeof *id);
    snprintf(id->connection_id, sizeof id->connection_id, "%s", s->conn_id);
    snprintf(id->session_id, sizeof id->session_id, "%s", s->session_id);
    id->user_id = s->user_id;
    id->guild_id = s->guild_id;
    id->channel_id = s->channel_id;
    *out = s;
    vw_send_json(ws, json_pack("{s:i,s:{}}", "op", 9, "d"));
    send_state(m, s, true);
    return 0;
}

/* The core changed connection `conn_id` (or removed it): bring its media session in line. */
static void conn_touched(media *m, const char *conn_id)
{
    msess *s = hmap_gets(m->by_conn, conn_id);
    if (!s) return;
    sig_conn_view v;
    if (sig_conn_get(m->n->core, conn_id, &v) < 0) {
        LOGC(LOG_INFO, "media", "connection %s removed: ending its media session", conn_id);
        session_end(m, s, 4006, "session no longer valid: the voice connection was removed");
        return;
    }
    unsigned flags = flags_of(&v);
    if (v.channel_id != s->channel_id || v.guild_id != s->guild_id) {
        mroom *to = room_get(m, v.guild_id, v.channel_id);
        mroom *from = s->room;
        int old_worker = s->worker;
        s->guild_id = v.guild_id;
        s->channel_id = v.channel_id;
        s->flags = flags;
        for (unsigned i = 0; i < s->n_slots; i++)
            s->slot_has[i] = false; /* the new room's speakers arrive as Speaking */
        if (to->worker != old_worker && s->transport == RTP_TRANSPORT_WEBRTC) {
            room_put(m, to);
            session_end(m, s, 4006, "session no longer valid: moved to another media worker");
            return;
        }
        if (to->worker != old_worker) {
            /* (not for a guild's moves: D26) a new worker knows nothing of the slots' numbers:
             * new slot SSRCs, so no (SSRC, seq) pair is ever protected twice under the key */
            for (unsigned i = 0; i < s->n_slots; i++) {
                hmap_delu(m->ssrcs, s->slots[i].ssrc);
                s->slots[i].ssrc = fresh_ssrc(m, s);
            }
            fresh_slots(s);
        }
        for (msess *o = from->head; o; o = o->rnext)
            if (o != s) send_op(s, 13, user_json(o));
        /* the worker's command first: room_unlink queues `from`'s DESTROY_ROOM when s was its
         * last member, and a worker refuses to destroy a room someone is still in */
        s->room = to;
        if (to->worker == old_worker) {
            rtp_worker_participant p;
            fill_participant(s, &p);
            if (rtp_worker_move_participant(m->workers[old_worker].w, &p) < 0) m->worker_errors++;
            explicit_bzero(&p, sizeof p);
        } else {
            worker_remove(m, s);
            worker_add(m, s);
        }
        s->room = from;
        room_unlink(m, s); /* may free `from` */
        if (to->worker != old_worker) send_op(s, 4, description(m, s));
        room_link(to, s);
        send_state(m, s, false);
        m->moved++;
        return;
    }
    if (flags != s->flags) {
        s->flags = flags;
        if (rtp_worker_set_flags(m->workers[s->worker].w, s->handle, flags) < 0) m->worker_errors++;
    }
}

void media_conn_touched(voice_node *n, const sig_effects *fx)
{
    media *m = n->media;
    if (!m || !m->nsessions) return;
    for (size_t i = 0; i < fx->nwrites; i++)
        if (fx->writes[i].kind == SIG_W_CONN_PUT || fx->writes[i].kind == SIG_W_CONN_DEL)
            conn_touched(m, fx->writes[i].key);
}

/* ---- worker events ----------------------------------------------------------------------------
 */

static void on_worker_event(media *m, int wi, const rtp_worker_event *ev)
{
    voice_node *n = m->n;
    msess *s = hmap_getu(m->by_handle, ev->id);
    switch (ev->kind) {
    case RTP_WORKER_EV_DONE:
        if (ev->err < 0) {
            m->worker_errors++;
            LOGC(LOG_WARN, "media", "worker %d: command %d for %u failed: %s", wi, (int)ev->cmd,
                 ev->id, strerror(-ev->err));
            if (s && (ev->cmd == RTP_WORKER_CMD_ADD || ev->cmd == RTP_WORKER_CMD_MOVE))
                session_end(m, s, 4000, "media unavailable: the room is full");
        }
        return;
    case RTP_WORKER_EV_LATCHED:
        if (!s || s->worker != wi) return;
        if (!s->latched) m->latched++;
        s->latched = true;
        if (sig_conn_confirm(n->core, s->conn_id, time_now_ms()) == 0) node_after_step(n);
        return;
    case RTP_WORKER_EV_SILENT:
        if (s && s->worker == wi)
            LOGC(LOG_DEBUG, "media", "connection %s: no media for %u ms", s->conn_id,
                 ev->silent_ms);
        return;
    case RTP_WORKER_EV_SPEAKING:
        if (!s || s->worker != wi || ev->slot >= s->n_slots) return;
        s->slot_has[ev->slot] = ev->has_speaker;
        s->slot_speaker[ev->slot] = ev->speaker;
        send_op(s, 5, speaking_json(m, s, ev->slot));
        return;
    }
}

static void on_worker_async(uv_async_t *a)
{
    media *m = ((voice_node *)a->data)->media;
    int wi = (int)(((mworker *)((char *)a - offsetof(mworker, async))) - m->workers);
    rtp_worker_event ev[64];
    size_t k;
    while ((k = rtp_worker_events(m->workers[wi].w, ev, ARRAY_LEN(ev))) > 0)
        for (size_t i = 0; i < k; i++)
            on_worker_event(m, wi, &ev[i]);
}

static void on_reap(uv_timer_t *t)
{
    voice_node *n = t->data;
    media *m = n->media;
    int64_t now = (time_mono_ns() / 1000000);
    bool stepped = false;
    for (msess *s = m->detached, *next; s; s = next) {
        next = s->dnext;
        if (now - s->detached_at < n->cf->transport_reap_ms) continue;
        char conn_id[CONN_ID_MAX];
        snprintf(conn_id, sizeof conn_id, "%s", s->conn_id);
        LOGC(LOG_INFO, "media", "connection %s: transport dead for %lld ms: reaped", conn_id,
             (long long)(now - s->detached_at));
        session_end(m, s, 0, NULL);
        if (sig_conn_reap_transport(n->core, conn_id, time_now_ms()) == 0) stepped = true;
    }
    if (stepped) node_after_step(n);
}

/* ---- life cycle -------------------------------------------------------------------------------
 */

static void on_closed(uv_handle_t *h)
{
    voice_node *n = h->data; /* the node's handles all carry it (its shutdown counts on that) */
    n->open_handles--;
}

int media_start(voice_node *n)
{
    const conf *cf = n->cf;
    media *m = xcalloc(1, sizeof *m);
    m->n = n;
    m->nworkers = (int)cf->workers;
    m->workers = xcalloc((size_t)m->nworkers, sizeof *m->workers);
    m->by_conn = hmap_new();
    m->by_handle = hmap_new();
    m->ssrcs = hmap_new();
    m->rooms = hmap_new();
    m->guilds = hmap_new();
    m->ufrags = hmap_new();
    n->media = m;
    int drc = wrtc_dtls_ctx_new(NULL, NULL, &m->dtls);
    if (drc < 0) {
        LOG(LOG_ERROR, "webrtc: cannot create the DTLS certificate: %s", strerror(-drc));
        return drc;
    }
    LOG(LOG_INFO, "webrtc: DTLS certificate sha-256 %s", wrtc_dtls_ctx_fingerprint(m->dtls));
    for (int i = 0; i < m->nworkers; i++) {
        mworker *mw = &m->workers[i];
        uv_async_init(n->loop, &mw->async, on_worker_async);
        mw->async.data = n;
        n->open_handles++;
        rtp_worker_config wc = {
            .address = cf->media_addr,
            .port = cf->media_port_base ? (uint16_t)(cf->media_port_base + i) : 0,
            .max_rooms = WORKER_MAX_ROOMS,
            .max_participants = WORKER_MAX_PARTS,
            .level_ext_id = MEDIA_LEVEL_EXT_ID,
            .dtls = m->dtls,
            .event_async = &mw->async,
        };
        int rc = rtp_worker_new(&wc, &mw->w);
        if (rc == 0) rc = rtp_worker_start(mw->w);
        if (rc < 0) {
            LOG(LOG_ERROR, "media worker %d: cannot start on %s:%u: %s", i, cf->media_addr, wc.port,
                strerror(-rc));
            return rc;
        }
        mw->port = rtp_worker_port(mw->w);
        LOG(LOG_INFO, "media worker %d on udp %s:%u", i, cf->media_addr, mw->port);
    }
    uv_timer_init(n->loop, &m->reap);
    m->reap.data = n;
    n->open_handles++;
    uv_timer_start(&m->reap, on_reap, REAP_CHECK_MS, REAP_CHECK_MS);
    return 0;
}

void media_drain(voice_node *n)
{
    media *m = n->media;
    if (!m) return;
    uv_timer_stop(&m->reap);
    size_t it = 0;
    void *v;
    while (hmap_next(m->by_conn, &it, NULL, NULL, &v)) {
        msess *s = v;
        if (!s->ws) continue;
        vw_pss *ws = s->ws;
        s->ws = NULL;
        vw_detach(ws);
        vw_end(ws, 4015, "node draining");
        detached_link(m, s);
    }
}

void media_stop(voice_node *n)
{
    media *m = n->media;
    if (!m) return;
    size_t it = 0;
    void *v;
    while (hmap_next(m->by_conn, &it, NULL, NULL, &v)) {
        msess *s = v;
        if (s->ws) vw_detach(s->ws);
        free(s->answer);
        explicit_bzero(s, sizeof *s);
        free(s);
    }
    it = 0;
    while (hmap_next(m->rooms, &it, NULL, NULL, &v))
        free(v);
    for (int i = 0; i < m->nworkers; i++) {
        if (rtp_worker_stop_and_free(m->workers[i].w) < 0)
            LOG(LOG_ERROR, "media worker %d: its loop did not close cleanly", i);
        uv_close((uv_handle_t *)&m->workers[i].async, on_closed);
    }
    uv_close((uv_handle_t *)&m->reap, on_closed);
    hmap_free(m->by_conn);
    hmap_free(m->by_handle);
    hmap_free(m->ssrcs);
    hmap_free(m->rooms);
    it = 0;
    while (hmap_next(m->guilds, &it, NULL, NULL, &v))
        free(v);
    hmap_free(m->guilds);
    hmap_free(m->ufrags);
    m->by_conn = m->by_handle = m->ssrcs = m->rooms = m->guilds = m->ufrags = NULL;
}

void media_free(voice_node *n)
{
    media *m = n->media;
    if (!m) return;
    wrtc_dtls_ctx_free(m->dtls); /* after every worker (and its transports) is gone */
    free(m->workers);
    free(m);
    n->media = NULL;
}

/* ---- metrics ----------------------------------------------------------------------------------
 */

void media_render_metrics(voice_node *n, metrics_buf *b)
{
    media *m = n->media;
    rtp_worker_stats t = {0};
    double lag[256] = {0};
    int nw = m && m->workers ? m->nworkers : 0;
    for (int i = 0; i < nw && m->workers[i].w; i++) {
        rtp_worker_stats st;
        rtp_worker_stats_read(m->workers[i].w, &st);
        const uint64_t *src = (const uint64_t *)&st;
        uint64_t *dst = (uint64_t *)&t;
        for (size_t k = 0; k < sizeof st / sizeof(uint64_t); k++)
            dst[k] += src[k];
        if (i < 256) lag[i] = (double)st.loop_lag_ns / 1e9;
    }
    metrics_family(b, M_MEDIA_SESSIONS);
    metrics_sample(b, M_MEDIA_SESSIONS, m ? (double)m->nsessions : 0, NULL);
    metrics_family(b, M_MEDIA_PACKETS);
    metrics_sample(b, M_MEDIA_PACKETS, (double)t.rx_datagrams,
                   (const char *[]){"direction", "in", NULL});
    metrics_sample(b, M_MEDIA_PACKETS, (double)t.tx_datagrams,
                   (const char *[]){"direction", "out", NULL});
    metrics_family(b, M_MEDIA_BYTES);
    metrics_sample(b, M_MEDIA_BYTES, (double)t.rx_bytes, (const char *[]){"direction", "in", NULL});
    metrics_sample(b, M_MEDIA_BYTES, (double)t.tx_bytes,
                   (const char *[]){"direction", "out", NULL});
    metrics_family(b, M_MEDIA_DROPS);
    const struct {
        const char *reason;
        uint64_t v;
    } drops[] = {
        {"auth", t.drop_auth + t.drop_rtcp_auth},
        {"unknown_source", t.drop_unknown_ssrc},
        {"muted", t.drop_room[RTP_ROOM_DROP_MUTED]},
        {"suppressed", t.drop_room[RTP_ROOM_DROP_SUPPRESSED]},
        {"not_selected", t.drop_room[RTP_ROOM_DROP_NOT_SELECTED]},
        {"malformed", t.drop_parse + t.drop_too_short + t.drop_oversize},
        {"not_rtp", t.drop_not_rtp},
        {"stun", t.drop_stun},
        {"dtls", t.drop_dtls},
        {"unlatched_destination", t.drop_dest_unlatched},
        {"stale", t.drop_slot},
        {"protect", t.drop_protect},
        {"send", t.drop_send},
    };
    for (size_t i = 0; i < ARRAY_LEN(drops); i++)
        metrics_sample(b, M_MEDIA_DROPS, (double)drops[i].v,
                       (const char *[]){"reason", drops[i].reason, NULL});
    metrics_family(b, M_WEBRTC_OFFERS_REFUSED);
    for (int i = 1; i < WRTC_SDP_ERR_COUNT_; i++)
        metrics_sample(b, M_WEBRTC_OFFERS_REFUSED, m ? (double)m->offers_refused[i] : 0,
                       (const char *[]){"reason", wrtc_sdp_err_name((wrtc_sdp_err)i), NULL});
    metrics_family(b, M_WEBRTC_STUN);
    metrics_sample(b, M_WEBRTC_STUN, (double)t.stun_ok, (const char *[]){"result", "ok", NULL});
    metrics_sample(b, M_WEBRTC_STUN, (double)t.drop_stun,
                   (const char *[]){"result", "refused", NULL});
    metrics_family(b, M_WEBRTC_DTLS);
    metrics_sample(b, M_WEBRTC_DTLS, (double)t.dtls_connected,
                   (const char *[]){"result", "connected", NULL});
    metrics_sample(b, M_WEBRTC_DTLS, (double)t.dtls_failed,
                   (const char *[]){"result", "failed", NULL});
    metrics_family(b, M_MEDIA_SESSION_EVENTS);
    const struct {
        const char *event;
        uint64_t v;
    } evs[] = {{"opened", m ? m->opened : 0},
               {"resumed", m ? m->resumed : 0},
               {"moved", m ? m->moved : 0},
               {"latched", m ? m->latched : 0},
               {"left", m ? m->left : 0}};
    for (size_t i = 0; i < ARRAY_LEN(evs); i++)
        metrics_sample(b, M_MEDIA_SESSION_EVENTS, (double)evs[i].v,
                       (const char *[]){"event", evs[i].event, NULL});
    metrics_family(b, M_MEDIA_WORKER_ERRORS);
    metrics_sample(b, M_MEDIA_WORKER_ERRORS, m ? (double)m->worker_errors : 0, NULL);
    metrics_family(b, M_MEDIA_LOOP_LAG);
    for (int i = 0; i < nw && i < 256; i++) {
        char w[12];
        snprintf(w, sizeof w, "%d", i);
        metrics_sample(b, M_MEDIA_LOOP_LAG, lag[i], (const char *[]){"worker", w, NULL});
    }
    metrics_family(b, M_MEDIA_FORWARD_LATENCY);
    static const uint64_t bounds_us[RTP_WORKER_LAT_N] = RTP_WORKER_LAT_BOUNDS_US;
    double le[RTP_WORKER_LAT_N];
    for (int i = 0; i < RTP_WORKER_LAT_N; i++)
        le[i] = (double)bounds_us[i] / 1e6;
    metrics_hist_write_bounds(b, M_MEDIA_FORWARD_LATENCY, le, RTP_WORKER_LAT_N, t.fwd_lat,
                              (double)t.fwd_lat_sum_ns / 1e9, NULL);
}
