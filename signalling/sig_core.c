/*
 * signalling/sig_core.c — the core object: configuration, the effects a step accumulates, the
 * timer heap and the dispatch of fired timers, statistics.
 *
 * Timers are (deadline, kind, key) entries in a binary min-heap. Nothing is ever removed from the
 * heap early: when an entry fires, its handler looks the object up and checks that the object's
 * current deadline is still this entry's deadline, so re-arming or deleting an object needs no
 * heap surgery (stale entries fall out as no-ops).
 */
#include "signalling/sig_internal.h"
#include "lib/util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

const char *const sig_token_fail_names[SIG_TOKEN_FAIL__N] = {
    "malformed", "signature", "expired", "replayed", "node", "connection", "mismatch",
};

void sig_config_defaults(sig_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->grant_ttl_ms = 120000;
    cfg->pending_timeout_ms = 30000;
    cfg->ring_timeout_ms = 30000;
    cfg->call_idle_ms = 120000;
    cfg->join_hold_ms = 3000;
    cfg->idempotency_ttl_ms = 600000;
    cfg->idempotency_max = 100000;
    cfg->max_conns_per_user = 5;
}

static char *dup_or(const char *s, const char *dflt)
{
    return xstrdup(s ? s : dflt);
}

sig_core *sig_core_new(const sig_config *cfg)
{
    sig_core *c = xcalloc(1, sizeof *c);
    c->cfg = *cfg;
    c->cfg.node_id = dup_or(cfg->node_id, "voxd-1");
    c->cfg.region = dup_or(cfg->region, "local");
    c->cfg.endpoint = dup_or(cfg->endpoint, "127.0.0.1:8701");
    unsigned char *key = xmalloc(cfg->token_secret_len ? cfg->token_secret_len : 1);
    if (cfg->token_secret_len) memcpy(key, cfg->token_secret, cfg->token_secret_len);
    c->cfg.token_secret = key;
    c->conns = hmap_new();
    c->rooms = hmap_new();
    c->users = hmap_new();
    c->calls = hmap_new();
    c->nonces = hmap_new();
    c->server = hmap_new();
    c->idem = hmap_new();
    c->started_at = time_now_ms();
    c->health = "ok";
    return c;
}

void sig_set_health(sig_core *c, const char *health)
{
    c->health = health;
}

static void conn_free(sig_conn *k)
{
    free(k->session_id);
    json_decref(k->member);
    json_decref(k->viewer_keys);
    free(k);
}

void sig_core_free(sig_core *c)
{
    if (!c) return;
    free(c->raw_result);
    size_t it = 0;
    void *v;
    while (hmap_next(c->conns, &it, NULL, NULL, &v))
        conn_free(v);
    it = 0;
    while (hmap_next(c->rooms, &it, NULL, NULL, &v)) {
        sig_room *r = v;
        hmap_free(r->users);
        free(r);
    }
    it = 0;
    while (hmap_next(c->users, &it, NULL, NULL, &v))
        free(v);
    it = 0;
    while (hmap_next(c->calls, &it, NULL, NULL, &v))
        sig_call_free(v);
    it = 0;
    while (hmap_next(c->nonces, &it, NULL, NULL, &v))
        free(v);
    for (sig_held *h = c->held, *n; h; h = n) {
        n = h->next;
        json_decref(h->params);
        free(h->request_id);
        free(h);
    }
    for (sig_idem *i = c->idem_head, *n; i; i = n) {
        n = i->next;
        free(i->request_id);
        free(i->body);
        free(i);
    }
    hmap_free(c->conns);
    hmap_free(c->rooms);
    hmap_free(c->users);
    hmap_free(c->calls);
    hmap_free(c->nonces);
    hmap_free(c->server);
    hmap_free(c->idem);
    free(c->heap);
    sig_effects_free(&c->fx);
    free((char *)c->cfg.node_id);
    free((char *)c->cfg.region);
    free((char *)c->cfg.endpoint);
    free((unsigned char *)c->cfg.token_secret);
    free(c);
}

int sig_random(sig_core *c, void *buf, size_t n)
{
    if (c->cfg.random) return c->cfg.random(buf, n, c->cfg.random_ud);
    return RAND_bytes(buf, (int)n) == 1 ? 0 : -EIO;
}

