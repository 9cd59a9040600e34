/*
 * store/store.c — PostgreSQL on the libuv loop: the connection pool, the job queue, the pipeline.
 *
 * A connection (pconn) goes DOWN -> CONNECTING -> SETUP -> UP and back to DOWN when anything fails.
 *   CONNECTING  PQconnectStartParams, then PQconnectPoll each time the socket is ready in the
 *               direction it asked for. libpq may switch sockets while connecting, so the uv_poll
 *               is recreated on PQsocket() after every PQconnectPoll.
 *   SETUP       the migrations, in the simple query protocol (a migration is a multi-statement
 *               script): one transaction that creates voxd_schema_migrations and reads what is
 *               applied, then per missing migration one transaction that takes the advisory lock,
 *               re-checks under it (a concurrent starter may have applied it) and applies it.
 *   UP          pipeline mode. The first job prepares every statement; then the connection runs
 *               one job at a time: a job is a few queries sent back to back and one
 *               PQpipelineSync (one round trip), whose results are read as they arrive.
 * The single timer of a connection is its backoff while DOWN and its deadline otherwise: a
 * connection attempt, a setup step or a job that outlives request_timeout_ms closes the
 * connection (PQcancel would block).
 *
 * Jobs wait in two FIFOs: writers (commits, housekeeping) and readers (loads). Writers go on one
 * connection at a time: on any idle one when none is in flight, else pipelined behind the ones in
 * flight (at most `depth`, each its own transaction and sync), so the server runs them back to back
 * in submission order and they commit in that order; when a commit is sent, the commits queued
 * behind it are merged into its batch (group commit). Readers run on any idle connection. A
 * connection's jobs in flight are a FIFO (c->job is the oldest: its results are read); the
 * connection's deadline runs for the oldest one. While no connection is UP nothing can be queued
 * (-EAGAIN), and what was queued fails with -EAGAIN at the moment the last connection goes down.
 *
 * Lifetime: handles (one timer per connection, one poll per open socket) are counted; store_close
 * closes them all and the last close callback delivers -ECANCELED to everything still pending,
 * calls `closed` and frees the store. Jobs are freed only where they complete, so a user callback
 * may call any store function, store_close included.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <libpq-fe.h>

#include "lib/log.h"
#include "lib/util.h"
#include "store/store_int.h"

#define CTX            "store"
#define MIGRATION_LOCK 0x766f78640001LL /* pg_advisory_xact_lock key: "voxd" + 1 */
#define MERGE_MAX_ROWS 50000            /* group commit stops merging beyond this */

/* ---- statements ------------------------------------------------------------------------------ */

enum {
    Q_PUT_CONN,
    Q_PUT_CALL,
    Q_PUT_NONCE,
    Q_PUT_SERVER, /* indexed by kind */
    Q_DEL_CONN,
    Q_DEL_CALL,
    Q_DEL_NONCE,
    Q_DEL_SERVER,
    Q_EVENTS,
    Q_META,
    Q_REQ_PUT,
    Q_REQ_DEL,
    Q_ACK,
    Q_PRUNE,
    Q_HK_NONCES,
    Q_HK_REQ,
    Q_L_CONN,
    Q_L_CALL,
    Q_L_NONCE,
    Q_L_SERVER,
    Q_L_REQ,
    Q_L_CONSUMER,
    Q_L_EVENTS,
    Q_L_META,
    Q__N,
    /* not prepared: sent with PQsendQueryParams */
    Q_BEGIN = 100,
    Q_BEGIN_RO,
    Q_COMMIT,
    Q_ROLLBACK,
};

/* Rows travel as binary arrays (store_abuf): keys and rows text[], plus for voice states and
 * nonces the integer that also has its own column, taken from the row by the node (bigint[]). */
#define UPSERT(t, extra_col, extra_arr, extra_set)                                                 \
    "INSERT INTO " t " (node_id, key, data" extra_col ") SELECT $1, k, d" extra_col " FROM "       \
    "unnest($2::text[], $3::text[]" extra_arr ") ON CONFLICT (node_id, key) DO UPDATE SET "        \
    "data = EXCLUDED.data" extra_set

