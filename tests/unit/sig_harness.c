/*
 * tests/unit/sig_harness.c — see sig_harness.h.
 */
#include "tests/unit/sig_harness.h"
#include "lib/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int det_random(void *buf, size_t n, void *ud)
{
    th *t = ud;
    unsigned char *p = buf;
    for (size_t i = 0; i < n; i++) {
        t->rnd = t->rnd * 6364136223846793005ULL + 1442695040888963407ULL;
        p[i] = (unsigned char)(t->rnd >> 56);
    }
    return 0;
}

static void collect(th *t)
{
    sig_effects fx;
    sig_effects_take(t->c, &fx);
    for (size_t i = 0; i < fx.nevents; i++) {
        uint64_t seq = sig_outbox_publish(t->o, fx.events[i]);
        fx.events[i] = NULL;
        size_t len;
        const char *s = sig_outbox_get(t->o, seq, &len);
        json_error_t err;
        json_t *ev = json_loadb(s, len, JSON_REJECT_DUPLICATES, &err);
        if (!ev) {
            fprintf(stderr, "harness: event is not JSON: %s\n", s);
            abort();
        }
        json_array_append_new(t->events, ev);
    }
    for (size_t i = 0; i < fx.nreplies; i++) {
        json_error_t err;
        json_t *b = json_loadb(fx.replies[i].body, fx.replies[i].len, JSON_REJECT_DUPLICATES, &err);
        if (!b) {
            fprintf(stderr, "harness: reply is not JSON: %s\n", fx.replies[i].body);
            abort();
        }
        char key[32];
        snprintf(key, sizeof key, "%llu", (unsigned long long)fx.replies[i].req);
        json_object_set_new(t->replies, key,
                            json_pack("{s:i,s:o}", "status", fx.replies[i].status, "body", b));
    }
    json_array_clear(t->writes);
    for (size_t i = 0; i < fx.nwrites; i++) {
        sig_write *w = &fx.writes[i];
        json_array_append_new(t->writes,
                              json_pack("{s:i,s:s}", "kind", (int)w->kind, "key", w->key));
        /* a DEL kind is its PUT kind + 1 */
        int put = w->row ? (int)w->kind : (int)w->kind - 1;
        char *dbkey = xasprintf("%d/%s", put, w->key);
        if (w->text) { /* a row also made as text (what the store writes) must say the same */
            json_t *parsed = json_loads(w->text, JSON_REJECT_DUPLICATES, NULL);
            if (!parsed || !json_equal(parsed, w->row)) {
                fprintf(stderr, "sig_harness: row text of %s differs from its row: %s\n", w->key,
                        w->text);
                abort();
            }
            json_decref(parsed);
        }
        if (w->row)
            json_object_set(t->db, dbkey, w->row);
        else
            json_object_del(t->db, dbkey);
        free(dbkey);
    }
    sig_effects_free(&fx);
}

/* The test node's configuration (also used to rebuild the core in th_restart). */
static void base_config(th *t, sig_config *cfg)
{
    sig_config_defaults(cfg);
    cfg->node_id = "voxd-1";
    cfg->region = "test";
    cfg->endpoint = "127.0.0.1:8701";
    static const unsigned char secret[] = "0123456789abcdef0123456789abcdef";
    cfg->token_secret = secret;
    cfg->token_secret_len = 32;
    cfg->random = det_random;
    cfg->random_ud = t;
    if (t->tweak) t->tweak(cfg);
}

th *th_new(void (*tweak)(sig_config *cfg))
{
    th *t = xcalloc(1, sizeof *t);
    t->rnd = 42;
    t->tweak = tweak;
    sig_config cfg;
    base_config(t, &cfg);
    t->c = sig_core_new(&cfg);
    t->o = sig_outbox_new(1000000, 1);
    t->now = 1700000000000LL;
    t->events = json_array();
    t->replies = json_object();
    t->writes = json_array();
    t->db = json_object();
    t->next_req = 1;
    return t;
}

