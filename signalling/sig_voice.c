/*
 * signalling/sig_voice.c — voice states: connections, rooms, the rules of spec §2, and the voice.*
 * RPC methods.
 *
 * Every mutation goes through one of three exits, so the rules hold in one place:
 *   conn_changed()   version+1, persist, one VOICE_STATE_UPDATE (scope names old+new channel)
 *   sig_conn_remove() version+1, channel_id null, persist the delete, one leave broadcast, call
 *                    bookkeeping, viewers of the leaving connection lose its stream key
 *   connect          version 0, persist, broadcast, grant
 * A request that changes nothing reaches none of them: no version bump, no event.
 */
#include "signalling/sig_internal.h"
#include "lib/util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- rooms, users, connections ------------------------------------------------------------------
 */

static sig_room *room_find(sig_core *c, uint64_t guild, uint64_t channel)
{
    uint64_t key[2] = {guild, channel};
    return hmap_get(c->rooms, key, sizeof key);
}

sig_room *sig_room_get(sig_core *c, uint64_t guild, uint64_t channel)
{
    sig_room *r = room_find(c, guild, channel);
    if (r) return r;
    r = xcalloc(1, sizeof *r);
    r->guild_id = guild;
    r->channel_id = channel;
    r->users = hmap_new();
    uint64_t key[2] = {guild, channel};
    hmap_put(c->rooms, key, sizeof key, r);
    return r;
}

static size_t room_user_conns(const sig_room *r, uint64_t user)
{
    return r ? (size_t)(uintptr_t)hmap_getu(r->users, user) : 0;
}

static void room_attach(sig_core *c, sig_conn *k, uint64_t guild, uint64_t channel)
{
    sig_room *r = sig_room_get(c, guild, channel);
    k->room = r;
    k->guild_id = guild;
    k->channel_id = channel;
    k->room_prev = NULL;
    k->room_next = r->conns;
    if (r->conns) r->conns->room_prev = k;
    r->conns = k;
    r->nconns++;
    hmap_putu(r->users, k->user_id, (void *)(uintptr_t)(room_user_conns(r, k->user_id) + 1));
}

static void room_detach(sig_core *c, sig_conn *k)
{
    sig_room *r = k->room;
    if (!r) return;
    if (k->room_prev)
        k->room_prev->room_next = k->room_next;
    else
        r->conns = k->room_next;
    if (k->room_next) k->room_next->room_prev = k->room_prev;
    r->nconns--;
    size_t n = room_user_conns(r, k->user_id);
    if (n <= 1)
        hmap_delu(r->users, k->user_id);
    else
        hmap_putu(r->users, k->user_id, (void *)(uintptr_t)(n - 1));
    k->room = NULL;
    k->room_prev = k->room_next = NULL;
    if (r->nconns == 0) {
        uint64_t key[2] = {r->guild_id, r->channel_id};
        hmap_del(c->rooms, key, sizeof key);
        hmap_free(r->users);
        free(r);
    }
}

static sig_user *user_get(sig_core *c, uint64_t id)
{
    sig_user *u = hmap_getu(c->users, id);
    if (u) return u;
    u = xcalloc(1, sizeof *u);
    u->user_id = id;
    hmap_putu(c->users, id, u);
    return u;
}

static void user_attach(sig_core *c, sig_conn *k)
{
    sig_user *u = user_get(c, k->user_id);
    k->user = u;
    k->user_next = u->conns;
    if (u->conns) u->conns->user_prev = k;
    u->conns = k;
    u->nconns++;
}

static void user_detach(sig_core *c, sig_conn *k)
{
    sig_user *u = k->user;
    if (k->user_prev)
        k->user_prev->user_next = k->user_next;
    else
        u->conns = k->user_next;
    if (k->user_next) k->user_next->user_prev = k->user_prev;
    if (--u->nconns == 0) {
        hmap_delu(c->users, u->user_id);
        free(u);
    }
}

static void conn_destroy(sig_conn *k)
{
    free(k->session_id);
    json_decref(k->member);
    json_decref(k->viewer_keys);
    free(k);
}

void sig_conn_link(sig_core *c, sig_conn *k)
{
    hmap_puts(c->conns, k->id, k);
    room_attach(c, k, k->guild_id, k->channel_id);
    user_attach(c, k);
    if (k->pending) sig_timer_arm(c, T_PENDING, k->id, 0, k->pending_deadline);
}

/* ---- serialization ------------------------------------------------------------------------------
 */

static json_t *sf(uint64_t v)
{
    char b[21];
    return v ? json_string(snowflake_fmt(v, b)) : json_null();
}