static const char *const stmt_sql[Q__N] = {
    [Q_PUT_CONN] = UPSERT("voxd_voice_states", ", version", ", $4::bigint[]) AS t(k, d, version",
                          ", version = EXCLUDED.version"),
    [Q_PUT_CALL] = UPSERT("voxd_calls", "", ") AS t(k, d", ""),
    [Q_PUT_NONCE] = UPSERT("voxd_nonces", ", exp_ms", ", $4::bigint[]) AS t(k, d, exp_ms",
                           ", exp_ms = EXCLUDED.exp_ms"),
    [Q_PUT_SERVER] = UPSERT("voxd_server_state", "", ") AS t(k, d", ""),
    [Q_DEL_CONN] = "DELETE FROM voxd_voice_states WHERE node_id = $1 AND key = ANY($2::text[])",
    [Q_DEL_CALL] = "DELETE FROM voxd_calls WHERE node_id = $1 AND key = ANY($2::text[])",
    [Q_DEL_NONCE] = "DELETE FROM voxd_nonces WHERE node_id = $1 AND key = ANY($2::text[])",
    [Q_DEL_SERVER] = "DELETE FROM voxd_server_state WHERE node_id = $1 AND key = ANY($2::text[])",
    [Q_EVENTS] = "INSERT INTO voxd_events (node_id, seq, body) SELECT $1, s, b FROM "
                 "unnest($2::bigint[], $3::text[]) AS t(s, b) "
                 "ON CONFLICT (node_id, seq) DO UPDATE SET body = EXCLUDED.body",
    /* before events are pruned: the highest seq committed survives them (Q_L_META) */
    [Q_META] = "INSERT INTO voxd_node_meta (node_id, last_seq) SELECT $1, max(seq) FROM "
               "voxd_events WHERE node_id = $1 HAVING max(seq) IS NOT NULL "
               "ON CONFLICT (node_id) DO UPDATE SET "
               "last_seq = GREATEST(voxd_node_meta.last_seq, EXCLUDED.last_seq)",
    [Q_REQ_PUT] =
        "INSERT INTO voxd_requests (node_id, request_id, fingerprint, status, method, "
        "body, expires_ms) SELECT $1, i, f, st, m, b, e FROM unnest($2::text[], "
        "$3::bytea[], $4::int[], $5::text[], $6::text[], $7::bigint[]) AS "
        "t(i, f, st, m, b, e) ON CONFLICT (node_id, request_id) DO UPDATE SET "
        "fingerprint = EXCLUDED.fingerprint, status = EXCLUDED.status, "
        "method = EXCLUDED.method, body = EXCLUDED.body, expires_ms = EXCLUDED.expires_ms",
    [Q_REQ_DEL] = "DELETE FROM voxd_requests WHERE node_id = $1 AND request_id = ANY($2::text[])",
    [Q_ACK] = "INSERT INTO voxd_consumers (node_id, name, acked) SELECT $1, n, a FROM "
              "unnest($2::text[], $3::bigint[]) AS t(n, a) ON CONFLICT (node_id, name) DO UPDATE "
              "SET acked = GREATEST(voxd_consumers.acked, EXCLUDED.acked)",
    [Q_PRUNE] = "DELETE FROM voxd_events WHERE node_id = $1 AND seq <= "
                "(SELECT min(acked) FROM voxd_consumers WHERE node_id = $1)",
    [Q_HK_NONCES] = "DELETE FROM voxd_nonces WHERE node_id = $1 AND exp_ms <= $2::bigint",
    [Q_HK_REQ] = "DELETE FROM voxd_requests WHERE node_id = $1 AND expires_ms <= $2::bigint",
    [Q_L_CONN] = "SELECT key, data FROM voxd_voice_states WHERE node_id = $1",
    [Q_L_CALL] = "SELECT key, data FROM voxd_calls WHERE node_id = $1",
    [Q_L_NONCE] = "SELECT key, data FROM voxd_nonces WHERE node_id = $1",
    [Q_L_SERVER] = "SELECT key, data FROM voxd_server_state WHERE node_id = $1",
    [Q_L_REQ] = "SELECT request_id, encode(fingerprint, 'hex'), status, method, body, expires_ms "
                "FROM voxd_requests WHERE node_id = $1",
    [Q_L_CONSUMER] = "SELECT name, acked FROM voxd_consumers WHERE node_id = $1",
    [Q_L_EVENTS] = "SELECT seq, body FROM voxd_events WHERE node_id = $1 ORDER BY seq",
    [Q_L_META] = "SELECT GREATEST((SELECT last_seq FROM voxd_node_meta WHERE node_id = $1), "
                 "(SELECT max(seq) FROM voxd_events WHERE node_id = $1))",
};

/* ---- jobs -------------------------------------------------------------------------------------
 */

enum job_type { J_PREPARE, J_COMMIT, J_LOAD, J_HOUSEKEEP, J_ROLLBACK };

typedef struct waiter {
    void (*done)(void *ud, int err);
    void *ud;
} waiter;

typedef struct job {
    enum job_type type;
    struct job *next;
    /* J_COMMIT */
    store_batch *batch;
    waiter *w;
    size_t nw, capw;
    size_t rows;
    /* J_LOAD */
    void (*row)(void *ud, int kind, const char *key, json_t *row);
    void (*ldone)(void *ud, int err, uint64_t last_seq);
    void *ud;
    uint64_t last_seq;
    /* J_HOUSEKEEP */
    int64_t now_ms;
    /* progress */
    int items[32]; /* what each query sent is (Q_*) */
    int nitems, got;
    int err;
    bool sent, committed;
    int64_t t0;
} job;

typedef struct jqueue {
    job *head, *tail;
} jqueue;

static void jq_push(jqueue *q, job *j)
{
    j->next = NULL;
    if (q->tail)
        q->tail->next = j;
    else
        q->head = j;
    q->tail = j;
}

static job *jq_pop(jqueue *q)
{
    job *j = q->head;
    if (j) {
        q->head = j->next;
        if (!q->head) q->tail = NULL;
        j->next = NULL;
    }
    return j;
}

/* ---- the store --------------------------------------------------------------------------------
 */

enum cstate { C_DOWN, C_CONNECTING, C_SETUP, C_UP, C_CLOSED };

typedef struct pollh {
    uv_poll_t h;
    struct pconn *c;
} pollh;

typedef struct pconn {
    struct store *s;
    int idx;
    enum cstate state;
    PGconn *pg;
    pollh *poll;
    int events;
    uv_timer_t timer;
    job *job, *jtail; /* jobs sent, oldest (the one whose results are read) first */
    int njobs;
    int attempts;
    bool prepared; /* UP and its statements prepared: usable */
    bool was_up, timed_out;
    /* SETUP */
    int step;       /* 0: schema table; 1: check migration mi; 2: apply it; 3: skip it */
    size_t mi;      /* next migration to look at */
    bool *applied;  /* per embedded migration */
    PGresult *last; /* last tuples result of the current setup query */
    int setup_err;
} pconn;

struct store {
    uv_loop_t *loop;
    char *conninfo, *node_id;
    int pool;
    int64_t timeout_ms, backoff_min, backoff_max;
    pconn *conns;
    jqueue wq, rq;
    int writers;  /* writer jobs sent and not completed, all on wconn */
    pconn *wconn; /* the connection the writers in flight were sent on */
    int depth;    /* writers in flight at most (pipelined on wconn) */
    bool started, closing, ready_called, up;
    bool kicking, kick_again;
    void (*ready)(void *ud, int err);
    void *ready_ud;
    void (*closed)(void *ud);
    void *closed_ud;
    int handles;
    uint64_t rng;
    store_stats st;
};

static void conn_fail(pconn *c, int err);
static void conn_connect(pconn *c);
static void conn_poll_cb(uv_poll_t *h, int status, int events);
static void kick(store *s);

static const char *qname(int q)
{
    static char names[Q__N][8];
    if (!names[q][0]) snprintf(names[q], sizeof names[q], "vx%d", q);
    return names[q];
}

/* ---- handles ----------------------------------------------------------------------------------
 */

static void store_free_all(store *s);

static void job_finish(store *s, job *j, int err);

static bool is_writer(const job *j)
{
    return j->type == J_COMMIT || j->type == J_HOUSEKEEP;
}

