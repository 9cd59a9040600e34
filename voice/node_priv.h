/*
 * voice/node_priv.h — what the files of the node share (not a public header):
 *   node.c     the node object, the step → effects pump, timers, signals, shutdown, /metrics
 *   http.c     the RPC vhost: /rpc, /metrics, /healthz, /readyz, and the /events upgrade
 *   events.c   the /events WebSocket (outbox readers)
 *   voicews.c  the voice vhost: /voice WebSocket
 *   durable.c  with a database: group commit of the effects, outage handling, recovery
 * Everything runs on the loop thread.
 */
#ifndef VOXD_NODE_PRIV_H
#define VOXD_NODE_PRIV_H

#include "lib/conf.h"
#include "lib/hmap.h"
#include "lib/metrics.h"
#include "signalling/sig.h"
#include "store/store.h"
#include "voice/voice.h"

#include <libwebsockets.h>
#include <stdbool.h>
#include <uv.h>

/* ---- an HTTP reply waiting for WRITEABLE ------------------------------------------------------
 */
typedef struct http_tx {
    char *body; /* owned */
    size_t len;
    int status;
    const char *ctype;
    bool close_after; /* Connection: close, then drop the connection */
    bool direct;      /* pipelined input is held back: write at once, not on WRITEABLE */
} http_tx;

/* Sets the reply (takes `body`) and asks for WRITEABLE. */
void http_tx_set(struct lws *wsi, http_tx *tx, int status, const char *ctype, char *body,
                 size_t len, bool close_after);
/* Outside any lws callback of wsi (a reply that waited for its commit; see rpc_pss.in_submit):
 * writes the reply now when
 * the socket takes it (no WRITEABLE round through the loop: lws on libuv re-registers the socket
 * with epoll for every POLLOUT change), else as http_tx_set. Takes `body`. */
void http_tx_send_now(struct lws *wsi, http_tx *tx, int status, const char *ctype, char *body,
                      size_t len);
/* A JSON error reply from sig_error_body(). */
void http_tx_error(struct lws *wsi, http_tx *tx, int status, const char *code, const char *msg,
                   bool close_after);
/* In WRITEABLE: one lws_write of headers + body. Returns -1 to close the connection. */
int http_tx_write(struct lws *wsi, http_tx *tx);
void http_tx_clear(http_tx *tx);

/* ---- an /events client (lives in the per-session data of the RPC vhost) ------------------------
 */
#define EV_RX_MAX   4096
#define EV_CTRL_MAX 2
typedef struct ev_client {
    struct voice_node *n;
    struct lws *wsi;
    struct ev_client *prev, *next;
    bool linked, resumed;
    uint64_t cursor; /* next seq to send */
    char consumer[65];
    char ctrl[EV_CTRL_MAX][256]; /* hello, gap: small control messages, bounded */
    int nctrl;
    size_t rx_len;
    char rx[EV_RX_MAX];
} ev_client;

int ev_filter(struct voice_node *n, struct lws *wsi); /* 0 accept, 1 refuse */
void ev_established(struct voice_node *n, ev_client *c, struct lws *wsi);
int ev_receive(ev_client *c, const void *in, size_t len);
int ev_writeable(ev_client *c);
void ev_closed(ev_client *c);
void ev_notify_all(struct voice_node *n); /* new events: wake every client that is behind */

/* ---- the per-session data of the RPC vhost: one HTTP transaction at a time, or an /events
 * client once upgraded ----------------------------------------------------------------------------
 */
typedef struct rpc_pss {
    uint64_t req_id; /* waiting in node->pending for the core's reply; 0 if not */
    int64_t t0_ns;   /* end of the body (the latency histogram's start) */
    http_tx tx;
    bool in_use, is_ws, is_rpc, refused, authed;
    bool in_submit;    /* inside submit(): lws is in this connection's callback, so a reply made
                          now must wait for WRITEABLE (http_tx_send_now would free what lws uses) */
    int refuse_status; /* reply sent once the body is drained (401, 404, 405) */
    const char *refuse_code;
    char *body;
    size_t len, cap;
    ev_client ev;
} rpc_pss;

/* ---- the node ----------------------------------------------------------------------------------
 */
typedef struct rpc_stat {
    const char *method; /* static (from the core) */
    metrics_hist hist;
    struct {
        int code;
        uint64_t n;
    } codes[24];
    int ncodes;
} rpc_stat;

typedef struct durable durable;

struct voice_node {
    uv_loop_t *loop;
    const conf *cf;
    sig_core *core;
    sig_outbox *outbox;

    struct lws_context *lws; /* NULLed by lws once destroyed (pcontext) */
    struct lws_vhost *vh_rpc, *vh_voice;
    unsigned char rpc_secret_hash[32];

    uv_timer_t tick, lag, shutdown_poll;
    uv_signal_t sigterm, sigint;
    int open_handles;
    int foreign_handles; /* scratch of the shutdown poll */
    bool stopping, lws_destroying, durable_closing;

    uint64_t next_req;
    hmap *pending; /* req id -> struct rpc_pss * waiting for its reply */

    ev_client *ev_head;
    size_t ev_count;
    size_t voice_ws_count;

    /* write scratch for outbox events and HTTP replies (LWS_PRE headroom + the bytes) */
    unsigned char *wbuf;
    size_t wcap;

    durable *durable;  /* NULL: in-memory node (no --db) */
    uint64_t next_seq; /* durable: seq of the next event to number */
    int64_t stop_deadline_ms;

    /* metrics owned by the node */
    hmap *rpc_stats; /* method name -> rpc_stat */
    uint64_t store_writes, events_emitted;
    double loop_lag_s;
    uint64_t lag_due_ns;
    double start_time_s;
};

/* After every step that can produce effects: takes them, publishes events, routes replies,
 * re-arms the tick timer. */
void node_after_step(struct voice_node *n);
/* Counts an RPC reply for /metrics. */
void node_count_rpc(struct voice_node *n, const char *method, int status, double seconds);
/* Renders /metrics; caller frees buf. */
void node_render_metrics(struct voice_node *n, metrics_buf *buf);
/* Bearer check of an Authorization header, constant time. */
bool node_bearer_ok(struct voice_node *n, struct lws *wsi);
/* Writes one WS text message from `data` through the shared scratch (adds LWS_PRE). */
int node_ws_send(struct voice_node *n, struct lws *wsi, const char *data, size_t len);

/* ---- durable.c
 * ------------------------------------------------------------------------------------ */
typedef struct durable_stats_t {
    bool up;
    size_t queue_items, parked;
    uint64_t commits, commit_errors, reconnects;
    metrics_hist commit_hist;
} durable_stats_t;
int durable_start(struct voice_node *n); /* --db given: connect, migrate, load, then serve */
void durable_take_effects(struct voice_node *n, sig_effects *fx);
void durable_ack(struct voice_node *n, const char *consumer, uint64_t seq);
/* Parks a state-changing request while the store is down (true: parked or refused). */
bool durable_admit(struct voice_node *n, uint64_t req, const char *body, size_t len);
void durable_cancel(struct voice_node *n, uint64_t req);
bool durable_loaded(const struct voice_node *n); /* true without a database */
bool durable_up(const struct voice_node *n);     /* loaded and the database reachable */
bool durable_idle(const struct voice_node *n);   /* nothing waiting to be committed */
void durable_stats(const struct voice_node *n, durable_stats_t *out);
void durable_close(struct voice_node *n); /* closes the store; counts in open_handles */

extern const struct lws_protocols http_protocols[];
extern const struct lws_protocols voicews_protocols[];

#endif