json_t *sig_conn_json(const sig_conn *k)
{
    json_t *j = json_object();
    json_object_set_new(j, "guild_id", sf(k->guild_id));
    json_object_set_new(j, "channel_id", sf(k->channel_id));
    json_object_set_new(j, "user_id", sf(k->user_id));
    json_object_set_new(j, "connection_id", json_string(k->id));
    json_object_set_new(j, "session_id", json_string(k->session_id));
    json_object_set(j, "member", k->member ? k->member : json_null());
    json_object_set_new(j, "mute", json_boolean(k->mute));
    json_object_set_new(j, "deaf", json_boolean(k->deaf));
    json_object_set_new(j, "self_mute", json_boolean(k->self_mute));
    json_object_set_new(j, "self_deaf", json_boolean(k->self_deaf));
    json_object_set_new(j, "self_video", json_boolean(k->self_video));
    json_object_set_new(j, "self_stream", json_boolean(k->self_stream));
    json_object_set_new(j, "is_mobile", json_boolean(k->is_mobile));
    json_object_set_new(j, "suppress", json_boolean(k->suppress));
    json_object_set_new(j, "viewer_stream_keys", json_deep_copy(k->viewer_keys));
    json_object_set_new(j, "version", json_integer((json_int_t)k->version));
    return j;
}

/* The row from a voice state j of k just built (stolen). */
static json_t *conn_row_from(const sig_conn *k, json_t *j)
{
    json_object_set_new(j, "can_speak", json_boolean(k->can_speak));
    json_object_set_new(j, "can_stream", json_boolean(k->can_stream));
    json_object_set_new(j, "can_video", json_boolean(k->can_video));
    json_object_set_new(j, "pending", json_boolean(k->pending));
    json_object_set_new(j, "pending_deadline", json_integer(k->pending ? k->pending_deadline : 0));
    json_object_set_new(j, "created_at", json_integer(k->created_at));
    return j;
}

json_t *sig_conn_row(const sig_conn *k)
{
    return conn_row_from(k, sig_conn_json(k));
}

void sig_conn_persist(sig_core *c, const sig_conn *k)
{
    sig_emit_write(c, SIG_W_CONN_PUT, k->id, sig_conn_row(k));
}

static int cmp_conn(const void *a, const void *b)
{
    const sig_conn *x = *(sig_conn *const *)a, *y = *(sig_conn *const *)b;
    if (x->guild_id != y->guild_id) return x->guild_id < y->guild_id ? -1 : 1;
    if (x->channel_id != y->channel_id) return x->channel_id < y->channel_id ? -1 : 1;
    if (x->user_id != y->user_id) return x->user_id < y->user_id ? -1 : 1;
    return strcmp(x->id, y->id);
}

json_t *sig_states_json(sig_core *c, sig_conn **v, size_t n)
{
    (void)c;
    qsort(v, n, sizeof *v, cmp_conn);
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(a, sig_conn_json(v[i]));
    return a;
}

/* Scope of a voice state broadcast: the guild with the channels, or a DM call's recipients. */
static json_t *vsu_scope(sig_core *c, const sig_conn *k, uint64_t chan, uint64_t old_chan)
{
    if (k->guild_id == 0) {
        uint64_t ch = chan ? chan : old_chan;
        sig_call *call = sig_call_get(c, ch);
        if (call) return sig_call_scope(call);
        json_t *users = json_array();
        json_array_append_new(users, sf(k->user_id));
        return json_pack("{s:s,s:o}", "type", "users", "user_ids", users);
    }
    json_t *chans = json_array();
    if (chan) json_array_append_new(chans, sf(chan));
    if (old_chan && old_chan != chan) json_array_append_new(chans, sf(old_chan));
    return json_pack("{s:s,s:o,s:o}", "type", "guild", "guild_id", sf(k->guild_id), "channel_ids",
                     chans);
}

static void broadcast(sig_core *c, const sig_conn *k, uint64_t old_chan)
{
    sig_emit_event(c, "VOICE_STATE_UPDATE", vsu_scope(c, k, k->channel_id, old_chan),
                   sig_conn_json(k));
}

/* version+1, persist, broadcast; returns the new voice state as compact JSON text (owned; *len
 * its length): the object is built once, dumped once for the event and the caller's reply, then
 * completed with the internal fields into the row. */
static char *conn_changed_text(sig_core *c, sig_conn *k, uint64_t old_chan, size_t *len)
{
    k->version++;
    json_t *j = sig_conn_json(k);
    char *t = sig_dumps(j);
    *len = strlen(t);
    sig_emit_event_text(c, "VOICE_STATE_UPDATE", vsu_scope(c, k, k->channel_id, old_chan), t, *len);
    /* the row's text: the state's text with the internal fields appended, in conn_row_from's
     * order (what dumping that row would give) */
    char tail[160];
    int tl = snprintf(tail, sizeof tail,
                      ",\"can_speak\":%s,\"can_stream\":%s,\"can_video\":%s,\"pending\":%s,"
                      "\"pending_deadline\":%lld,\"created_at\":%lld}",
                      k->can_speak ? "true" : "false", k->can_stream ? "true" : "false",
                      k->can_video ? "true" : "false", k->pending ? "true" : "false",
                      (long long)(k->pending ? k->pending_deadline : 0), (long long)k->created_at);
    char *rt = xmalloc(*len + (size_t)tl);
    memcpy(rt, t, *len - 1); /* without its closing brace */
    memcpy(rt + *len - 1, tail, (size_t)tl + 1);
    sig_emit_write_text(c, SIG_W_CONN_PUT, k->id, conn_row_from(k, j), rt);
    return t;
}

static void conn_changed(sig_core *c, sig_conn *k, uint64_t old_chan)
{
    size_t len;
    free(conn_changed_text(c, k, old_chan, &len));
}

/* ---- stream keys --------------------------------------------------------------------------------
 */