/* Takes the oldest job sent on c off it (NULL if none). */
static job *conn_pop(pconn *c)
{
    job *j = c->job;
    if (!j) return NULL;
    c->job = j->next;
    if (!c->job) c->jtail = NULL;
    j->next = NULL;
    c->njobs--;
    if (is_writer(j) && --c->s->writers == 0) c->s->wconn = NULL;
    return j;
}

static void handle_closed(store *s)
{
    if (--s->handles > 0 || !s->closing) return;
    /* the last one: deliver what is pending, then go */
    job *j;
    for (int i = 0; i < s->pool; i++)
        while ((j = conn_pop(&s->conns[i])))
            job_finish(s, j, -ECANCELED);
    while ((j = jq_pop(&s->wq)))
        job_finish(s, j, -ECANCELED);
    while ((j = jq_pop(&s->rq)))
        job_finish(s, j, -ECANCELED);
    if (s->closed) s->closed(s->closed_ud);
    store_free_all(s);
}

static void poll_close_cb(uv_handle_t *h)
{
    pollh *p = (pollh *)h;
    store *s = p->c->s;
    free(p);
    handle_closed(s);
}

static void timer_close_cb(uv_handle_t *h)
{
    pconn *c = h->data;
    handle_closed(c->s);
}

static void unwatch(pconn *c)
{
    if (!c->poll) return;
    c->poll->h.data = NULL;
    uv_close((uv_handle_t *)&c->poll->h, poll_close_cb);
    c->poll = NULL;
    c->events = 0;
}

/* Watches the connection's current socket for `events`; `fresh` recreates the poll handle (while
 * connecting, PQconnectPoll may have replaced the socket, even by one with the same number). */
static int watch(pconn *c, int events, bool fresh)
{
    if (fresh) unwatch(c);
    if (!c->poll) {
        int fd = PQsocket(c->pg);
        if (fd < 0) return -EBADF;
        pollh *p = xcalloc(1, sizeof *p);
        p->c = c;
        int r = uv_poll_init(c->s->loop, &p->h, fd);
        if (r < 0) {
            free(p);
            return r;
        }
        p->h.data = c;
        c->s->handles++;
        c->poll = p;
        c->events = 0;
    }
    if (events == c->events) return 0;
    c->events = events;
    return uv_poll_start(&c->poll->h, events, conn_poll_cb);
}

static void arm(pconn *c, int64_t ms, uv_timer_cb cb)
{
    uv_timer_start(&c->timer, cb, (uint64_t)(ms < 0 ? 0 : ms), 0);
}

/* ---- job completion ------------------------------------------------------------------------- */

static void job_free(job *j)
{
    if (!j) return;
    store_batch_free(j->batch);
    free(j->w);
    free(j);
}

/* Completes a job with err (0 = success) and frees it. */
static void job_finish(store *s, job *j, int err)
{
    switch (j->type) {
    case J_COMMIT:
        if (err == 0) {
            s->st.commits++;
            s->st.rows_written += j->rows;
            s->st.last_commit_seconds = (double)(time_mono_ns() - j->t0) / 1e9;
        } else {
            s->st.commit_errors += j->nw;
        }
        for (size_t i = 0; i < j->nw; i++) {
            s->st.queue_depth--;
            if (j->w[i].done) j->w[i].done(j->w[i].ud, err);
        }
        break;
    case J_LOAD:
        if (j->ldone) j->ldone(j->ud, err, err ? 0 : j->last_seq);
        break;
    default:
        break;
    }
    job_free(j);
}

/* Everything queued fails with err, in order (writers first: they were submitted as commits). */
static void fail_queued(store *s, int err)
{
    job *j;
    while ((j = jq_pop(&s->wq)))
        job_finish(s, j, err);
    while ((j = jq_pop(&s->rq)))
        job_finish(s, j, err);
}

/* ---- connection failure and backoff -----------------------------------------------------------
 */

static void update_up(store *s)
{
    bool up = false;
    for (int i = 0; i < s->pool; i++)
        up |= s->conns[i].prepared;
    s->up = up;
    s->st.up = up;
}

static void backoff_cb(uv_timer_t *t)
{
    pconn *c = t->data;
    if (c->state == C_DOWN && !c->s->closing) conn_connect(c);
}

static int64_t backoff_ms(pconn *c)
{
    store *s = c->s;
    int64_t d = s->backoff_min;
    for (int i = 0; i < c->attempts && d < s->backoff_max; i++)
        d *= 2;
    if (d > s->backoff_max) d = s->backoff_max;
    /* jitter: 50..100 % of the delay, so nodes that lost one database do not return in step */
    s->rng ^= s->rng << 13;
    s->rng ^= s->rng >> 7;
    s->rng ^= s->rng << 17;
    return d / 2 + (int64_t)(s->rng % (uint64_t)(d / 2 + 1));
}

static void conn_fail(pconn *c, int err)
{
    store *s = c->s;
    if (c->state == C_DOWN || c->state == C_CLOSED) return;
    uv_timer_stop(&c->timer);
    unwatch(c);
    if (c->pg) PQfinish(c->pg);
    c->pg = NULL;
    PQclear(c->last);
    c->last = NULL;
    bool was_usable = c->prepared;
    c->prepared = false;
    c->state = C_DOWN;
    update_up(s);
    job *j;
    while ((j = conn_pop(c))) {
        /* the transaction was refused (-EIO) or never sent (-EAGAIN): it did not commit; otherwise
         * it may have: say so (in order: with pipelined writers, every one sent is unknown) */
        int e = j->err ? j->err : !j->sent ? -EAGAIN : c->timed_out ? -ETIMEDOUT : -ECONNRESET;
        job_finish(s, j, e);
    }
    c->timed_out = false;
    if (was_usable) {
        LOGC(LOG_WARN, CTX, "connection %d lost (%s); reconnecting", c->idx, strerror(-err));
        c->attempts = 0;
    }
    if (!s->up) fail_queued(s, -EAGAIN);
    if (!was_usable && !s->ready_called && s->ready) s->ready(s->ready_ud, err);
    if (s->closing || c->state != C_DOWN) return;
    int64_t d = backoff_ms(c);
    c->attempts++;
    arm(c, d, backoff_cb);
    kick(s); /* another connection may take what this one had queued */
}

