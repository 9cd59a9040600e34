/*
 * voice/durable.c — the durable node: the core's effects go through PostgreSQL before anybody
 * sees them.
 *
 * Group commit. Every step's effects are appended to the open batch at the tail of a FIFO of
 * batches: its writes, its events (numbered now: seq = next_seq++), and its replies. The head
 * batch is committed (one transaction, store/) while later steps keep filling the tail, so under
 * load each commit carries everything that arrived during the previous one. When a commit
 * succeeds, its events are published into the outbox in seq order and its replies are sent; only
 * then. Replies of steps that changed nothing (reads, refusals) go out at once.
 *
 * Outage. A failed commit keeps its batch at the head and is retried when the store is back
 * (writes are upserts, events insert-if-absent: a retry of a commit whose outcome was unknown is
 * harmless). A reply that waited longer than the store deadline (2 s) is answered 503
 * STORE_UNAVAILABLE — nothing is reported done that is not committed; the change itself stays
 * queued and commits when the database returns (a retry with the same request_id then returns
 * the original reply). While the store is down, new requests that change state are parked
 * unapplied, in order, up to a bound, and refused 503 after the deadline; reads are answered from
 * memory.
 *
 * Recovery. At start-up the node loads this node's rows, rebuilds the core
 * (sig_core_restore), re-publishes the retained events and the consumers' acks into the outbox,
 * then fires the timers that fell due while it was down. Until then /rpc answers 503.
 */
#include "voice/node_priv.h"

#include "lib/log.h"
#include "lib/util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PARK_MAX        10000
#define QUEUE_MAX_ITEMS 1000000
#define TICK_MS         100
#define HOUSEKEEP_MS    5000

typedef struct ditem {
    int kind; /* store kind, or -2 for an ack */
    char *key;
    json_t *row;  /* NULL = delete */
    char *text;   /* the row as JSON text when the core made it, or NULL */
    uint64_t num; /* ack */
} ditem;

typedef struct dreply {
    uint64_t req;
    int status;
    const char *method;
    char *body; /* NULL once answered (503 after the deadline) */
    size_t len;
    int64_t at_ms; /* when the step ran: its deadline counts from here */
} dreply;

typedef struct dbatch {
    ditem *items;
    size_t nitems, capitems;
    char **texts; /* events, seq first_seq.. */
    size_t ntexts, captexts;
    uint64_t first_seq;
    dreply *replies;
    size_t nreplies, capreplies;
    int64_t born_ms;
    int64_t sent_ns; /* when its commit was sent (the commit histogram) */
    bool inflight;   /* sent to the store, its done not called yet */
    bool committed;  /* its COMMIT succeeded; released once every batch before it is */
    struct dbatch *next;
} dbatch;

typedef struct parked {
    uint64_t req;
    char *body;
    size_t len;
    int64_t at_ms;
    struct parked *next;
} parked;

struct durable {
    voice_node *n;
    store *st;
    bool ready_once, loaded;
    dbatch *head, *tail;
    int ninflight; /* batches sent and not done (at most --commit-pipeline) */
    bool resend;   /* a commit failed: once none is in flight, everything left is merged and
                      sent again (a later batch may have committed: never resend one alone) */
    size_t queued_items;
    parked *phead, *ptail;
    size_t nparked;
    uv_timer_t timer;
    int64_t last_housekeep;
    /* recovery scratch */
    char **ltexts;
    uint64_t *lseqs;
    size_t nl, capl;
    json_t *lconsumers;
    size_t restored, refused;
    metrics_hist commit_hist;
    void (*closed_cb)(voice_node *n);
};

static int sig_to_store_kind(sig_write_kind k)
{
    switch (k) {
    case SIG_W_CONN_PUT:
    case SIG_W_CONN_DEL:
        return STORE_CONN;
    case SIG_W_CALL_PUT:
    case SIG_W_CALL_DEL:
        return STORE_CALL;
    case SIG_W_NONCE_PUT:
    case SIG_W_NONCE_DEL:
        return STORE_NONCE;
    case SIG_W_SERVER_PUT:
    case SIG_W_SERVER_DEL:
        return STORE_SERVER;
    case SIG_W_REQUEST_PUT:
        return STORE_REQUEST;
    }
    return -3;
}

