/*
 * tests/unit/store/test_store.c — store/ against a real PostgreSQL on a real libuv loop.
 *
 * The cluster: VOXD_TEST_PG (a conninfo) if set — the crash test then also needs VOXD_TEST_PG_DIR,
 * the scripts/pg.sh DIR of that cluster — else a throwaway one started here with scripts/pg.sh
 * and stopped at the end by a guardian child process, also when this process fails or is killed.
 * Each test gets its own database (CREATE DATABASE through blocking libpq: allowed in tests).
 * Runs from the repository root (tests/run-all.sh does). Every test ends with uv_loop_close() == 0.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "lib/log.h"
#include "lib/util.h"
#include "store/store.h"
#include "tests/unit/test.h"

static char pg_conninfo[512], pg_dir[256];
static int guard_fd = -1;
static pid_t guard_pid;

/* ---- cluster ----------------------------------------------------------------------------------
 */

/* scripts/pg.sh VERB DIR; its exit status */
static int pg_sh(const char *verb)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "scripts/pg.sh %s %s >/dev/null", verb, pg_dir);
    int r = system(cmd);
    return WIFEXITED(r) ? WEXITSTATUS(r) : -1;
}

static int cluster_up(void)
{
    const char *env = getenv("VOXD_TEST_PG");
    if (env && *env) {
        snprintf(pg_conninfo, sizeof pg_conninfo, "%s", env);
        const char *d = getenv("VOXD_TEST_PG_DIR");
        if (d) snprintf(pg_dir, sizeof pg_dir, "%s", d);
        return 0;
    }
    char tmpl[] = "/tmp/voxd-store-test.XXXXXX";
    if (!mkdtemp(tmpl)) return -1;
    snprintf(pg_dir, sizeof pg_dir, "%s", tmpl);
    /* the guardian: stops the cluster when this process goes, however it goes */
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) < 0) return -1; /* the server pg.sh starts must not hold it */
    pid_t pid = fork();
    if (pid == 0) {
        signal(SIGTERM, SIG_IGN);
        signal(SIGINT, SIG_IGN);
        close(fds[1]);
        char c;
        while (read(fds[0], &c, 1) > 0) {
        }
        execl("scripts/pg.sh", "pg.sh", "stop", pg_dir, (char *)NULL);
        _exit(1);
    }
    close(fds[0]); /* the write end stays open until we exit */
    guard_fd = fds[1];
    guard_pid = pid;
    char cmd[400];
    snprintf(cmd, sizeof cmd, "scripts/pg.sh start %s", pg_dir);
    FILE *f = popen(cmd, "r");
    if (!f || !fgets(pg_conninfo, sizeof pg_conninfo, f)) return -1;
    pg_conninfo[strcspn(pg_conninfo, "\n")] = 0;
    return pclose(f) == 0 ? 0 : -1;
}

static void quiet(void *arg, const char *msg) {}

static void exec_ok_quiet(PGconn *c)
{
    PQsetNoticeProcessor(c, quiet, NULL);
}

/* Blocking libpq, for the test's own checks. */
static PGconn *db(const char *dbname)
{
    char ci[700];
    snprintf(ci, sizeof ci, "%s dbname=%s", pg_conninfo, dbname);
    PGconn *c = PQconnectdb(ci);
    exec_ok_quiet(c);
    if (PQstatus(c) != CONNECTION_OK) {
        fprintf(stderr, "connect %s: %s", dbname, PQerrorMessage(c));
        PQfinish(c);
        return NULL;
    }
    return c;
}

static bool exec_ok(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    bool ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
    if (!ok) fprintf(stderr, "%s: %s", sql, PQerrorMessage(c));
    PQclear(r);
    return ok;
}

static long long scalar(const char *dbname, const char *sql)
{
    PGconn *c = db(dbname);
    if (!c) return -1;
    PGresult *r = PQexec(c, sql);
    long long v = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1
                      ? (PQgetisnull(r, 0, 0) ? -2 : atoll(PQgetvalue(r, 0, 0)))
                      : -1;
    if (v == -1) fprintf(stderr, "%s: %s", sql, PQerrorMessage(c));
    PQclear(r);
    PQfinish(c);
    return v;
}

