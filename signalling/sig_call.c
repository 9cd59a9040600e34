/*
 * signalling/sig_call.c — DM and group-DM calls (spec §4) and the call.* RPC methods.
 *
 * A call is keyed by its DM channel; its participants are the connections in the room
 * (guild 0, channel). Ringing is a list of (user, deadline). The lifecycle has three timers, all in
 * the core's heap: a ring per rung user (30 s), the idle timer (nobody connected and nobody ringing
 * for 120 s) and, in sig_rpc.c, the hold of a join that raced ahead of call.create.
 *
 * The end of a call: CALL_DELETE to the recipients and the internal CALL_ENDED with the history of
 * participants. CALL_UPDATE goes out only when ringing, roster or region changed since the last
 * CALL_CREATE/CALL_UPDATE (call->last_sig keeps what was last sent).
 */
#include "signalling/sig_internal.h"
#include "lib/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

sig_call *sig_call_get(sig_core *c, uint64_t channel_id)
{
    return hmap_getu(c->calls, channel_id);
}

static sig_room *call_room(sig_core *c, const sig_call *call)
{
    uint64_t key[2] = {0, call->channel_id};
    return hmap_get(c->rooms, key, sizeof key);
}

static size_t call_nconns(sig_core *c, const sig_call *call)
{
    sig_room *r = call_room(c, call);
    return r ? r->nconns : 0;
}

static json_t *sf(uint64_t v)
{
    char b[21];
    return json_string(snowflake_fmt(v, b));
}

static json_t *ids_json(const uint64_t *v, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(a, sf(v[i]));
    return a;
}

json_t *sig_call_scope(const sig_call *call)
{
    return json_pack("{s:s,s:o}", "type", "users", "user_ids",
                     ids_json(call->recipients, call->nrecipients));
}

bool sig_call_is_recipient(const sig_call *call, uint64_t user)
{
    for (size_t i = 0; i < call->nrecipients; i++)
        if (call->recipients[i] == user) return true;
    return false;
}

static json_t *ringing_json(const sig_call *call)
{
    json_t *a = json_array();
    for (size_t i = 0; i < call->nrings; i++)
        json_array_append_new(a, sf(call->rings[i].user_id));
    return a;
}

static json_t *voice_states(sig_core *c, const sig_call *call)
{
    sig_room *r = call_room(c, call);
    size_t n = 0;
    sig_conn **v = xmalloc(sizeof *v * (r ? r->nconns + 1 : 1));
    for (sig_conn *k = r ? r->conns : NULL; k; k = k->room_next)
        v[n++] = k;
    json_t *a = sig_states_json(c, v, n);
    free(v);
    return a;
}

/* The call object: `full` adds recipients and created_at (CALL_CREATE, call.get). */
static json_t *call_json(sig_core *c, const sig_call *call, bool full)
{
    json_t *j = json_object();
    json_object_set_new(j, "channel_id", sf(call->channel_id));
    json_object_set_new(j, "message_id", sf(call->message_id));
    json_object_set_new(j, "region", call->region ? json_string(call->region) : json_null());
    json_object_set_new(j, "ringing", ringing_json(call));
    json_object_set_new(j, "voice_states", voice_states(c, call));
    if (full) {
        json_object_set_new(j, "recipients", ids_json(call->recipients, call->nrecipients));
        json_object_set_new(j, "created_at", json_string(call->created_at));
    }
    return j;
}

/* What CALL_UPDATE shows that matters for dedupe: ringing, roster, region. */
char *sig_call_visible_sig(sig_core *c, const sig_call *call)
{
    json_t *roster = json_array();
    sig_room *r = call_room(c, call);
    size_t n = 0;
    sig_conn **v = xmalloc(sizeof *v * (r ? r->nconns + 1 : 1));
    for (sig_conn *k = r ? r->conns : NULL; k; k = k->room_next)
        v[n++] = k;
    json_t *states = sig_states_json(c, v, n);
    free(v);
    size_t i;
    json_t *x;
    json_array_foreach(states, i, x) json_array_append(roster, json_object_get(x, "connection_id"));
    json_decref(states);
    json_t *j = json_pack("{s:o,s:o,s:o}", "ringing", ringing_json(call), "roster", roster,
                          "region", call->region ? json_string(call->region) : json_null());
    char *s = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    if (!s) abort();
    return s;
}