static void deadline_cb(uv_timer_t *t)
{
    pconn *c = t->data;
    LOGC(LOG_WARN, CTX, "connection %d: %s exceeded its deadline (%" PRId64 " ms); closing it",
         c->idx, c->state == C_UP ? "a request" : "connecting", c->s->timeout_ms);
    c->timed_out = true;
    conn_fail(c, -ETIMEDOUT);
}

/* Logs a PostgreSQL error once with its SQLSTATE. */
static void log_pg_error(pconn *c, const char *what, const PGresult *r)
{
    const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    const char *msg = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    if (!msg) msg = c->pg ? PQerrorMessage(c->pg) : "connection lost";
    LOGC(LOG_ERROR, CTX, "connection %d: %s failed: SQLSTATE %s: %s", c->idx, what,
         state ? state : "-----", msg);
}

/* ---- connecting -------------------------------------------------------------------------------
 */

static void setup_send(pconn *c);

static void connect_step(pconn *c)
{
    PostgresPollingStatusType st = PQconnectPoll(c->pg);
    int r = 0;
    switch (st) {
    case PGRES_POLLING_READING:
        r = watch(c, UV_READABLE, true);
        break;
    case PGRES_POLLING_WRITING:
        r = watch(c, UV_WRITABLE, true);
        break;
    case PGRES_POLLING_OK:
        if (PQsetnonblocking(c->pg, 1) != 0) {
            r = -EIO;
            break;
        }
        c->state = C_SETUP;
        c->step = 0;
        c->mi = 0;
        setup_send(c);
        return;
    default:
        LOGC(c->s->ready_called ? LOG_DEBUG : LOG_WARN, CTX, "connection %d: connect failed: %s",
             c->idx, PQerrorMessage(c->pg));
        conn_fail(c, -ECONNREFUSED);
        return;
    }
    if (r < 0) conn_fail(c, r);
}

static void notice_cb(void *arg, const char *msg)
{
    LOGC(LOG_DEBUG, CTX, "connection %d: %.*s", ((pconn *)arg)->idx, (int)strcspn(msg, "\n"), msg);
}

static void conn_connect(pconn *c)
{
    store *s = c->s;
    const char *keys[] = {"application_name", "dbname", NULL};
    const char *vals[] = {"voxd", s->conninfo, NULL};
    c->pg = PQconnectStartParams(keys, vals, 1);
    c->state = C_CONNECTING;
    if (!c->pg || PQstatus(c->pg) == CONNECTION_BAD) {
        LOGC(LOG_WARN, CTX, "connection %d: cannot start connecting: %s", c->idx,
             c->pg ? PQerrorMessage(c->pg) : "out of memory");
        conn_fail(c, -ECONNREFUSED);
        return;
    }
    PQsetNoticeProcessor(c->pg, notice_cb, c);
    arm(c, s->timeout_ms, deadline_cb);
    /* libpq: start by waiting until the socket is writable, then call PQconnectPoll */
    int r = watch(c, UV_WRITABLE, true);
    if (r < 0) conn_fail(c, r);
}

/* ---- setup: migrations (simple protocol) ---------------------------------------------------- */

static void setup_query(pconn *c, const char *sql)
{
    arm(c, c->s->timeout_ms, deadline_cb);
    if (!PQsendQuery(c->pg, sql)) {
        LOGC(LOG_ERROR, CTX, "connection %d: send failed: %s", c->idx, PQerrorMessage(c->pg));
        conn_fail(c, -EIO);
        return;
    }
    int f = PQflush(c->pg);
    if (f < 0 || watch(c, UV_READABLE | (f ? UV_WRITABLE : 0), false) < 0) conn_fail(c, -EIO);
}

static void start_pipeline(pconn *c);

/* Sends the next setup query, or finishes the setup. */
static void setup_send(pconn *c)
{
    size_t n = store_migration_count();
    int version;
    const char *name, *sql;
    char *q;
    switch (c->step) {
    case 0:
        q = xasprintf("BEGIN; SELECT pg_advisory_xact_lock(%lld); "
                      "CREATE TABLE IF NOT EXISTS voxd_schema_migrations (version integer PRIMARY "
                      "KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now()); "
                      "COMMIT; SELECT version FROM voxd_schema_migrations ORDER BY version",
                      MIGRATION_LOCK);
        break;
    case 1:
        while (c->mi < n && c->applied[c->mi])
            c->mi++;
        if (c->mi == n) {
            start_pipeline(c);
            return;
        }
        store_migration(c->mi, &version, NULL, NULL);
        q = xasprintf("BEGIN; SELECT pg_advisory_xact_lock(%lld); "
                      "SELECT count(*) FROM voxd_schema_migrations WHERE version = %d",
                      MIGRATION_LOCK, version);
        break;
    case 2:
        store_migration(c->mi, &version, &name, &sql);
        LOGC(LOG_INFO, CTX, "applying migration %03d_%s", version, name);
        q = xasprintf("%s\n;INSERT INTO voxd_schema_migrations (version, name) VALUES (%d, '%s');"
                      " COMMIT",
                      sql, version, name);
        break;
    default:
        q = xstrdup("COMMIT");
        break; /* 3: applied meanwhile by another starter */
    }
    setup_query(c, q);
    free(q);
}

/* One setup query finished (all its results read): look at them, send the next. */
static void setup_done(pconn *c)
{
    PGresult *r = c->last;
    c->last = NULL;
    if (c->setup_err) {
        PQclear(r);
        c->setup_err = 0;
        conn_fail(c, -EPROTO);
        return;
    }
    size_t n = store_migration_count();
    switch (c->step) {
    case 0:
        memset(c->applied, 0, n * sizeof *c->applied);
        for (int i = 0; r && i < PQntuples(r); i++) {
            int v = atoi(PQgetvalue(r, i, 0));
            if (v >= 1 && (size_t)v <= n)
                c->applied[v - 1] = true;
            else
                LOGC(LOG_WARN, CTX, "the database has migration %d, unknown to this build", v);
        }
        c->step = 1;
        break;
    case 1:
        c->step = r && PQntuples(r) == 1 && atoi(PQgetvalue(r, 0, 0)) > 0 ? 3 : 2;
        break;
    default:
        c->applied[c->mi] = true;
        c->step = 1;
        break;
    }
    PQclear(r);
    setup_send(c);
}