/* A fresh, empty database for one test. */
static bool fresh_db(const char *name)
{
    PGconn *c = db("postgres");
    if (!c) return false;
    char q[200];
    snprintf(q, sizeof q, "DROP DATABASE IF EXISTS %s", name);
    bool ok = exec_ok(c, q);
    snprintf(q, sizeof q, "CREATE DATABASE %s", name);
    ok = ok && exec_ok(c, q);
    PQfinish(c);
    return ok;
}

/* ---- loop helpers ------------------------------------------------------------------------------
 */

typedef struct ctx {
    uv_loop_t loop;
    store *s;
    int ready_err, ready_calls;
    bool closed;
    /* load */
    bool loaded;
    int load_err;
    uint64_t last_seq;
    json_t *rows[STORE__NKINDS]; /* object key -> row, per kind */
    json_t *events;              /* array of texts in delivery order */
    /* commits */
    int ndone, done_err[64];
    int order[64];
} ctx;

static bool expired;
static void guard_cb(uv_timer_t *t)
{
    expired = true;
}

/* Runs the loop until *flag (or 30 s, a guard against hanging, not a measurement). */
static bool run_until(ctx *x, const volatile bool *flag)
{
    uv_timer_t guard;
    expired = false;
    uv_timer_init(&x->loop, &guard);
    uv_timer_start(&guard, guard_cb, 30000, 0);
    while (!*flag && !expired)
        uv_run(&x->loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&guard, NULL);
    uv_run(&x->loop, UV_RUN_NOWAIT);
    return *flag;
}

static bool ready_flag;
static void on_ready(void *ud, int err)
{
    ctx *x = ud;
    x->ready_calls++;
    x->ready_err = err;
    if (err == 0) ready_flag = true;
}

static void on_closed(void *ud)
{
    ((ctx *)ud)->closed = true;
}

static int open_depth; /* store_opts.pipeline_depth of the next open_store (0: default) */

static bool open_store(ctx *x, const char *dbname, const char *node, int pool, int64_t rmax)
{
    memset(x, 0, sizeof *x);
    uv_loop_init(&x->loop);
    char ci[700];
    snprintf(ci, sizeof ci, "%s dbname=%s", pg_conninfo, dbname);
    store_opts o = {.conninfo = ci,
                    .node_id = node,
                    .pool_size = pool,
                    .reconnect_min_ms = 20,
                    .reconnect_max_ms = rmax,
                    .pipeline_depth = open_depth};
    x->s = store_new(&x->loop, &o);
    if (!x->s) return false;
    ready_flag = false;
    if (store_start(x->s, on_ready, x) != 0) return false;
    return run_until(x, &ready_flag);
}

/* Closes the store, runs the loop dry; true if the loop closes cleanly. */
static bool close_store(ctx *x)
{
    store_close(x->s, on_closed, x);
    run_until(x, &x->closed);
    uv_run(&x->loop, UV_RUN_DEFAULT);
    for (int k = 0; k < STORE__NKINDS; k++)
        json_decref(x->rows[k]);
    json_decref(x->events);
    return x->closed && uv_loop_close(&x->loop) == 0;
}

static void on_row(void *ud, int kind, const char *key, json_t *row)
{
    ctx *x = ud;
    if (!x->rows[kind]) x->rows[kind] = json_object();
    json_object_set(x->rows[kind], key, row);
    if (kind == STORE_EVENT) {
        if (!x->events) x->events = json_array();
        json_array_append_new(x->events, json_pack("{s:s,s:O}", "key", key, "text", row));
    }
}

static void on_loaded(void *ud, int err, uint64_t last_seq)
{
    ctx *x = ud;
    x->load_err = err;
    x->last_seq = last_seq;
    x->loaded = true;
}

static bool load(ctx *x)
{
    for (int k = 0; k < STORE__NKINDS; k++) {
        json_decref(x->rows[k]);
        x->rows[k] = json_object();
    }
    json_decref(x->events);
    x->events = json_array();
    x->loaded = false;
    if (store_load(x->s, on_row, on_loaded, x) != 0) return false;
    return run_until(x, &x->loaded) && x->load_err == 0;
}

