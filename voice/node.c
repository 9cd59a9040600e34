/*
 * voice/node.c — the node object and its wiring.
 *
 * One libuv loop runs everything: libwebsockets joins it as a foreign loop with two vhosts (the
 * RPC listener and the voice listener), and the node owns a few libuv handles of its own:
 *   tick           one-shot timer armed at sig_next_deadline(), re-armed after every step
 *   lag            1 s periodic timer measuring how late it fires (voxd_loop_lag_seconds)
 *   sigterm/sigint graceful shutdown
 *   shutdown_poll  after lws_context_destroy(), polls until lws has NULLed our context pointer,
 *                  then closes the node's own handles so uv_run() returns
 *
 * The pump: every entry into the core (RPC submit, tick, grant redeem) is followed by
 * node_after_step(), which takes the core's effects: writes are counted (persistence is a later
 * issue), events go into the outbox and wake the /events clients that are behind, replies go to
 * the HTTP requests still waiting for them (by request id, see `pending`).
 */
#include "voice/node_priv.h"

#include "lib/log.h"
#include "lib/util.h"

#include <dlfcn.h>
#include <errno.h>
#include <math.h>
#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>

#ifndef VOXD_VERSION
#define VOXD_VERSION "0.1.0"
#endif

#define LAG_INTERVAL_MS 1000

/* ---- the pump ----------------------------------------------------------------------------------
 */

static void arm_tick(voice_node *n);

void node_after_step(voice_node *n)
{
    sig_effects fx;
    sig_effects_take(n->core, &fx);
    media_conn_touched(n, &fx);
    if (n->durable) {
        durable_take_effects(n, &fx);
        sig_effects_free(&fx);
        arm_tick(n);
        return;
    }
    n->store_writes += fx.nwrites;
    for (size_t i = 0; i < fx.nevents; i++) {
        sig_outbox_publish(n->outbox, fx.events[i]);
        fx.events[i] = NULL;
        n->events_emitted++;
    }
    for (size_t i = 0; i < fx.nreplies; i++) {
        sig_reply *r = &fx.replies[i];
        node_deliver_reply(n, r->req, r->method, r->status, r->body, r->len);
        r->body = NULL;
    }
    sig_effects_free(&fx);
    if (n->events_emitted && n->ev_head) ev_notify_all(n);
    arm_tick(n);
}

typedef struct waiter {
    node_commit_cb cb;
    void *arg;
} waiter;

uint64_t node_after_commit(voice_node *n, node_commit_cb cb, void *arg)
{
    uint64_t req = ++n->next_req;
    if (!n->durable || !durable_after_commit(n, req)) {
        cb(arg, 200);
        return 0;
    }
    waiter *w = xmalloc(sizeof *w);
    *w = (waiter){cb, arg};
    hmap_putu(n->waiters, req, w);
    return req;
}

void node_after_commit_cancel(voice_node *n, uint64_t handle)
{
    if (handle) free(hmap_delu(n->waiters, handle));
}

void node_deliver_reply(voice_node *n, uint64_t req, const char *method, int status, char *body,
                        size_t len)
{
    struct lws *wsi = hmap_delu(n->pending, req);
    if (!wsi) {
        waiter *w = hmap_delu(n->waiters, req);
        if (w) {
            free(body);
            w->cb(w->arg, status);
            free(w);
            return;
        }
        if (!devsite_reply(n, req, status, body, len)) free(body); /* its client went away */
        return;
    }
    rpc_pss *h = lws_wsi_user(wsi);
    h->req_id = 0;
    node_count_rpc(n, method, status, (double)(time_mono_ns() - h->t0_ns) / 1e9);
    if (h->in_submit) /* answered inside its own request's callback (a read, a refusal) */
        http_tx_set(wsi, &h->tx, status, "application/json", body, len, false);
    else /* later (a commit, a held join): straight to the socket when it takes it */
        http_tx_send_now(wsi, &h->tx, status, "application/json", body, len);
}

static void on_tick(uv_timer_t *t)
{
    voice_node *n = t->data;
    sig_tick(n->core, time_now_ms());
    node_after_step(n);
}

static void arm_tick(voice_node *n)
{
    if (n->stopping) return;
    int64_t d = sig_next_deadline(n->core);
    if (d == SIG_NEVER) {
        uv_timer_stop(&n->tick);
        return;
    }
    int64_t delay = d - time_now_ms();
    uv_timer_start(&n->tick, on_tick, delay > 0 ? (uint64_t)delay : 0, 0);
}

/* ---- metrics -----------------------------------------------------------------------------------
 */