static sig_write_kind store_to_sig_kind(int k)
{
    switch (k) {
    case STORE_CONN:
        return SIG_W_CONN_PUT;
    case STORE_CALL:
        return SIG_W_CALL_PUT;
    case STORE_NONCE:
        return SIG_W_NONCE_PUT;
    case STORE_SERVER:
        return SIG_W_SERVER_PUT;
    case STORE_REQUEST:
        return SIG_W_REQUEST_PUT;
    default:
        return (sig_write_kind)-1;
    }
}

/* ---- batches
 * -------------------------------------------------------------------------------------- */

static dbatch *open_batch(durable *d)
{
    if (d->tail && !d->tail->inflight && !d->tail->committed) return d->tail;
    dbatch *b = xcalloc(1, sizeof *b);
    b->born_ms = time_now_ms();
    if (d->tail)
        d->tail->next = b;
    else
        d->head = b;
    d->tail = b;
    return b;
}

static void add_item(durable *d, dbatch *b, int kind, const char *key, json_t *row, char *text,
                     uint64_t num)
{
    if (b->nitems == b->capitems) {
        b->capitems = b->capitems ? 2 * b->capitems : 16;
        b->items = xrealloc(b->items, b->capitems * sizeof *b->items);
    }
    b->items[b->nitems++] =
        (ditem){.kind = kind, .key = xstrdup(key), .row = row, .text = text, .num = num};
    d->queued_items++;
}

static void free_batch(durable *d, dbatch *b)
{
    for (size_t i = 0; i < b->nitems; i++) {
        free(b->items[i].key);
        json_decref(b->items[i].row);
        free(b->items[i].text);
    }
    d->queued_items -= b->nitems;
    for (size_t i = 0; i < b->ntexts; i++)
        free(b->texts[i]);
    for (size_t i = 0; i < b->nreplies; i++)
        free(b->replies[i].body);
    free(b->items);
    free(b->texts);
    free(b->replies);
    free(b);
}

static store_batch *build(const dbatch *b)
{
    store_batch *sb = store_batch_new();
    for (size_t i = 0; i < b->nitems; i++) {
        const ditem *it = &b->items[i];
        if (it->kind == -2) {
            store_batch_ack(sb, it->key, it->num);
        } else {
            store_batch_put_text(sb, it->kind, it->key, it->row ? json_incref(it->row) : NULL,
                                 it->text ? xstrdup(it->text) : NULL);
        }
    }
    for (size_t i = 0; i < b->ntexts; i++)
        store_batch_event(sb, b->first_seq + i, b->texts[i]);
    return sb;
}

static void send_reply(voice_node *n, dreply *r)
{
    node_deliver_reply(n, r->req, r->method, r->status, r->body, r->len);
    r->body = NULL;
}

static void send_unavailable(voice_node *n, uint64_t req, const char *method, const char *why)
{
    dreply r = {.req = req, .status = 503, .method = method};
    r.body = sig_error_body("STORE_UNAVAILABLE", why);
    r.len = strlen(r.body);
    send_reply(n, &r);
    free(r.body);
}

static void kick(durable *d);

/* Publishes the events and sends the replies of the committed batches at the head, in order. */
static void release(durable *d)
{
    voice_node *n = d->n;
    bool any = false;
    while (d->head && d->head->committed) {
        dbatch *b = d->head;
        for (size_t i = 0; i < b->ntexts; i++) {
            if (sig_outbox_publish_text(n->outbox, b->first_seq + i, b->texts[i]) != 0)
                LOG(LOG_ERROR, "event seq %llu out of order: not published",
                    (unsigned long long)(b->first_seq + i));
            b->texts[i] = NULL;
            n->events_emitted++;
        }
        for (size_t i = 0; i < b->nreplies; i++)
            if (b->replies[i].body) send_reply(n, &b->replies[i]);
        d->head = b->next;
        if (!d->head) d->tail = NULL;
        free_batch(d, b);
        any = true;
    }
    if (any && n->ev_head) ev_notify_all(n);
}