static void call_persist(sig_core *c, const sig_call *call)
{
    json_t *rings = json_array();
    for (size_t i = 0; i < call->nrings; i++)
        json_array_append_new(rings, json_pack("{s:o,s:I}", "user_id", sf(call->rings[i].user_id),
                                               "deadline", (json_int_t)call->rings[i].deadline));
    json_t *row = json_pack(
        "{s:o,s:o,s:o,s:o,s:o,s:o,s:s,s:I}", "channel_id", sf(call->channel_id), "message_id",
        sf(call->message_id), "region", call->region ? json_string(call->region) : json_null(),
        "recipients", ids_json(call->recipients, call->nrecipients), "rings", rings, "history",
        ids_json(call->history, call->nhistory), "created_at", call->created_at, "idle_deadline",
        (json_int_t)(call->idle_deadline == SIG_NEVER ? 0 : call->idle_deadline));
    char key[21];
    sig_emit_write(c, SIG_W_CALL_PUT, snowflake_fmt(call->channel_id, key), row);
}

static void maybe_update(sig_core *c, sig_call *call)
{
    char *s = sig_call_visible_sig(c, call);
    if (call->last_sig && strcmp(s, call->last_sig) == 0) {
        free(s);
        return;
    }
    free(call->last_sig);
    call->last_sig = s;
    sig_emit_event(c, "CALL_UPDATE", sig_call_scope(call), call_json(c, call, false));
}

static void arm_idle(sig_core *c, sig_call *call, int64_t now)
{
    bool idle = call->nrings == 0 && call_nconns(c, call) == 0;
    if (idle && call->idle_deadline == SIG_NEVER) {
        call->idle_deadline = now + c->cfg.call_idle_ms;
        char key[21];
        sig_timer_arm(c, T_IDLE, snowflake_fmt(call->channel_id, key), 0, call->idle_deadline);
    } else if (!idle) {
        call->idle_deadline = SIG_NEVER;
    }
}

/* After any change to a call: the idle timer follows the new state, a CALL_UPDATE goes out if
 * something visible changed, and the call is persisted. */
static void call_settle(sig_core *c, sig_call *call, int64_t now)
{
    arm_idle(c, call, now);
    maybe_update(c, call);
    call_persist(c, call);
}

void sig_call_free(sig_call *call)
{
    if (!call) return;
    free(call->region);
    free(call->recipients);
    free(call->rings);
    free(call->history);
    free(call->created_at);
    free(call->last_sig);
    free(call);
}

static void call_end(sig_core *c, sig_call *call, int64_t now)
{
    char ts[32], key[21];
    sig_emit_event(c, "CALL_DELETE", sig_call_scope(call),
                   json_pack("{s:o}", "channel_id", sf(call->channel_id)));
    sig_emit_event(c, "CALL_ENDED", json_pack("{s:s}", "type", "internal"),
                   json_pack("{s:o,s:o,s:o,s:s}", "channel_id", sf(call->channel_id), "message_id",
                             sf(call->message_id), "participants",
                             ids_json(call->history, call->nhistory), "ended_timestamp",
                             time_iso8601(now, ts)));
    sig_emit_write(c, SIG_W_CALL_DEL, snowflake_fmt(call->channel_id, key), NULL);
    hmap_delu(c->calls, call->channel_id);
    c->st.calls_ended++;
    sig_call_free(call);
}

static bool remove_ring(sig_call *call, uint64_t user)
{
    for (size_t i = 0; i < call->nrings; i++) {
        if (call->rings[i].user_id != user) continue;
        memmove(&call->rings[i], &call->rings[i + 1], (call->nrings - i - 1) * sizeof(sig_ring));
        call->nrings--;
        return true;
    }
    return false;
}

static bool user_connected(sig_core *c, const sig_call *call, uint64_t user)
{
    sig_room *r = call_room(c, call);
    return r && hmap_getu(r->users, user) != NULL;
}

