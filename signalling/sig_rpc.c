/*
 * signalling/sig_rpc.c — the RPC envelope, parameter validation and method dispatch.
 *
 * A body goes through: parse (jansson, duplicate keys refused) -> envelope check (method, params,
 * request_id, nothing else) -> idempotency (a remembered request_id returns its remembered reply;
 * a reused one with other content is refused) -> the method, which validates its params with the
 * sp_* helpers (each refusal names its field) and returns a status and a result. A DM join whose
 * call does not exist yet is parked (sig_held) and retried when the call appears or failed when its
 * hold expires; its reply then leaves in a later step.
 */
#include "signalling/sig_internal.h"
#include "lib/util.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

typedef struct method_def {
    const char *name;
    sig_method_fn fn;
    bool read; /* changes nothing */
} method_def;

static const method_def methods[] = {
    {"voice.connect", sig_m_voice_connect, false},
    {"voice.update", sig_m_voice_update, false},
    {"voice.move", sig_m_voice_move, false},
    {"voice.disconnect", sig_m_voice_disconnect, false},
    {"voice.set_server_state", sig_m_voice_set_server_state, false},
    {"voice.set_permissions", sig_m_voice_set_permissions, false},
    {"voice.get", sig_m_voice_get, true},
    {"session.gone", sig_m_session_gone, false},
    {"call.create", sig_m_call_create, false},
    {"call.ring", sig_m_call_ring, false},
    {"call.stop_ringing", sig_m_call_stop_ringing, false},
    {"call.update_region", sig_m_call_update_region, false},
    {"call.get", sig_m_call_get, true},
    {"call.delete", sig_m_call_delete, false},
    {"node.status", sig_m_node_status, true},
};

/* ---- errors and parameters ------------------------------------------------------------------- */

int sig_fail(sig_err *e, int status, const char *code, const char *field, const char *fmt, ...)
{
    e->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    snprintf(e->field, sizeof e->field, "%s", field ? field : "");
    return status;
}

void sp_init(sig_params *p, json_t *obj, sig_err *e)
{
    p->obj = obj;
    p->nseen = 0;
    p->e = e;
}

static json_t *sp_take(sig_params *p, const char *key)
{
    if (p->nseen < ARRAY_LEN(p->seen)) p->seen[p->nseen++] = key;
    return json_object_get(p->obj, key);
}

/* Refuses params.<key>: the message is "<key> <what><detail>". */
static int bad(sig_params *p, const char *key, const char *what, const char *detail)
{
    char field[64];
    snprintf(field, sizeof field, "params.%s", key);
    sig_fail(p->e, 400, "INVALID_REQUEST", field, "%s %s%s", key, what, detail);
    return SP_ERR;
}

static const char *type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
        return "an integer";
    case JSON_REAL:
        return "a number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    case JSON_NULL:
        return "null";
    }
    return "?";
}

int sp_snowflake(sig_params *p, const char *key, bool required, uint64_t *out)
{
    json_t *v = sp_take(p, key);
    if (!v) return required ? bad(p, key, "is required", "") : 0;
    if (!json_is_string(v)) return bad(p, key, "must be a snowflake string, not ", type_name(v));
    if (snowflake_parse(json_string_value(v), out) != 0)
        return bad(p, key, "is not a valid snowflake (1-20 digits, non-zero, fits in 64 bits)", "");
    return 1;
}

int sp_snowflake_or_null(sig_params *p, const char *key, uint64_t *out)
{
    json_t *v = json_object_get(p->obj, key);
    if (v && json_is_null(v)) {
        sp_take(p, key);
        *out = 0;
        return 0;
    }
    int r = sp_snowflake(p, key, false, out);
    if (r == 0) *out = 0;
    return r;
}

int sp_bool(sig_params *p, const char *key, bool *out)
{
    json_t *v = sp_take(p, key);
    if (!v) return 0;
    if (!json_is_boolean(v)) return bad(p, key, "must be a boolean, not ", type_name(v));
    *out = json_is_true(v);
    return 1;
}

