/*
 * store — the node's durable state in PostgreSQL, driven asynchronously on the libuv loop.
 *
 * libpq runs non-blocking on the caller's loop: connections are opened with PQconnectStartParams
 * and PQconnectPoll driven by a uv_poll on PQsocket(), queries are sent in pipeline mode with
 * statements prepared once per connection, results are read when the socket is readable. Nothing
 * here ever waits for the database: a request that outlives its deadline closes its connection.
 *
 * A small pool of connections (default 2) is kept open; a connection that dies is reopened with
 * exponential backoff. On every (re)connection the versioned schema migrations are applied
 * (idempotent, safe with concurrent starters). Writers (commits, housekeeping) are sent in
 * submission order on ONE connection, up to pipeline_depth of them back to back (each its own
 * transaction and sync), so the server runs them, and they commit and complete, in the order they
 * were submitted, and the next one is already there when the previous COMMIT returns; batches
 * queued behind a full pipeline are merged into one transaction (group commit). Reads
 * (store_load) run on any other idle connection.
 *
 * Everything is keyed by (node_id, key): several nodes share one database. Rows are opaque JSON
 * (stored as text, parsed again at load), except that a STORE_CONN row's integer "version", a
 * STORE_NONCE row's "exp" (ms) and a remembered reply's expiry are also kept in their own columns.
 *
 * Threads: every function is called from the loop's thread only. Callbacks run on the loop, never
 * from inside the API call that registered them. Errors are negative errno values; PostgreSQL
 * errors are logged once (with their SQLSTATE) where they are seen.
 */
#ifndef VOXD_STORE_H
#define VOXD_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <uv.h>

/* Kinds of rows. The first four are written with store_batch_put(); the others come back from
 * store_load() (STORE_REQUEST may also be written with store_batch_put(), see there). */
enum store_kind {
    STORE_CONN,     /* voice states: key = connection_id, row has an integer "version" */
    STORE_CALL,     /* calls: key = channel_id */
    STORE_NONCE,    /* grant nonces: key = nonce, row has "exp" (ms since the epoch) */
    STORE_SERVER,   /* server mute/deaf: key = "guild:user" */
    STORE_EVENT,    /* retained events: key = seq (decimal), row = JSON string of the event text */
    STORE_CONSUMER, /* event consumers: key = name, row = {"acked":N} */
    STORE_REQUEST,  /* remembered RPC replies: key = request_id, row = {"fingerprint":hex,
                       "status":N,"method":s,"body":s,"expires":ms} ("method" absent if unknown) */
    STORE__NKINDS
};

typedef struct store store;

typedef struct store_opts {
    const char *conninfo;       /* libpq connection string; hostaddr= or a Unix socket directory in
                                   host= (a host name would need DNS: refused) */
    const char *node_id;        /* required */
    int pool_size;              /* connections (0 = default 2) */
    int64_t request_timeout_ms; /* per-request deadline (0 = 2000); also bounds connecting */
    int64_t reconnect_min_ms;   /* backoff, doubled per failed attempt (0 = 100) */
    int64_t reconnect_max_ms;   /* (0 = 5000) */
    int pipeline_depth;         /* writers (commits, housekeeping) in flight at most, pipelined on
                                   one connection (0 = 1: one at a time) */
} store_opts;

/* Copies the options. Returns NULL (and logs why) when they are unusable: no node_id, a conninfo
 * that does not parse or names a host that would need a DNS lookup. */
store *store_new(uv_loop_t *loop, const store_opts *o);

/* Opens the pool. Each connection connects, applies the migrations, prepares its statements.
 * ready(ud, 0) is called once, when the first connection is usable; until then every failed
 * attempt calls ready(ud, -errno) (-ECONNREFUSED: could not connect; -EPROTO: the server refused
 * the migrations or statements; -ETIMEDOUT) and the store keeps retrying with backoff.
 * Returns 0, -EALREADY if started, -ESHUTDOWN after store_close(). */
int store_start(store *s, void (*ready)(void *ud, int err), void *ud);

/* True while at least one connection is usable. */
bool store_is_up(const store *s);

/* Loads this node's durable state in one consistent snapshot: calls row(ud, kind, key, row) for
 * every row (row is borrowed: valid during the call, json_incref it to keep it) — voice states,
 * calls, nonces, server state, remembered replies, consumers, then the retained events in seq
 * order — then done(ud, err, last_seq), last_seq being the highest event seq ever committed by this
 * node (0 if none). On error no more rows follow and done gets -EIO (query failed), -ECONNRESET
 * or -ETIMEDOUT (connection lost), -EAGAIN (the store went down before the load was sent).
 * Returns 0, or -EAGAIN if the store is down (nothing is called). */
int store_load(store *s, void (*row)(void *ud, int kind, const char *key, json_t *row),
               void (*done)(void *ud, int err, uint64_t last_seq), void *ud);