static void setup_pump(pconn *c)
{
    while (c->state == C_SETUP && !PQisBusy(c->pg)) {
        PGresult *r = PQgetResult(c->pg);
        if (!r) {
            setup_done(c);
            continue;
        }
        ExecStatusType st = PQresultStatus(r);
        if (st == PGRES_FATAL_ERROR) {
            if (!c->setup_err) log_pg_error(c, "schema migration", r);
            c->setup_err = 1;
            PQclear(r);
        } else if (st == PGRES_TUPLES_OK) {
            PQclear(c->last);
            c->last = r;
        } else {
            PQclear(r);
        }
    }
}

/* ---- pipeline jobs ----------------------------------------------------------------------------
 */

/* Sends query q with n parameters; lens/fmts NULL = all text. */
static bool send_qf(pconn *c, job *j, int q, const char *const *vals, const int *lens,
                    const int *fmts, int n)
{
    int ok;
    if (q >= Q_BEGIN) {
        const char *sql = q == Q_BEGIN      ? "BEGIN"
                          : q == Q_BEGIN_RO ? "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"
                          : q == Q_COMMIT   ? "COMMIT"
                                            : "ROLLBACK";
        ok = PQsendQueryParams(c->pg, sql, 0, NULL, NULL, NULL, NULL, 0);
    } else {
        ok = PQsendQueryPrepared(c->pg, qname(q), n, vals, lens, fmts, 0);
    }
    if (!ok) {
        LOGC(LOG_ERROR, CTX, "connection %d: send failed: %s", c->idx, PQerrorMessage(c->pg));
        return false;
    }
    j->items[j->nitems++] = q;
    return true;
}

static bool send_q(pconn *c, job *j, int q, const char *const *vals, int n)
{
    return send_qf(c, j, q, vals, NULL, NULL, n);
}

/* Sends prepared q with $1 = the node id (text) and $2.. = the arrays (binary). */
static bool send_qa(pconn *c, job *j, int q, store_abuf *const *arr, int narr)
{
    const char *v[8] = {c->s->node_id};
    int len[8] = {0}, fmt[8] = {0};
    for (int i = 0; i < narr && i < 7; i++) {
        v[1 + i] = arr[i]->p;
        len[1 + i] = (int)arr[i]->n;
        fmt[1 + i] = 1;
    }
    return send_qf(c, j, q, v, len, fmt, 1 + narr);
}

/* The integer a row also keeps in its own column (voice state "version", nonce "exp"). */
static int64_t row_int(int kind, const json_t *row)
{
    const char *f = kind == STORE_CONN ? "version" : kind == STORE_NONCE ? "exp" : NULL;
    return f ? (int64_t)json_integer_value(json_object_get(row, f)) : 0;
}

static bool send_commit(pconn *c, job *j)
{
    store *s = c->s;
    store_batch *b = j->batch;
    store_abuf a[7] = {{0}};
    /* no BEGIN/COMMIT: the statements up to the job's sync are one implicit transaction, which
     * the server commits at the sync (rolls back on any error) before it answers the sync */
    bool ok = true;
    for (int k = 0; ok && k < STORE_NPUT; k++) {
        /* puts: keys, rows (and their integer column); deletes: keys */
        bool num = k == STORE_CONN || k == STORE_NONCE;
        store_arr_begin(&a[0], STORE_OID_TEXT);
        store_arr_begin(&a[1], STORE_OID_TEXT);
        store_arr_begin(&a[2], STORE_OID_INT8);
        store_arr_begin(&a[3], STORE_OID_TEXT);
        for (size_t i = 0; i < b->put[k].n; i++) {
            store_put *p = &b->put[k].v[i];
            if (p->row) {
                store_arr_str(&a[0], p->key);
                if (p->text)
                    store_arr_str(&a[1], p->text);
                else
                    store_arr_json(&a[1], p->row);
                if (num) store_arr_i64(&a[2], row_int(k, p->row));
            } else {
                store_arr_str(&a[3], p->key);
            }
        }
        for (int i = 0; i < 4; i++)
            store_arr_end(&a[i]);
        if (a[0].nelem)
            ok = send_qa(c, j, Q_PUT_CONN + k, (store_abuf *[]){&a[0], &a[1], &a[2]}, num ? 3 : 2);
        if (ok && a[3].nelem) ok = send_qa(c, j, Q_DEL_CONN + k, (store_abuf *[]){&a[3]}, 1);
    }
    if (ok && b->nreq) {
        static const uint32_t oids[7] = {STORE_OID_TEXT, STORE_OID_BYTEA, STORE_OID_INT4,
                                         STORE_OID_TEXT, STORE_OID_TEXT,  STORE_OID_INT8,
                                         STORE_OID_TEXT};
        for (int i = 0; i < 7; i++)
            store_arr_begin(&a[i], oids[i]);
        for (size_t i = 0; i < b->nreq; i++) {
            store_req *r = &b->req[i];
            if (!r->body) {
                store_arr_str(&a[6], r->id);
                continue;
            }
            store_arr_str(&a[0], r->id);
            store_arr_bytes(&a[1], r->fp, sizeof r->fp);
            store_arr_i32(&a[2], r->status);
            store_arr_str(&a[3], r->method);
            store_arr_str(&a[4], r->body);
            store_arr_i64(&a[5], r->expires_ms);
        }
        for (int i = 0; i < 7; i++)
            store_arr_end(&a[i]);
        if (a[0].nelem)
            ok = send_qa(c, j, Q_REQ_PUT,
                         (store_abuf *[]){&a[0], &a[1], &a[2], &a[3], &a[4], &a[5]}, 6);
        if (ok && a[6].nelem) ok = send_qa(c, j, Q_REQ_DEL, (store_abuf *[]){&a[6]}, 1);
    }
    if (ok && b->nev) {
        store_arr_begin(&a[0], STORE_OID_INT8);
        store_arr_begin(&a[1], STORE_OID_TEXT);
        for (size_t i = 0; i < b->nev; i++) {
            store_arr_i64(&a[0], (int64_t)b->ev[i].seq);
            store_arr_str(&a[1], b->ev[i].text);
        }
        store_arr_end(&a[0]);
        store_arr_end(&a[1]);
        ok = send_qa(c, j, Q_EVENTS, (store_abuf *[]){&a[0], &a[1]}, 2);
    }
    const char *v[1] = {s->node_id};
    if (ok && b->nack) {
        store_arr_begin(&a[0], STORE_OID_TEXT);
        store_arr_begin(&a[1], STORE_OID_INT8);
        for (size_t i = 0; i < b->nack; i++) {
            store_arr_str(&a[0], b->ack[i].name);
            store_arr_i64(&a[1], (int64_t)b->ack[i].acked);
        }
        store_arr_end(&a[0]);
        store_arr_end(&a[1]);
        ok = send_qa(c, j, Q_ACK, (store_abuf *[]){&a[0], &a[1]}, 2) &&
             send_q(c, j, Q_META, v, 1) && send_q(c, j, Q_PRUNE, v, 1);
    }
    for (int i = 0; i < 7; i++)
        store_abuf_free(&a[i]);
    return ok;
}