int sp_int(sig_params *p, const char *key, bool required, long long lo, long long hi,
           long long *out)
{
    json_t *v = sp_take(p, key);
    if (!v) return required ? bad(p, key, "is required", "") : 0;
    if (!json_is_integer(v)) return bad(p, key, "must be an integer, not ", type_name(v));
    long long x = json_integer_value(v);
    if (x < lo || x > hi) {
        char range[64];
        snprintf(range, sizeof range, " (%lld..%lld)", lo, hi);
        return bad(p, key, "is out of range", range);
    }
    *out = x;
    return 1;
}

int sp_string(sig_params *p, const char *key, bool required, size_t maxlen, const char **out)
{
    json_t *v = sp_take(p, key);
    if (!v) return required ? bad(p, key, "is required", "") : 0;
    if (!json_is_string(v)) return bad(p, key, "must be a string, not ", type_name(v));
    size_t n = json_string_length(v);
    const char *s = json_string_value(v);
    if (n == 0 || n > maxlen) {
        char lim[48];
        snprintf(lim, sizeof lim, " (1..%zu characters)", maxlen);
        return bad(p, key, "has a bad length", lim);
    }
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return bad(p, key, "contains a control character", "");
    *out = s;
    return 1;
}

int sp_json(sig_params *p, const char *key, json_t **out)
{
    json_t *v = sp_take(p, key);
    if (!v) return 0;
    *out = v;
    return 1;
}

int sp_snowflake_array(sig_params *p, const char *key, bool required, size_t maxn, uint64_t **out,
                       size_t *n)
{
    json_t *v = sp_take(p, key);
    *out = NULL;
    *n = 0;
    if (!v) return required ? bad(p, key, "is required", "") : 0;
    if (!json_is_array(v)) return bad(p, key, "must be an array of snowflakes, not ", type_name(v));
    size_t len = json_array_size(v);
    if (len > maxn) {
        char lim[48];
        snprintf(lim, sizeof lim, " (at most %zu)", maxn);
        return bad(p, key, "has too many entries", lim);
    }
    uint64_t *a = xcalloc(len ? len : 1, sizeof *a);
    size_t k = 0;
    for (size_t i = 0; i < len; i++) {
        json_t *x = json_array_get(v, i);
        uint64_t id;
        if (!json_is_string(x) || snowflake_parse(json_string_value(x), &id) != 0) {
            free(a);
            char field[64];
            snprintf(field, sizeof field, "params.%s[%zu]", key, i);
            sig_fail(p->e, 400, "INVALID_REQUEST", field, "%s[%zu] is not a valid snowflake", key,
                     i);
            return SP_ERR;
        }
        bool dup = false;
        for (size_t j = 0; j < k; j++)
            dup |= a[j] == id;
        if (!dup) a[k++] = id;
    }
    *out = a;
    *n = k;
    return 1;
}

int sp_done(sig_params *p)
{
    const char *key;
    json_t *v;
    json_object_foreach(p->obj, key, v)
    {
        bool known = false;
        for (size_t i = 0; i < p->nseen && !known; i++)
            known = strcmp(p->seen[i], key) == 0;
        if (!known) {
            char field[64];
            snprintf(field, sizeof field, "params.%.50s", key);
            sig_fail(p->e, 400, "INVALID_REQUEST", field, "unknown parameter '%.60s'", key);
            return SP_ERR;
        }
    }
    return 0;
}

/* ---- replies ----------------------------------------------------------------------------------
 */

static char *error_json(const sig_err *e)
{
    json_t *err = json_pack("{s:s,s:s}", "code", e->code, "message", e->message);
    if (e->field[0]) json_object_set_new(err, "field", json_string(e->field));
    json_t *j = json_pack("{s:o}", "error", err);
    char *s = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    if (!s) abort();
    return s;
}

static char *result_json(json_t *result)
{
    json_t *j = json_pack("{s:o}", "result", result);
    if (!j) abort();
    char *s = sig_dumps(j);
    json_decref(j);
    return s;
}

