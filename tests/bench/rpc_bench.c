/*
 * tests/bench/rpc_bench.c — a load generator for voxd's internal RPC (POST /rpc).
 *
 * Each client is one HTTP/1.1 keep-alive TCP connection on a single libuv loop with one request
 * in flight (closed loop): the request rate is what the node sustains at that concurrency.
 *
 *   mode update: every client first creates its share of --conns voice connections
 *                (voice.connect, not measured), then loops voice.update toggling self_mute on
 *                its own connections, round robin.
 *   mode churn:  every client loops voice.connect then voice.disconnect {connection_id}.
 *
 * The measured window opens once every client is set up and closes after --duration seconds;
 * replies that arrive after it are not counted. Every request's latency (send to complete reply)
 * is kept, so p50/p99/max are exact. A hard deadline (duration + 10 s) ends the run regardless.
 * Output: one table row (--header prints the column names first).
 *
 *   rpc_bench --port 8700 --secret-file F --mode update --clients 8 --duration 3 --conns 1000
 *
 * Only loopback/explicit --host targets; the loop is bounded in time and stops by itself.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>
#include <uv.h>

typedef enum { MODE_UPDATE, MODE_CHURN } bench_mode;

typedef struct bench_opts {
    const char *host;
    int port;
    char secret[512];
    bench_mode mode;
    int clients;
    double duration_s;
    int conns;
    int channels;
    bool header;
} bench_opts;

typedef struct lat_log {
    uint32_t *v; /* microseconds */
    size_t n, cap;
} lat_log;

typedef struct bench bench;

enum { PH_CONNECTING, PH_SETUP, PH_WAIT, PH_RUN, PH_DONE };

typedef struct client {
    bench *b;
    int idx;
    int phase;
    bool closing;
    uv_tcp_t tcp;
    uv_connect_t creq;
    uv_write_t wreq;
    char *out; /* request being written, owned */
    char *in;  /* reply bytes received, owned */
    size_t in_len, in_cap;
    uint64_t t_sent;
    bool in_flight;
    /* update mode: this client's connections */
    char (*cid)[32];
    uint64_t *uid;
    bool *mute;
    int ncid, want, next;
    /* churn mode */
    uint64_t churn_uid;
    bool churn_connected; /* last request was a connect that succeeded: disconnect next */
    char churn_cid[32];
} client;

struct bench {
    uv_loop_t *loop;
    bench_opts o;
    client *cl;
    uv_timer_t stop_timer, hard_timer;
    int waiting; /* clients not yet ready for the measured window */
    int open;    /* tcp handles not yet closed */
    bool stopping, started, failed;
    uint64_t t_start, t_end;
    uint64_t id_base;
    lat_log lat;
    uint64_t status[600];
    uint64_t transport_errors, setup_errors;
    uint64_t completed;
};

static void client_send_next(client *c);
static void client_close(client *c);

/* ---- helpers ------------------------------------------------------------------------------------
 */
static void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n);
    if (!q) {
        fprintf(stderr, "rpc_bench: out of memory\n");
        abort();
    }
    return q;
}

static void lat_add(lat_log *l, uint64_t ns)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 65536;
        l->v = xrealloc(l->v, l->cap * sizeof *l->v);
    }
    uint64_t us = ns / 1000;
    l->v[l->n++] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static double pct(const lat_log *l, double p)
{
    if (!l->n) return 0;
    size_t i = (size_t)(p * (double)(l->n - 1) + 0.5);
    return l->v[i] / 1000.0;
}

/* ---- requests
 * ------------------------------------------------------------------------------------ */
static void on_write(uv_write_t *req, int status)
{
    client *c = req->data;
    free(c->out);
    c->out = NULL;
    if (status < 0 && !c->closing) {
        c->b->transport_errors++;
        client_close(c);
    }
}

