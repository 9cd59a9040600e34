/*
 * signalling/sig_restore.c — rebuilding the core from persisted rows after a restart.
 *
 * The rows are exactly those the core asked to persist (sig_conn_row, the call row of sig_call.c,
 * nonce and server-state rows, remembered replies). Every field is checked: a row that does not
 * parse is refused with -EINVAL and the node skips it (and logs it) rather than trusting it.
 * Timers are re-armed at their original absolute deadlines; sig_tick() afterwards fires the ones
 * that passed while the node was down.
 */
#include "signalling/sig_internal.h"
#include "lib/util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static int get_sf(json_t *row, const char *key, bool nullable, uint64_t *out)
{
    json_t *v = json_object_get(row, key);
    if (nullable && json_is_null(v)) {
        *out = 0;
        return 0;
    }
    if (!json_is_string(v) || snowflake_parse(json_string_value(v), out) != 0) return -EINVAL;
    return 0;
}

static int get_bool(json_t *row, const char *key, bool *out)
{
    json_t *v = json_object_get(row, key);
    if (!json_is_boolean(v)) return -EINVAL;
    *out = json_is_true(v);
    return 0;
}

static int get_int(json_t *row, const char *key, int64_t *out)
{
    json_t *v = json_object_get(row, key);
    if (!json_is_integer(v)) return -EINVAL;
    *out = json_integer_value(v);
    return 0;
}

static int restore_conn(sig_core *c, const char *key, json_t *row)
{
    const char *id = json_string_value(json_object_get(row, "connection_id"));
    const char *sess = json_string_value(json_object_get(row, "session_id"));
    json_t *member = json_object_get(row, "member"),
           *keys = json_object_get(row, "viewer_stream_keys");
    if (!id || strlen(id) != SIG_CONN_ID_LEN || strcmp(id, key) != 0 || !sess || !*sess ||
        strlen(sess) > 128 || !json_is_array(keys) ||
        (member && !json_is_object(member) && !json_is_null(member)))
        return -EINVAL;
    if (hmap_gets(c->conns, id)) return -EEXIST;
    sig_conn k = {0};
    int64_t version, created, pdl;
    if (get_sf(row, "guild_id", true, &k.guild_id) ||
        get_sf(row, "channel_id", false, &k.channel_id) ||
        get_sf(row, "user_id", false, &k.user_id) || get_bool(row, "mute", &k.mute) ||
        get_bool(row, "deaf", &k.deaf) || get_bool(row, "self_mute", &k.self_mute) ||
        get_bool(row, "self_deaf", &k.self_deaf) || get_bool(row, "self_video", &k.self_video) ||
        get_bool(row, "self_stream", &k.self_stream) || get_bool(row, "is_mobile", &k.is_mobile) ||
        get_bool(row, "suppress", &k.suppress) || get_bool(row, "can_speak", &k.can_speak) ||
        get_bool(row, "can_stream", &k.can_stream) || get_bool(row, "can_video", &k.can_video) ||
        get_bool(row, "pending", &k.pending) || get_int(row, "version", &version) ||
        get_int(row, "created_at", &created) || get_int(row, "pending_deadline", &pdl) ||
        version < 0)
        return -EINVAL;
    size_t i;
    json_t *x;
    json_array_foreach(keys, i, x) if (!json_is_string(x)) return -EINVAL;
    sig_conn *n = xmalloc(sizeof *n);
    *n = k;
    memcpy(n->id, id, SIG_CONN_ID_LEN + 1);
    n->session_id = xstrdup(sess);
    n->member = member && json_is_object(member) ? json_deep_copy(member) : NULL;
    n->viewer_keys = json_deep_copy(keys);
    n->version = (uint64_t)version;
    n->created_at = created;
    n->pending_deadline = pdl;
    sig_conn_link(c, n);
    return 0;
}

static int id_array(json_t *a, uint64_t **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    if (!json_is_array(a) || json_array_size(a) > 1000) return -EINVAL;
    uint64_t *v = xcalloc(json_array_size(a) + 1, sizeof *v);
    size_t i;
    json_t *x;
    json_array_foreach(a, i, x)
    {
        if (!json_is_string(x) || snowflake_parse(json_string_value(x), &v[i]) != 0) {
            free(v);
            return -EINVAL;
        }
    }
    *out = v;
    *n = json_array_size(a);
    return 0;
}