static void on_commit(void *ud, int err)
{
    durable *d = ud;
    dbatch *b = d->head;
    while (b && !b->inflight) /* the store completes commits in submission order */
        b = b->next;
    if (!b) return; /* closing: the batches are gone */
    b->inflight = false;
    d->ninflight--;
    if (err) {
        LOG(LOG_WARN, "commit of %zu writes and %zu events failed (%s): kept for retry", b->nitems,
            b->ntexts, strerror(-err));
        d->resend = true;
        release(d);
        return; /* the timer (or the next step) retries: no hot loop on a refusal */
    }
    metrics_hist_observe(&d->commit_hist, (double)(time_mono_ns() - b->sent_ns) / 1e9);
    b->committed = true;
    release(d);
    kick(d);
}

/* Appends b's items, events and replies to a (b follows a: its writes win), frees b. */
static void absorb(durable *d, dbatch *a, dbatch *b)
{
    for (size_t i = 0; i < b->nitems; i++) {
        if (a->nitems == a->capitems) {
            a->capitems = a->capitems ? 2 * a->capitems : 16;
            a->items = xrealloc(a->items, a->capitems * sizeof *a->items);
        }
        a->items[a->nitems++] = b->items[i];
    }
    b->nitems = 0; /* moved: still counted in queued_items */
    if (b->ntexts && !a->ntexts) a->first_seq = b->first_seq;
    for (size_t i = 0; i < b->ntexts; i++) {
        if (a->ntexts == a->captexts) {
            a->captexts = a->captexts ? 2 * a->captexts : 16;
            a->texts = xrealloc(a->texts, a->captexts * sizeof *a->texts);
        }
        a->texts[a->ntexts++] = b->texts[i];
    }
    b->ntexts = 0;
    for (size_t i = 0; i < b->nreplies; i++) {
        if (a->nreplies == a->capreplies) {
            a->capreplies = a->capreplies ? 2 * a->capreplies : 8;
            a->replies = xrealloc(a->replies, a->capreplies * sizeof *a->replies);
        }
        a->replies[a->nreplies++] = b->replies[i];
    }
    b->nreplies = 0;
    a->next = b->next;
    if (d->tail == b) d->tail = a;
    free_batch(d, b);
}

static void kick(durable *d)
{
    if (!store_is_up(d->st)) return;
    if (d->resend) {
        /* a commit failed: wait until none is in flight, then resend everything not released as
         * ONE transaction (a batch after the failed one may have committed; its writes are later
         * and win in the merge, so no row goes back to an older state) */
        if (d->ninflight) return;
        dbatch *a = d->head;
        if (a) {
            a->committed = false;
            while (a->next)
                absorb(d, a, a->next);
        }
        d->resend = false;
    }
    for (dbatch *b = d->head; b && d->ninflight < d->n->cf->commit_pipeline; b = b->next) {
        if (b->inflight || b->committed) continue;
        if (b->nitems == 0 && b->ntexts == 0) { /* replies only (a step that wrote nothing) */
            b->committed = true;
            continue;
        }
        b->inflight = true;
        b->sent_ns = time_mono_ns();
        d->ninflight++;
        int rc = store_commit(d->st, build(b), on_commit, d);
        if (rc < 0) {
            b->inflight = false;
            d->ninflight--;
            LOG(LOG_DEBUG, "commit not started: %s", strerror(-rc));
            break;
        }
    }
    release(d);
}

/* ---- the node's hooks
 * ------------------------------------------------------------------------------ */

void durable_take_effects(voice_node *n, sig_effects *fx)
{
    durable *d = n->durable;
    /* a reply waits for its batch's commit when its step wrote something; a reply of a step
     * that wrote nothing goes out now (reads are served from memory, D16) */
    dbatch *b = fx->nwrites || fx->nevents ? open_batch(d) : NULL;
    for (size_t i = 0; i < fx->nwrites; i++) {
        sig_write *w = &fx->writes[i];
        int kind = sig_to_store_kind(w->kind);
        if (kind < -2) continue;
        add_item(d, b, kind, w->key, w->row, w->text, 0);
        w->row = NULL;
        w->text = NULL;
        n->store_writes++;
    }
    for (size_t i = 0; i < fx->nevents; i++) {
        if (b->ntexts == 0) b->first_seq = n->next_seq;
        if (b->ntexts == b->captexts) {
            b->captexts = b->captexts ? 2 * b->captexts : 16;
            b->texts = xrealloc(b->texts, b->captexts * sizeof *b->texts);
        }
        b->texts[b->ntexts++] = sig_event_text(n->next_seq++, fx->events[i]);
    }
    for (size_t i = 0; i < fx->nreplies; i++) {
        sig_reply *r = &fx->replies[i];
        dreply dr = {.req = r->req,
                     .status = r->status,
                     .method = r->method,
                     .body = r->body,
                     .len = r->len,
                     .at_ms = time_now_ms()};
        r->body = NULL;
        if (!b) {
            send_reply(n, &dr);
            continue;
        }
        if (b->nreplies == b->capreplies) {
            b->capreplies = b->capreplies ? 2 * b->capreplies : 8;
            b->replies = xrealloc(b->replies, b->capreplies * sizeof *b->replies);
        }
        b->replies[b->nreplies++] = dr;
    }
    kick(d);
}