static void send_rpc(client *c, const char *method, const char *params)
{
    char body[1024];
    int blen = snprintf(body, sizeof body, "{\"method\":\"%s\",\"params\":%s}", method, params);
    size_t cap = (size_t)blen + 512 + strlen(c->b->o.secret);
    c->out = xrealloc(NULL, cap);
    int n = snprintf(c->out, cap,
                     "POST /rpc HTTP/1.1\r\nHost: %s:%d\r\nAuthorization: Bearer %s\r\n"
                     "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
                     c->b->o.host, c->b->o.port, c->b->o.secret, blen, body);
    uv_buf_t buf = uv_buf_init(c->out, (unsigned)n);
    c->wreq.data = c;
    c->t_sent = uv_hrtime();
    c->in_flight = true;
    int rc = uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &buf, 1, on_write);
    if (rc < 0) {
        free(c->out);
        c->out = NULL;
        c->b->transport_errors++;
        client_close(c);
    }
}

static void send_connect(client *c, uint64_t user, int k)
{
    char p[256];
    snprintf(p, sizeof p,
             "{\"guild_id\":\"%" PRIu64 "\",\"channel_id\":\"%" PRIu64 "\",\"user_id\":\"%" PRIu64
             "\",\"session_id\":\"bench-%d\"}",
             c->b->id_base, c->b->id_base + 1 + (uint64_t)(k % c->b->o.channels), user, c->idx);
    send_rpc(c, "voice.connect", p);
}

static bool json_cid(const char *body, size_t len, char out[32])
{
    json_t *j = json_loadb(body, len, 0, NULL);
    const char *cid = NULL;
    if (j)
        cid = json_string_value(json_object_get(
            json_object_get(json_object_get(j, "result"), "voice_state"), "connection_id"));
    bool ok = cid && strlen(cid) < 32;
    if (ok) strcpy(out, cid);
    json_decref(j);
    return ok;
}

/* The next request of a client, by phase and mode. */
static void client_send_next(client *c)
{
    bench *b = c->b;
    char p[256];
    if (c->phase == PH_SETUP) {
        send_connect(c, c->uid[c->ncid], c->idx + c->ncid * b->o.clients);
        return;
    }
    if (c->phase != PH_RUN) return;
    if (b->o.mode == MODE_UPDATE) {
        int k = c->next++ % c->ncid;
        c->mute[k] = !c->mute[k];
        snprintf(p, sizeof p,
                 "{\"connection_id\":\"%s\",\"user_id\":\"%" PRIu64 "\",\"self_mute\":%s}",
                 c->cid[k], c->uid[k], c->mute[k] ? "true" : "false");
        send_rpc(c, "voice.update", p);
    } else if (c->churn_connected) {
        snprintf(p, sizeof p, "{\"connection_id\":\"%s\"}", c->churn_cid);
        send_rpc(c, "voice.disconnect", p);
    } else {
        send_connect(c, c->churn_uid, c->idx);
    }
}

static void start_run(bench *b)
{
    b->started = true;
    b->t_start = uv_hrtime();
}

static void on_stop(uv_timer_t *t)
{
    bench *b = t->data;
    b->stopping = true;
    b->t_end = uv_hrtime();
    for (int i = 0; i < b->o.clients; i++)
        if (!b->cl[i].in_flight) client_close(&b->cl[i]);
}

static void client_ready(client *c)
{
    bench *b = c->b;
    c->phase = PH_WAIT;
    if (--b->waiting > 0) return;
    start_run(b);
    uv_timer_start(&b->stop_timer, on_stop, (uint64_t)(b->o.duration_s * 1000), 0);
    for (int i = 0; i < b->o.clients; i++) {
        client *x = &b->cl[i];
        if (x->phase != PH_WAIT) continue;
        x->phase = PH_RUN;
        client_send_next(x);
    }
}