static void ring(sig_core *c, sig_call *call, uint64_t user, int64_t now)
{
    int64_t deadline = now + c->cfg.ring_timeout_ms;
    size_t i = 0;
    while (i < call->nrings && call->rings[i].user_id != user)
        i++;
    if (i == call->nrings) {
        call->rings = xrealloc(call->rings, (call->nrings + 1) * sizeof(sig_ring));
        call->nrings++;
    }
    call->rings[i] = (sig_ring){.user_id = user, .deadline = deadline};
    char key[21];
    sig_timer_arm(c, T_RING, snowflake_fmt(call->channel_id, key), user, deadline);
}

void sig_call_on_join(sig_core *c, sig_call *call, sig_conn *k, int64_t now)
{
    if (remove_ring(call, k->user_id)) c->st.ring_answered++;
    bool seen = false;
    for (size_t i = 0; i < call->nhistory && !seen; i++)
        seen = call->history[i] == k->user_id;
    if (!seen) {
        call->history = xrealloc(call->history, (call->nhistory + 1) * sizeof(uint64_t));
        call->history[call->nhistory++] = k->user_id;
    }
    call_settle(c, call, now);
}

void sig_call_on_leave(sig_core *c, sig_call *call, int64_t now)
{
    if (call->ending) return;
    if (call_nconns(c, call) == 0) {
        call_end(c, call, now); /* the last participant left: even while ringing */
        return;
    }
    call_settle(c, call, now);
}

void sig_call_fire_ring(sig_core *c, uint64_t channel, uint64_t user, int64_t deadline, int64_t now)
{
    sig_call *call = sig_call_get(c, channel);
    if (!call) return;
    size_t i = 0;
    while (i < call->nrings && call->rings[i].user_id != user)
        i++;
    if (i == call->nrings || call->rings[i].deadline != deadline) return;
    remove_ring(call, user);
    c->st.ring_timed_out++;
    if (call->nrings == 0 && call_nconns(c, call) == 0) {
        call_end(c, call, now); /* an unanswered call ends with its last ring */
        return;
    }
    call_settle(c, call, now);
}

void sig_call_fire_idle(sig_core *c, uint64_t channel, int64_t deadline, int64_t now)
{
    sig_call *call = sig_call_get(c, channel);
    if (!call || call->idle_deadline != deadline) return;
    call_end(c, call, now);
}

/* ---- methods ------------------------------------------------------------------------------------
 */

static int get_call(sig_core *c, sig_params *p, sig_call **out, sig_err *e)
{
    uint64_t ch;
    if (sp_snowflake(p, "channel_id", true, &ch) < 0) return 400;
    sig_call *call = sig_call_get(c, ch);
    if (!call) {
        char b[21];
        return sig_fail(e, 404, "CALL_NOT_FOUND", "params.channel_id", "no call on channel %s",
                        snowflake_fmt(ch, b));
    }
    *out = call;
    return 0;
}

static bool iso8601_ok(const char *s)
{
    /* YYYY-MM-DDTHH:MM:SS, then optional fraction, then Z or ±HH:MM */
    const char *pat = "dddd-dd-ddTdd:dd:dd";
    size_t i = 0;
    for (; pat[i]; i++) {
        if (pat[i] == 'd' ? (s[i] < '0' || s[i] > '9') : s[i] != pat[i]) return false;
    }
    const char *t = s + i;
    if (*t == '.') {
        t++;
        if (*t < '0' || *t > '9') return false;
        while (*t >= '0' && *t <= '9')
            t++;
    }
    if (strcmp(t, "Z") == 0) return true;
    return (t[0] == '+' || t[0] == '-') && strlen(t) == 6 && t[3] == ':';
}

