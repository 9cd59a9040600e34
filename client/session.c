/*
 * client/session.c — vc_net and vc_session (client/session.h): a voice session's signalling as a
 * small state machine driven by libwebsockets client callbacks on the caller's libuv loop.
 *
 *   RPC    (only without a token) POST /rpc voice.connect with the bearer secret; the reply's
 *          voice_server gives token and endpoint                       -> VC_EV_GRANT
 *   WS     ws://endpoint/voice: Hello -> heartbeat timer (3/4 of the interval) and Identify (or
 *          Resume after a drop) -> Ready -> Select Protocol -> Session Description, then
 *          Speaking / Client Connect / Client Disconnect / a later Session Description
 *   END    the WebSocket (or the RPC connection) has gone: VC_EV_CLOSED, then the session frees
 *          itself from its timer's close callback.
 *
 * Every way out goes through s_fail() (record why, close the connection if there is one) and the
 * wsi's close callback (s_wsi_gone), which either moves on (RPC done -> WS; a drop with --resume
 * -> a new WS) or schedules the end. The end is always delivered from the timer, never from inside
 * vc_session_start() or an lws callback of a connection still open.
 *
 * Outgoing messages wait in a bounded queue (VC_QMAX) and leave one per WRITEABLE callback, with
 * LWS_PRE bytes of headroom (lws' rule). Incoming messages are reassembled up to VC_RX_MAX.
 *
 * Our close of an open WebSocket (1000, a goodbye: D27) starts in the wsi's TIMER callback, not
 * in WRITEABLE. Debian's lws 4.1.6 is built with _DEBUG, and on the libuv event loop a WRITEABLE
 * callback that returns -1 gets its connection closed twice (lws_service_fd()'s "uv repeat
 * test"): the first close queues the close frame, the second finds it queued and drops the socket
 * before it is written, so the node saw a lost transport and reaped it after --transport-reap. The
 * TIMER path closes once; lws then writes the frame and waits for the node's echo, each step
 * bounded by lws' 5 s close timeouts (voice/voicews.c ends its sessions the same way). A close
 * usually starts outside lws (our duration timer, a signal), and lws' libuv glue re-arms its timer
 * only after its own I/O: lws_cancel_service() (a byte on lws' event pipe) is that I/O.
 */
#include "client/session.h"

#include "lib/log.h"
#include "lib/util.h"

#include <dlfcn.h>
#include <errno.h>
#include <libwebsockets.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#define VC_QMAX         16
#define VC_RX_MAX       65536
#define VC_RESUME_TRIES 3

enum { P_RPC, P_WS, P_END };

struct vc_net {
    uv_loop_t *loop;
    struct lws_context *lws;
    uv_timer_t poll;
    bool destroying, closing;
    int foreign_handles;
    unsigned live; /* sessions not yet freed */
    vc_session *sessions;
    void (*done)(void *arg);
    void *done_arg;
};

typedef struct vc_msg {
    size_t len;
    unsigned char buf[]; /* LWS_PRE + len */
} vc_msg;

struct vc_session {
    vc_net *n;
    vc_session *next, **pprev;
    vc_session_cb cb;
    void *arg;
    /* configuration (owned copies) */
    char *token, *endpoint, *rpc_host, *rpc_secret, *guild_id, *channel_id, *user_id, *session_id;
    int rpc_port;
    vc_mode modes[2];
    unsigned n_modes;
    bool resume;
    /* state */
    int phase;
    struct lws *wsi;
    bool closing;        /* vc_session_close() or a failure: no more messages, no reconnect */
    bool ws_open;        /* the WebSocket handshake completed (CLIENT_ESTABLISHED) */
    bool ws_close_due;   /* our close frame starts in the next TIMER callback */
    bool ended;          /* VC_EV_CLOSED is scheduled */
    bool identified;     /* Ready seen at least once: a reconnect Resumes */
    bool in_connect;     /* inside lws_client_connect_via_info() */
    bool connect_failed; /* ... and lws reported CONNECTION_ERROR from within it */
    unsigned resumes;
    int err;
    int close_code;
    char close_reason[128];
    bool by_us;
    /* heartbeats (and the deferred end) */
    uv_timer_t timer;
    int64_t hb_interval;
    int64_t nonce;
    /* from Ready */
    char *connection_id, *ready_user_id, *ready_session_id, *resume_token;
    vc_sdesc sd;
    /* queues */
    vc_msg *q[VC_QMAX];
    int qhead, qn;
    char *rx;
    size_t rx_len;
    bool rx_over;
    /* RPC */
    char *body;
    size_t body_len;
    int http_status;
    bool rpc_done;
};