static bool send_load(pconn *c, job *j)
{
    const char *v[1] = {c->s->node_id};
    bool ok = send_q(c, j, Q_BEGIN_RO, NULL, 0);
    for (int q = Q_L_CONN; ok && q <= Q_L_META; q++)
        ok = send_q(c, j, q, v, 1);
    return ok && send_q(c, j, Q_COMMIT, NULL, 0);
}

static bool send_housekeep(pconn *c, job *j)
{
    char now[24];
    snprintf(now, sizeof now, "%" PRId64, j->now_ms);
    const char *v[2] = {c->s->node_id, now};
    return send_q(c, j, Q_BEGIN, NULL, 0) && send_q(c, j, Q_HK_NONCES, v, 2) &&
           send_q(c, j, Q_HK_REQ, v, 2) && send_q(c, j, Q_META, v, 1) &&
           send_q(c, j, Q_PRUNE, v, 1) && send_q(c, j, Q_COMMIT, NULL, 0);
}

static bool send_prepare(pconn *c, job *j)
{
    for (int q = 0; q < Q__N; q++) {
        if (!PQsendPrepare(c->pg, qname(q), stmt_sql[q], 0, NULL)) {
            LOGC(LOG_ERROR, CTX, "connection %d: prepare failed: %s", c->idx,
                 PQerrorMessage(c->pg));
            return false;
        }
        j->items[j->nitems++] = q;
    }
    return true;
}

/* Sends a job on an idle UP connection: its queries, one sync, flush what the socket takes. */
static void conn_send_job(pconn *c, job *j)
{
    j->next = NULL;
    if (c->jtail)
        c->jtail->next = j;
    else
        c->job = j;
    c->jtail = j;
    c->njobs++;
    if (is_writer(j)) {
        c->s->writers++;
        c->s->wconn = c;
    }
    j->t0 = time_mono_ns();
    bool ok;
    switch (j->type) {
    case J_PREPARE:
        ok = send_prepare(c, j);
        break;
    case J_COMMIT:
        ok = send_commit(c, j);
        break;
    case J_LOAD:
        ok = send_load(c, j);
        break;
    case J_HOUSEKEEP:
        ok = send_housekeep(c, j);
        break;
    default:
        ok = send_q(c, j, Q_ROLLBACK, NULL, 0);
        break;
    }
    if (ok && !PQpipelineSync(c->pg)) ok = false;
    if (!ok) {
        /* libpq refused to queue it: nothing reached the server for this job */
        conn_fail(c, -EIO);
        return;
    }
    j->sent = true;
    if (c->job == j) arm(c, c->s->timeout_ms, deadline_cb); /* else armed for an older one */
    int f = PQflush(c->pg);
    if (f < 0 || watch(c, UV_READABLE | (f ? UV_WRITABLE : 0), false) < 0)
        conn_fail(c, -ECONNRESET);
}

static void start_pipeline(pconn *c)
{
    if (!PQenterPipelineMode(c->pg)) {
        LOGC(LOG_ERROR, CTX, "connection %d: cannot enter pipeline mode: %s", c->idx,
             PQerrorMessage(c->pg));
        conn_fail(c, -EPROTO);
        return;
    }
    c->state = C_UP; /* not usable until its statements are prepared: c->job is set */
    job *j = xcalloc(1, sizeof *j);
    j->type = J_PREPARE;
    conn_send_job(c, j);
}

/* ---- results ----------------------------------------------------------------------------------
 */

static void deliver(store *s, job *j, int kind, const char *key, json_t *row)
{
    if (row && j->row && !s->closing) j->row(j->ud, kind, key, row);
    json_decref(row);
}

static void load_result(store *s, job *j, int q, const PGresult *r)
{
    int n = PQntuples(r);
    for (int i = 0; i < n && !s->closing; i++) {
        const char *key = PQgetvalue(r, i, 0);
        switch (q) {
        case Q_L_CONN:
        case Q_L_CALL:
        case Q_L_NONCE:
        case Q_L_SERVER: {
            json_error_t e;
            json_t *row = json_loads(PQgetvalue(r, i, 1), JSON_REJECT_DUPLICATES, &e);
            if (!row) LOGC(LOG_ERROR, CTX, "load: row '%.64s' does not parse: %s", key, e.text);
            deliver(s, j, STORE_CONN + (q - Q_L_CONN), key, row);
            break;
        }
        case Q_L_REQ: {
            json_t *row =
                json_pack("{s:s,s:i,s:s,s:I}", "fingerprint", PQgetvalue(r, i, 1), "status",
                          atoi(PQgetvalue(r, i, 2)), "body", PQgetvalue(r, i, 4), "expires",
                          (json_int_t)strtoll(PQgetvalue(r, i, 5), NULL, 10));
            if (row && !PQgetisnull(r, i, 3))
                json_object_set_new(row, "method", json_string(PQgetvalue(r, i, 3)));
            deliver(s, j, STORE_REQUEST, key, row);
            break;
        }
        case Q_L_CONSUMER:
            deliver(
                s, j, STORE_CONSUMER, key,
                json_pack("{s:I}", "acked", (json_int_t)strtoll(PQgetvalue(r, i, 1), NULL, 10)));
            break;
        case Q_L_EVENTS:
            deliver(s, j, STORE_EVENT, key, json_string(PQgetvalue(r, i, 1)));
            break;
        case Q_L_META:
            if (!PQgetisnull(r, i, 0)) j->last_seq = strtoull(PQgetvalue(r, i, 0), NULL, 10);
            break;
        }
    }
}