static char *stream_key(const sig_conn *k)
{
    char g[21], ch[21];
    if (k->guild_id)
        return xasprintf("%s:%s:%s", snowflake_fmt(k->guild_id, g),
                         snowflake_fmt(k->channel_id, ch), k->id);
    return xasprintf("dm:%s:%s", snowflake_fmt(k->channel_id, ch), k->id);
}

/* Connections in `room` that view the stream `key` lose that key (their own update each). */
static void strip_viewers(sig_core *c, sig_room *room, const char *key, const sig_conn *skip)
{
    if (!room) return;
    for (sig_conn *v = room->conns; v; v = v->room_next) {
        if (v == skip) continue;
        size_t i;
        json_t *x;
        json_array_foreach(v->viewer_keys, i, x)
        {
            if (strcmp(json_string_value(x), key) == 0) {
                json_array_remove(v->viewer_keys, i);
                conn_changed(c, v, 0);
                break;
            }
        }
    }
}

/* Validates keys for connection k; returns a new normalized array (deduplicated) or NULL + err. */
static json_t *check_stream_keys(sig_core *c, const sig_conn *k, json_t *keys, sig_err *e)
{
    if (!json_is_array(keys)) {
        sig_fail(e, 400, "INVALID_REQUEST", "params.viewer_stream_keys",
                 "viewer_stream_keys must be an array of strings");
        return NULL;
    }
    if (json_array_size(keys) > 32) {
        sig_fail(e, 400, "INVALID_REQUEST", "params.viewer_stream_keys",
                 "viewer_stream_keys has more than 32 keys");
        return NULL;
    }
    char prefix[64], g[21], ch[21];
    if (k->guild_id)
        snprintf(prefix, sizeof prefix, "%s:%s:", snowflake_fmt(k->guild_id, g),
                 snowflake_fmt(k->channel_id, ch));
    else
        snprintf(prefix, sizeof prefix, "dm:%s:", snowflake_fmt(k->channel_id, ch));
    size_t plen = strlen(prefix);
    json_t *out = json_array();
    size_t i;
    json_t *x;
    json_array_foreach(keys, i, x)
    {
        char field[64];
        snprintf(field, sizeof field, "params.viewer_stream_keys[%zu]", i);
        if (!json_is_string(x)) {
            sig_fail(e, 400, "INVALID_REQUEST", field, "viewer_stream_keys[%zu] must be a string",
                     i);
            goto fail;
        }
        const char *s = json_string_value(x);
        if (strncmp(s, prefix, plen) != 0 || strlen(s) != plen + SIG_CONN_ID_LEN) {
            sig_fail(
                e, 400, "INVALID_STREAM_KEY", field,
                "viewer_stream_keys[%zu] is not a stream key of this channel (%s<connection_id>)",
                i, prefix);
            goto fail;
        }
        const sig_conn *t = hmap_gets(c->conns, s + plen);
        if (!t || t->room != k->room) {
            sig_fail(e, 400, "INVALID_STREAM_KEY", field,
                     "viewer_stream_keys[%zu] names no connection in this channel", i);
            goto fail;
        }
        bool dup = false;
        size_t j;
        json_t *y;
        json_array_foreach(out, j, y) dup |= strcmp(json_string_value(y), s) == 0;
        if (!dup) json_array_append(out, x);
    }
    return out;
fail:
    json_decref(out);
    return NULL;
}

/* ---- removal ------------------------------------------------------------------------------------
 */

void sig_conn_remove(sig_core *c, sig_conn *k, const char *reason, int64_t now)
{
    (void)reason;
    uint64_t old_chan = k->channel_id;
    bool dm = k->guild_id == 0;
    char *key = stream_key(k);
    /* the leave itself first, then its consequences */
    k->version++;
    k->channel_id = 0;
    sig_emit_event(c, "VOICE_STATE_UPDATE", vsu_scope(c, k, 0, old_chan), sig_conn_json(k));
    sig_emit_write(c, SIG_W_CONN_DEL, k->id, NULL);
    hmap_dels(c->conns, k->id);
    strip_viewers(c, k->room, key, k);
    free(key);
    room_detach(c, k);
    user_detach(c, k);
    conn_destroy(k);
    if (dm) {
        sig_call *call = sig_call_get(c, old_chan);
        if (call) sig_call_on_leave(c, call, now);
    }
}

void sig_voice_fire_pending(sig_core *c, const char *conn_id, int64_t deadline, int64_t now)
{
    sig_conn *k = hmap_gets(c->conns, conn_id);
    if (!k || !k->pending || k->pending_deadline != deadline) return;
    c->st.reaped_pending++;
    sig_conn_remove(c, k, "pending_expired", now);
}

int sig_conn_confirm(sig_core *c, const char *connection_id, int64_t now)
{
    (void)now;
    sig_conn *k = hmap_gets(c->conns, connection_id);
    if (!k) return -ENOENT;
    if (!k->pending) return 0;
    k->pending = false;
    sig_conn_persist(c, k); /* not a voice-state change: no version bump, no broadcast */
    return 0;
}