void node_count_rpc(voice_node *n, const char *method, int status, double seconds)
{
    rpc_stat *s = hmap_gets(n->rpc_stats, method);
    if (!s) {
        s = xcalloc(1, sizeof *s);
        s->method = method;
        hmap_puts(n->rpc_stats, method, s);
    }
    metrics_hist_observe(&s->hist, seconds);
    for (int i = 0; i < s->ncodes; i++) {
        if (s->codes[i].code == status) {
            s->codes[i].n++;
            return;
        }
    }
    if (s->ncodes < (int)ARRAY_LEN(s->codes)) {
        s->codes[s->ncodes].code = status;
        s->codes[s->ncodes++].n = 1;
    }
}

void node_render_metrics(voice_node *n, metrics_buf *b)
{
    sig_stats st;
    sig_get_stats(n->core, &st);
    size_t it;
    const void *k;
    size_t kl;
    void *v;
    char code[16];

    metrics_family(b, M_RPC_REQUESTS);
    for (it = 0; hmap_next(n->rpc_stats, &it, &k, &kl, &v);) {
        rpc_stat *s = v;
        for (int i = 0; i < s->ncodes; i++) {
            snprintf(code, sizeof code, "%d", s->codes[i].code);
            metrics_sample(b, M_RPC_REQUESTS, (double)s->codes[i].n,
                           (const char *[]){"method", s->method, "code", code, NULL});
        }
    }
    metrics_family(b, M_RPC_DURATION);
    for (it = 0; hmap_next(n->rpc_stats, &it, &k, &kl, &v);) {
        rpc_stat *s = v;
        metrics_hist_write(b, M_RPC_DURATION, &s->hist,
                           (const char *[]){"method", s->method, NULL});
    }
    metrics_family(b, M_VOICE_CONNS);
    metrics_sample(b, M_VOICE_CONNS, (double)st.conns_pending,
                   (const char *[]){"state", "pending", NULL});
    metrics_sample(b, M_VOICE_CONNS, (double)st.conns_active,
                   (const char *[]){"state", "active", NULL});
    metrics_family(b, M_CALLS);
    metrics_sample(b, M_CALLS, (double)st.calls_ringing,
                   (const char *[]){"state", "ringing", NULL});
    metrics_sample(b, M_CALLS, (double)st.calls_active, (const char *[]){"state", "active", NULL});
    metrics_family(b, M_RING_OUTCOMES);
    metrics_sample(b, M_RING_OUTCOMES, (double)st.ring_answered,
                   (const char *[]){"outcome", "answered", NULL});
    metrics_sample(b, M_RING_OUTCOMES, (double)st.ring_declined,
                   (const char *[]){"outcome", "declined", NULL});
    metrics_sample(b, M_RING_OUTCOMES, (double)st.ring_timed_out,
                   (const char *[]){"outcome", "timed_out", NULL});
    metrics_family(b, M_GRANTS_ISSUED);
    metrics_sample(b, M_GRANTS_ISSUED, (double)st.grants_issued, NULL);
    metrics_family(b, M_GRANTS_REFUSED);
    metrics_sample(b, M_GRANTS_REFUSED, (double)st.grants_refused, NULL);
    metrics_family(b, M_TOKEN_FAILURES);
    for (int i = 0; i < SIG_TOKEN_FAIL__N; i++)
        metrics_sample(b, M_TOKEN_FAILURES, (double)st.token_fail[i],
                       (const char *[]){"reason", sig_token_fail_names[i], NULL});
    metrics_family(b, M_GHOST_REAPS);
    metrics_sample(b, M_GHOST_REAPS, (double)st.reaped_pending,
                   (const char *[]){"cause", "pending", NULL});
    metrics_sample(b, M_GHOST_REAPS, (double)st.reaped_transport,
                   (const char *[]){"cause", "transport", NULL});
    metrics_family(b, M_EVENTS_EMITTED);
    metrics_sample(b, M_EVENTS_EMITTED, (double)n->events_emitted, NULL);
    metrics_family(b, M_EVENTS_ACKED);
    metrics_sample(b, M_EVENTS_ACKED, (double)sig_outbox_acked(n->outbox), NULL);
    metrics_family(b, M_EVENTS_RETAINED);
    metrics_sample(b, M_EVENTS_RETAINED, (double)sig_outbox_retained(n->outbox), NULL);
    metrics_family(b, M_EVENT_CLIENTS);
    metrics_sample(b, M_EVENT_CLIENTS, (double)n->ev_count, NULL);
    metrics_family(b, M_STORE_WRITES);
    metrics_sample(b, M_STORE_WRITES, (double)n->store_writes, NULL);
    durable_stats_t ds;
    durable_stats(n, &ds);
    metrics_family(b, M_STORE_UP);
    metrics_sample(b, M_STORE_UP, durable_up(n) ? 1 : 0, NULL);
    metrics_family(b, M_STORE_QUEUE);
    metrics_sample(b, M_STORE_QUEUE, (double)ds.queue_items,
                   (const char *[]){"kind", "writes", NULL});
    metrics_sample(b, M_STORE_QUEUE, (double)ds.parked,
                   (const char *[]){"kind", "parked_requests", NULL});
    metrics_family(b, M_STORE_COMMITS);
    metrics_sample(b, M_STORE_COMMITS, (double)ds.commits, (const char *[]){"result", "ok", NULL});
    metrics_sample(b, M_STORE_COMMITS, (double)ds.commit_errors,
                   (const char *[]){"result", "error", NULL});
    metrics_family(b, M_STORE_COMMIT_DURATION);
    metrics_hist_write(b, M_STORE_COMMIT_DURATION, &ds.commit_hist, NULL);
    media_render_metrics(n, b);
    metrics_family(b, M_LOOP_LAG);
    metrics_sample(b, M_LOOP_LAG, n->loop_lag_s, NULL);
    metrics_family(b, M_BUILD_INFO);
    metrics_sample(b, M_BUILD_INFO, 1, (const char *[]){"version", VOXD_VERSION, NULL});
    metrics_family(b, M_START_TIME);
    metrics_sample(b, M_START_TIME, n->start_time_s, NULL);
}