bool durable_after_commit(voice_node *n, uint64_t req)
{
    durable *d = n->durable;
    dbatch *b = d->tail; /* the newest batch: released after every change taken before */
    if (!b) return false;
    if (b->nreplies == b->capreplies) {
        b->capreplies = b->capreplies ? 2 * b->capreplies : 8;
        b->replies = xrealloc(b->replies, b->capreplies * sizeof *b->replies);
    }
    b->replies[b->nreplies++] = (dreply){.req = req,
                                         .status = 200,
                                         .method = "voice.identify",
                                         .body = xstrdup("{}"),
                                         .len = 2,
                                         .at_ms = time_now_ms()};
    return true;
}

void durable_ack(voice_node *n, const char *consumer, uint64_t seq)
{
    durable *d = n->durable;
    add_item(d, open_batch(d), -2, consumer, NULL, NULL, seq);
    kick(d);
}

bool durable_loaded(const voice_node *n)
{
    return !n->durable || n->durable->loaded;
}

bool durable_up(const voice_node *n)
{
    return !n->durable || (n->durable->loaded && store_is_up(n->durable->st));
}

bool durable_idle(const voice_node *n)
{
    return !n->durable || (!n->durable->head && !n->durable->phead);
}

static void submit_now(voice_node *n, uint64_t req, const char *body, size_t len)
{
    sig_rpc_submit(n->core, req, body, len, time_now_ms());
    node_after_step(n);
}

/* Returns true when the request was parked (or refused); false: submit it now. */
bool durable_admit(voice_node *n, uint64_t req, const char *body, size_t len)
{
    durable *d = n->durable;
    if (!d) return false;
    bool down = !d->loaded || !store_is_up(d->st);
    if (!d->phead && !down) return false;
    if (d->loaded && !sig_rpc_mutates(body, len)) return false; /* reads keep working */
    if (d->nparked >= PARK_MAX || d->queued_items >= QUEUE_MAX_ITEMS) {
        send_unavailable(n, req, "unknown", "the database is unreachable and the queue is full");
        return true;
    }
    parked *p = xcalloc(1, sizeof *p);
    p->req = req;
    p->body = xstrndup(body ? body : "", len);
    p->len = len;
    p->at_ms = time_now_ms();
    if (d->ptail)
        d->ptail->next = p;
    else
        d->phead = p;
    d->ptail = p;
    d->nparked++;
    return true;
}

void durable_cancel(voice_node *n, uint64_t req)
{
    durable *d = n->durable;
    if (!d) return;
    for (parked **pp = &d->phead, *prev = NULL; *pp; prev = *pp, pp = &(*pp)->next) {
        if ((*pp)->req != req) continue;
        parked *p = *pp;
        *pp = p->next;
        if (d->ptail == p) d->ptail = prev;
        d->nparked--;
        free(p->body);
        free(p);
        return;
    }
}

static void unpark(durable *d)
{
    while (d->phead && d->loaded && store_is_up(d->st)) {
        parked *p = d->phead;
        d->phead = p->next;
        if (!d->phead) d->ptail = NULL;
        d->nparked--;
        submit_now(d->n, p->req, p->body, p->len);
        free(p->body);
        free(p);
    }
}