static void s_fail(vc_session *s, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- net ------------------------------------------------------------------------------------ */

static int lws_cb(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                  size_t len);

static const struct lws_protocols protocols[] = {
    {"vc-http", lws_cb, 0, 0, 0, NULL, 0},
    {"vc-ws", lws_cb, 0, 0, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

static void lws_log_emit(int level, const char *line)
{
    size_t l = strlen(line);
    while (l && (line[l - 1] == '\n' || line[l - 1] == '\r'))
        l--;
    enum log_level lv = level == LLL_ERR ? LOG_ERROR : level == LLL_WARN ? LOG_WARN : LOG_DEBUG;
    LOGC(lv, "lws", "%.*s", (int)l, line);
}

int vc_net_new(void *loop, vc_net **out)
{
    vc_net *n = xcalloc(1, sizeof *n);
    n->loop = loop;
    lws_set_log_level(LLL_ERR | LLL_WARN | (log_min_level == LOG_DEBUG ? LLL_NOTICE | LLL_INFO : 0),
                      lws_log_emit);
    /* Debian's lws loads its libuv glue as a plugin and dlclose()s it while destroying the
     * context while libuv still has its close callbacks queued: pin it (as voice/node.c). */
    if (!dlopen(LWS_INSTALL_LIBDIR "/libwebsockets-evlib_uv.so", RTLD_NOW | RTLD_NODELETE))
        LOG(LOG_WARN, "cannot pin the lws libuv plugin: %s", dlerror());
    void *foreign[1] = {loop};
    struct lws_context_creation_info ci;
    memset(&ci, 0, sizeof ci);
    ci.options = LWS_SERVER_OPTION_LIBUV;
    ci.foreign_loops = foreign;
    ci.pcontext = &n->lws;
    ci.port = CONTEXT_PORT_NO_LISTEN;
    ci.protocols = protocols;
    ci.user = n;
    /* a connection or handshake that hangs (a half-dead proxy, a stuck node) is given up after
     * 5 s — then resumed (--resume) or reported — instead of lws's 20 s default */
    ci.timeout_secs = 5;
    ci.connect_timeout_secs = 5;
    n->lws = lws_create_context(&ci);
    if (!n->lws) {
        LOG(LOG_ERROR, "cannot create the libwebsockets context (libwebsockets-evlib-uv?)");
        free(n);
        return -EIO;
    }
    uv_timer_init(n->loop, &n->poll);
    n->poll.data = n;
    *out = n;
    return 0;
}

static void net_freed(uv_handle_t *h)
{
    vc_net *n = h->data;
    void (*done)(void *) = n->done;
    void *arg = n->done_arg;
    free(n);
    if (done) done(arg);
}

static void count_foreign(uv_handle_t *h, void *arg)
{
    vc_net *n = arg;
    if (h->data != n && !uv_is_closing(h)) n->foreign_handles++;
}

/* lws 4.1 on a foreign loop (see voice/node.c): the first lws_context_destroy() closes the
 * connections and lws' handles; once the loop holds nothing but ours, the second one frees the
 * context and NULLs n->lws. */
static void on_poll(uv_timer_t *t)
{
    vc_net *n = t->data;
    if (n->live) return; /* sessions still closing */
    if (!n->destroying && n->lws) {
        n->destroying = true;
        lws_context_destroy(n->lws);
        return;
    }
    if (n->lws) {
        n->foreign_handles = 0;
        uv_walk(n->loop, count_foreign, n);
        if (n->foreign_handles) return;
        lws_context_destroy(n->lws);
        if (n->lws) return;
    }
    uv_timer_stop(&n->poll);
    uv_close((uv_handle_t *)&n->poll, net_freed);
}

void vc_net_shutdown(vc_net *n, void (*done)(void *arg), void *arg)
{
    if (!n || n->closing) return;
    n->closing = true;
    n->done = done;
    n->done_arg = arg;
    for (vc_session *s = n->sessions; s; s = s->next)
        vc_session_close(s);
    uv_timer_start(&n->poll, on_poll, 0, 10);
}

/* ---- session: queue and helpers ------------------------------------------------------------- */

static int s_send(vc_session *s, json_t *msg)
{
    char *txt = json_dumps(msg, JSON_COMPACT);
    json_decref(msg);
    if (!txt) return -ENOMEM;
    if (s->phase != P_WS || !s->wsi || s->closing) {
        free(txt);
        return -ENOTCONN;
    }
    if (s->qn == VC_QMAX) {
        free(txt);
        return -EAGAIN;
    }
    size_t l = strlen(txt);
    vc_msg *m = xmalloc(sizeof *m + LWS_PRE + l);
    m->len = l;
    memcpy(m->buf + LWS_PRE, txt, l);
    free(txt);
    s->q[(s->qhead + s->qn++) % VC_QMAX] = m;
    lws_callback_on_writable(s->wsi);
    return 0;
}

static void q_clear(vc_session *s)
{
    while (s->qn) {
        free(s->q[s->qhead]);
        s->qhead = (s->qhead + 1) % VC_QMAX;
        s->qn--;
    }
    s->qhead = 0;
}

static void emit(vc_session *s, vc_event *ev)
{
    if (s->cb) s->cb(s, ev, s->arg);
}

static void s_freed(uv_handle_t *h)
{
    vc_session *s = h->data;
    vc_net *n = s->n;
    if (s->next) s->next->pprev = s->pprev;
    *s->pprev = s->next;
    n->live--;
    q_clear(s);
    free(s->token);
    free(s->endpoint);
    free(s->rpc_host);
    free(s->rpc_secret);
    free(s->guild_id);
    free(s->channel_id);
    free(s->user_id);
    free(s->session_id);
    free(s->connection_id);
    free(s->ready_user_id);
    free(s->ready_session_id);
    free(s->resume_token);
    free(s->rx);
    free(s->body);
    free(s);
}

static void on_end(uv_timer_t *t)
{
    vc_session *s = t->data;
    vc_event ev = {.kind = VC_EV_CLOSED,
                   .close_code = s->close_code,
                   .close_reason = s->close_reason,
                   .by_us = s->by_us,
                   .err = s->err,
                   .connection_id = s->connection_id,
                   .user_id = s->ready_user_id};
    emit(s, &ev);
    uv_close((uv_handle_t *)&s->timer, s_freed);
}

/* No connection left: deliver the end from the timer. */
static void s_schedule_end(vc_session *s)
{
    if (s->ended) return;
    s->ended = true;
    s->phase = P_END;
    uv_timer_stop(&s->timer);
    uv_timer_start(&s->timer, on_end, 0, 0);
}

static void s_fail(vc_session *s, int err, const char *fmt, ...)
{
    if (!s->closing) {
        s->closing = true;
        s->err = err;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(s->close_reason, sizeof s->close_reason, fmt, ap);
        va_end(ap);
        if (err)
            LOG(LOG_WARN, "session %s: %s", s->connection_id ? s->connection_id : "(new)",
                s->close_reason);
    }
    if (!s->wsi) {
        s_schedule_end(s);
    } else if (s->phase == P_WS && s->ws_open) {
        if (!s->ws_close_due) { /* see the top of this file */
            s->ws_close_due = true;
            lws_set_timer_usecs(s->wsi, 1);
            lws_cancel_service(s->n->lws);
        }
    } else { /* the RPC, or a WebSocket still connecting: nothing to say goodbye on */
        lws_set_timeout(s->wsi, PENDING_TIMEOUT_KILLED_BY_PARENT, LWS_TO_KILL_ASYNC);
        lws_cancel_service(s->n->lws);
    }
}

void vc_session_close(vc_session *s)
{
    if (!s || s->closing) return;
    s->by_us = true;
    s->close_code = 1000;
    s_fail(s, 0, "closed by the client");
}

int vc_session_speaking(vc_session *s, bool on)
{
    return s_send(s, json_pack("{s:i,s:{s:b}}", "op", 5, "d", "speaking", on));
}

/* ---- connections ---------------------------------------------------------------------------- */

static void s_wsi_gone(vc_session *s);

/* A connection attempt failed: record why (unless we are closing anyway). A WebSocket that had
 * been identified is retried with Resume when asked to; anything else ends the session. */
static void conn_error(vc_session *s, const char *why, size_t len)
{
    if (s->closing) return;
    s->closing = s->phase == P_RPC || !s->resume || !s->identified;
    s->err = -ECONNREFUSED;
    snprintf(s->close_reason, sizeof s->close_reason, "%s: %.*s",
             s->phase == P_RPC ? "RPC connection failed" : "WebSocket connection failed",
             why ? (int)len : 7, why ? why : "unknown");
}

/* Starts the connection of the current phase. We keep the wsi ourselves (no pwsi: lws would
 * NULL it behind our back when an old connection goes, after a new one took its place). A
 * failure, whether lws returns NULL or reports CONNECTION_ERROR from within this call, goes
 * through s_wsi_gone() once, here. */
static void s_connect(vc_session *s, struct lws_client_connect_info *ci)
{
    ci->opaque_user_data = s;
    s->wsi = NULL;
    s->in_connect = true;
    s->connect_failed = false;
    struct lws *w = lws_client_connect_via_info(ci);
    s->in_connect = false;
    if (w && !s->connect_failed) {
        s->wsi = w;
        return;
    }
    if (!s->connect_failed) conn_error(s, "cannot connect", 14);
    s_wsi_gone(s);
}

static int split_hostport(const char *ep, char **host, int *port)
{
    const char *colon = strrchr(ep, ':');
    if (!colon || colon == ep || !colon[1]) return -EINVAL;
    char *end;
    long p = strtol(colon + 1, &end, 10);
    if (*end || p < 1 || p > 65535) return -EINVAL;
    const char *h = ep;
    size_t hl = (size_t)(colon - ep);
    if (h[0] == '[' && hl >= 2 && h[hl - 1] == ']') {
        h++;
        hl -= 2;
    }
    *host = xstrndup(h, hl);
    *port = (int)p;
    return 0;
}

static int ws_connect(vc_session *s)
{
    char *host;
    int port;
    if (split_hostport(s->endpoint, &host, &port) < 0) {
        s_fail(s, -EINVAL, "endpoint \"%s\" is not HOST:PORT", s->endpoint);
        return -EINVAL;
    }
    struct lws_client_connect_info ci;
    memset(&ci, 0, sizeof ci);
    ci.context = s->n->lws;
    ci.address = host;
    ci.port = port;
    ci.path = "/voice";
    ci.host = host;
    ci.origin = host;
    ci.local_protocol_name = "vc-ws";
    s->phase = P_WS;
    s->rx_len = 0;
    s->rx_over = false;
    s->ws_open = false;
    s->ws_close_due = false;
    s_connect(s, &ci);
    free(host);
    return 0;
}

static int rpc_connect(vc_session *s)
{
    json_t *params = json_pack("{s:s,s:s,s:s}", "channel_id", s->channel_id, "user_id", s->user_id,
                               "session_id", s->session_id);
    if (s->guild_id) json_object_set_new(params, "guild_id", json_string(s->guild_id));
    json_t *req = json_pack("{s:s,s:o}", "method", "voice.connect", "params", params);
    char *txt = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    if (!txt) return -ENOMEM;
    s->body_len = strlen(txt);
    s->body = xmalloc(LWS_PRE + s->body_len + 1);
    memcpy(s->body + LWS_PRE, txt, s->body_len + 1);
    free(txt);

    struct lws_client_connect_info ci;
    memset(&ci, 0, sizeof ci);
    ci.context = s->n->lws;
    ci.address = s->rpc_host;
    ci.port = s->rpc_port;
    ci.path = "/rpc";
    ci.host = s->rpc_host;
    ci.origin = s->rpc_host;
    ci.method = "POST";
    ci.local_protocol_name = "vc-http";
    s->phase = P_RPC;
    s_connect(s, &ci);
    return 0;
}

/* The connection of the current phase has closed (any reason). */
static void s_wsi_gone(vc_session *s)
{
    s->wsi = NULL;
    q_clear(s);
    uv_timer_stop(&s->timer);
    if (s->phase == P_RPC && s->rpc_done && !s->closing) {
        ws_connect(s);
        return;
    }
    if (s->phase == P_WS && !s->closing && s->resume && s->identified && s->resume_token &&
        s->close_code == 0 && s->resumes < VC_RESUME_TRIES) {
        s->resumes++;
        vc_event ev = {.kind = VC_EV_RECONNECT, .connection_id = s->connection_id};
        emit(s, &ev);
        ws_connect(s);
        return;
    }
    if (!s->closing) {
        s->closing = true;
        if (!s->close_reason[0])
            snprintf(s->close_reason, sizeof s->close_reason, "%s",
                     s->phase == P_RPC ? "RPC connection closed without an answer"
                                       : "connection closed without a close frame");
        if (!s->err && s->close_code == 0) s->err = -ECONNRESET;
    }
    s_schedule_end(s);
}

/* ---- RPC reply ------------------------------------------------------------------------------ */

static void rpc_reply(vc_session *s)
{
    json_error_t e;
    json_t *r = json_loadb(s->rx ? s->rx : "", s->rx_len, JSON_REJECT_DUPLICATES, &e);
    if (!r) {
        s_fail(s, -EPROTO, "RPC %d: reply is not JSON (%s)", s->http_status, e.text);
        return;
    }
    if (s->http_status != 200) {
        const char *code = "?", *msg = "";
        json_unpack(r, "{s:{s?s,s?s}}", "error", "code", &code, "message", &msg);
        s_fail(s, -EACCES, "RPC voice.connect: %d %s: %s", s->http_status, code, msg);
        json_decref(r);
        return;
    }
    const char *token, *endpoint, *cid = NULL;
    if (json_unpack_ex(r, &e, 0, "{s:{s:{s:s,s:s,s?s}}}", "result", "voice_server", "token", &token,
                       "endpoint", &endpoint, "connection_id", &cid) < 0) {
        s_fail(s, -EPROTO, "RPC voice.connect: result.voice_server: %s", e.text);
        json_decref(r);
        return;
    }
    s->token = xstrdup(token);
    s->endpoint = xstrdup(endpoint);
    s->rpc_done = true;
    vc_event ev = {.kind = VC_EV_GRANT, .token = token, .endpoint = endpoint, .connection_id = cid};
    emit(s, &ev);
    json_decref(r);
}

/* ---- voice WebSocket messages --------------------------------------------------------------- */

static void send_identify(vc_session *s)
{
    if (s->identified && s->resume_token)
        s_send(s,
               json_pack("{s:i,s:{s:s,s:s,s:s}}", "op", 7, "d", "connection_id", s->connection_id,
                         "session_id", s->ready_session_id, "resume_token", s->resume_token));
    else
        s_send(s, json_pack("{s:i,s:{s:s}}", "op", 0, "d", "token", s->token));
}

static void on_heartbeat(uv_timer_t *t)
{
    vc_session *s = t->data;
    s_send(s, json_pack("{s:i,s:I}", "op", 3, "d", (json_int_t)++s->nonce));
}

static void send_select(vc_session *s)
{
    json_t *modes = json_array();
    for (unsigned i = 0; i < s->n_modes; i++)
        json_array_append_new(modes, json_string(vc_mode_name(s->modes[i])));
    s_send(s, json_pack("{s:i,s:{s:s,s:o}}", "op", 1, "d", "protocol", "srtp", "modes", modes));
}

static void on_message(vc_session *s)
{
    json_error_t e;
    json_t *msg = json_loadb(s->rx, s->rx_len, JSON_REJECT_DUPLICATES, &e), *d = NULL;
    json_int_t op;
    if (!msg || json_unpack_ex(msg, &e, JSON_STRICT, "{s:I,s?o}", "op", &op, "d", &d) < 0) {
        s_fail(s, -EPROTO, "undecodable message from the node: %s", e.text);
        json_decref(msg);
        return;
    }
    vc_event ev = {0};
    char err[160];
    switch (op) {
    case 8: { /* Hello */
        json_int_t iv;
        if (json_unpack_ex(d, &e, 0, "{s:I}", "heartbeat_interval", &iv) < 0 || iv < 10) {
            s_fail(s, -EPROTO, "Hello: d.heartbeat_interval missing or < 10");
            break;
        }
        s->hb_interval = iv;
        ev.kind = VC_EV_HELLO;
        ev.heartbeat_interval = iv;
        emit(s, &ev);
        send_identify(s);
        on_heartbeat(&s->timer);
        uv_timer_start(&s->timer, on_heartbeat, (uint64_t)iv * 3 / 4, (uint64_t)iv * 3 / 4);
        break;
    }
    case 2: { /* Ready */
        const char *cid, *uid, *sid, *rt = NULL;
        if (json_unpack_ex(d, &e, JSON_STRICT, "{s:s,s:s,s:s,s?s}", "connection_id", &cid,
                           "user_id", &uid, "session_id", &sid, "resume_token", &rt) < 0) {
            s_fail(s, -EPROTO, "Ready: d: %s", e.text);
            break;
        }
        free(s->connection_id);
        free(s->ready_user_id);
        free(s->ready_session_id);
        free(s->resume_token);
        s->connection_id = xstrdup(cid);
        s->ready_user_id = xstrdup(uid);
        s->ready_session_id = xstrdup(sid);
        s->resume_token = rt ? xstrdup(rt) : NULL;
        s->identified = true;
        ev.kind = VC_EV_READY;
        ev.connection_id = cid;
        ev.user_id = uid;
        emit(s, &ev);
        send_select(s);
        break;
    }
    case 4: /* Session Description */
        if (vc_sdesc_parse(d, &s->sd, err, sizeof err) < 0) {
            s_fail(s, -EPROTO, "Session Description: %s", err);
            break;
        }
        ev.kind = VC_EV_SDESC;
        ev.sdesc = &s->sd;
        emit(s, &ev);
        break;
    case 5: { /* Speaking: user_id and connection_id are both strings or both null */
        json_int_t slot;
        json_t *juid, *jcid;
        if (json_unpack_ex(d, &e, JSON_STRICT, "{s:I,s:o,s:o}", "slot", &slot, "user_id", &juid,
                           "connection_id", &jcid) < 0) {
            s_fail(s, -EPROTO, "Speaking: d: %s", e.text);
            break;
        }
        if (slot < 0 || slot >= VC_MAX_SLOTS) {
            s_fail(s, -EPROTO, "Speaking: d.slot: %lld out of range", (long long)slot);
            break;
        }
        if (!(json_is_string(juid) && json_is_string(jcid)) &&
            !(json_is_null(juid) && json_is_null(jcid))) {
            s_fail(s, -EPROTO,
                   "Speaking: d.user_id and d.connection_id: both strings or both null");
            break;
        }
        const char *uid = json_string_value(juid), *cid = json_string_value(jcid);
        ev.kind = VC_EV_SPEAKING;
        ev.slot = (int)slot;
        ev.user_id = uid;
        ev.connection_id = cid;
        emit(s, &ev);
        break;
    }
    case 12:
    case 13: { /* Client Connect / Disconnect */
        const char *uid, *cid;
        if (json_unpack_ex(d, &e, JSON_STRICT, "{s:s,s:s}", "user_id", &uid, "connection_id",
                           &cid) < 0) {
            s_fail(s, -EPROTO, "Client %s: d: %s", op == 12 ? "Connect" : "Disconnect", e.text);
            break;
        }
        ev.kind = op == 12 ? VC_EV_CLIENT_CONNECT : VC_EV_CLIENT_DISCONNECT;
        ev.user_id = uid;
        ev.connection_id = cid;
        emit(s, &ev);
        break;
    }
    case 9: /* Resumed */
        ev.kind = VC_EV_RESUMED;
        ev.connection_id = s->connection_id;
        emit(s, &ev);
        break;
    case 6: /* Heartbeat ACK */
        break;
    default:
        LOG(LOG_DEBUG, "session %s: op %lld ignored", s->connection_id ? s->connection_id : "-",
            (long long)op);
    }
    json_decref(msg);
}

/* ---- the lws callback ----------------------------------------------------------------------- */

static int rx_append(vc_session *s, const void *in, size_t len)
{
    if (!s->rx) s->rx = xmalloc(VC_RX_MAX);
    if (s->rx_len + len > VC_RX_MAX) {
        s->rx_over = true;
        return -1;
    }
    memcpy(s->rx + s->rx_len, in, len);
    s->rx_len += len;
    return 0;
}

static int lws_cb(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                  size_t len)
{
    vc_session *s = wsi ? lws_get_opaque_user_data(wsi) : NULL;
    if (!s) return 0;
    switch (reason) {
    /* -- HTTP (the RPC) -- */
    case LWS_CALLBACK_CLIENT_APPEND_HANDSHAKE_HEADER: {
        if (s->phase != P_RPC) return 0;
        unsigned char **p = (unsigned char **)in, *end = (*p) + len;
        char auth[600], cl[24];
        snprintf(auth, sizeof auth, "Bearer %s", s->rpc_secret);
        snprintf(cl, sizeof cl, "%zu", s->body_len);
        if (lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_AUTHORIZATION, (unsigned char *)auth,
                                         (int)strlen(auth), p, end) ||
            lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CONTENT_TYPE,
                                         (unsigned char *)"application/json", 16, p, end) ||
            lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH, (unsigned char *)cl,
                                         (int)strlen(cl), p, end))
            return -1;
        lws_client_http_body_pending(wsi, 1);
        lws_callback_on_writable(wsi);
        return 0;
    }
    case LWS_CALLBACK_CLIENT_HTTP_WRITEABLE:
        if (!s->body) return 0;
        lws_client_http_body_pending(wsi, 0);
        if (lws_write(wsi, (unsigned char *)s->body + LWS_PRE, s->body_len, LWS_WRITE_HTTP_FINAL) <
            (int)s->body_len)
            return -1;
        free(s->body);
        s->body = NULL;
        return 0;
    case LWS_CALLBACK_ESTABLISHED_CLIENT_HTTP:
        s->http_status = (int)lws_http_client_http_response(wsi);
        s->rx_len = 0;
        return 0;
    case LWS_CALLBACK_RECEIVE_CLIENT_HTTP: {
        char buf[4096 + LWS_PRE], *px = buf + LWS_PRE;
        int lx = (int)sizeof buf - LWS_PRE;
        return lws_http_client_read(wsi, &px, &lx) < 0 ? -1 : 0;
    }
    case LWS_CALLBACK_RECEIVE_CLIENT_HTTP_READ:
        return rx_append(s, in, len);
    case LWS_CALLBACK_COMPLETED_CLIENT_HTTP:
        if (!s->rpc_done && !s->closing) rpc_reply(s);
        return -1; /* one request per connection */
    case LWS_CALLBACK_CLOSED_CLIENT_HTTP:
        /* also the voice WebSocket's, closed before its handshake completed (lws' 5 s timeout,
         * or our kill): lws 4.1.6 reports it so, not as CLIENT_CONNECTION_ERROR */
        if (s->wsi != wsi) return 0;
        if (s->phase == P_WS) {
            const char *why = "closed before the handshake completed";
            conn_error(s, why, strlen(why));
        }
        s_wsi_gone(s);
        return 0;

    /* -- the voice WebSocket -- */
    case LWS_CALLBACK_CLIENT_ESTABLISHED:
        s->ws_open = true;
        s->close_code = 0;
        s->close_reason[0] = 0;
        return 0;
    case LWS_CALLBACK_CLIENT_RECEIVE:
        if (lws_is_first_fragment(wsi)) s->rx_len = 0;
        if (rx_append(s, in, len) < 0) {
            s_fail(s, -EMSGSIZE, "a message over %d bytes from the node", VC_RX_MAX);
            return 0;
        }
        if (lws_is_final_fragment(wsi) && !lws_remaining_packet_payload(wsi) && !s->closing)
            on_message(s);
        return 0;
    case LWS_CALLBACK_TIMER:
        if (!s->ws_close_due || s->wsi != wsi) return 0;
        lws_close_reason(wsi, LWS_CLOSE_STATUS_NORMAL, (unsigned char *)"bye", 3);
        return -1; /* lws writes the close frame, then awaits the node's echo */
    case LWS_CALLBACK_CLIENT_WRITEABLE:
        if (s->closing) return 0; /* nothing after (or instead of) the close frame */
        if (s->qn) {
            vc_msg *m = s->q[s->qhead];
            s->qhead = (s->qhead + 1) % VC_QMAX;
            s->qn--;
            int w = lws_write(wsi, m->buf + LWS_PRE, m->len, LWS_WRITE_TEXT);
            free(m);
            if (w < 0) return -1;
            if (s->qn) lws_callback_on_writable(wsi);
        }
        return 0;
    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
        if (len >= 2) {
            const unsigned char *b = in;
            s->close_code = b[0] << 8 | b[1];
            size_t rl = len - 2 < sizeof s->close_reason - 1 ? len - 2 : sizeof s->close_reason - 1;
            memcpy(s->close_reason, b + 2, rl);
            s->close_reason[rl] = 0;
        } else {
            s->close_code = 1005;
            snprintf(s->close_reason, sizeof s->close_reason, "no status");
        }
        s->closing = true; /* a close from the node ends the session: no Resume */
        return 0;
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
        if (s->in_connect) { /* s_connect() goes on from here */
            s->connect_failed = true;
            conn_error(s, in, in ? strlen(in) : 0);
        } else if (s->wsi == wsi) {
            conn_error(s, in, in ? strlen(in) : 0);
            s_wsi_gone(s);
        }
        return 0;
    case LWS_CALLBACK_CLIENT_CLOSED:
        if (s->wsi == wsi) s_wsi_gone(s);
        return 0;
    default:
        return 0;
    }
}