typedef struct done_ud {
    ctx *x;
    int i;
} done_ud;
static done_ud dud[64];

static void on_done(void *ud, int err)
{
    done_ud *d = ud;
    d->x->done_err[d->i] = err;
    d->x->order[d->x->ndone++] = d->i;
}

/* Commits b as number i and waits for it; returns its error. */
static int commit_wait(ctx *x, store_batch *b, int i)
{
    int before = x->ndone;
    dud[i] = (done_ud){x, i};
    int r = store_commit(x->s, b, on_done, &dud[i]);
    if (r < 0) return r;
    bool flag = false;
    while (x->ndone == before && !flag) {
        uv_run(&x->loop, UV_RUN_ONCE);
    }
    return x->done_err[i];
}

static const char *sget(json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

/* ---- tests -------------------------------------------------------------------------------------
 */

TEST(migrations_twice_is_noop)
{
    ctx x;
    CHECK(fresh_db("vt_twice"));
    CHECK(open_store(&x, "vt_twice", "n1", 2, 5000));
    CHECK_EQ_INT(x.ready_calls, 1);
    CHECK(close_store(&x));
    CHECK_EQ_INT(scalar("vt_twice", "SELECT count(*) FROM voxd_schema_migrations"),
                 store_migration_count());
    CHECK(open_store(&x, "vt_twice", "n1", 2, 5000));
    CHECK(close_store(&x));
    CHECK_EQ_INT(scalar("vt_twice", "SELECT count(*) FROM voxd_schema_migrations"),
                 store_migration_count());
    CHECK_EQ_INT(scalar("vt_twice", "SELECT max(version) FROM voxd_schema_migrations"),
                 store_migration_count());
}

TEST(older_level_is_upgraded)
{
    CHECK(fresh_db("vt_old"));
    PGconn *c = db("vt_old");
    CHECK(c);
    const char *sql;
    store_migration(0, NULL, NULL, &sql);
    bool ok = exec_ok(c, "CREATE TABLE voxd_schema_migrations (version integer PRIMARY KEY, name "
                         "text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())") &&
              exec_ok(c, sql) &&
              exec_ok(c, "INSERT INTO voxd_schema_migrations (version, name) VALUES (1, 'state')");
    PQfinish(c);
    CHECK(ok);
    CHECK_EQ_INT(scalar("vt_old", "SELECT count(*) FROM pg_tables WHERE tablename = 'voxd_events'"),
                 0);
    ctx x;
    CHECK(open_store(&x, "vt_old", "n1", 2, 5000));
    CHECK(close_store(&x));
    CHECK_EQ_INT(scalar("vt_old", "SELECT count(*) FROM voxd_schema_migrations"),
                 store_migration_count());
    CHECK_EQ_INT(scalar("vt_old",
                        "SELECT count(*) FROM pg_tables WHERE tablename IN "
                        "('voxd_events', 'voxd_requests', 'voxd_nodes', 'voxd_placement')"),
                 4);
}

/* A database at level 3 holds jsonb rows: migration 004 turns them into text that loads back as the
 * same JSON (unicode, quotes, nesting), keeps the columns beside it, and the store writes on top.
 */
TEST(jsonb_rows_survive_text_migration)
{
    CHECK(fresh_db("vt_jsonb"));
    PGconn *c = db("vt_jsonb");
    CHECK(c);
    bool ok = exec_ok(c, "CREATE TABLE voxd_schema_migrations (version integer PRIMARY KEY, name "
                         "text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())");
    for (size_t i = 0; ok && i < 3; i++) {
        int v;
        const char *name, *sql;
        store_migration(i, &v, &name, &sql);
        char ins[200];
        snprintf(ins, sizeof ins,
                 "INSERT INTO voxd_schema_migrations (version, name) VALUES (%d, '%s')", v, name);
        ok = exec_ok(c, sql) && exec_ok(c, ins);
    }
    ok =
        ok &&
        exec_ok(c,
                "INSERT INTO voxd_voice_states (node_id, key, version, data) VALUES ('n1', 'c1', "
                "7, '{\"version\": 7, \"nick\": \"K\u00e9vin \\\"q\\\" \\\\ \u2603\", "
                "\"flags\": {\"mute\": true, \"list\": [1, null]}}')") &&
        exec_ok(c, "INSERT INTO voxd_nonces (node_id, key, exp_ms, data) VALUES ('n1', 'x', 5000, "
                   "'{\"exp\": 5000, \"connection_id\": \"c1\"}')") &&
        exec_ok(
            c, "INSERT INTO voxd_calls (node_id, key, data) VALUES ('n1', '9', '{\"ring\": 1}')") &&
        exec_ok(c, "INSERT INTO voxd_server_state (node_id, key, data) VALUES ('n1', '1:2', "
                   "'{\"mute\": false, \"deaf\": true}')");
    PQfinish(c);
    CHECK(ok);
    ctx x;
    CHECK(open_store(&x, "vt_jsonb", "n1", 1, 5000));
    CHECK_EQ_INT(scalar("vt_jsonb", "SELECT count(*) FROM information_schema.columns WHERE "
                                    "column_name = 'data' AND data_type = 'text' AND table_name IN "
                                    "('voxd_voice_states', 'voxd_nonces', 'voxd_calls', "
                                    "'voxd_server_state')"),
                 4);
    CHECK(load(&x));
    json_t *c1 = json_object_get(x.rows[STORE_CONN], "c1");
    json_t *want = json_loads("{\"version\":7,\"nick\":\"K\u00e9vin \\\"q\\\" \\\\ \u2603\","
                              "\"flags\":{\"mute\":true,\"list\":[1,null]}}",
                              0, NULL);
    CHECK(want && c1 && json_equal(c1, want));
    json_decref(want);
    CHECK_EQ_INT(
        json_integer_value(json_object_get(json_object_get(x.rows[STORE_NONCE], "x"), "exp")),
        5000);
    CHECK_EQ_INT(
        json_integer_value(json_object_get(json_object_get(x.rows[STORE_CALL], "9"), "ring")), 1);
    CHECK(json_is_true(json_object_get(json_object_get(x.rows[STORE_SERVER], "1:2"), "deaf")));
    /* written over by the store: the version column follows the row */
    store_batch *b = store_batch_new();
    store_batch_put(b, STORE_CONN, "c1",
                    json_pack("{s:i,s:s}", "version", 8, "nick", "\u00e9\"\\"));
    CHECK_EQ_INT(commit_wait(&x, b, 0), 0);
    CHECK(load(&x));
    CHECK_EQ_STR(sget(json_object_get(x.rows[STORE_CONN], "c1"), "nick"), "\u00e9\"\\");
    CHECK_EQ_INT(scalar("vt_jsonb", "SELECT version FROM voxd_voice_states WHERE key = 'c1'"), 8);
    CHECK(close_store(&x));
}

TEST(commit_load_round_trip)
{
    ctx x;
    CHECK(fresh_db("vt_rt"));
    CHECK(open_store(&x, "vt_rt", "node-a", 2, 5000));
    unsigned char fp[32];
    for (int i = 0; i < 32; i++)
        fp[i] = (unsigned char)(i * 7);

    store_batch *b = store_batch_new();
    store_batch_put(b, STORE_CONN, "c1", json_pack("{s:i,s:s}", "version", 3, "channel_id", "77"));
    store_batch_put(b, STORE_CONN, "c2", json_pack("{s:i}", "version", 0));
    store_batch_put(b, STORE_CONN, "c3", json_pack("{s:i}", "version", 0));
    store_batch_put(b, STORE_CONN, "c3", NULL); /* last write wins: deleted */
    store_batch_put(b, STORE_CALL, "900", json_pack("{s:I}", "idle_deadline", (json_int_t)5000));
    store_batch_put(b, STORE_NONCE, "n1",
                    json_pack("{s:I,s:s}", "exp", (json_int_t)1000, "connection_id", "c1"));
    store_batch_put(b, STORE_NONCE, "n2",
                    json_pack("{s:I,s:s}", "exp", (json_int_t)9000, "connection_id", "c1"));
    store_batch_put(b, STORE_SERVER, "1:2", json_pack("{s:b,s:b}", "mute", 1, "deaf", 0));
    store_batch_put(b, STORE_SERVER, "1:3", json_pack("{s:b,s:b}", "mute", 0, "deaf", 1));
    store_batch_request(b, "req-1", fp, 200, "voice.update", "{\"ok\":\"a \\\"quoted\\\" body\"}",
                        1500);
    store_batch_put(b, STORE_REQUEST, "req-2",
                    json_pack("{s:s,s:i,s:s,s:s,s:I}", "fingerprint",
                              "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
                              "status", 404, "method", "voice.get", "body", "{}", "expires",
                              (json_int_t)9000));
    store_batch_event(b, 1, "{\"seq\":1,\"event\":\"A\"}");
    store_batch_event(b, 2, "{\"seq\":2,\"event\":\"B\",\"data\":\"back\\\\slash\"}");
    store_batch_event(b, 3, "{\"seq\":3,\"event\":\"C\"}");
    store_batch_ack(b, "gw", 1);
    CHECK_EQ_INT(store_batch_size(b), 3 + 1 + 2 + 2 + 2 + 3 + 1);
    CHECK_EQ_INT(commit_wait(&x, b, 0), 0);

    b = store_batch_new();
    store_batch_put(b, STORE_CONN, "c2", NULL);
    store_batch_put(b, STORE_CONN, "c1", json_pack("{s:i,s:s}", "version", 4, "channel_id", "78"));
    store_batch_put(b, STORE_SERVER, "1:3", NULL);
    store_batch_event(b, 4, "{\"seq\":4}");
    store_batch_event(b, 5, "{\"seq\":5}");
    CHECK_EQ_INT(commit_wait(&x, b, 1), 0);

    CHECK(load(&x));
    CHECK_EQ_INT(x.last_seq, 5);
    CHECK_EQ_INT(json_object_size(x.rows[STORE_CONN]), 1);
    json_t *c1 = json_object_get(x.rows[STORE_CONN], "c1");
    CHECK_EQ_INT(json_integer_value(json_object_get(c1, "version")), 4);
    CHECK_EQ_STR(sget(c1, "channel_id"), "78");
    CHECK_EQ_INT(json_object_size(x.rows[STORE_CALL]), 1);
    CHECK_EQ_INT(json_integer_value(
                     json_object_get(json_object_get(x.rows[STORE_CALL], "900"), "idle_deadline")),
                 5000);
    CHECK_EQ_INT(json_object_size(x.rows[STORE_NONCE]), 2);
    CHECK_EQ_INT(json_object_size(x.rows[STORE_SERVER]), 1);
    CHECK(json_is_true(json_object_get(json_object_get(x.rows[STORE_SERVER], "1:2"), "mute")));
    json_t *r1 = json_object_get(x.rows[STORE_REQUEST], "req-1");
    CHECK(r1);
    CHECK_EQ_STR(sget(r1, "fingerprint"),
                 "00070e151c232a31383f464d545b626970777e858c939aa1a8afb6bdc4cbd2d9");
    CHECK_EQ_STR(sget(r1, "method"), "voice.update");
    CHECK_EQ_STR(sget(r1, "body"), "{\"ok\":\"a \\\"quoted\\\" body\"}");
    CHECK_EQ_INT(json_integer_value(json_object_get(r1, "status")), 200);
    CHECK_EQ_INT(json_integer_value(json_object_get(r1, "expires")), 1500);
    CHECK_EQ_STR(sget(json_object_get(x.rows[STORE_REQUEST], "req-2"), "method"), "voice.get");
    CHECK_EQ_INT(
        json_integer_value(json_object_get(json_object_get(x.rows[STORE_CONSUMER], "gw"), "acked")),
        1);
    /* event 1 was acked by the only consumer: pruned; the rest in seq order */
    CHECK_EQ_INT(json_array_size(x.events), 4);
    for (size_t i = 0; i < 4; i++) {
        char k[8];
        snprintf(k, sizeof k, "%zu", i + 2);
        CHECK_EQ_STR(sget(json_array_get(x.events, i), "key"), k);
    }
    CHECK_EQ_STR(sget(json_array_get(x.events, 0), "text"),
                 "{\"seq\":2,\"event\":\"B\",\"data\":\"back\\\\slash\"}");
    /* the columns beside the JSON */
    CHECK_EQ_INT(scalar("vt_rt", "SELECT version FROM voxd_voice_states WHERE key = 'c1'"), 4);
    CHECK_EQ_INT(scalar("vt_rt", "SELECT exp_ms FROM voxd_nonces WHERE key = 'n1'"), 1000);
    /* the node's last_seq row is written only where events are pruned (the first batch's ack):
     * the highest seq then; the load takes the greater of it and the events (5 above) */
    CHECK_EQ_INT(scalar("vt_rt", "SELECT last_seq FROM voxd_node_meta WHERE node_id = 'node-a'"),
                 3);

    /* housekeeping at t=2000: nonce n1 and req-1 expired; acking 4 prunes 2..4 */
    b = store_batch_new();
    store_batch_ack(b, "gw", 4);
    CHECK_EQ_INT(commit_wait(&x, b, 2), 0);
    CHECK_EQ_INT(store_housekeep(x.s, 2000), 0);
    b = store_batch_new(); /* a writer after it: its completion means housekeeping ran */
    CHECK_EQ_INT(commit_wait(&x, b, 3), 0);
    CHECK(load(&x));
    CHECK_EQ_INT(json_object_size(x.rows[STORE_NONCE]), 1);
    CHECK(json_object_get(x.rows[STORE_NONCE], "n2"));
    CHECK_EQ_INT(json_object_size(x.rows[STORE_REQUEST]), 1);
    CHECK(json_object_get(x.rows[STORE_REQUEST], "req-2"));
    CHECK_EQ_INT(json_array_size(x.events), 1);
    CHECK_EQ_INT(x.last_seq, 5);
    /* every event acked and pruned: the highest seq survives them */
    b = store_batch_new();
    store_batch_ack(b, "gw", 5);
    CHECK_EQ_INT(commit_wait(&x, b, 4), 0);
    CHECK(load(&x));
    CHECK_EQ_INT(json_array_size(x.events), 0);
    CHECK_EQ_INT(x.last_seq, 5);

    /* another node in the same database sees none of it */
    CHECK(close_store(&x));
    CHECK(open_store(&x, "vt_rt", "node-b", 1, 5000));
    CHECK(load(&x));
    CHECK_EQ_INT(json_object_size(x.rows[STORE_CONN]), 0);
    CHECK_EQ_INT(json_array_size(x.events), 0);
    CHECK_EQ_INT(x.last_seq, 0);
    CHECK(close_store(&x));
}

TEST(big_batch)
{
    ctx x;
    CHECK(fresh_db("vt_big"));
    CHECK(open_store(&x, "vt_big", "n1", 2, 5000));
    store_batch *b = store_batch_new();
    char key[32];
    for (int i = 0; i < 12000; i++) {
        snprintf(key, sizeof key, "conn-%d", i);
        store_batch_put(b, STORE_CONN, key,
                        json_pack("{s:i,s:s,s:s,s:b}", "version", i, "connection_id", key,
                                  "session_id", "0123456789abcdef0123456789abcdef", "self_mute",
                                  1));
    }
    for (int i = 1; i <= 3000; i++)
        store_batch_event(b, (uint64_t)i, "{\"event\":\"VOICE_STATE_UPDATE\"}");
    CHECK_EQ_INT(store_batch_size(b), 15000);
    CHECK_EQ_INT(commit_wait(&x, b, 0), 0);
    store_stats st;
    store_get_stats(x.s, &st);
    CHECK_EQ_INT(st.rows_written, 15000);
    CHECK_EQ_INT(st.commits, 1);
    CHECK_EQ_INT(scalar("vt_big", "SELECT count(*) FROM voxd_voice_states"), 12000);
    CHECK_EQ_INT(scalar("vt_big", "SELECT sum(version) FROM voxd_voice_states"),
                 12000LL * 11999 / 2);
    CHECK(load(&x));
    CHECK_EQ_INT(json_object_size(x.rows[STORE_CONN]), 12000);
    CHECK_EQ_INT(json_array_size(x.events), 3000);
    CHECK_EQ_INT(x.last_seq, 3000);
    CHECK(close_store(&x));
}

TEST(commit_order_is_submission_order)
{
    ctx x;
    CHECK(fresh_db("vt_order"));
    CHECK(open_store(&x, "vt_order", "n1", 2, 5000));
    for (int i = 0; i < 40; i++) {
        store_batch *b = store_batch_new();
        store_batch_put(b, STORE_CALL, "same", json_pack("{s:i}", "n", i));
        char k[16];
        snprintf(k, sizeof k, "k%d", i);
        store_batch_put(b, STORE_CALL, k, json_pack("{s:i}", "n", i));
        store_batch_event(b, (uint64_t)i + 1, "{}");
        dud[i] = (done_ud){&x, i};
        CHECK_EQ_INT(store_commit(x.s, b, on_done, &dud[i]), 0);
    }
    store_stats st;
    store_get_stats(x.s, &st);
    CHECK_EQ_INT(st.queue_depth, 40);
    while (x.ndone < 40)
        uv_run(&x.loop, UV_RUN_ONCE);
    for (int i = 0; i < 40; i++) {
        CHECK_EQ_INT(x.order[i], i);
        CHECK_EQ_INT(x.done_err[i], 0);
    }
    store_get_stats(x.s, &st);
    CHECK_EQ_INT(st.queue_depth, 0);
    CHECK(st.commits >= 1 && st.commits <= 40);
    CHECK(load(&x));
    CHECK_EQ_INT(
        json_integer_value(json_object_get(json_object_get(x.rows[STORE_CALL], "same"), "n")), 39);
    CHECK_EQ_INT(json_object_size(x.rows[STORE_CALL]), 41);
    CHECK_EQ_INT(x.last_seq, 40);
    CHECK(close_store(&x));
}

/* Commits pipelined on one connection (depth 3) complete in submission order; one the server
 * refuses does not commit, the ones behind it are transactions of their own and do. */
TEST(pipelined_commits_keep_order)
{
    ctx x;
    CHECK(fresh_db("vt_pipe"));
    open_depth = 3;
    CHECK(open_store(&x, "vt_pipe", "n1", 2, 5000));
    open_depth = 0;
    for (int i = 0; i < 6; i++) {
        store_batch *b = store_batch_new();
        store_batch_put(b, STORE_CALL, "same", json_pack("{s:i}", "n", i));
        char k[16];
        snprintf(k, sizeof k, "k%d", i);
        store_batch_put(b, STORE_CALL, k, json_pack("{s:i}", "n", i));
        /* batch 1's event is not UTF-8: the server refuses that transaction */
        store_batch_event(b, (uint64_t)i + 1, i == 1 ? "{\"x\":\"\xff\"}" : "{}");
        dud[i] = (done_ud){&x, i};
        CHECK_EQ_INT(store_commit(x.s, b, on_done, &dud[i]), 0);
    }
    while (x.ndone < 6)
        uv_run(&x.loop, UV_RUN_ONCE);
    for (int i = 0; i < 6; i++) {
        CHECK_EQ_INT(x.order[i], i);
        CHECK_EQ_INT(x.done_err[i], i == 1 ? -EIO : 0);
    }
    CHECK(store_is_up(x.s));
    CHECK(load(&x));
    CHECK_EQ_INT(json_object_size(x.rows[STORE_CALL]), 6); /* same, k0, k2..k5 */
    CHECK(json_object_get(x.rows[STORE_CALL], "k0") && !json_object_get(x.rows[STORE_CALL], "k1"));
    CHECK_EQ_INT(
        json_integer_value(json_object_get(json_object_get(x.rows[STORE_CALL], "same"), "n")), 5);
    CHECK_EQ_INT(x.last_seq, 6);
    CHECK(close_store(&x));
}

static void noop_cb(uv_timer_t *t) {}

static bool is_down(ctx *x)
{
    return !store_is_up(x->s);
}

/* Runs the loop until pred(x) holds (bounded by the same 30 s guard). */
static bool await(ctx *x, bool (*pred)(ctx *))
{
    uv_timer_t guard, tick;
    expired = false;
    uv_timer_init(&x->loop, &guard);
    uv_timer_start(&guard, guard_cb, 30000, 0);
    uv_timer_init(&x->loop, &tick); /* wakes the loop so pred is looked at */
    uv_timer_start(&tick, noop_cb, 10, 10);
    while (!pred(x) && !expired)
        uv_run(&x->loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&guard, NULL);
    uv_close((uv_handle_t *)&tick, NULL);
    uv_run(&x->loop, UV_RUN_NOWAIT);
    return pred(x);
}

static bool is_up(ctx *x)
{
    return store_is_up(x->s);
}

static bool reconnected(ctx *x)
{
    store_stats st;
    store_get_stats(x->s, &st);
    return st.reconnects >= 1;
}

TEST(reconnects_after_server_restart)
{
    if (!pg_dir[0])
        FAIL_("VOXD_TEST_PG is set without VOXD_TEST_PG_DIR: cannot restart the server");
    ctx x;
    CHECK(fresh_db("vt_restart"));
    CHECK(open_store(&x, "vt_restart", "n1", 2, 200));
    store_batch *b = store_batch_new();
    store_batch_put(b, STORE_CONN, "before", json_pack("{s:i}", "version", 1));
    CHECK_EQ_INT(commit_wait(&x, b, 0), 0);

    CHECK_EQ_INT(pg_sh("crash"), 0);
    CHECK(await(&x, is_down));
    b = store_batch_new();
    store_batch_put(b, STORE_CONN, "while-down", json_pack("{s:i}", "version", 1));
    CHECK_EQ_INT(store_commit(x.s, b, on_done, &dud[1]), -EAGAIN);
    CHECK_EQ_INT(store_load(x.s, on_row, on_loaded, &x), -EAGAIN);
    CHECK_EQ_INT(store_housekeep(x.s, 0), -EAGAIN);

    CHECK_EQ_INT(pg_sh("start"), 0);
    CHECK(await(&x, is_up));
    b = store_batch_new();
    store_batch_put(b, STORE_CONN, "after", json_pack("{s:i}", "version", 2));
    CHECK_EQ_INT(commit_wait(&x, b, 2), 0);
    /* the store is up as soon as one connection is; the pool's other connection (which may never
     * have been up before the crash: ready() comes with the first) can still be reconnecting */
    CHECK(await(&x, reconnected));
    store_stats st;
    store_get_stats(x.s, &st);
    CHECK(st.reconnects >= 1);
    CHECK(st.up);
    CHECK_EQ_INT(x.ready_calls, 1);
    CHECK(load(&x));
    CHECK_EQ_INT(json_object_size(x.rows[STORE_CONN]), 2);
    CHECK(json_object_get(x.rows[STORE_CONN], "before") &&
          json_object_get(x.rows[STORE_CONN], "after"));
    CHECK(close_store(&x));
}

TEST(refuses_dns_conninfo)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    store_opts o = {.conninfo = "host=db.example.net dbname=x", .node_id = "n1"};
    CHECK(store_new(&loop, &o) == NULL);
    o.conninfo = "host=db.example.net hostaddr=127.0.0.1 dbname=x";
    store *s = store_new(&loop, &o);
    CHECK(s != NULL);
    store_close(s, NULL, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK_EQ_INT(uv_loop_close(&loop), 0);
}

int main(void)
{
    log_min_level = LOG_ERROR;
    if (cluster_up() != 0) {
        printf("not ok - %s:cluster: could not start a PostgreSQL cluster with scripts/pg.sh\n",
               __FILE__);
        return 1;
    }
    RUN(refuses_dns_conninfo);
    RUN(migrations_twice_is_noop);
    RUN(older_level_is_upgraded);
    RUN(jsonb_rows_survive_text_migration);
    RUN(commit_load_round_trip);
    RUN(big_batch);
    RUN(commit_order_is_submission_order);
    RUN(pipelined_commits_keep_order);
    RUN(reconnects_after_server_restart);
    if (guard_fd >= 0) { /* the guardian stops the cluster now; wait for it */
        close(guard_fd);
        waitpid(guard_pid, NULL, 0);
    }
    return test_summary();
}