static void on_timer(uv_timer_t *t)
{
    durable *d = t->data;
    voice_node *n = d->n;
    int64_t now = time_now_ms(), deadline = n->cf->store_deadline_ms;
    /* replies and parked requests past the deadline: 503, nothing reported done */
    for (dbatch *b = d->head; b; b = b->next) {
        if (now - b->born_ms < deadline) break; /* no reply in it is older than the batch */
        for (size_t i = 0; i < b->nreplies; i++) {
            if (!b->replies[i].body || now - b->replies[i].at_ms < deadline) continue;
            free(b->replies[i].body);
            b->replies[i].body = NULL;
            send_unavailable(n, b->replies[i].req, b->replies[i].method,
                             "the change is not committed yet (database unreachable); retry with "
                             "the same request_id");
        }
    }
    while (d->phead && now - d->phead->at_ms >= deadline) {
        parked *p = d->phead;
        d->phead = p->next;
        if (!d->phead) d->ptail = NULL;
        d->nparked--;
        send_unavailable(n, p->req, "unknown",
                         d->loaded ? "the database is unreachable" : "state is still loading");
        free(p->body);
        free(p);
    }
    unpark(d);
    kick(d);
    if (!n->stopping)
        sig_set_health(n->core, !d->loaded ? "starting" : store_is_up(d->st) ? "ok" : "degraded");
    if (d->loaded && store_is_up(d->st) && now - d->last_housekeep >= HOUSEKEEP_MS) {
        d->last_housekeep = now;
        store_housekeep(d->st, now);
    }
}

/* ---- recovery
 * -------------------------------------------------------------------------------------- */

static void on_row(void *ud, int kind, const char *key, json_t *row)
{
    durable *d = ud;
    if (kind == STORE_EVENT) {
        uint64_t seq;
        if (snowflake_parse(key, &seq) != 0 || !json_is_string(row)) {
            d->refused++;
            return;
        }
        if (d->nl == d->capl) {
            d->capl = d->capl ? 2 * d->capl : 64;
            d->ltexts = xrealloc(d->ltexts, d->capl * sizeof *d->ltexts);
            d->lseqs = xrealloc(d->lseqs, d->capl * sizeof *d->lseqs);
        }
        d->ltexts[d->nl] = xstrdup(json_string_value(row));
        d->lseqs[d->nl++] = seq;
        return;
    }
    if (kind == STORE_CONSUMER) {
        json_object_set(d->lconsumers, key, json_object_get(row, "acked"));
        return;
    }
    int rc = sig_core_restore(d->n->core, store_to_sig_kind(kind), key, row);
    if (rc == 0) {
        d->restored++;
    } else {
        d->refused++;
        LOG(LOG_WARN, "recovery: row kind=%d key=%.64s refused (%s)", kind, key, strerror(-rc));
    }
}

static void on_loaded(void *ud, int err, uint64_t last_seq)
{
    durable *d = ud;
    voice_node *n = d->n;
    if (err) {
        LOG(LOG_ERROR, "loading state failed (%s); retrying", strerror(-err));
        for (size_t i = 0; i < d->nl; i++)
            free(d->ltexts[i]);
        d->nl = 0;
        json_object_clear(d->lconsumers);
        d->ready_once = false; /* the timer starts the load again once the store is up */
        return;
    }
    sig_core_restore_done(n->core);
    uint64_t first = d->nl ? d->lseqs[0] : last_seq + 1;
    sig_outbox_free(n->outbox);
    n->outbox = sig_outbox_new((size_t)n->cf->events_retention, first);
    for (size_t i = 0; i < d->nl; i++) {
        if (sig_outbox_publish_text(n->outbox, d->lseqs[i], d->ltexts[i]) != 0)
            LOG(LOG_ERROR, "recovery: event seq %llu out of order",
                (unsigned long long)d->lseqs[i]);
    }
    free(d->ltexts);
    free(d->lseqs);
    d->ltexts = NULL;
    d->lseqs = NULL;
    size_t nevents = d->nl;
    d->nl = d->capl = 0;
    if (sig_outbox_next_seq(n->outbox) != last_seq + 1)
        LOG(LOG_ERROR, "recovery: retained events end at %llu but the last committed seq is %llu",
            (unsigned long long)sig_outbox_last_seq(n->outbox), (unsigned long long)last_seq);
    n->next_seq = last_seq + 1 > sig_outbox_next_seq(n->outbox) ? last_seq + 1
                                                                : sig_outbox_next_seq(n->outbox);
    const char *name;
    json_t *acked;
    json_object_foreach(d->lconsumers, name, acked)
    {
        sig_outbox_consumer(n->outbox, name);
        sig_outbox_ack(n->outbox, name, (uint64_t)json_integer_value(acked));
    }
    json_object_clear(d->lconsumers);
    d->loaded = true;
    LOG(LOG_INFO,
        "recovered from the database: %zu rows restored, %zu refused, %zu retained events, next "
        "seq %llu",
        d->restored, d->refused, nevents, (unsigned long long)n->next_seq);
    /* timers that fell due while the node was down fire now */
    sig_tick(n->core, time_now_ms());
    node_after_step(n);
    unpark(d);
}