int sig_conn_get(const sig_core *c, const char *connection_id, sig_conn_view *out)
{
    const sig_conn *k = hmap_gets(c->conns, connection_id);
    if (!k) return -ENOENT;
    *out = (sig_conn_view){.user_id = k->user_id,
                           .guild_id = k->guild_id,
                           .channel_id = k->channel_id,
                           .mute = k->mute,
                           .deaf = k->deaf,
                           .self_mute = k->self_mute,
                           .self_deaf = k->self_deaf,
                           .suppress = k->suppress,
                           .pending = k->pending};
    return 0;
}

int sig_conn_reap_transport(sig_core *c, const char *connection_id, int64_t now)
{
    sig_conn *k = hmap_gets(c->conns, connection_id);
    if (!k) return -ENOENT;
    c->st.reaped_transport++;
    sig_conn_remove(c, k, "transport_dead", now);
    return 0;
}

int sig_conn_goodbye(sig_core *c, const char *connection_id, int64_t now)
{
    sig_conn *k = hmap_gets(c->conns, connection_id);
    if (!k) return -ENOENT;
    sig_conn_remove(c, k, "client_left", now);
    return 0;
}

/* ---- server state memory ------------------------------------------------------------------------
 */

static unsigned server_state(sig_core *c, uint64_t guild, uint64_t user)
{
    char key[48], g[21], u[21];
    snprintf(key, sizeof key, "%s:%s", snowflake_fmt(guild, g), snowflake_fmt(user, u));
    return (unsigned)(uintptr_t)hmap_gets(c->server, key);
}

static void server_state_set(sig_core *c, uint64_t guild, uint64_t user, unsigned bits)
{
    char key[48], g[21], u[21];
    snprintf(key, sizeof key, "%s:%s", snowflake_fmt(guild, g), snowflake_fmt(user, u));
    if (bits) {
        hmap_puts(c->server, key, (void *)(uintptr_t)bits);
        sig_emit_write(c, SIG_W_SERVER_PUT, key,
                       json_pack("{s:b,s:b}", "mute", bits & 1, "deaf", (bits >> 1) & 1));
    } else if (hmap_dels(c->server, key)) {
        sig_emit_write(c, SIG_W_SERVER_DEL, key, NULL);
    }
}

/* ---- methods ------------------------------------------------------------------------------------
 */

static int not_found(sig_err *e, const char *id)
{
    return sig_fail(e, 404, "VOICE_CONNECTION_NOT_FOUND", "params.connection_id",
                    "no voice connection '%.40s' on this node", id);
}

/* Looks up params.connection_id and checks params.user_id (required or optional). */
static int lookup_conn(sig_core *c, sig_params *p, bool user_required, sig_conn **out, sig_err *e)
{
    const char *id;
    uint64_t user = 0;
    if (sp_string(p, "connection_id", true, 64, &id) < 0) return e->code ? 400 : 400;
    int have_user = sp_snowflake(p, "user_id", user_required, &user);
    if (have_user < 0) return 400;
    sig_conn *k = hmap_gets(c->conns, id);
    if (!k) return not_found(e, id);
    if (have_user && k->user_id != user)
        return sig_fail(e, 403, "VOICE_USER_MISMATCH", "params.user_id",
                        "connection %s belongs to another user", k->id);
    *out = k;
    return 0;
}

static int check_user_limit(sig_core *c, uint64_t guild, uint64_t channel, uint64_t user,
                            long long limit, sig_err *e)
{
    if (limit <= 0) return 0;
    sig_room *r = room_find(c, guild, channel);
    if (!r || room_user_conns(r, user) > 0) return 0; /* already in: not counted twice */
    if ((long long)hmap_size(r->users) >= limit)
        return sig_fail(e, 403, "VOICE_CHANNEL_FULL", "params.channel_id",
                        "the channel is full (%lld users)", limit);
    return 0;
}