int sig_m_call_create(sig_core *c, json_t *params, int64_t now, json_t **result, sig_err *e)
{
    sig_params p;
    sp_init(&p, params, e);
    uint64_t ch, msg, caller, *recips = NULL, *ringing = NULL;
    size_t nrecips = 0, nringing = 0;
    const char *region = NULL, *created = NULL;
    json_t *jregion = json_object_get(params, "region");
    int hring, st = 400;
    if (sp_snowflake(&p, "channel_id", true, &ch) < 0 ||
        sp_snowflake(&p, "message_id", true, &msg) < 0 ||
        sp_snowflake(&p, "caller_id", true, &caller) < 0 ||
        sp_snowflake_array(&p, "recipients", true, 25, &recips, &nrecips) < 0)
        goto out;
    if ((hring = sp_snowflake_array(&p, "ringing", false, 25, &ringing, &nringing)) < 0) goto out;
    if (jregion && json_is_null(jregion)) {
        json_t *v;
        sp_json(&p, "region", &v);
    } else if (sp_string(&p, "region", false, 64, &region) < 0) {
        goto out;
    }
    if (sp_string(&p, "created_at", false, 40, &created) < 0 || sp_done(&p) < 0) goto out;
    if (created && !iso8601_ok(created)) {
        st = sig_fail(e, 400, "INVALID_REQUEST", "params.created_at",
                      "created_at must be an ISO 8601 timestamp");
        goto out;
    }
    if (nrecips == 0) {
        st = sig_fail(e, 400, "INVALID_REQUEST", "params.recipients", "recipients is empty");
        goto out;
    }
    bool caller_in = false;
    for (size_t i = 0; i < nrecips; i++)
        caller_in |= recips[i] == caller;
    if (!caller_in) {
        st = sig_fail(e, 400, "INVALID_REQUEST", "params.caller_id",
                      "caller_id must be one of the recipients");
        goto out;
    }
    for (size_t i = 0; i < nringing; i++) {
        bool in = false;
        for (size_t j = 0; j < nrecips; j++)
            in |= recips[j] == ringing[i];
        if (!in) {
            char f[48];
            snprintf(f, sizeof f, "params.ringing[%zu]", i);
            st = sig_fail(e, 403, "NOT_CALL_RECIPIENT", f,
                          "ringing[%zu] is not a recipient of the call", i);
            goto out;
        }
    }
    if (sig_call_get(c, ch)) {
        char b[21];
        st = sig_fail(e, 409, "CALL_ALREADY_EXISTS", "params.channel_id",
                      "channel %s already has a call", snowflake_fmt(ch, b));
        goto out;
    }
    sig_call *call = xcalloc(1, sizeof *call);
    call->channel_id = ch;
    call->message_id = msg;
    call->region = region ? xstrdup(region) : NULL;
    call->recipients = recips;
    call->nrecipients = nrecips;
    recips = NULL;
    char ts[32];
    call->created_at = xstrdup(created ? created : time_iso8601(now, ts));
    call->idle_deadline = SIG_NEVER;
    hmap_putu(c->calls, ch, call);
    c->st.calls_created++;
    if (hring) {
        for (size_t i = 0; i < nringing; i++)
            if (!user_connected(c, call, ringing[i])) ring(c, call, ringing[i], now);
    } else {
        for (size_t i = 0; i < call->nrecipients; i++)
            if (call->recipients[i] != caller && !user_connected(c, call, call->recipients[i]))
                ring(c, call, call->recipients[i], now);
    }
    arm_idle(c, call, now);
    json_t *full = call_json(c, call, true);
    call->last_sig = sig_call_visible_sig(c, call);
    sig_emit_event(c, "CALL_CREATE", sig_call_scope(call), json_deep_copy(full));
    call_persist(c, call);
    *result = json_pack("{s:o}", "call", full);
    /* joins that raced ahead of this call proceed now, after CALL_CREATE */
    sig_rpc_release_held(c, ch, now);
    st = 200;
out:
    free(recips);
    free(ringing);
    return st;
}

int sig_m_call_ring(sig_core *c, json_t *params, int64_t now, json_t **result, sig_err *e)
{
    sig_params p;
    sp_init(&p, params, e);
    sig_call *call;
    uint64_t *users = NULL;
    size_t n = 0;
    int st = get_call(c, &p, &call, e);
    if (st) return st;
    if (sp_snowflake_array(&p, "user_ids", true, 25, &users, &n) < 0 || sp_done(&p) < 0) {
        free(users);
        return 400;
    }
    for (size_t i = 0; i < n; i++) {
        if (!sig_call_is_recipient(call, users[i])) {
            char f[48];
            snprintf(f, sizeof f, "params.user_ids[%zu]", i);
            free(users);
            return sig_fail(e, 403, "NOT_CALL_RECIPIENT", f,
                            "user_ids[%zu] is not a recipient of the call", i);
        }
    }
    for (size_t i = 0; i < n; i++)
        if (!user_connected(c, call, users[i])) ring(c, call, users[i], now);
    free(users);
    call_settle(c, call, now);
    *result = json_pack("{s:o}", "call", call_json(c, call, true));
    return 200;
}