/* ---- start ---------------------------------------------------------------------------------- */

static char *dup_or_null(const char *p)
{
    return p ? xstrdup(p) : NULL;
}

int vc_session_start(vc_net *n, const vc_session_config *cfg, vc_session_cb cb, void *arg,
                     vc_session **out)
{
    bool grant = cfg->token && cfg->endpoint;
    bool rpc =
        cfg->rpc_url && cfg->rpc_secret && cfg->channel_id && cfg->user_id && cfg->session_id;
    if ((!grant && !rpc) || n->closing || cfg->n_modes > 2) return -EINVAL;
    vc_session *s = xcalloc(1, sizeof *s);
    s->n = n;
    s->cb = cb;
    s->arg = arg;
    if (grant) {
        s->token = xstrdup(cfg->token);
        s->endpoint = xstrdup(cfg->endpoint);
    } else {
        char *url = xstrdup(cfg->rpc_url);
        const char *prot, *ads, *path;
        int port;
        if (lws_parse_uri(url, &prot, &ads, &port, &path) || strcmp(prot, "http") != 0) {
            free(url);
            free(s);
            return -EINVAL;
        }
        s->rpc_host = xstrdup(ads);
        s->rpc_port = port;
        free(url);
        s->rpc_secret = xstrdup(cfg->rpc_secret);
        s->guild_id = dup_or_null(cfg->guild_id);
        s->channel_id = xstrdup(cfg->channel_id);
        s->user_id = xstrdup(cfg->user_id);
        s->session_id = xstrdup(cfg->session_id);
    }
    s->n_modes = cfg->n_modes;
    memcpy(s->modes, cfg->modes, sizeof s->modes);
    if (!s->n_modes) {
        s->modes[0] = VC_MODE_AES_CM;
        s->n_modes = 1;
    }
    s->resume = cfg->resume;
    uv_timer_init(n->loop, &s->timer);
    s->timer.data = s;
    s->next = n->sessions;
    if (s->next) s->next->pprev = &s->next;
    s->pprev = &n->sessions;
    n->sessions = s;
    n->live++;
    *out = s;
    if (grant)
        ws_connect(s);
    else
        rpc_connect(s);
    return 0;
}