int sig_m_voice_connect(sig_core *c, json_t *params, int64_t now, json_t **result, sig_err *e)
{
    sig_params p;
    sp_init(&p, params, e);
    uint64_t guild = 0, channel, user;
    const char *session;
    json_t *member = NULL;
    bool self_mute = false, self_deaf = false, self_video = false, self_stream = false,
         is_mobile = false, can_speak = true, can_stream = true, can_video = true, mute = false,
         deaf = false;
    long long limit = 0;
    int have_mute, have_deaf;
    if (sp_snowflake_or_null(&p, "guild_id", &guild) < 0 ||
        sp_snowflake(&p, "channel_id", true, &channel) < 0 ||
        sp_snowflake(&p, "user_id", true, &user) < 0 ||
        sp_string(&p, "session_id", true, 128, &session) < 0 ||
        sp_json(&p, "member", &member) < 0 || sp_bool(&p, "self_mute", &self_mute) < 0 ||
        sp_bool(&p, "self_deaf", &self_deaf) < 0 || sp_bool(&p, "self_video", &self_video) < 0 ||
        sp_bool(&p, "self_stream", &self_stream) < 0 || sp_bool(&p, "is_mobile", &is_mobile) < 0 ||
        sp_bool(&p, "can_speak", &can_speak) < 0 || sp_bool(&p, "can_stream", &can_stream) < 0 ||
        sp_bool(&p, "can_video", &can_video) < 0 ||
        sp_int(&p, "user_limit", false, 0, 100000, &limit) < 0 ||
        (have_mute = sp_bool(&p, "mute", &mute)) < 0 ||
        (have_deaf = sp_bool(&p, "deaf", &deaf)) < 0 || sp_done(&p) < 0)
        return 400;
    if (member && !json_is_object(member) && !json_is_null(member))
        return sig_fail(e, 400, "INVALID_REQUEST", "params.member",
                        "member must be an object or null");
    if (member && json_is_null(member)) member = NULL;

    sig_call *call = NULL;
    if (guild == 0) {
        call = sig_call_get(c, channel);
        if (!call) return SIG_HOLD; /* the join/create race: wait for call.create */
        if (!sig_call_is_recipient(call, user))
            return sig_fail(e, 403, "NOT_CALL_RECIPIENT", "params.user_id",
                            "user is not a recipient of the call on this channel");
        /* calls have no moderation and no permissions */
        member = NULL;
        can_speak = can_stream = can_video = true;
        mute = deaf = false;
        limit = 0;
    }
    /* at most N connections per user per guild / per call */
    sig_user *u = hmap_getu(c->users, user);
    unsigned n = 0;
    for (sig_conn *k = u ? u->conns : NULL; k; k = k->user_next)
        n += guild ? k->guild_id == guild : (k->guild_id == 0 && k->channel_id == channel);
    if (n >= c->cfg.max_conns_per_user)
        return sig_fail(e, 403, "VOICE_CONNECTION_LIMIT_REACHED", "params.user_id",
                        "the user already holds %u voice connections here", n);
    int st = check_user_limit(c, guild, channel, user, limit, e);
    if (st) return st;

    sig_conn *k = xcalloc(1, sizeof *k);
    unsigned char rnd[16];
    if (sig_random(c, rnd, sizeof rnd) != 0) {
        free(k);
        return sig_fail(e, 500, "INTERNAL", NULL, "no randomness available");
    }
    b64url_encode(rnd, sizeof rnd, k->id);
    k->user_id = user;
    k->session_id = xstrdup(session);
    k->member = member ? json_deep_copy(member) : NULL;
    unsigned srv = guild ? server_state(c, guild, user) : 0;
    k->mute = have_mute ? mute : (srv & 1);
    k->deaf = have_deaf ? deaf : ((srv >> 1) & 1);
    k->self_mute = self_mute;
    k->self_deaf = self_deaf;
    k->can_speak = can_speak;
    k->can_stream = can_stream;
    k->can_video = can_video;
    k->self_video = self_video && can_video;
    k->self_stream = self_stream && can_stream;
    k->is_mobile = is_mobile;
    k->suppress = !can_speak;
    k->viewer_keys = json_array();
    k->version = 0;
    k->pending = true;
    k->pending_deadline = now + c->cfg.pending_timeout_ms;
    k->created_at = now;
    k->guild_id = guild;
    k->channel_id = channel;
    sig_conn_link(c, k);

    sig_conn_persist(c, k);
    broadcast(c, k, 0);
    json_t *server = sig_grant_issue(c, k, now);
    json_t *sscope = json_pack("{s:s,s:s}", "type", "session", "session_id", k->session_id);
    sig_emit_event(c, "VOICE_SERVER_UPDATE", sscope, json_deep_copy(server));
    if (call) sig_call_on_join(c, call, k, now);
    *result = json_pack("{s:o,s:o}", "voice_state", sig_conn_json(k), "voice_server", server);
    return 200;
}