/* ---- idempotency --------------------------------------------------------------------------------
 */

static void fingerprint(const char *method, json_t *params, uint8_t out[32])
{
    char *s = json_dumps(params, JSON_COMPACT | JSON_SORT_KEYS);
    if (!s) abort();
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (!ctx) abort();
    unsigned int n = 32;
    EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    EVP_DigestUpdate(ctx, method, strlen(method) + 1);
    EVP_DigestUpdate(ctx, s, strlen(s));
    EVP_DigestFinal_ex(ctx, out, &n);
    EVP_MD_CTX_free(ctx);
    free(s);
}

static void idem_expire(sig_core *c, int64_t now)
{
    size_t n = hmap_size(c->idem);
    while (c->idem_head && (c->idem_head->expires <= now || n > c->cfg.idempotency_max)) {
        sig_idem *i = c->idem_head;
        if (i->status == 0) break; /* in progress: kept until it completes */
        c->idem_head = i->next;
        if (!c->idem_head) c->idem_tail = NULL;
        hmap_dels(c->idem, i->request_id);
        free(i->request_id);
        free(i->body);
        free(i);
        n--;
    }
}

static sig_idem *idem_begin(sig_core *c, const char *request_id, const uint8_t fp[32], int64_t now)
{
    sig_idem *i = xcalloc(1, sizeof *i);
    i->request_id = xstrdup(request_id);
    memcpy(i->fingerprint, fp, 32);
    i->expires = now + c->cfg.idempotency_ttl_ms;
    hmap_puts(c->idem, request_id, i);
    if (c->idem_tail)
        c->idem_tail->next = i;
    else
        c->idem_head = i;
    c->idem_tail = i;
    return i;
}

static void hex(const uint8_t *p, size_t n, char *out)
{
    static const char d[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = d[p[i] >> 4];
        out[2 * i + 1] = d[p[i] & 15];
    }
    out[2 * n] = '\0';
}

static void finish(sig_core *c, uint64_t req, const char *method, const char *request_id,
                   int status, char *body, int64_t now)
{
    if (request_id) {
        sig_idem *i = hmap_gets(c->idem, request_id);
        if (i && i->status == 0) {
            i->status = status;
            i->method = method;
            i->body = xstrdup(body);
            i->len = strlen(body);
            i->expires = now + c->cfg.idempotency_ttl_ms;
            char fp[65];
            hex(i->fingerprint, 32, fp);
            sig_emit_write(c, SIG_W_REQUEST_PUT, request_id,
                           json_pack("{s:s,s:i,s:s,s:s,s:I}", "fingerprint", fp, "status", status,
                                     "method", method, "body", body, "expires",
                                     (json_int_t)i->expires));
        }
    }
    sig_emit_reply(c, req, status, method, body);
}

static const method_def *find_method(const char *name);

int sig_rpc_restore_request(sig_core *c, const char *request_id, json_t *row)
{
    const char *fp = json_string_value(json_object_get(row, "fingerprint"));
    const char *method = json_string_value(json_object_get(row, "method"));
    const char *body = json_string_value(json_object_get(row, "body"));
    json_t *status = json_object_get(row, "status"), *exp = json_object_get(row, "expires");
    const method_def *m = method ? find_method(method) : NULL;
    if (!fp || strlen(fp) != 64 || !body || !json_is_integer(status) || !json_is_integer(exp) ||
        !m || !request_id || !*request_id)
        return -EINVAL;
    if (hmap_gets(c->idem, request_id)) return -EEXIST;
    uint8_t bin[32];
    for (int k = 0; k < 32; k++) {
        unsigned v;
        if (sscanf(fp + 2 * k, "%2x", &v) != 1) return -EINVAL;
        bin[k] = (uint8_t)v;
    }
    sig_idem *i = idem_begin(c, request_id, bin, 0);
    i->status = (int)json_integer_value(status);
    i->method = m->name;
    i->body = xstrdup(body);
    i->len = strlen(body);
    i->expires = json_integer_value(exp);
    return 0;
}