static int restore_call(sig_core *c, const char *key, json_t *row)
{
    uint64_t ch, msg, keych;
    json_t *region = json_object_get(row, "region"), *rings = json_object_get(row, "rings");
    const char *created = json_string_value(json_object_get(row, "created_at"));
    int64_t idle;
    if (get_sf(row, "channel_id", false, &ch) || get_sf(row, "message_id", false, &msg) ||
        snowflake_parse(key, &keych) || keych != ch || !created ||
        (!json_is_null(region) && !json_is_string(region)) || !json_is_array(rings) ||
        get_int(row, "idle_deadline", &idle))
        return -EINVAL;
    if (sig_call_get(c, ch)) return -EEXIST;
    sig_call *call = xcalloc(1, sizeof *call);
    if (id_array(json_object_get(row, "recipients"), &call->recipients, &call->nrecipients) ||
        id_array(json_object_get(row, "history"), &call->history, &call->nhistory) ||
        call->nrecipients == 0)
        goto fail;
    call->rings = xcalloc(json_array_size(rings) + 1, sizeof(sig_ring));
    size_t i;
    json_t *x;
    json_array_foreach(rings, i, x)
    {
        sig_ring *r = &call->rings[call->nrings];
        if (get_sf(x, "user_id", false, &r->user_id) || get_int(x, "deadline", &r->deadline))
            goto fail;
        call->nrings++;
    }
    call->channel_id = ch;
    call->message_id = msg;
    call->region = json_is_string(region) ? xstrdup(json_string_value(region)) : NULL;
    call->created_at = xstrdup(created);
    call->idle_deadline = idle ? idle : SIG_NEVER;
    hmap_putu(c->calls, ch, call);
    char k[21];
    snowflake_fmt(ch, k);
    for (i = 0; i < call->nrings; i++)
        sig_timer_arm(c, T_RING, k, call->rings[i].user_id, call->rings[i].deadline);
    if (call->idle_deadline != SIG_NEVER) sig_timer_arm(c, T_IDLE, k, 0, call->idle_deadline);
    return 0;
fail:
    sig_call_free(call);
    return -EINVAL;
}

static int restore_nonce(sig_core *c, const char *key, json_t *row)
{
    const char *cid = json_string_value(json_object_get(row, "connection_id"));
    int64_t exp;
    if (!key || strlen(key) != 22 || !cid || strlen(cid) != SIG_CONN_ID_LEN ||
        get_int(row, "exp", &exp))
        return -EINVAL;
    if (hmap_gets(c->nonces, key)) return -EEXIST;
    sig_nonce *n = xcalloc(1, sizeof *n);
    n->exp_ms = exp;
    memcpy(n->connection_id, cid, SIG_CONN_ID_LEN + 1);
    hmap_puts(c->nonces, key, n);
    sig_timer_arm(c, T_NONCE, key, 0, exp);
    return 0;
}

static int restore_server(sig_core *c, const char *key, json_t *row)
{
    bool mute, deaf;
    const char *colon = key ? strchr(key, ':') : NULL;
    uint64_t g, u;
    if (!colon || get_bool(row, "mute", &mute) || get_bool(row, "deaf", &deaf)) return -EINVAL;
    char gs[32];
    size_t gl = (size_t)(colon - key);
    if (gl >= sizeof gs) return -EINVAL;
    memcpy(gs, key, gl);
    gs[gl] = 0;
    if (snowflake_parse(gs, &g) || snowflake_parse(colon + 1, &u)) return -EINVAL;
    unsigned bits = (mute ? 1u : 0u) | (deaf ? 2u : 0u);
    if (bits) hmap_puts(c->server, key, (void *)(uintptr_t)bits);
    return 0;
}

int sig_core_restore(sig_core *c, sig_write_kind kind, const char *key, json_t *row)
{
    if (!key || !json_is_object(row)) return -EINVAL;
    switch (kind) {
    case SIG_W_CONN_PUT:
        return restore_conn(c, key, row);
    case SIG_W_CALL_PUT:
        return restore_call(c, key, row);
    case SIG_W_NONCE_PUT:
        return restore_nonce(c, key, row);
    case SIG_W_SERVER_PUT:
        return restore_server(c, key, row);
    case SIG_W_REQUEST_PUT:
        return sig_rpc_restore_request(c, key, row);
    default:
        return -EINVAL;
    }
}

void sig_core_restore_done(sig_core *c)
{
    /* what the gateway last saw of each call, so the next CALL_UPDATE is not a duplicate */
    size_t it = 0;
    void *v;
    while (hmap_next(c->calls, &it, NULL, NULL, &v)) {
        sig_call *call = v;
        free(call->last_sig);
        call->last_sig = sig_call_visible_sig(c, call);
    }
}
