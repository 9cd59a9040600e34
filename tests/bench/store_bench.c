/*
 * tests/bench/store_bench.c — commit throughput of store/ against a real PostgreSQL.
 *
 *   store_bench CONNINFO [ROWS_PER_BATCH [BATCHES]]
 *
 * Two runs over fresh node ids: "sequential" (each batch awaited before the next is submitted)
 * and "queued" (all batches submitted at once: the store merges them into group commits).
 * Prints rows/s; measures, never judges. Use a cluster with fsync on for durability figures
 * (PG_FSYNC=on scripts/pg.sh start DIR).
 */
#include <stdio.h>
#include <stdlib.h>

#include "lib/log.h"
#include "lib/util.h"
#include "store/store.h"

static int pending, failures;
static bool ready;

static void on_ready(void *ud, int err)
{
    if (!err) ready = true;
}

static void on_done(void *ud, int err)
{
    pending--;
    if (err) failures++;
}

static store_batch *make_batch(int rows, int b)
{
    store_batch *x = store_batch_new();
    char key[48];
    for (int i = 0; i < rows; i++) {
        snprintf(key, sizeof key, "conn-%d-%d", b, i);
        store_batch_put(x, STORE_CONN, key,
                        json_pack("{s:i,s:s,s:s,s:s,s:b,s:b}", "version", b, "connection_id", key,
                                  "user_id", "80351110224678912", "channel_id", "41771983423143937",
                                  "self_mute", 0, "self_deaf", 0));
    }
    return x;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s CONNINFO [ROWS_PER_BATCH [BATCHES]]\n", argv[0]);
        return 2;
    }
    int rows = argc > 2 ? atoi(argv[2]) : 10000, batches = argc > 3 ? atoi(argv[3]) : 10;
    log_min_level = LOG_WARN;
    uv_loop_t loop;
    uv_loop_init(&loop);
    char node[64];
    snprintf(node, sizeof node, "bench-%lld", (long long)time_now_ms());
    store_opts o = {.conninfo = argv[1], .node_id = node, .request_timeout_ms = 60000};
    store *s = store_new(&loop, &o);
    if (!s || store_start(s, on_ready, NULL) != 0) return 1;
    while (!ready)
        uv_run(&loop, UV_RUN_ONCE);
    for (int mode = 0; mode < 2; mode++) {
        int64_t t0 = time_mono_ns();
        for (int b = 0; b < batches; b++) {
            pending++;
            if (store_commit(s, make_batch(rows, b + mode * batches), on_done, NULL) < 0) return 1;
            if (mode == 0)
                while (pending)
                    uv_run(&loop, UV_RUN_ONCE);
        }
        while (pending)
            uv_run(&loop, UV_RUN_ONCE);
        double sec = (double)(time_mono_ns() - t0) / 1e9;
        store_stats st;
        store_get_stats(s, &st);
        printf("store_bench %-10s %d batches x %d rows: %.2f s, %.0f rows/s, %d failed, "
               "transactions so far %llu\n",
               mode ? "queued" : "sequential", batches, rows, sec, rows * (double)batches / sec,
               failures, (unsigned long long)st.commits);
    }
    store_close(s, NULL, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    return uv_loop_close(&loop) == 0 && failures == 0 ? 0 : 1;
}