void th_free(th *t)
{
    sig_core_free(t->c);
    sig_outbox_free(t->o);
    json_decref(t->events);
    json_decref(t->replies);
    json_decref(t->writes);
    json_decref(t->db);
    free(t);
}

uint64_t th_submit(th *t, const char *body)
{
    uint64_t req = t->next_req++;
    sig_rpc_submit(t->c, req, body, strlen(body), t->now);
    collect(t);
    return req;
}

int th_reply(th *t, uint64_t req, json_t **body)
{
    char key[32];
    snprintf(key, sizeof key, "%llu", (unsigned long long)req);
    json_t *r = json_object_get(t->replies, key);
    if (!r) {
        if (body) *body = NULL;
        return 0;
    }
    json_t *b = json_object_get(r, "body");
    if (body) {
        json_t *x = json_object_get(b, "result");
        *body = x ? x : json_object_get(b, "error");
    }
    return (int)json_integer_value(json_object_get(r, "status"));
}

int th_rpc(th *t, const char *method, const char *params_json, json_t **result)
{
    char *body = xasprintf("{\"method\":\"%s\",\"params\":%s}", method, params_json);
    uint64_t req = th_submit(t, body);
    free(body);
    return th_reply(t, req, result);
}

int th_restart(th *t)
{
    sig_config cfg;
    base_config(t, &cfg);
    sig_core_free(t->c);
    t->c = sig_core_new(&cfg);
    int refused = 0;
    const char *key;
    json_t *row;
    json_object_foreach(t->db, key, row)
    {
        int kind = atoi(key);
        const char *k = strchr(key, '/') + 1;
        if (sig_core_restore(t->c, (sig_write_kind)kind, k, row) != 0) refused++;
    }
    sig_core_restore_done(t->c);
    sig_tick(t->c, t->now);
    collect(t);
    return refused;
}

void th_advance(th *t, int64_t ms)
{
    t->now += ms;
    sig_tick(t->c, t->now);
    collect(t);
}

size_t th_nevents(th *t)
{
    return json_array_size(t->events);
}

json_t *th_event(th *t)
{
    if (!json_array_size(t->events)) return NULL;
    json_t *e = json_incref(json_array_get(t->events, 0));
    json_array_remove(t->events, 0);
    return e;
}

void th_drop_events(th *t)
{
    json_array_clear(t->events);
}

const char *th_connect(th *t, const char *guild, const char *channel, const char *user,
                       const char *extra)
{
    static char id[64];
    char *p = xasprintf("{\"guild_id\":\"%s\",\"channel_id\":\"%s\",\"user_id\":\"%s\","
                        "\"session_id\":\"s-%s\"%s%s}",
                        guild, channel, user, user, extra ? "," : "", extra ? extra : "");
    json_t *r;
    int st = th_rpc(t, "voice.connect", p, &r);
    free(p);
    if (st != 200) return NULL;
    snprintf(id, sizeof id, "%s", jstr(r, "voice_state.connection_id"));
    return id;
}

json_t *jget(json_t *o, const char *path)
{
    char buf[128];
    snprintf(buf, sizeof buf, "%s", path);
    char *save = NULL;
    for (char *tok = strtok_r(buf, ".", &save); tok && o; tok = strtok_r(NULL, ".", &save)) {
        if (json_is_array(o))
            o = json_array_get(o, (size_t)atoi(tok));
        else
            o = json_object_get(o, tok);
    }
    return o;
}

const char *jstr(json_t *o, const char *path)
{
    return json_string_value(jget(o, path));
}

long long jint(json_t *o, const char *path)
{
    json_t *v = jget(o, path);
    return json_is_integer(v) ? json_integer_value(v) : -1;
}

int jbool(json_t *o, const char *path)
{
    json_t *v = jget(o, path);
    return json_is_boolean(v) ? json_is_true(v) : -1;
}