/* ---- effects ----------------------------------------------------------------------------------
 */

void sig_emit_reply(sig_core *c, uint64_t req, int status, const char *method, char *body)
{
    sig_effects *fx = &c->fx;
    if (fx->nreplies == c->cap_replies) {
        c->cap_replies = c->cap_replies ? 2 * c->cap_replies : 8;
        fx->replies = xrealloc(fx->replies, c->cap_replies * sizeof *fx->replies);
    }
    fx->replies[fx->nreplies++] = (sig_reply){
        .req = req, .status = status, .method = method, .body = body, .len = strlen(body)};
}

/* A growing text buffer for json_dump_callback: the fragment is written once, in place. */
typedef struct tbuf {
    char *p;
    size_t n, cap;
} tbuf;

static int tb_put(const char *b, size_t len, void *ud)
{
    tbuf *t = ud;
    if (t->n + len + 1 > t->cap) {
        while (t->n + len + 1 > t->cap)
            t->cap *= 2;
        t->p = xrealloc(t->p, t->cap);
    }
    memcpy(t->p + t->n, b, len);
    t->n += len;
    t->p[t->n] = 0;
    return 0;
}

char *sig_dumps(const json_t *j)
{
    tbuf t = {.p = xmalloc(896), .cap = 896};
    t.p[0] = 0;
    if (json_dump_callback(j, tb_put, &t, JSON_COMPACT) != 0) abort();
    return t.p;
}

void sig_set_raw_result(sig_core *c, char *body)
{
    free(c->raw_result);
    c->raw_result = body;
}

static void emit_fragment(sig_core *c, const char *name, json_t *scope, json_t *data,
                          const char *text, size_t len)
{
    sig_effects *fx = &c->fx;
    /* most fragments (a voice state and its scope) fit; below glibc's large-chunk size */
    tbuf t = {.p = xmalloc(896), .cap = 896};
    tb_put("\"event\":\"", 9, &t);
    tb_put(name, strlen(name), &t);
    tb_put("\",\"scope\":", 10, &t);
    if (json_dump_callback(scope, tb_put, &t, JSON_COMPACT) != 0) abort();
    tb_put(",\"data\":", 8, &t);
    if (data) {
        if (json_dump_callback(data, tb_put, &t, JSON_COMPACT | JSON_ENCODE_ANY) != 0) abort();
    } else {
        tb_put(text, len, &t);
    }
    json_decref(scope);
    json_decref(data);
    char *frag = t.p;
    if (fx->nevents == c->cap_events) {
        c->cap_events = c->cap_events ? 2 * c->cap_events : 16;
        fx->events = xrealloc(fx->events, c->cap_events * sizeof *fx->events);
    }
    fx->events[fx->nevents++] = frag;
}

void sig_emit_event(sig_core *c, const char *name, json_t *scope, json_t *data)
{
    emit_fragment(c, name, scope, data, NULL, 0);
}

void sig_emit_event_text(sig_core *c, const char *name, json_t *scope, const char *data, size_t len)
{
    emit_fragment(c, name, scope, NULL, data, len);
}

void sig_emit_write(sig_core *c, sig_write_kind kind, const char *key, json_t *row)
{
    sig_effects *fx = &c->fx;
    if (fx->nwrites == c->cap_writes) {
        c->cap_writes = c->cap_writes ? 2 * c->cap_writes : 16;
        fx->writes = xrealloc(fx->writes, c->cap_writes * sizeof *fx->writes);
    }
    fx->writes[fx->nwrites++] = (sig_write){.kind = kind, .key = xstrdup(key), .row = row};
}

void sig_emit_write_text(sig_core *c, sig_write_kind kind, const char *key, json_t *row, char *text)
{
    sig_emit_write(c, kind, key, row);
    c->fx.writes[c->fx.nwrites - 1].text = text;
}

void sig_effects_take(sig_core *c, sig_effects *out)
{
    *out = c->fx;
    memset(&c->fx, 0, sizeof c->fx);
    c->cap_replies = c->cap_events = c->cap_writes = 0;
}