/* Runs a method and finishes the request, unless the method parks it (SIG_HOLD). */
static void run(sig_core *c, uint64_t req, const method_def *m, json_t *params,
                const char *request_id, const uint8_t fp[32], int64_t now)
{
    sig_err e = {0};
    json_t *result = NULL;
    int status = m->fn(c, params, now, &result, &e);
    if (status == SIG_HOLD) {
        sig_held *h = xcalloc(1, sizeof *h);
        h->req = req;
        json_t *ch = json_object_get(params, "channel_id");
        snowflake_parse(json_string_value(ch), &h->channel_id);
        h->deadline = now + c->cfg.join_hold_ms;
        h->params = json_incref(params);
        h->request_id = request_id ? xstrdup(request_id) : NULL;
        if (fp) memcpy(h->fingerprint, fp, 32);
        /* append: held joins run in arrival order */
        sig_held **pp = &c->held;
        while (*pp)
            pp = &(*pp)->next;
        *pp = h;
        sig_timer_arm(c, T_HOLD, NULL, req, h->deadline);
        return;
    }
    char *body;
    if (status != 200) {
        body = error_json(&e);
        free(c->raw_result);
    } else if (c->raw_result) { /* the method serialized its reply itself */
        body = c->raw_result;
        json_decref(result);
    } else {
        body = result_json(result);
    }
    c->raw_result = NULL;
    finish(c, req, m->name, request_id, status, body, now);
}

static const method_def *find_method(const char *name)
{
    for (size_t i = 0; i < ARRAY_LEN(methods); i++)
        if (strcmp(methods[i].name, name) == 0) return &methods[i];
    return NULL;
}

static void refuse(sig_core *c, uint64_t req, const char *method, int status, const char *code,
                   const char *field, const char *msg)
{
    sig_err e = {.code = code};
    snprintf(e.message, sizeof e.message, "%s", msg);
    snprintf(e.field, sizeof e.field, "%s", field ? field : "");
    sig_emit_reply(c, req, status, method, error_json(&e));
}

bool sig_rpc_mutates(const char *body, size_t len)
{
    json_error_t jerr;
    json_t *root = body ? json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr) : NULL;
    const char *name = json_string_value(json_object_get(root, "method"));
    const method_def *m = name ? find_method(name) : NULL;
    bool mutates = m && !m->read;
    json_decref(root);
    return mutates;
}