static void on_lag(uv_timer_t *t)
{
    voice_node *n = t->data;
    uint64_t now = uv_hrtime();
    n->loop_lag_s = now > n->lag_due_ns ? (double)(now - n->lag_due_ns) / 1e9 : 0;
    n->lag_due_ns = now + (uint64_t)LAG_INTERVAL_MS * 1000000;
}

/* ---- helpers shared by the vhosts -------------------------------------------------------------
 */

bool node_bearer_ok(voice_node *n, struct lws *wsi)
{
    char hdr[1024];
    int len = lws_hdr_copy(wsi, hdr, sizeof hdr, WSI_TOKEN_HTTP_AUTHORIZATION);
    if (len < 7 || strncasecmp(hdr, "Bearer ", 7) != 0) return false;
    const char *tok = hdr + 7;
    while (*tok == ' ')
        tok++;
    unsigned char h[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)tok, strlen(tok), h);
    /* comparing digests keeps the time independent of the secret's length and content */
    return ct_equal(h, n->rpc_secret_hash, sizeof h);
}

int node_ws_send(voice_node *n, struct lws *wsi, const char *data, size_t len)
{
    if (LWS_PRE + len > n->wcap) {
        n->wcap = LWS_PRE + len + 4096;
        n->wbuf = xrealloc(n->wbuf, n->wcap);
    }
    memcpy(n->wbuf + LWS_PRE, data, len);
    int w = lws_write(wsi, n->wbuf + LWS_PRE, len, LWS_WRITE_TEXT);
    return w < (int)len ? -1 : 0;
}

/* ---- lifecycle ---------------------------------------------------------------------------------
 */

static void on_handle_closed(uv_handle_t *h)
{
    voice_node *n = h->data;
    n->open_handles--;
}

static void close_handle(voice_node *n, uv_handle_t *h)
{
    if (!uv_is_closing(h)) uv_close(h, on_handle_closed);
}

static void count_foreign(uv_handle_t *h, void *arg)
{
    voice_node *n = arg;
    if (h->data != n && !uv_is_closing(h)) n->foreign_handles++;
}

/* lws 4.1 on a foreign loop: the first lws_context_destroy() closes every connection and lws's
 * own libuv handles, then stops; once they are all closed (no handle left on the loop but ours),
 * a second lws_context_destroy() frees the context and NULLs our pointer (pcontext). */