static void on_ready(void *ud, int err)
{
    durable *d = ud;
    if (err) {
        LOG(LOG_WARN, "database not ready (%s); retrying", strerror(-err));
        return;
    }
    if (d->ready_once) return;
    d->ready_once = true;
    if (!d->loaded) {
        int rc = store_load(d->st, on_row, on_loaded, d);
        if (rc < 0) {
            d->ready_once = false;
            LOG(LOG_WARN, "cannot start loading state: %s", strerror(-rc));
        }
    }
}

static void on_timer_load(durable *d)
{
    if (!d->loaded && !d->ready_once && store_is_up(d->st)) on_ready(d, 0);
}

static void on_timer_all(uv_timer_t *t)
{
    durable *d = t->data;
    on_timer_load(d);
    on_timer(t);
}

int durable_start(voice_node *n)
{
    durable *d = xcalloc(1, sizeof *d);
    d->n = n;
    d->lconsumers = json_object();
    store_opts o = {0};
    o.conninfo = n->cf->db;
    o.node_id = n->cf->node_id;
    o.pool_size = 2;
    o.request_timeout_ms = n->cf->store_deadline_ms;
    o.reconnect_min_ms = 100;
    o.reconnect_max_ms = 5000;
    o.pipeline_depth = (int)n->cf->commit_pipeline;
    d->st = store_new(n->loop, &o);
    if (!d->st) {
        json_decref(d->lconsumers);
        free(d);
        return -EINVAL;
    }
    n->durable = d;
    uv_timer_init(n->loop, &d->timer);
    d->timer.data = d;
    n->open_handles++;
    uv_timer_start(&d->timer, on_timer_all, TICK_MS, TICK_MS);
    int rc = store_start(d->st, on_ready, d);
    if (rc < 0) LOG(LOG_WARN, "database: %s (retrying)", strerror(-rc));
    return 0;
}

void durable_stats(const voice_node *n, durable_stats_t *out)
{
    memset(out, 0, sizeof *out);
    const durable *d = n->durable;
    if (!d) return;
    store_stats ss;
    store_get_stats(d->st, &ss);
    out->up = store_is_up(d->st) && d->loaded;
    out->queue_items = d->queued_items;
    out->parked = d->nparked;
    out->commits = ss.commits;
    out->commit_errors = ss.commit_errors;
    out->commit_hist = d->commit_hist;
    out->reconnects = ss.reconnects;
}

static void on_store_closed(void *ud)
{
    durable *d = ud;
    voice_node *n = d->n;
    n->open_handles--;
    n->durable = NULL;
    json_decref(d->lconsumers);
    free(d);
}

static void on_timer_closed(uv_handle_t *h)
{
    durable *d = h->data;
    d->n->open_handles--;
    d->n->open_handles++; /* the store's own close is still to come */
    store_close(d->st, on_store_closed, d);
}

void durable_close(voice_node *n)
{
    durable *d = n->durable;
    if (!d) return;
    if (d->head || d->phead)
        LOG(LOG_WARN, "shutting down with %zu uncommitted writes and %zu parked requests",
            d->queued_items, d->nparked);
    while (d->head) {
        dbatch *b = d->head;
        d->head = b->next;
        free_batch(d, b);
    }
    d->tail = NULL;
    while (d->phead) {
        parked *p = d->phead;
        d->phead = p->next;
        free(p->body);
        free(p);
    }
    d->ptail = NULL;
    d->nparked = 0;
    uv_timer_stop(&d->timer);
    uv_close((uv_handle_t *)&d->timer, on_timer_closed);
}