/* The job's sync arrived. */
static void job_done(pconn *c)
{
    store *s = c->s;
    job *j = conn_pop(c);
    uv_timer_stop(&c->timer);
    if (c->job) { /* the deadline now runs for the next job sent, from when it was sent */
        int64_t left = s->timeout_ms - (time_mono_ns() - c->job->t0) / 1000000;
        arm(c, left, deadline_cb);
    }
    if (j->type == J_PREPARE) {
        int err = j->err;
        job_free(j);
        if (err) {
            conn_fail(c, -EPROTO);
            return;
        }
        if (c->was_up) s->st.reconnects++;
        c->was_up = true;
        c->prepared = true;
        c->attempts = 0;
        update_up(s);
        LOGC(LOG_INFO, CTX, "connection %d up", c->idx);
        if (!s->ready_called) {
            s->ready_called = true;
            if (s->ready) s->ready(s->ready_ud, 0);
        }
        kick(s);
        return;
    }
    /* an error may have left the transaction open (aborted): roll it back. The jobs already sent
     * behind it fail on the aborted transaction (so none of them commits either) and the
     * ROLLBACK follows them; a ROLLBACK without a transaction is only a warning.
     * (PQtransactionStatus cannot tell: with jobs pipelined behind it says ACTIVE.) */
    if (j->err && j->type != J_ROLLBACK) {
        job *rb = xcalloc(1, sizeof *rb);
        rb->type = J_ROLLBACK;
        conn_send_job(c, rb);
    }
    int err = j->err;
    if (j->type == J_COMMIT && !err && !j->committed) err = -EIO;
    job_finish(s, j, err);
    kick(s);
}

static void pipeline_pump(pconn *c)
{
    store *s = c->s;
    while (c->state == C_UP && c->job && !s->closing && !PQisBusy(c->pg)) {
        job *j = c->job;
        PGresult *r = PQgetResult(c->pg);
        if (!r) continue; /* end of one query's results */
        ExecStatusType st = PQresultStatus(r);
        if (st == PGRES_PIPELINE_SYNC) {
            PQclear(r);
            if (j->type == J_COMMIT) j->committed = !j->err; /* its implicit transaction */
            job_done(c);
            continue;
        }
        int q = j->got < j->nitems ? j->items[j->got] : -1;
        j->got++;
        if (st == PGRES_FATAL_ERROR) {
            if (!j->err) {
                const char *what = j->type == J_COMMIT      ? "commit"
                                   : j->type == J_LOAD      ? "load"
                                   : j->type == J_HOUSEKEEP ? "housekeeping"
                                   : j->type == J_PREPARE   ? "prepare"
                                                            : "rollback";
                log_pg_error(c, what, r);
            }
            j->err = -EIO;
        } else if (st == PGRES_TUPLES_OK && j->type == J_LOAD) {
            load_result(s, j, q, r);
        } else if (st == PGRES_COMMAND_OK && q == Q_COMMIT) {
            j->committed = strcmp(PQcmdStatus(r), "COMMIT") == 0;
        }
        PQclear(r);
    }
}

static void conn_poll_cb(uv_poll_t *h, int status, int events)
{
    pconn *c = h->data;
    if (!c || c->s->closing) return;
    if (status < 0) {
        LOGC(LOG_WARN, CTX, "connection %d: poll: %s", c->idx, uv_strerror(status));
        conn_fail(c, -ECONNRESET);
        return;
    }
    if (c->state == C_CONNECTING) {
        connect_step(c);
        return;
    }
    if ((events & UV_READABLE) && !PQconsumeInput(c->pg)) {
        LOGC(LOG_WARN, CTX, "connection %d: %s", c->idx, PQerrorMessage(c->pg));
        conn_fail(c, -ECONNRESET);
        return;
    }
    if (c->state == C_SETUP)
        setup_pump(c);
    else if (c->state == C_UP)
        pipeline_pump(c);
    if (c->state != C_SETUP && c->state != C_UP) return;
    if (PQstatus(c->pg) == CONNECTION_BAD) {
        LOGC(LOG_WARN, CTX, "connection %d: %s", c->idx, PQerrorMessage(c->pg));
        conn_fail(c, -ECONNRESET);
        return;
    }
    int f = PQflush(c->pg);
    if (f < 0 || watch(c, UV_READABLE | (f ? UV_WRITABLE : 0), false) < 0)
        conn_fail(c, -ECONNRESET);
}

/* ---- dispatch -----------------------------------------------------------------------------------
 */

static job *pop_writer(store *s)
{
    job *j = jq_pop(&s->wq);
    if (j->type != J_COMMIT) return j;
    while (s->wq.head && s->wq.head->type == J_COMMIT && j->rows < MERGE_MAX_ROWS) {
        job *n = jq_pop(&s->wq);
        store_batch_merge(j->batch, n->batch);
        n->batch = NULL;
        j->rows += n->rows;
        for (size_t i = 0; i < n->nw; i++) {
            if (j->nw == j->capw) j->w = xrealloc(j->w, sizeof *j->w * (j->capw *= 2));
            j->w[j->nw++] = n->w[i];
        }
        job_free(n);
    }
    return j;
}

static void kick(store *s)
{
    if (s->kicking) {
        s->kick_again = true;
        return;
    }
    s->kicking = true;
    do {
        s->kick_again = false;
        for (int i = 0; i < s->pool && !s->closing; i++) {
            pconn *c = &s->conns[i];
            if (!c->prepared) continue;
            job *j = NULL;
            /* writers: on an idle connection when none is in flight, else pipelined behind the
             * ones in flight on their connection (one connection: they commit in order) */
            bool wok = s->writers ? s->wconn == c && s->writers < s->depth : !c->job;
            if (wok && s->wq.head) {
                j = pop_writer(s);
            } else if (!c->job && s->rq.head) {
                j = jq_pop(&s->rq);
            }
            if (!j) continue;
            conn_send_job(c, j);
            s->kick_again = true; /* look at every connection again */
        }
    } while (s->kick_again && !s->closing);
    s->kicking = false;
}