static void on_shutdown_poll(uv_timer_t *t)
{
    voice_node *n = t->data;
    /* 1. what is queued for the database is committed (and answered), up to the store deadline;
     * 2. the store closes (its libuv handles must be gone before lws counts the loop's handles);
     * 3. lws closes every connection; 4. our own handles. */
    if (n->durable && !durable_idle(n) && time_now_ms() < n->stop_deadline_ms) return;
    if (n->durable) {
        if (!n->durable_closing) {
            n->durable_closing = true;
            durable_close(n);
        }
        return; /* n->durable becomes NULL once the store has closed */
    }
    /* voice WebSockets get their 4015 before lws closes everything (bounded wait) */
    if (n->voice_ws_count && time_now_ms() < n->drain_until_ms) return;
    if (!n->lws_destroying && n->lws) {
        n->lws_destroying = true;
        lws_context_destroy(n->lws);
        return;
    }
    if (n->lws) {
        n->foreign_handles = 0;
        uv_walk(n->loop, count_foreign, n);
        if (n->foreign_handles) return; /* lws is still closing its connections */
        lws_context_destroy(n->lws);
        if (n->lws) return;
    }
    LOG(LOG_INFO, "listeners and connections closed; closing the node's handles");
    media_stop(n);
    close_handle(n, (uv_handle_t *)&n->tick);
    close_handle(n, (uv_handle_t *)&n->lag);
    close_handle(n, (uv_handle_t *)&n->sigterm);
    close_handle(n, (uv_handle_t *)&n->sigint);
    close_handle(n, (uv_handle_t *)&n->shutdown_poll);
}

static void on_signal(uv_signal_t *s, int signum)
{
    voice_node *n = s->data;
    if (n->stopping) return;
    n->stopping = true;
    sig_set_health(n->core, "draining");
    LOG(LOG_INFO, "signal %d: shutting down (pending_requests=%zu event_clients=%zu)", signum,
        hmap_size(n->pending), n->ev_count);
    uv_timer_stop(&n->tick);
    uv_timer_stop(&n->lag);
    /* with a database, what is queued is committed first (and answered) for up to the store
     * deadline; then lws closes every connection */
    n->stop_deadline_ms = time_now_ms() + n->cf->store_deadline_ms;
    n->drain_until_ms = time_now_ms() + 500;
    media_drain(n);
    uv_timer_start(&n->shutdown_poll, on_shutdown_poll, 0, 10);
}

static void lws_log_emit(int level, const char *line)
{
    size_t l = strlen(line);
    while (l && (line[l - 1] == '\n' || line[l - 1] == '\r'))
        l--;
    enum log_level lv = level == LLL_ERR ? LOG_ERROR : level == LLL_WARN ? LOG_WARN : LOG_DEBUG;
    LOGC(lv, "lws", "%.*s", (int)l, line);
}

static struct lws_vhost *make_vhost(voice_node *n, const char *name, const char *addr,
                                    const struct lws_protocols *protocols)
{
    char host[64];
    int port;
    if (conf_addr_split(addr, host, sizeof host, &port) < 0) return NULL;
    struct lws_context_creation_info vi;
    memset(&vi, 0, sizeof vi);
    vi.vhost_name = name;
    vi.iface = host;
    vi.port = port;
    vi.protocols = protocols;
    vi.keepalive_timeout = 60;
    vi.timeout_secs = 30;
    vi.user = n;
    vi.options =
        LWS_SERVER_OPTION_LIBUV | LWS_SERVER_OPTION_DISABLE_IPV6 * (strchr(host, ':') == NULL);
    struct lws_vhost *vh = lws_create_vhost(n->lws, &vi);
    if (!vh) LOG(LOG_ERROR, "cannot listen on %s for %s (address in use?)", addr, name);
    return vh;
}

static void start_handle(voice_node *n, uv_handle_t *h)
{
    h->data = n;
    n->open_handles++;
}