/* One complete reply. */
static void on_reply(client *c, int status, const char *body, size_t blen)
{
    bench *b = c->b;
    uint64_t now = uv_hrtime();
    c->in_flight = false;
    if (c->phase == PH_SETUP) {
        if (status == 200 && json_cid(body, blen, c->cid[c->ncid])) {
            c->mute[c->ncid] = false;
            c->ncid++;
        } else {
            b->setup_errors++;
            if (b->setup_errors == 1)
                fprintf(stderr, "rpc_bench: setup voice.connect -> %d %.*s\n", status,
                        (int)(blen > 300 ? 300 : blen), body);
            if (b->setup_errors > 100) {
                b->failed = true;
                client_close(c);
                return;
            }
            c->uid[c->ncid] += 1000000000ULL; /* another user id, try again */
        }
        if (c->ncid == c->want)
            client_ready(c);
        else
            client_send_next(c);
        return;
    }
    if (c->phase != PH_RUN) return;
    if (b->stopping) { /* outside the window: not counted */
        client_close(c);
        return;
    }
    lat_add(&b->lat, now - c->t_sent);
    b->completed++;
    b->status[status >= 100 && status < 600 ? status : 0]++;
    if (b->o.mode == MODE_CHURN) {
        if (!c->churn_connected)
            c->churn_connected = status == 200 && json_cid(body, blen, c->churn_cid);
        else
            c->churn_connected = false; /* disconnected (or failed: start over) */
    }
    client_send_next(c);
}

/* Parses every complete reply in c->in. Returns -1 on a protocol error. */
static int parse_replies(client *c)
{
    for (;;) {
        char *hend = memmem(c->in, c->in_len, "\r\n\r\n", 4);
        if (!hend) return c->in_len > 65536 ? -1 : 0;
        size_t hlen = (size_t)(hend - c->in) + 4;
        if (c->in_len < 12 || memcmp(c->in, "HTTP/1.", 7) != 0) return -1;
        int status = atoi(c->in + 9);
        long clen = -1;
        const char *l = c->in;
        while (l < hend) {
            const char *nl = memchr(l, '\n', (size_t)(hend - l));
            if (!nl) nl = hend;
            if (strncasecmp(l, "content-length:", 15) == 0) clen = strtol(l + 15, NULL, 10);
            l = nl + 1;
        }
        if (clen < 0 || clen > (1 << 24)) return -1;
        if (c->in_len < hlen + (size_t)clen) return 0;
        on_reply(c, status, c->in + hlen, (size_t)clen);
        if (c->closing) return 0;
        size_t used = hlen + (size_t)clen;
        memmove(c->in, c->in + used, c->in_len - used);
        c->in_len -= used;
    }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    client *c = h->data;
    if (c->in_cap - c->in_len < 16384) {
        c->in_cap = c->in_cap ? c->in_cap * 2 : 65536;
        c->in = xrealloc(c->in, c->in_cap);
    }
    *buf = uv_buf_init(c->in + c->in_len, (unsigned)(c->in_cap - c->in_len));
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    client *c = s->data;
    if (nread == 0) return;
    if (nread < 0) {
        if (!c->closing && !(c->b->stopping && !c->in_flight)) c->b->transport_errors++;
        client_close(c);
        return;
    }
    c->in_len += (size_t)nread;
    if (parse_replies(c) < 0) {
        fprintf(stderr, "rpc_bench: client %d: unparsable reply\n", c->idx);
        c->b->transport_errors++;
        client_close(c);
    }
}