void sig_rpc_submit(sig_core *c, uint64_t req, const char *body, size_t len, int64_t now)
{
    idem_expire(c, now);
    if (!body) body = "", len = 0;
    json_error_t jerr;
    json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        char msg[200];
        snprintf(msg, sizeof msg, "malformed JSON at line %d column %d: %s", jerr.line, jerr.column,
                 jerr.text);
        refuse(c, req, "invalid", 400, "INVALID_REQUEST", NULL, msg);
        return;
    }
    if (!json_is_object(root)) {
        refuse(c, req, "invalid", 400, "INVALID_REQUEST", NULL, "the body must be a JSON object");
        goto out;
    }
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v)
    {
        if (strcmp(key, "method") && strcmp(key, "params") && strcmp(key, "request_id")) {
            char msg[120];
            snprintf(msg, sizeof msg, "unknown top-level key '%.60s'", key);
            refuse(c, req, "invalid", 400, "INVALID_REQUEST", key, msg);
            goto out;
        }
    }
    json_t *jm = json_object_get(root, "method");
    if (!json_is_string(jm)) {
        refuse(c, req, "invalid", 400, "INVALID_REQUEST", "method",
               jm ? "method must be a string" : "method is required");
        goto out;
    }
    const method_def *m = find_method(json_string_value(jm));
    if (!m) {
        char msg[120];
        snprintf(msg, sizeof msg, "unknown method '%.60s'", json_string_value(jm));
        refuse(c, req, "unknown", 404, "UNKNOWN_METHOD", "method", msg);
        goto out;
    }
    json_t *params = json_object_get(root, "params");
    if (!params) {
        refuse(c, req, m->name, 400, "INVALID_REQUEST", "params", "params is required");
        goto out;
    }
    if (!json_is_object(params)) {
        refuse(c, req, m->name, 400, "INVALID_REQUEST", "params", "params must be an object");
        goto out;
    }
    json_t *jr = json_object_get(root, "request_id");
    const char *request_id = NULL;
    if (jr) {
        size_t n = json_is_string(jr) ? json_string_length(jr) : 0;
        const char *s = json_is_string(jr) ? json_string_value(jr) : "";
        bool ok = n >= 1 && n <= 128;
        for (size_t i = 0; ok && i < n; i++)
            ok = s[i] > 0x20 && s[i] < 0x7f;
        if (!ok) {
            refuse(c, req, m->name, 400, "INVALID_REQUEST", "request_id",
                   "request_id must be a string of 1-128 printable ASCII characters");
            goto out;
        }
        request_id = s;
    }
    uint8_t fp[32];
    if (request_id) {
        fingerprint(m->name, params, fp);
        sig_idem *i = hmap_gets(c->idem, request_id);
        if (i) {
            if (memcmp(i->fingerprint, fp, 32) != 0)
                refuse(c, req, m->name, 409, "REQUEST_ID_REUSED", "request_id",
                       "this request_id was used for a different request");
            else if (i->status == 0)
                refuse(c, req, m->name, 409, "REQUEST_IN_PROGRESS", "request_id",
                       "a request with this request_id is still in progress");
            else {
                c->st.idempotent_replays++;
                sig_emit_reply(c, req, i->status, m->name, xstrdup(i->body));
            }
            goto out;
        }
        idem_begin(c, request_id, fp, now);
    }
    run(c, req, m, params, request_id, request_id ? fp : NULL, now);
out:
    json_decref(root);
}

/* ---- held DM joins ------------------------------------------------------------------------------
 */

static sig_held *unlink_held(sig_core *c, uint64_t req)
{
    for (sig_held **pp = &c->held; *pp; pp = &(*pp)->next) {
        if ((*pp)->req == req) {
            sig_held *h = *pp;
            *pp = h->next;
            return h;
        }
    }
    return NULL;
}

static void free_held(sig_held *h)
{
    json_decref(h->params);
    free(h->request_id);
    free(h);
}

void sig_rpc_cancel(sig_core *c, uint64_t req)
{
    sig_held *h = unlink_held(c, req);
    if (!h) return;
    if (h->request_id) {
        /* never answered: forget the id so a retry runs afresh */
        sig_idem *i = hmap_gets(c->idem, h->request_id);
        if (i && i->status == 0) {
            /* out of the map at once; the FIFO entry stays as a tombstone until it expires
             * (status -1: not "in progress", so it does not hold back the FIFO's expiry) */
            i->status = -1;
            hmap_dels(c->idem, h->request_id);
            i->request_id[0] = '\0';
        }
    }
    free_held(h);
}

void sig_rpc_fire_hold(sig_core *c, uint64_t req, int64_t now)
{
    sig_held *h = unlink_held(c, req);
    if (!h) return;
    sig_err e;
    char ch[21];
    sig_fail(&e, 404, "CALL_NOT_FOUND", "params.channel_id",
             "no call on channel %s (waited %lld ms for it)", snowflake_fmt(h->channel_id, ch),
             (long long)c->cfg.join_hold_ms);
    finish(c, h->req, "voice.connect", h->request_id, 404, error_json(&e), now);
    free_held(h);
}

void sig_rpc_release_held(sig_core *c, uint64_t channel_id, int64_t now)
{
    const method_def *m = find_method("voice.connect");
    for (;;) {
        sig_held *h = c->held;
        while (h && h->channel_id != channel_id)
            h = h->next;
        if (!h) return;
        unlink_held(c, h->req);
        run(c, h->req, m, h->params, h->request_id, h->request_id ? h->fingerprint : NULL, now);
        free_held(h);
    }
}
