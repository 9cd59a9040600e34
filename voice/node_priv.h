/*
 * voice/node_priv.h — what the files of the node share (not a public header):
 *   node.c     the node object, the step → effects pump, timers, signals, shutdown, /metrics
 *   http.c     the RPC vhost: /rpc, /metrics, /healthz, /readyz, and the /events upgrade
 *   events.c   the /events WebSocket (outbox readers)
 *   voicews.c  the voice vhost: /voice WebSocket
 *   durable.c  with a database: group commit of the effects, outage handling, recovery
 *   media.c    the media workers and the connections' media sessions (rooms, keys, resume)
 * Everything runs on the loop thread.
 */
#ifndef VOXD_NODE_PRIV_H
#define VOXD_NODE_PRIV_H

#include "lib/conf.h"
#include "lib/hmap.h"
#include "lib/metrics.h"
#include "rtp/rtp.h"
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
typedef struct media media;
typedef struct msess msess;
typedef struct vw_pss vw_pss;

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
    media *media;      /* the media workers and sessions */
    hmap *dev_pending; /* --dev: grant request id -> devsite's request */
    hmap *dev_names;   /* --dev: user id -> name */
    hmap *waiters;     /* node_after_commit: request id -> its callback */
    uint64_t next_seq; /* durable: seq of the next event to number */
    int64_t stop_deadline_ms;
    int64_t drain_until_ms; /* shutdown: voice WebSockets get their 4015 until then */

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
/* Routes a reply of the core to whoever asked (an /rpc request, a dev grant); takes `body`. */
void node_deliver_reply(struct voice_node *n, uint64_t req, const char *method, int status,
                        char *body, size_t len);
/* Calls cb(arg, 200) once everything the core produced so far is committed — at once (returning 0)
 * without a database or with nothing queued — or cb(arg, 503) when that commit could not be done
 * within --store-deadline (the change stays queued, D17). The handle cancels it (the caller went
 * away); cb is never called after a cancel. */
typedef void (*node_commit_cb)(void *arg, int status);
uint64_t node_after_commit(struct voice_node *n, node_commit_cb cb, void *arg);
void node_after_commit_cancel(struct voice_node *n, uint64_t handle);
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
/* Queues a pseudo-reply `req` behind everything taken so far (node_after_commit). false when
 * nothing is waiting for a commit. */
bool durable_after_commit(struct voice_node *n, uint64_t req);
bool durable_loaded(const struct voice_node *n); /* true without a database */
bool durable_up(const struct voice_node *n);     /* loaded and the database reachable */
bool durable_idle(const struct voice_node *n);   /* nothing waiting to be committed */
void durable_stats(const struct voice_node *n, durable_stats_t *out);
void durable_close(struct voice_node *n); /* closes the store; counts in open_handles */

/* ---- media.c ------------------------------------------------------------------------------ */
int media_start(struct voice_node *n); /* binds and starts the workers; negative errno */
/* Select Protocol: the media session of identified connection `id` (an existing one is ended
 * with 4011 first), attached to `ws`; sends Session Description, roster and slot table. 0, or
 * -ENOENT if the connection no longer exists. */
int media_open(struct voice_node *n, vw_pss *ws, const sig_identity *id, const char *resume_token,
               rtp_srtp_profile prof, const char *offer, msess **out, const char **why);
/* Resume: attaches `ws` to the session (an attached one is ended with 4011), sends Resumed,
 * the slot table and the roster; fills *id. -ENOENT when nothing matches. */
int media_resume(struct voice_node *n, vw_pss *ws, const char *conn_id, const char *session_id,
                 const char *token, msess **out, sig_identity *id);
/* Its WebSocket went away: detached (reaped after --transport-reap unless resumed), or, when the
 * client closed it with 1000 (`left`), reaped at once (D27). */
void media_ws_closed(struct voice_node *n, msess *s, bool left);
void media_conn_touched(struct voice_node *n, const sig_effects *fx); /* after each step */
void media_drain(struct voice_node *n);                               /* shutdown: 4015 */
void media_stop(struct voice_node *n); /* stops the workers, closes handles (open_handles) */
void media_free(struct voice_node *n);
void media_render_metrics(struct voice_node *n, metrics_buf *b);

/* ---- devsite.c: --dev only: demo page, JS client, grants (false: not a dev path) ----------- */
bool devsite_http(struct voice_node *n, struct lws *wsi, http_tx *tx, uint64_t *slot,
                  const char *uri);
bool devsite_reply(struct voice_node *n, uint64_t req, int status, char *body, size_t len);
void devsite_cancel(struct voice_node *n, uint64_t *slot); /* its HTTP connection went away */
void devsite_free(struct voice_node *n);

/* ---- voicews.c: what media.c may do to a voice WebSocket ------------------------------------ */
void vw_send_json(vw_pss *p, json_t *msg);            /* queues it (takes the reference) */
void vw_detach(vw_pss *p);                            /* forget its media session */
void vw_end(vw_pss *p, int code, const char *reason); /* close after what is queued */

extern const struct lws_protocols http_protocols[];
extern const struct lws_protocols voicews_protocols[];

#endif