int sig_m_voice_update(sig_core *c, json_t *params, int64_t now, json_t **result, sig_err *e)
{
    (void)now;
    sig_params p;
    sp_init(&p, params, e);
    sig_conn *k;
    int st = lookup_conn(c, &p, true, &k, e);
    if (st) return st;
    long long base = 0;
    bool f[5];
    const char *names[5] = {"self_mute", "self_deaf", "self_video", "self_stream", "is_mobile"};
    bool *cur[5] = {&k->self_mute, &k->self_deaf, &k->self_video, &k->self_stream, &k->is_mobile};
    int have[5];
    json_t *keys = NULL, *member = NULL;
    int have_base = sp_int(&p, "base_version", false, 0, INT64_MAX, &base);
    if (have_base < 0) return 400;
    for (int i = 0; i < 5; i++)
        if ((have[i] = sp_bool(&p, names[i], &f[i])) < 0) return 400;
    if (sp_json(&p, "viewer_stream_keys", &keys) < 0 || sp_json(&p, "member", &member) < 0 ||
        sp_done(&p) < 0)
        return 400;
    if (member && !json_is_object(member) && !json_is_null(member))
        return sig_fail(e, 400, "INVALID_REQUEST", "params.member",
                        "member must be an object or null");
    if (have_base) {
        if ((unsigned long long)base > k->version)
            return sig_fail(e, 400, "INVALID_REQUEST", "params.base_version",
                            "base_version %lld is ahead of the current version %llu", base,
                            (unsigned long long)k->version);
        if (k->version - (unsigned long long)base > 1)
            return sig_fail(e, 409, "STALE_BASE_VERSION", "params.base_version",
                            "base_version %lld is stale (current version %llu)", base,
                            (unsigned long long)k->version);
    }
    json_t *nkeys = NULL;
    if (keys) {
        nkeys = check_stream_keys(c, k, keys, e);
        if (!nkeys) return 400;
    }
    if (have[2] && f[2] && !k->can_video) f[2] = false;
    if (have[3] && f[3] && !k->can_stream) f[3] = false;
    if (k->guild_id == 0 && member) member = NULL; /* no member in calls */
    bool changed = false;
    char *vs = NULL;
    size_t vl = 0;
    for (int i = 0; i < 5; i++)
        changed |= have[i] && *cur[i] != f[i];
    if (nkeys && !json_equal(nkeys, k->viewer_keys)) changed = true;
    if (member) {
        json_t *curm = k->member ? k->member : json_null();
        if (!json_equal(curm, member)) changed = true;
    }
    if (changed) {
        for (int i = 0; i < 5; i++)
            if (have[i]) *cur[i] = f[i];
        if (nkeys) {
            json_decref(k->viewer_keys);
            k->viewer_keys = json_incref(nkeys);
        }
        if (member) {
            json_decref(k->member);
            k->member = json_is_null(member) ? NULL : json_deep_copy(member);
        }
        vs = conn_changed_text(c, k, 0, &vl);
    }
    json_decref(nkeys);
    if (!vs) {
        json_t *j = sig_conn_json(k);
        vs = sig_dumps(j);
        vl = strlen(vs);
        json_decref(j);
    }
    /* {"result":{"voice_state":...,"changed":...}} around the text already dumped */
    static const char pre[] = "{\"result\":{\"voice_state\":";
    const char *post = changed ? ",\"changed\":true}}" : ",\"changed\":false}}";
    size_t pl = sizeof pre - 1, ql = strlen(post);
    char *body = xmalloc(pl + vl + ql + 1);
    memcpy(body, pre, pl);
    memcpy(body + pl, vs, vl);
    memcpy(body + pl + vl, post, ql + 1);
    free(vs);
    sig_set_raw_result(c, body);
    *result = NULL;
    return 200;
}

int sig_m_voice_move(sig_core *c, json_t *params, int64_t now, json_t **result, sig_err *e)
{
    (void)now;
    sig_params p;
    sp_init(&p, params, e);
    sig_conn *k;
    int st = lookup_conn(c, &p, false, &k, e);
    if (st) return st;
    uint64_t channel;
    long long limit = 0;
    bool can_speak = true, can_stream = true, can_video = true;
    if (sp_snowflake(&p, "channel_id", true, &channel) < 0 ||
        sp_int(&p, "user_limit", false, 0, 100000, &limit) < 0 ||
        sp_bool(&p, "can_speak", &can_speak) < 0 || sp_bool(&p, "can_stream", &can_stream) < 0 ||
        sp_bool(&p, "can_video", &can_video) < 0 || sp_done(&p) < 0)
        return 400;
    if (k->guild_id == 0)
        return sig_fail(e, 400, "INVALID_REQUEST", "params.connection_id",
                        "connection %s is in a DM call; calls cannot move", k->id);
    if (channel == k->channel_id) {
        *result = json_pack("{s:o,s:n}", "voice_state", sig_conn_json(k), "voice_server");
        return 200;
    }
    st = check_user_limit(c, k->guild_id, channel, k->user_id, limit, e);
    if (st) return st;
    uint64_t old = k->channel_id;
    sig_room *old_room = k->room;
    /* viewers of this connection in the old channel lose its key — after the move event */
    char *oldkey = stream_key(k);
    room_detach(c, k);
    room_attach(c, k, k->guild_id, channel);
    k->can_speak = can_speak;
    k->can_stream = can_stream;
    k->can_video = can_video;
    k->suppress = !can_speak;
    if (!can_stream) k->self_stream = false;
    if (!can_video) k->self_video = false;
    json_decref(k->viewer_keys);
    k->viewer_keys = json_array();
    conn_changed(c, k, old);
    /* viewers left behind lose this connection's old key (the old room may be gone: then
     * nobody was left to view it) */
    sig_room *still = room_find(c, k->guild_id, old);
    if (still == old_room) strip_viewers(c, still, oldkey, k);
    free(oldkey);
    *result = json_pack("{s:o,s:n}", "voice_state", sig_conn_json(k), "voice_server");
    return 200;
}

/* Collects connections matching a predicate into a malloc'd vector. */
typedef bool (*conn_pred)(const sig_conn *k, const void *arg);

static sig_conn **collect(sig_core *c, conn_pred pred, const void *arg, size_t *n)
{
    size_t cap = 8, k = 0;
    sig_conn **v = xmalloc(cap * sizeof *v);
    size_t it = 0;
    void *val;
    while (hmap_next(c->conns, &it, NULL, NULL, &val)) {
        if (!pred(val, arg)) continue;
        if (k == cap) v = xrealloc(v, (cap *= 2) * sizeof *v);
        v[k++] = val;
    }
    *n = k;
    return v;
}

typedef struct sel {
    uint64_t guild, channel, user;
    const char *session;
    bool dm;
} sel;

