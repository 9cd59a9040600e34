/*
 * tests/unit/sig_harness.h — drives the pure core like the node does, with a clock the test owns.
 * Replies and events of every step are collected; events go through a real outbox (seq) and are
 * parsed back so tests look at exactly what a gateway would receive.
 */
#ifndef VOXD_SIG_HARNESS_H
#define VOXD_SIG_HARNESS_H

#include "signalling/sig.h"

typedef struct th {
    sig_core *c;
    sig_outbox *o;
    int64_t now;
    json_t *events;  /* array of parsed events not yet consumed */
    json_t *replies; /* object: req id -> {"status":N,"body":{...}} */
    json_t *writes;  /* array of {"kind":N,"key":...} of the last step */
    json_t *db;      /* what a store would hold: "kind/key" -> row, from every write so far */
    uint64_t next_req;
    uint64_t rnd;
    void (*tweak)(sig_config *cfg);
} th;

/* `tweak` may adjust the config (NULL: defaults; node "voxd-1", secret "0123456789abcdef..."). */
th *th_new(void (*tweak)(sig_config *cfg));
void th_free(th *t);
/* Submits {"method":m,"params":<params_json>} and returns the HTTP status (0 when deferred).
 * *result (borrowed, may be NULL) is the reply's "result" or "error" object. */
int th_rpc(th *t, const char *method, const char *params_json, json_t **result);
/* Submits a raw body; returns the request handle; the reply may be read with th_reply. */
uint64_t th_submit(th *t, const char *body);
int th_reply(th *t, uint64_t req, json_t **body); /* status, 0 if none yet */
void th_advance(th *t, int64_t ms);               /* moves the clock and fires timers */
/* Simulates kill -9 and restart: a new core rebuilt only from t->db (the persisted rows).
 * Returns the number of rows the core refused (0 expected). */
int th_restart(th *t);
size_t th_nevents(th *t);
json_t *th_event(th *t); /* pops the oldest unconsumed event (owned by the caller) or NULL */
void th_drop_events(th *t);
/* Convenience: voice.connect in a guild channel; returns the connection id (static buffer). */
const char *th_connect(th *t, const char *guild, const char *channel, const char *user,
                       const char *extra_json);
const char *jstr(json_t *o, const char *path); /* "a.b.c" lookup of a string, NULL if absent */
long long jint(json_t *o, const char *path);   /* integer lookup, -1 if absent */
int jbool(json_t *o, const char *path);        /* 1/0, -1 if absent */
json_t *jget(json_t *o, const char *path);

#endif