int sig_m_call_stop_ringing(sig_core *c, json_t *params, int64_t now, json_t **result, sig_err *e)
{
    sig_params p;
    sp_init(&p, params, e);
    sig_call *call;
    uint64_t *users = NULL;
    size_t n = 0;
    int st = get_call(c, &p, &call, e);
    if (st) return st;
    int have = sp_snowflake_array(&p, "user_ids", false, 25, &users, &n);
    if (have < 0 || sp_done(&p) < 0) {
        free(users);
        return 400;
    }
    if (have) {
        for (size_t i = 0; i < n; i++)
            c->st.ring_declined += remove_ring(call, users[i]);
    } else {
        c->st.ring_declined += call->nrings;
        call->nrings = 0;
    }
    free(users);
    call_settle(c, call, now);
    *result = json_pack("{s:o}", "call", call_json(c, call, true));
    return 200;
}

int sig_m_call_update_region(sig_core *c, json_t *params, int64_t now, json_t **result, sig_err *e)
{
    sig_params p;
    sp_init(&p, params, e);
    sig_call *call;
    int st = get_call(c, &p, &call, e);
    if (st) return st;
    const char *region = NULL;
    json_t *jr = json_object_get(params, "region");
    if (!jr) return sig_fail(e, 400, "INVALID_REQUEST", "params.region", "region is required");
    if (json_is_null(jr)) {
        json_t *v;
        sp_json(&p, "region", &v);
    } else if (sp_string(&p, "region", true, 64, &region) < 0) {
        return 400;
    }
    if (sp_done(&p) < 0) return 400;
    free(call->region);
    call->region = region ? xstrdup(region) : NULL;
    call_settle(c, call, now);
    *result = json_pack("{s:o}", "call", call_json(c, call, true));
    return 200;
}

int sig_m_call_get(sig_core *c, json_t *params, int64_t now, json_t **result, sig_err *e)
{
    (void)now;
    sig_params p;
    sp_init(&p, params, e);
    sig_call *call;
    int st = get_call(c, &p, &call, e);
    if (st) return st;
    if (sp_done(&p) < 0) return 400;
    *result = json_pack("{s:o}", "call", call_json(c, call, true));
    return 200;
}

int sig_m_call_delete(sig_core *c, json_t *params, int64_t now, json_t **result, sig_err *e)
{
    sig_params p;
    sp_init(&p, params, e);
    sig_call *call;
    int st = get_call(c, &p, &call, e);
    if (st) return st;
    if (sp_done(&p) < 0) return 400;
    call->ending = true;
    sig_room *r;
    while ((r = call_room(c, call)) != NULL)
        sig_conn_remove(c, r->conns, "call_deleted", now);
    call_end(c, call, now);
    *result = json_pack("{s:b}", "ended", 1);
    return 200;
}

/* node.status lives here with the other whole-node views */
int sig_m_node_status(sig_core *c, json_t *params, int64_t now, json_t **result, sig_err *e)
{
    sig_params p;
    sp_init(&p, params, e);
    if (sp_done(&p) < 0) return 400;
    sig_stats st;
    sig_get_stats(c, &st);
    json_t *load = json_pack("{s:I,s:I,s:I,s:I}", "connections",
                             (json_int_t)(st.conns_active + st.conns_pending), "pending",
                             (json_int_t)st.conns_pending, "calls", (json_int_t)hmap_size(c->calls),
                             "channels", (json_int_t)hmap_size(c->rooms));
    *result = json_pack("{s:s,s:s,s:s,s:s,s:o,s:I}", "node_id", c->cfg.node_id, "region",
                        c->cfg.region, "endpoint", c->cfg.endpoint, "health", c->health, "load",
                        load, "uptime_seconds", (json_int_t)((now - c->started_at) / 1000));
    return 200;
}