/* ---- batches ----------------------------------------------------------------------------------
 * A batch is what one store_commit() writes in one transaction. Within a batch the last write to a
 * key wins (a put after a delete is a put, a delete after a put is a delete). */
typedef struct store_batch store_batch;

store_batch *store_batch_new(void);
/* kind STORE_CONN/CALL/NONCE/SERVER; row stolen, NULL = delete. STORE_REQUEST accepts the core's
 * remembered-reply row ({"fingerprint":64 hex,"status":N,"method":s,"body":s,"expires":ms}; a row
 * that does not have that shape is logged and dropped). Other kinds are logged and dropped. */
void store_batch_put(store_batch *b, int kind, const char *key, json_t *row);
/* store_batch_put of a STORE_CONN/CALL/NONCE/SERVER row with its compact JSON text already made
 * by the caller (text stolen, written as is; row stolen, still read for its integer column). The
 * two must say the same. Other kinds, a NULL row or text: as store_batch_put (text freed). */
void store_batch_put_text(store_batch *b, int kind, const char *key, json_t *row, char *text);
/* An event with its complete text {"seq":N,...} (copied); raises the node's last_seq to seq. */
void store_batch_event(store_batch *b, uint64_t seq, const char *text);
/* A remembered RPC reply (strings copied; method may be NULL). NOTE: `method` is an addition to
 * the first sketch of this API: the core needs it to restore the reply (sig_core_restore). */
void store_batch_request(store_batch *b, const char *request_id, const unsigned char fp[32],
                         int status, const char *method, const char *body, int64_t expires_ms);
/* A consumer's ack (monotonic: a lower ack than the stored one changes nothing). The commit also
 * deletes this node's events with seq <= the lowest ack of its consumers. */
void store_batch_ack(store_batch *b, const char *consumer, uint64_t acked);
size_t store_batch_size(const store_batch *b); /* rows it will write (puts, deletes, events, ...) */
void store_batch_free(store_batch *b);

/* Commits the batch in ONE transaction sent in pipeline mode (one round trip): one multi-row
 * statement per kind for puts and one for deletes, the events, acks (then the node's last_seq and
 * the pruning), and a sync: no BEGIN/COMMIT, the statements up to the sync are one implicit
 * transaction that the server commits at the sync (or rolls back on any error). Always takes
 * ownership of the batch. done(ud, err) is called once, in submission order:
 *    0            the sync came back without an error: the batch is durable;
 *   -EIO          the server refused it (logged with SQLSTATE): it did NOT commit;
 *   -EAGAIN       the store went down before the batch was sent: it did NOT commit;
 *   -ECONNRESET   the connection died after the batch was sent, before the sync's result arrived;
 *   -ETIMEDOUT    the deadline fired after it was sent (the connection was closed):
 *                 for these two the OUTCOME IS UNKNOWN (it may or may not have committed; the
 *                 writes are idempotent, so committing the same state again is safe).
 * With pipeline_depth > 1 the commits sent behind a failed one are independent transactions and
 * may commit: a caller that retries a failed batch must not resend it alone once a later one may
 * have committed (durable.c waits for every commit in flight, then resends all of them merged, so
 * later writes win).
 * Returns 0, or -EAGAIN if the store is down (the batch is freed and done is never called). */
int store_commit(store *s, store_batch *b, void (*done)(void *ud, int err), void *ud);

/* Queues a housekeeping transaction (a writer, ordered with the commits): deletes this node's
 * nonces and remembered replies that expired at or before now_ms, and events acked by every
 * consumer. Cheap; call every few seconds. A housekeeping still queued is reused (with the new
 * now_ms). Returns 0, or -EAGAIN if down. */
int store_housekeep(store *s, int64_t now_ms);

typedef struct store_stats {
    uint64_t commits;           /* transactions committed (merged batches count once) */
    uint64_t commit_errors;     /* batches completed with an error */
    uint64_t rows_written;      /* store_batch_size() of committed batches */
    uint64_t reconnects;        /* connections re-established after being lost */
    uint64_t queue_depth;       /* batches submitted and not yet completed */
    double last_commit_seconds; /* send-to-COMMIT time of the last committed transaction */
    bool up;
} store_stats;
void store_get_stats(const store *s, store_stats *out);

/* Closes every connection and libuv handle; when the last handle is closed, everything still
 * pending gets -ECANCELED (in order; a batch that was already sent has an unknown outcome), then
 * closed(ud) (may be NULL) is called and the store is freed. NULL is accepted. Drain first (wait
 * for the last done) when the outcome of in-flight commits matters. */
void store_close(store *s, void (*closed)(void *ud), void *ud);

/* The embedded schema migrations (the source of truth is store/migrations/NNN_name.sql):
 * count, and the i-th one's version, name and SQL (borrowed, static). -ENOENT past the end. */
size_t store_migration_count(void);
int store_migration(size_t i, int *version, const char **name, const char **sql);

#endif