/* ---- API ------------------------------------------------------------------------------------ */

/* Whether every host in conninfo is a socket directory or a numeric address (no DNS). */
static int check_conninfo(const char *conninfo)
{
    char *err = NULL;
    PQconninfoOption *opts = PQconninfoParse(conninfo, &err);
    if (!opts) {
        LOGC(LOG_ERROR, CTX, "conninfo does not parse: %s", err ? err : "out of memory");
        PQfreemem(err);
        return -EINVAL;
    }
    const char *host = NULL, *hostaddr = NULL;
    for (PQconninfoOption *o = opts; o->keyword; o++) {
        if (!strcmp(o->keyword, "host")) host = o->val;
        if (!strcmp(o->keyword, "hostaddr")) hostaddr = o->val;
    }
    int r = 0;
    if (host && *host && !(hostaddr && *hostaddr)) {
        char *list = xstrdup(host), *save = NULL;
        for (char *h = strtok_r(list, ",", &save); h && !r; h = strtok_r(NULL, ",", &save)) {
            unsigned char buf[16];
            if (h[0] != '/' && h[0] != '@' && inet_pton(AF_INET, h, buf) != 1 &&
                inet_pton(AF_INET6, h, buf) != 1) {
                LOGC(LOG_ERROR, CTX,
                     "conninfo: host '%s' would need a DNS lookup; use hostaddr= "
                     "or a socket directory",
                     h);
                r = -EINVAL;
            }
        }
        free(list);
    }
    PQconninfoFree(opts);
    return r;
}

store *store_new(uv_loop_t *loop, const store_opts *o)
{
    if (!loop || !o || !o->node_id || !*o->node_id || !o->conninfo) {
        LOGC(LOG_ERROR, CTX, "store_new: a loop, a conninfo and a node_id are required");
        return NULL;
    }
    if (check_conninfo(o->conninfo) < 0) return NULL;
    store *s = xcalloc(1, sizeof *s);
    s->loop = loop;
    s->conninfo = xstrdup(o->conninfo);
    s->node_id = xstrdup(o->node_id);
    s->pool = o->pool_size > 0 ? o->pool_size : 2;
    s->depth = o->pipeline_depth > 0 ? o->pipeline_depth : 1;
    s->timeout_ms = o->request_timeout_ms > 0 ? o->request_timeout_ms : 2000;
    s->backoff_min = o->reconnect_min_ms > 0 ? o->reconnect_min_ms : 100;
    s->backoff_max = o->reconnect_max_ms > 0 ? o->reconnect_max_ms : 5000;
    if (s->backoff_max < s->backoff_min) s->backoff_max = s->backoff_min;
    s->rng = (uint64_t)time_mono_ns() | 1;
    s->conns = xcalloc((size_t)s->pool, sizeof *s->conns);
    for (int i = 0; i < s->pool; i++) {
        pconn *c = &s->conns[i];
        c->s = s;
        c->idx = i;
        c->applied = xcalloc(store_migration_count() + 1, sizeof *c->applied);
        uv_timer_init(loop, &c->timer);
        c->timer.data = c;
        s->handles++;
    }
    return s;
}

static void store_free_all(store *s)
{
    for (int i = 0; i < s->pool; i++)
        free(s->conns[i].applied);
    free(s->conns);
    free(s->conninfo);
    free(s->node_id);
    free(s);
}

int store_start(store *s, void (*ready)(void *ud, int err), void *ud)
{
    if (s->closing) return -ESHUTDOWN;
    if (s->started) return -EALREADY;
    s->started = true;
    s->ready = ready;
    s->ready_ud = ud;
    /* connect from the loop, so that no callback runs inside this call */
    for (int i = 0; i < s->pool; i++)
        arm(&s->conns[i], 0, backoff_cb);
    return 0;
}

bool store_is_up(const store *s)
{
    return s && s->up && !s->closing;
}

int store_load(store *s, void (*row)(void *ud, int kind, const char *key, json_t *row),
               void (*done)(void *ud, int err, uint64_t last_seq), void *ud)
{
    if (!store_is_up(s)) return -EAGAIN;
    job *j = xcalloc(1, sizeof *j);
    j->type = J_LOAD;
    j->row = row;
    j->ldone = done;
    j->ud = ud;
    jq_push(&s->rq, j);
    kick(s);
    return 0;
}

int store_commit(store *s, store_batch *b, void (*done)(void *ud, int err), void *ud)
{
    if (!store_is_up(s)) {
        store_batch_free(b);
        return -EAGAIN;
    }
    job *j = xcalloc(1, sizeof *j);
    j->type = J_COMMIT;
    j->batch = b;
    j->rows = store_batch_size(b);
    j->capw = 1;
    j->w = xmalloc(sizeof *j->w);
    j->w[j->nw++] = (waiter){done, ud};
    s->st.queue_depth++;
    jq_push(&s->wq, j);
    kick(s);
    return 0;
}

int store_housekeep(store *s, int64_t now_ms)
{
    if (!store_is_up(s)) return -EAGAIN;
    for (job *q = s->wq.head; q; q = q->next)
        if (q->type == J_HOUSEKEEP) {
            q->now_ms = now_ms; /* one queued is enough */
            return 0;
        }
    job *j = xcalloc(1, sizeof *j);
    j->type = J_HOUSEKEEP;
    j->now_ms = now_ms;
    jq_push(&s->wq, j);
    kick(s);
    return 0;
}

void store_get_stats(const store *s, store_stats *out)
{
    memset(out, 0, sizeof *out);
    if (!s) return;
    *out = s->st;
    out->up = store_is_up(s);
}

void store_close(store *s, void (*closed)(void *ud), void *ud)
{
    if (!s || s->closing) return;
    s->closing = true;
    s->up = s->st.up = false;
    s->closed = closed;
    s->closed_ud = ud;
    for (int i = 0; i < s->pool; i++) {
        pconn *c = &s->conns[i];
        unwatch(c);
        if (c->pg) PQfinish(c->pg);
        c->pg = NULL;
        PQclear(c->last);
        c->last = NULL;
        c->state = C_CLOSED;
        uv_timer_stop(&c->timer);
        uv_close((uv_handle_t *)&c->timer, timer_close_cb);
    }
}