voice_node *voice_node_new(uv_loop_t *loop, const conf *cf)
{
    voice_node *n = xcalloc(1, sizeof *n);
    n->loop = loop;
    n->cf = cf;
    n->start_time_s = (double)time_now_ms() / 1000.0;
    n->pending = hmap_new();
    n->dev_pending = hmap_new();
    n->dev_names = hmap_new();
    n->waiters = hmap_new();
    n->rpc_stats = hmap_new();
    SHA256(cf->rpc_secret, cf->rpc_secret_len, n->rpc_secret_hash);

    sig_config sc;
    sig_config_defaults(&sc);
    sc.node_id = cf->node_id;
    sc.region = cf->region;
    sc.endpoint = cf->public_endpoint;
    sc.token_secret = cf->token_secret;
    sc.token_secret_len = cf->token_secret_len;
    sc.grant_ttl_ms = cf->grant_ttl_ms;
    sc.pending_timeout_ms = cf->pending_timeout_ms;
    sc.ring_timeout_ms = cf->ring_timeout_ms;
    sc.call_idle_ms = cf->call_idle_ms;
    sc.join_hold_ms = cf->join_hold_ms;
    sc.max_conns_per_user = (unsigned)cf->max_conns_per_user;
    n->core = sig_core_new(&sc);
    n->outbox = sig_outbox_new((size_t)cf->events_retention, 1);
    if (!n->core || !n->outbox) {
        LOG(LOG_ERROR, "cannot create the signalling core");
        goto fail;
    }

    uv_timer_init(loop, &n->tick);
    start_handle(n, (uv_handle_t *)&n->tick);
    uv_timer_init(loop, &n->lag);
    start_handle(n, (uv_handle_t *)&n->lag);
    uv_timer_init(loop, &n->shutdown_poll);
    start_handle(n, (uv_handle_t *)&n->shutdown_poll);
    uv_signal_init(loop, &n->sigterm);
    start_handle(n, (uv_handle_t *)&n->sigterm);
    uv_signal_init(loop, &n->sigint);
    start_handle(n, (uv_handle_t *)&n->sigint);

    lws_set_log_level(LLL_ERR | LLL_WARN | (log_min_level == LOG_DEBUG ? LLL_NOTICE | LLL_INFO : 0),
                      lws_log_emit);
    /* Debian's lws loads its libuv glue as a plugin and dlclose()s it while destroying the
     * context, yet libuv still has close callbacks of that plugin queued: pin it in memory. */
    if (!dlopen(LWS_INSTALL_LIBDIR "/libwebsockets-evlib_uv.so", RTLD_NOW | RTLD_NODELETE))
        LOG(LOG_WARN, "cannot pin the lws libuv plugin: %s", dlerror());
    void *foreign[1] = {loop};
    struct lws_context_creation_info ci;
    memset(&ci, 0, sizeof ci);
    ci.options = LWS_SERVER_OPTION_LIBUV | LWS_SERVER_OPTION_EXPLICIT_VHOSTS;
    ci.foreign_loops = foreign;
    ci.pcontext = &n->lws;
    ci.port = CONTEXT_PORT_NO_LISTEN;
    ci.user = n;
    n->lws = lws_create_context(&ci);
    if (!n->lws) {
        LOG(LOG_ERROR, "cannot create the libwebsockets context (is libwebsockets-evlib-uv "
                       "installed?)");
        goto fail_handles;
    }
    n->vh_rpc = make_vhost(n, "rpc", cf->rpc_listen, http_protocols);
    n->vh_voice = n->vh_rpc ? make_vhost(n, "voice", cf->voice_listen, voicews_protocols) : NULL;
    if (!n->vh_rpc || !n->vh_voice) goto fail_handles;

    if (media_start(n) < 0) goto fail_handles;
    uv_signal_start(&n->sigterm, on_signal, SIGTERM);
    uv_signal_start(&n->sigint, on_signal, SIGINT);
    if (cf->db && *cf->db) {
        if (durable_start(n) < 0) {
            LOG(LOG_ERROR, "cannot use the database connection string given with --db");
            goto fail_handles;
        }
    } else {
        LOG(LOG_WARN, "no --db: state lives in memory only and does not survive a restart");
    }
    n->lag_due_ns = uv_hrtime() + (uint64_t)LAG_INTERVAL_MS * 1000000;
    uv_timer_start(&n->lag, on_lag, LAG_INTERVAL_MS, LAG_INTERVAL_MS);
    arm_tick(n);
    LOG(LOG_INFO,
        "voxd %s up: node_id=%s region=%s rpc=%s voice=%s endpoint=%s events_retention=%lld",
        VOXD_VERSION, cf->node_id, cf->region, cf->rpc_listen, cf->voice_listen,
        cf->public_endpoint, (long long)cf->events_retention);
    return n;

fail_handles:
    /* the same path as a signal: destroy lws, close our handles, let the loop run them out */
    n->stopping = true;
    n->lws_destroying = true;
    if (n->lws) lws_context_destroy(n->lws);
    uv_timer_start(&n->shutdown_poll, on_shutdown_poll, 0, 10);
    uv_run(loop, UV_RUN_DEFAULT);
fail:
    voice_node_free(n);
    return NULL;
}

void voice_node_free(voice_node *n)
{
    if (!n) return;
    if (n->open_handles)
        LOG(LOG_ERROR, "voice_node_free with %d libuv handles still open", n->open_handles);
    size_t it = 0;
    const void *k;
    size_t kl;
    void *v;
    while (hmap_next(n->rpc_stats, &it, &k, &kl, &v))
        free(v);
    hmap_free(n->rpc_stats);
    hmap_free(n->pending);
    media_free(n);
    devsite_free(n);
    size_t wit = 0;
    void *wv;
    while (hmap_next(n->waiters, &wit, NULL, NULL, &wv))
        free(wv);
    hmap_free(n->waiters);
    sig_outbox_free(n->outbox);
    sig_core_free(n->core);
    free(n->wbuf);
    free(n);
}