static void on_connect(uv_connect_t *req, int status)
{
    client *c = req->data;
    if (status < 0) {
        fprintf(stderr, "rpc_bench: connect %s:%d: %s\n", c->b->o.host, c->b->o.port,
                uv_strerror(status));
        c->b->failed = true;
        c->b->transport_errors++;
        client_close(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    if (c->b->o.mode == MODE_UPDATE) {
        c->phase = PH_SETUP;
        client_send_next(c);
    } else {
        client_ready(c);
    }
}

static void on_close(uv_handle_t *h)
{
    client *c = h->data;
    bench *b = c->b;
    free(c->in);
    c->in = NULL;
    if (--b->open == 0) {
        uv_close((uv_handle_t *)&b->stop_timer, NULL);
        uv_close((uv_handle_t *)&b->hard_timer, NULL);
    }
}

static void client_close(client *c)
{
    if (c->closing) return;
    c->closing = true;
    c->phase = PH_DONE;
    bench *b = c->b;
    uv_close((uv_handle_t *)&c->tcp, on_close);
    if (!b->started && !b->failed) { /* a client died before the window opened: give up */
        b->failed = true;
        for (int i = 0; i < b->o.clients; i++)
            client_close(&b->cl[i]);
    }
}

static void on_hard_deadline(uv_timer_t *t)
{
    bench *b = t->data;
    fprintf(stderr, "rpc_bench: hard deadline reached, closing every client\n");
    if (!b->stopping) {
        b->stopping = true;
        b->t_end = uv_hrtime();
    }
    b->failed = !b->started;
    for (int i = 0; i < b->o.clients; i++)
        client_close(&b->cl[i]);
}

/* ---- main ---------------------------------------------------------------------------------------
 */
static void usage(void)
{
    fprintf(stderr,
            "usage: rpc_bench --port P (--secret-file F | env VOXD_RPC_SECRET) [--host 127.0.0.1]\n"
            "                 [--mode update|churn] [--clients N] [--duration SECONDS]\n"
            "                 [--conns M (update mode)] [--channels K] [--header]\n");
}

static int parse_opts(int argc, char **argv, bench_opts *o)
{
    static const struct option lo[] = {
        {"host", required_argument, NULL, 'H'},
        {"port", required_argument, NULL, 'p'},
        {"secret-file", required_argument, NULL, 's'},
        {"mode", required_argument, NULL, 'm'},
        {"clients", required_argument, NULL, 'c'},
        {"duration", required_argument, NULL, 'd'},
        {"conns", required_argument, NULL, 'n'},
        {"channels", required_argument, NULL, 'k'},
        {"header", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    *o = (bench_opts){.host = "127.0.0.1",
                      .mode = MODE_UPDATE,
                      .clients = 8,
                      .duration_s = 3,
                      .conns = 1000,
                      .channels = 50};
    const char *env = getenv("VOXD_RPC_SECRET");
    if (env) snprintf(o->secret, sizeof o->secret, "%s", env);
    int ch;
    while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (ch) {
        case 'H':
            o->host = optarg;
            break;
        case 'p':
            o->port = atoi(optarg);
            break;
        case 's': {
            FILE *f = fopen(optarg, "r");
            if (!f) {
                fprintf(stderr, "rpc_bench: %s: %s\n", optarg, strerror(errno));
                return -1;
            }
            size_t n = fread(o->secret, 1, sizeof o->secret - 1, f);
            fclose(f);
            while (n && (o->secret[n - 1] == '\n' || o->secret[n - 1] == '\r'))
                n--;
            o->secret[n] = 0;
            break;
        }
        case 'm':
            if (strcmp(optarg, "update") == 0)
                o->mode = MODE_UPDATE;
            else if (strcmp(optarg, "churn") == 0)
                o->mode = MODE_CHURN;
            else
                return -1;
            break;
        case 'c':
            o->clients = atoi(optarg);
            break;
        case 'd':
            o->duration_s = atof(optarg);
            break;
        case 'n':
            o->conns = atoi(optarg);
            break;
        case 'k':
            o->channels = atoi(optarg);
            break;
        case 'h':
            o->header = true;
            break;
        default:
            return -1;
        }
    }
    if (o->port <= 0 || o->port > 65535 || !o->secret[0] || o->clients < 1 || o->clients > 4096 ||
        !(o->duration_s > 0 && o->duration_s <= 600) || o->channels < 1 || o->conns < 0)
        return -1;
    if (o->mode == MODE_UPDATE && o->conns < o->clients) o->conns = o->clients;
    return 0;
}

int main(int argc, char **argv)
{
    bench b;
    memset(&b, 0, sizeof b);
    if (parse_opts(argc, argv, &b.o) < 0) {
        usage();
        return 2;
    }
    struct sockaddr_in addr;
    if (uv_ip4_addr(b.o.host, b.o.port, &addr) != 0) {
        fprintf(stderr, "rpc_bench: --host must be a numeric IPv4 address\n");
        return 2;
    }
    uv_loop_t loop;
    uv_loop_init(&loop);
    b.loop = &loop;
    /* ids unique per run on a shared node: a time-derived base, every id well below 2^64 */
    b.id_base = 1000000000000ULL + (uv_hrtime() / 1000 % 1000000000ULL) * 1000ULL;
    b.cl = calloc((size_t)b.o.clients, sizeof *b.cl);
    if (!b.cl) abort();
    uv_timer_init(&loop, &b.stop_timer);
    uv_timer_init(&loop, &b.hard_timer);
    b.stop_timer.data = b.hard_timer.data = &b;
    uv_timer_start(&b.hard_timer, on_hard_deadline,
                   (uint64_t)(b.o.duration_s * 1000) + 10000 + (uint64_t)b.o.conns * 5, 0);
    b.waiting = b.o.clients;
    for (int i = 0; i < b.o.clients; i++) {
        client *c = &b.cl[i];
        c->b = &b;
        c->idx = i;
        c->phase = PH_CONNECTING;
        if (b.o.mode == MODE_UPDATE) {
            c->want = b.o.conns / b.o.clients + (i < b.o.conns % b.o.clients);
            c->cid = calloc((size_t)c->want, sizeof *c->cid);
            c->uid = calloc((size_t)c->want, sizeof *c->uid);
            c->mute = calloc((size_t)c->want, sizeof *c->mute);
            if (!c->cid || !c->uid || !c->mute) abort();
            for (int k = 0; k < c->want; k++)
                c->uid[k] = b.id_base + 100000 + (uint64_t)i * 100000 + (uint64_t)k;
        }
        c->churn_uid = b.id_base + 500000000ULL + (uint64_t)i;
        uv_tcp_init(&loop, &c->tcp);
        c->tcp.data = c;
        c->creq.data = c;
        b.open++;
        int rc = uv_tcp_connect(&c->creq, &c->tcp, (const struct sockaddr *)&addr, on_connect);
        if (rc < 0) {
            fprintf(stderr, "rpc_bench: connect: %s\n", uv_strerror(rc));
            b.failed = true;
            client_close(c);
        }
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    int lc = uv_loop_close(&loop);

    double secs = b.started && b.t_end > b.t_start ? (double)(b.t_end - b.t_start) / 1e9 : 0;
    qsort(b.lat.v, b.lat.n, sizeof *b.lat.v, cmp_u32);
    char errs[512] = "";
    size_t el = 0;
    for (int s = 0; s < 600; s++)
        if (b.status[s] && s != 200 && el < sizeof errs - 32)
            el += (size_t)snprintf(errs + el, sizeof errs - el, "%s%d:%" PRIu64, el ? "," : "", s,
                                   b.status[s]);
    if (b.transport_errors && el < sizeof errs - 32)
        el += (size_t)snprintf(errs + el, sizeof errs - el, "%stransport:%" PRIu64, el ? "," : "",
                               b.transport_errors);
    if (b.setup_errors && el < sizeof errs - 32)
        el += (size_t)snprintf(errs + el, sizeof errs - el, "%ssetup:%" PRIu64, el ? "," : "",
                               b.setup_errors);
    if (b.o.header)
        printf("%-7s %7s %6s %6s %9s %10s %8s %8s %8s  %s\n", "mode", "clients", "conns", "secs",
               "requests", "req/s", "p50_ms", "p99_ms", "max_ms", "errors");
    printf("%-7s %7d %6d %6.2f %9" PRIu64 " %10.0f %8.3f %8.3f %8.3f  %s\n",
           b.o.mode == MODE_UPDATE ? "update" : "churn", b.o.clients,
           b.o.mode == MODE_UPDATE ? b.o.conns : 0, secs, b.completed,
           secs > 0 ? (double)b.completed / secs : 0, pct(&b.lat, 0.50), pct(&b.lat, 0.99),
           b.lat.n ? b.lat.v[b.lat.n - 1] / 1000.0 : 0, el ? errs : "-");
    fflush(stdout);

    for (int i = 0; i < b.o.clients; i++) {
        free(b.cl[i].cid);
        free(b.cl[i].uid);
        free(b.cl[i].mute);
        free(b.cl[i].in);
    }
    free(b.cl);
    free(b.lat.v);
    if (lc != 0) fprintf(stderr, "rpc_bench: uv_loop_close: %s\n", uv_strerror(lc));
    return b.failed || !b.started ? 1 : 0;
}