static bool match_sel(const sig_conn *k, const void *arg)
{
    const sel *s = arg;
    if (s->session) return strcmp(k->session_id, s->session) == 0;
    if (s->dm) return k->guild_id == 0 && k->channel_id == s->channel;
    if (s->guild && k->guild_id != s->guild) return false;
    if (s->channel && k->channel_id != s->channel) return false;
    if (s->user && k->user_id != s->user) return false;
    return s->guild || s->channel || s->user;
}

/* Removes the matched connections; the result lists their last states. */
static json_t *remove_all(sig_core *c, sig_conn **v, size_t n, const char *reason, int64_t now)
{
    qsort(v, n, sizeof *v, cmp_conn);
    json_t *states = json_array();
    /* removal frees each connection; remember ids and look up again (a removal never frees
     * another connection, but keep it robust) */
    char(*ids)[SIG_CONN_ID_LEN + 1] = xmalloc((n ? n : 1) * sizeof *ids);
    for (size_t i = 0; i < n; i++)
        memcpy(ids[i], v[i]->id, sizeof ids[i]);
    for (size_t i = 0; i < n; i++) {
        sig_conn *k = hmap_gets(c->conns, ids[i]);
        if (!k) continue;
        json_t *last = sig_conn_json(k);
        json_object_set_new(last, "channel_id", json_null());
        json_object_set_new(last, "version", json_integer((json_int_t)k->version + 1));
        sig_conn_remove(c, k, reason, now);
        json_array_append_new(states, last);
    }
    free(ids);
    return states;
}

int sig_m_voice_disconnect(sig_core *c, json_t *params, int64_t now, json_t **result, sig_err *e)
{
    sig_params p;
    sp_init(&p, params, e);
    const char *conn_id = NULL, *session = NULL, *reason = "leave";
    uint64_t guild = 0, channel = 0, user = 0;
    int hc, hs, hg, hch, hu;
    if ((hc = sp_string(&p, "connection_id", false, 64, &conn_id)) < 0 ||
        (hs = sp_string(&p, "session_id", false, 128, &session)) < 0 ||
        (hg = sp_snowflake(&p, "guild_id", false, &guild)) < 0 ||
        (hch = sp_snowflake(&p, "channel_id", false, &channel)) < 0 ||
        (hu = sp_snowflake(&p, "user_id", false, &user)) < 0 ||
        sp_string(&p, "reason", false, 32, &reason) < 0 || sp_done(&p) < 0)
        return 400;
    if (strcmp(reason, "leave") && strcmp(reason, "moderator") &&
        strcmp(reason, "channel_deleted") && strcmp(reason, "ban"))
        return sig_fail(e, 400, "INVALID_REQUEST", "params.reason",
                        "reason must be leave, moderator, channel_deleted or ban");
    size_t n = 0;
    sig_conn **v = NULL;
    if (hc && !hs && !hg && !hch) {
        sig_conn *k = hmap_gets(c->conns, conn_id);
        if (!k) return not_found(e, conn_id);
        if (hu && k->user_id != user)
            return sig_fail(e, 403, "VOICE_USER_MISMATCH", "params.user_id",
                            "connection %s belongs to another user", k->id);
        v = xmalloc(sizeof *v);
        v[0] = k;
        n = 1;
    } else if (hs && !hc && !hg && !hch && !hu) {
        sel s = {.session = session};
        v = collect(c, match_sel, &s, &n);
    } else if (hg && hu && !hc && !hs && !hch) {
        sel s = {.guild = guild, .user = user};
        v = collect(c, match_sel, &s, &n);
    } else if (hg && hch && !hc && !hs && !hu) {
        sel s = {.guild = guild, .channel = channel};
        v = collect(c, match_sel, &s, &n);
    } else if (hch && !hg && !hc && !hs && !hu) {
        sel s = {.channel = channel, .dm = true};
        v = collect(c, match_sel, &s, &n);
    } else {
        return sig_fail(e, 400, "INVALID_REQUEST", "params",
                        "give exactly one selector: {connection_id[, user_id]}, {session_id}, "
                        "{guild_id, user_id}, {guild_id, channel_id} or {channel_id}");
    }
    json_t *states = remove_all(c, v, n, reason, now);
    free(v);
    *result = json_pack("{s:I,s:o}", "disconnected", (json_int_t)n, "voice_states", states);
    return 200;
}

int sig_m_session_gone(sig_core *c, json_t *params, int64_t now, json_t **result, sig_err *e)
{
    sig_params p;
    sp_init(&p, params, e);
    const char *session;
    if (sp_string(&p, "session_id", true, 128, &session) < 0 || sp_done(&p) < 0) return 400;
    sel s = {.session = session};
    size_t n;
    sig_conn **v = collect(c, match_sel, &s, &n);
    json_t *states = remove_all(c, v, n, "session_gone", now);
    json_decref(states);
    free(v);
    *result = json_pack("{s:I}", "disconnected", (json_int_t)n);
    return 200;
}