void sig_effects_free(sig_effects *fx)
{
    if (!fx) return;
    for (size_t i = 0; i < fx->nreplies; i++)
        free(fx->replies[i].body);
    for (size_t i = 0; i < fx->nevents; i++)
        free(fx->events[i]);
    for (size_t i = 0; i < fx->nwrites; i++) {
        free(fx->writes[i].key);
        json_decref(fx->writes[i].row);
        free(fx->writes[i].text);
    }
    free(fx->replies);
    free(fx->events);
    free(fx->writes);
    memset(fx, 0, sizeof *fx);
}

char *sig_error_body(const char *code, const char *message)
{
    json_t *j = json_pack("{s:{s:s,s:s}}", "error", "code", code, "message", message);
    char *s = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    if (!s) abort();
    return s;
}

/* ---- timers -----------------------------------------------------------------------------------
 */

static void heap_swap(sig_timer *h, size_t a, size_t b)
{
    sig_timer t = h[a];
    h[a] = h[b];
    h[b] = t;
}

void sig_timer_arm(sig_core *c, int kind, const char *key, uint64_t aux, int64_t deadline)
{
    if (c->nheap == c->capheap) {
        c->capheap = c->capheap ? 2 * c->capheap : 64;
        c->heap = xrealloc(c->heap, c->capheap * sizeof *c->heap);
    }
    sig_timer *t = &c->heap[c->nheap];
    memset(t, 0, sizeof *t);
    t->deadline = deadline;
    t->kind = (uint8_t)kind;
    t->aux = aux;
    if (key) snprintf(t->key, sizeof t->key, "%s", key);
    size_t i = c->nheap++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (c->heap[p].deadline <= c->heap[i].deadline) break;
        heap_swap(c->heap, p, i);
        i = p;
    }
}

static sig_timer heap_pop(sig_core *c)
{
    sig_timer top = c->heap[0];
    c->heap[0] = c->heap[--c->nheap];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < c->nheap && c->heap[l].deadline < c->heap[m].deadline) m = l;
        if (r < c->nheap && c->heap[r].deadline < c->heap[m].deadline) m = r;
        if (m == i) break;
        heap_swap(c->heap, i, m);
        i = m;
    }
    return top;
}

int64_t sig_next_deadline(const sig_core *c)
{
    return c->nheap ? c->heap[0].deadline : SIG_NEVER;
}

void sig_tick(sig_core *c, int64_t now)
{
    while (c->nheap && c->heap[0].deadline <= now) {
        sig_timer t = heap_pop(c);
        uint64_t ch = 0;
        switch (t.kind) {
        case T_PENDING:
            sig_voice_fire_pending(c, t.key, t.deadline, now);
            break;
        case T_RING:
            if (snowflake_parse(t.key, &ch) == 0) sig_call_fire_ring(c, ch, t.aux, t.deadline, now);
            break;
        case T_IDLE:
            if (snowflake_parse(t.key, &ch) == 0) sig_call_fire_idle(c, ch, t.deadline, now);
            break;
        case T_HOLD:
            sig_rpc_fire_hold(c, t.aux, now);
            break;
        case T_NONCE:
            sig_grant_fire_nonce(c, t.key, t.deadline);
            break;
        }
    }
}

/* ---- statistics -------------------------------------------------------------------------------
 */

void sig_get_stats(const sig_core *c, sig_stats *out)
{
    *out = c->st;
    out->conns_pending = out->conns_active = 0;
    size_t it = 0;
    void *v;
    while (hmap_next(c->conns, &it, NULL, NULL, &v)) {
        const sig_conn *k = v;
        if (k->pending)
            out->conns_pending++;
        else
            out->conns_active++;
    }
    out->calls_ringing = out->calls_active = 0;
    it = 0;
    while (hmap_next(c->calls, &it, NULL, NULL, &v)) {
        const sig_call *call = v;
        sig_room *r = hmap_get(c->rooms, (uint64_t[2]){0, call->channel_id}, 16);
        if (r && r->nconns)
            out->calls_active++;
        else if (call->nrings)
            out->calls_ringing++;
    }
    out->held_joins = 0;
    for (const sig_held *h = c->held; h; h = h->next)
        out->held_joins++;
}