int sig_m_voice_set_server_state(sig_core *c, json_t *params, int64_t now, json_t **result,
                                 sig_err *e)
{
    (void)now;
    sig_params p;
    sp_init(&p, params, e);
    uint64_t guild, user;
    bool mute = false, deaf = false;
    int hm, hd;
    if (sp_snowflake(&p, "guild_id", true, &guild) < 0 ||
        sp_snowflake(&p, "user_id", true, &user) < 0 || (hm = sp_bool(&p, "mute", &mute)) < 0 ||
        (hd = sp_bool(&p, "deaf", &deaf)) < 0 || sp_done(&p) < 0)
        return 400;
    if (!hm && !hd) return sig_fail(e, 400, "INVALID_REQUEST", "params", "give mute, deaf or both");
    unsigned bits = server_state(c, guild, user);
    if (hm) bits = (bits & ~1u) | (mute ? 1u : 0u);
    if (hd) bits = (bits & ~2u) | (deaf ? 2u : 0u);
    server_state_set(c, guild, user, bits);
    sel s = {.guild = guild, .user = user};
    size_t n;
    sig_conn **v = collect(c, match_sel, &s, &n);
    qsort(v, n, sizeof *v, cmp_conn);
    for (size_t i = 0; i < n; i++) {
        sig_conn *k = v[i];
        bool ch = (hm && k->mute != mute) || (hd && k->deaf != deaf);
        if (!ch) continue;
        if (hm) k->mute = mute;
        if (hd) k->deaf = deaf;
        conn_changed(c, k, 0);
    }
    *result = json_pack("{s:o}", "voice_states", sig_states_json(c, v, n));
    free(v);
    return 200;
}

int sig_m_voice_set_permissions(sig_core *c, json_t *params, int64_t now, json_t **result,
                                sig_err *e)
{
    (void)now;
    sig_params p;
    sp_init(&p, params, e);
    uint64_t guild, user, channel = 0;
    bool sp = true, ss = true, sv = true;
    int hsp, hss, hsv;
    if (sp_snowflake(&p, "guild_id", true, &guild) < 0 ||
        sp_snowflake(&p, "user_id", true, &user) < 0 ||
        sp_snowflake(&p, "channel_id", false, &channel) < 0 ||
        (hsp = sp_bool(&p, "can_speak", &sp)) < 0 || (hss = sp_bool(&p, "can_stream", &ss)) < 0 ||
        (hsv = sp_bool(&p, "can_video", &sv)) < 0 || sp_done(&p) < 0)
        return 400;
    if (!hsp && !hss && !hsv)
        return sig_fail(e, 400, "INVALID_REQUEST", "params",
                        "give can_speak, can_stream, can_video or several");
    sel s = {.guild = guild, .user = user, .channel = channel};
    size_t n;
    sig_conn **v = collect(c, match_sel, &s, &n);
    qsort(v, n, sizeof *v, cmp_conn);
    for (size_t i = 0; i < n; i++) {
        sig_conn *k = v[i];
        if (hsp) k->can_speak = sp;
        if (hss) k->can_stream = ss;
        if (hsv) k->can_video = sv;
        bool suppress = !k->can_speak;
        bool stream = k->self_stream && k->can_stream;
        bool video = k->self_video && k->can_video;
        bool visible =
            suppress != k->suppress || stream != k->self_stream || video != k->self_video;
        k->suppress = suppress;
        k->self_stream = stream;
        k->self_video = video;
        if (visible)
            conn_changed(c, k, 0);
        else
            sig_conn_persist(c, k); /* permissions are internal: persisted, not broadcast */
    }
    *result = json_pack("{s:o}", "voice_states", sig_states_json(c, v, n));
    free(v);
    return 200;
}

int sig_m_voice_get(sig_core *c, json_t *params, int64_t now, json_t **result, sig_err *e)
{
    (void)now;
    sig_params p;
    sp_init(&p, params, e);
    uint64_t guild = 0, channel = 0, user = 0;
    const char *conn_id = NULL;
    int hg, hch, hu, hc;
    if ((hg = sp_snowflake(&p, "guild_id", false, &guild)) < 0 ||
        (hch = sp_snowflake(&p, "channel_id", false, &channel)) < 0 ||
        (hu = sp_snowflake(&p, "user_id", false, &user)) < 0 ||
        (hc = sp_string(&p, "connection_id", false, 64, &conn_id)) < 0 || sp_done(&p) < 0)
        return 400;
    size_t n = 0;
    sig_conn **v;
    if (hc && !hg && !hch && !hu) {
        sig_conn *k = hmap_gets(c->conns, conn_id);
        if (!k) return not_found(e, conn_id);
        v = xmalloc(sizeof *v);
        v[0] = k;
        n = 1;
    } else if (hg && !hu && !hc) {
        sel s = {.guild = guild, .channel = channel};
        v = collect(c, match_sel, &s, &n);
    } else if (hch && !hg && !hu && !hc) {
        sel s = {.channel = channel, .dm = true};
        v = collect(c, match_sel, &s, &n);
    } else if (hu && !hg && !hch && !hc) {
        sig_user *u = hmap_getu(c->users, user);
        v = xmalloc(sizeof *v * (u ? u->nconns + 1 : 1));
        for (sig_conn *k = u ? u->conns : NULL; k; k = k->user_next)
            v[n++] = k;
    } else {
        return sig_fail(e, 400, "INVALID_REQUEST", "params",
                        "give exactly one selector: {guild_id}, {guild_id, channel_id}, "
                        "{channel_id}, {user_id} or {connection_id}");
    }
    *result = json_pack("{s:o}", "voice_states", sig_states_json(c, v, n));
    free(v);
    return 200;
}
