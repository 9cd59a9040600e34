/*
 * voice/http.c — the RPC vhost (--rpc-listen): HTTP/1.1 with keep-alive, plus the /events
 * WebSocket upgrade (handed to events.c).
 *
 *   POST /rpc      bearer check (constant time), body bounded by --rpc-max-body (413 as soon as
 *                  Content-Length or the running total exceeds it, without buffering the rest),
 *                  then sig_rpc_submit(); the reply comes back through the effects, maybe later
 *                  (held DM joins), so the request waits in node->pending by its request id
 *   GET /metrics   Prometheus text 0.0.4
 *   GET /healthz   200 while the process serves
 *   GET /readyz    200, or 503 while shutting down
 *   else           404 NOT_FOUND / 405 METHOD_NOT_ALLOWED, JSON bodies from sig_error_body()
 *
 * Every reply is written in one WRITEABLE callback as one lws_write() of headers + body; a refusal
 * that arrives with a body (401, 404, 405) waits until the body is drained so the connection can
 * be kept alive; a 413 closes the connection instead.
 *
 * Pipelining (a client sends its next request before our reply) is not supported: lws 4.1 keeps
 * re-delivering HTTP_BODY_COMPLETION of the open transaction for as long as the next request sits
 * in its input buffer (a busy loop that starves the node), and a flow-controlled h1 connection
 * gets no WRITEABLE. So when BODY_COMPLETION comes twice for one transaction we stop reading
 * (lws_rx_flow_control), write this request's reply at once (tx.direct) with "Connection: close"
 * and drop the connection; the client retries the unanswered requests on a new connection, as
 * HTTP/1.1 requires of pipelining clients (RFC 9112 §9.3.2).
 */
#include "voice/node_priv.h"

#include "lib/log.h"
#include "lib/util.h"

#include <stdlib.h>
#include <string.h>

/* ---- replies ------------------------------------------------------------------------------------
 */

void http_tx_clear(http_tx *tx)
{
    free(tx->body);
    memset(tx, 0, sizeof *tx);
}

static void write_direct(struct lws *wsi, http_tx *tx);

void http_tx_set(struct lws *wsi, http_tx *tx, int status, const char *ctype, char *body,
                 size_t len, bool close_after)
{
    free(tx->body);
    tx->body = body;
    tx->len = len;
    tx->status = status;
    tx->ctype = ctype;
    tx->close_after = close_after;
    if (tx->direct)
        write_direct(wsi, tx);
    else
        lws_callback_on_writable(wsi);
}

void http_tx_send_now(struct lws *wsi, http_tx *tx, int status, const char *ctype, char *body,
                      size_t len)
{
    if (tx->direct || lws_send_pipe_choked(wsi)) {
        http_tx_set(wsi, tx, status, ctype, body, len, false);
        return;
    }
    free(tx->body);
    tx->body = body;
    tx->len = len;
    tx->status = status;
    tx->ctype = ctype;
    tx->close_after = false;
    if (http_tx_write(wsi, tx) < 0)
        lws_set_timeout(wsi, PENDING_TIMEOUT_CLOSE_SEND, LWS_TO_KILL_ASYNC);
}

void http_tx_error(struct lws *wsi, http_tx *tx, int status, const char *code, const char *msg,
                   bool close_after)
{
    char *b = sig_error_body(code, msg);
    http_tx_set(wsi, tx, status, "application/json", b, strlen(b), close_after);
}

int http_tx_write(struct lws *wsi, http_tx *tx)
{
    if (!tx->status) return 0;
    size_t hdr_room = 512;
    /* the node's write scratch (both vhosts carry the node): no allocation per reply */
    struct lws_vhost *vh = lws_get_vhost(wsi);
    voice_node *n = vh ? lws_get_vhost_user(vh) : NULL;
    unsigned char *own = NULL, *buf;
    if (n) {
        if (LWS_PRE + hdr_room + tx->len > n->wcap) {
            n->wcap = LWS_PRE + hdr_room + tx->len + 4096;
            n->wbuf = xrealloc(n->wbuf, n->wcap);
        }
        buf = n->wbuf;
    } else {
        buf = own = xmalloc(LWS_PRE + hdr_room + tx->len);
    }
    unsigned char *start = buf + LWS_PRE, *p = start, *end = start + hdr_room - 1;
    char clen[24];
    int rc = -1;
    int cl = snprintf(clen, sizeof clen, "%zu", tx->len);
    if (lws_add_http_header_status(wsi, (unsigned)tx->status, &p, end) ||
        lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CONTENT_TYPE,
                                     (const unsigned char *)tx->ctype, (int)strlen(tx->ctype), &p,
                                     end) ||
        lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH,
                                     (const unsigned char *)clen, cl, &p, end) ||
        (tx->close_after &&
         lws_add_http_header_by_token(wsi, WSI_TOKEN_CONNECTION, (const unsigned char *)"close", 5,
                                      &p, end)) ||
        lws_finalize_http_header(wsi, &p, end))
        goto out;
    memcpy(p, tx->body, tx->len);
    p += tx->len;
    size_t total = (size_t)(p - start);
    /* h1 only: headers and body go out as one write */
    if (lws_write(wsi, start, total, LWS_WRITE_HTTP_HEADERS) != (int)total) goto out;
    rc = 0;
out:
    free(own);
    bool close_after = tx->close_after;
    http_tx_clear(tx);
    if (rc < 0 || close_after) return -1;
    return lws_http_transaction_completed(wsi) ? -1 : 0;
}

/* Outside WRITEABLE (pipelined input held back, see the top of this file): the reply goes out
 * now with Connection: close, and the connection is dropped right after. */
static void write_direct(struct lws *wsi, http_tx *tx)
{
    tx->direct = false;
    tx->close_after = true;
    http_tx_write(wsi, tx);
    lws_set_timeout(wsi, PENDING_TIMEOUT_CLOSE_SEND, LWS_TO_KILL_ASYNC);
}

static void submit(voice_node *n, struct lws *wsi, rpc_pss *p);

/* ---- the RPC vhost ------------------------------------------------------------------------------
 */

static void pss_reset(voice_node *n, rpc_pss *p)
{
    if (p->req_id) {
        hmap_delu(n->pending, p->req_id);
        sig_rpc_cancel(n->core, p->req_id);
        durable_cancel(n, p->req_id);
        p->req_id = 0;
    }
    free(p->body);
    p->body = NULL;
    p->len = p->cap = 0;
    p->refused = p->authed = false;
    p->refuse_status = 0;
    p->refuse_code = NULL;
    http_tx_clear(&p->tx);
}

static int hdr_int(struct lws *wsi, enum lws_token_indexes h, long long *out)
{
    char b[32];
    int l = lws_hdr_copy(wsi, b, sizeof b, h);
    if (l <= 0) return 0;
    char *end;
    long long v = strtoll(b, &end, 10);
    if (*end || v < 0) return -1;
    *out = v;
    return 1;
}

static void refuse_now(voice_node *n, struct lws *wsi, rpc_pss *p, int status, const char *code,
                       const char *msg, bool close_after)
{
    p->refused = true;
    if (p->is_rpc) node_count_rpc(n, "none", status, 0);
    http_tx_error(wsi, &p->tx, status, code, msg, close_after);
}

static int on_http(voice_node *n, struct lws *wsi, rpc_pss *p, const char *path)
{
    pss_reset(n, p);
    p->in_use = true;
    p->is_rpc = strcmp(path, "/rpc") == 0;
    p->t0_ns = time_mono_ns();
    bool post = lws_hdr_total_length(wsi, WSI_TOKEN_POST_URI) > 0;
    bool get = lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI) > 0;
    long long clen = 0;
    int has_len = hdr_int(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH, &clen);
    bool chunked = lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_TRANSFER_ENCODING) > 0;
    bool has_body = post && ((has_len > 0 && clen > 0) || chunked);
    LOG(LOG_DEBUG, "http %s %s content_length=%lld",
        post  ? "POST"
        : get ? "GET"
              : "other",
        path, clen);

    int status = 0;
    const char *code = NULL, *msg = NULL;
    if (strcmp(path, "/rpc") == 0) {
        if (!post) {
            status = 405, code = "METHOD_NOT_ALLOWED", msg = "/rpc takes POST";
        } else if (has_len < 0) {
            refuse_now(n, wsi, p, 400, "INVALID_REQUEST", "bad Content-Length", true);
            return 0;
        } else if (has_len && clen > n->cf->rpc_max_body) {
            refuse_now(n, wsi, p, 413, "REQUEST_TOO_LARGE", "request body over the limit", true);
            return 0;
        } else if (!node_bearer_ok(n, wsi)) {
            status = 401, code = "UNAUTHORIZED", msg = "missing or wrong Authorization: Bearer";
        } else {
            p->authed = true;
            p->cap = has_len ? (size_t)clen : 1024;
            p->body = xmalloc(p->cap + 1);
            if (!has_body) goto submit;
            return 0; /* the body follows */
        }
    } else if (strcmp(path, "/metrics") == 0 || strcmp(path, "/healthz") == 0 ||
               strcmp(path, "/readyz") == 0) {
        if (!get) {
            status = 405, code = "METHOD_NOT_ALLOWED", msg = "this path takes GET";
        } else if (path[1] == 'm') {
            metrics_buf b = {0};
            node_render_metrics(n, &b);
            http_tx_set(wsi, &p->tx, 200, "text/plain; version=0.0.4; charset=utf-8", b.s, b.len,
                        false);
            return 0;
        } else if (path[1] == 'h') {
            http_tx_set(wsi, &p->tx, 200, "application/json", xstrdup("{\"status\":\"ok\"}"), 15,
                        false);
            return 0;
        } else {
            bool ready = !n->stopping && durable_up(n);
            const char *st = ready               ? "{\"status\":\"ready\"}"
                             : n->stopping       ? "{\"status\":\"draining\"}"
                             : durable_loaded(n) ? "{\"status\":\"degraded\",\"reason\":\"database "
                                                   "unreachable\"}"
                                                 : "{\"status\":\"starting\",\"reason\":\"loading "
                                                   "state\"}";
            char *b = xstrdup(st);
            http_tx_set(wsi, &p->tx, ready ? 200 : 503, "application/json", b, strlen(b), false);
            return 0;
        }
    } else {
        status = 404, code = "NOT_FOUND", msg = "no such path";
    }
    if (has_body) { /* drain the body first so the connection stays usable */
        p->refused = true;
        p->refuse_status = status;
        p->refuse_code = code;
        return 0;
    }
    refuse_now(n, wsi, p, status, code, msg, false);
    return 0;

submit:
    submit(n, wsi, p);
    return 0;
}

static int on_body(voice_node *n, struct lws *wsi, rpc_pss *p, const void *in, size_t len)
{
    if (p->refused || !p->authed || len == 0) return 0; /* drained, not kept */
    if (p->len + len > (size_t)n->cf->rpc_max_body) {
        free(p->body);
        p->body = NULL;
        p->authed = false;
        refuse_now(n, wsi, p, 413, "REQUEST_TOO_LARGE", "request body over the limit", true);
        return 0;
    }
    if (p->len + len > p->cap) {
        p->cap = p->len + len > p->cap * 2 ? p->len + len : p->cap * 2;
        if (p->cap > (size_t)n->cf->rpc_max_body) p->cap = (size_t)n->cf->rpc_max_body;
        p->body = xrealloc(p->body, p->cap + 1);
    }
    memcpy(p->body + p->len, in, len);
    p->len += len;
    return 0;
}

static int on_body_done(voice_node *n, struct lws *wsi, rpc_pss *p)
{
    if (p->req_id || p->tx.status || p->tx.direct) {
        /* lws re-delivers this while a pipelined request waits in its buffer: stop reading,
         * answer this request and close (top of this file) */
        if (!p->tx.direct) {
            p->tx.direct = true;
            lws_rx_flow_control(wsi, 0);
            if (p->tx.status) write_direct(wsi, &p->tx); /* the reply was already waiting */
        }
        return 0;
    }
    if (p->refused) {
        if (p->refuse_status) {
            int st = p->refuse_status;
            const char *code = p->refuse_code;
            p->refuse_status = 0;
            refuse_now(n, wsi, p, st, code,
                       st == 401   ? "missing or wrong Authorization: Bearer"
                       : st == 405 ? "method not allowed on this path"
                                   : "no such path",
                       false);
        }
        return 0;
    }
    if (!p->authed) return 0;
    submit(n, wsi, p);
    return 0;
}

/* Hands a complete request to the core (or parks it while the database is down). */
static void submit(voice_node *n, struct lws *wsi, rpc_pss *p)
{
    if (n->stopping) { /* nothing new once shutting down: what is queued is being committed */
        free(p->body);
        p->body = NULL;
        p->len = p->cap = 0;
        p->authed = false;
        refuse_now(n, wsi, p, 503, "NODE_DRAINING", "the node is shutting down", false);
        return;
    }
    p->req_id = ++n->next_req;
    hmap_putu(n->pending, p->req_id, wsi);
    p->t0_ns = time_mono_ns();
    p->in_submit = true;
    if (!durable_admit(n, p->req_id, p->body, p->len)) {
        sig_rpc_submit(n->core, p->req_id, p->body, p->len, time_now_ms());
        node_after_step(n);
    }
    p->in_submit = false;
    free(p->body);
    p->body = NULL;
    p->len = p->cap = 0;
    p->authed = false;
}

static int rpc_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                        size_t len)
{
    struct lws_vhost *vh = lws_get_vhost(wsi);
    voice_node *n = vh ? lws_get_vhost_user(vh) : NULL;
    rpc_pss *p = user;

    switch (reason) {
    case LWS_CALLBACK_HTTP:
        return on_http(n, wsi, p, in ? (const char *)in : "");
    case LWS_CALLBACK_HTTP_BODY:
        return on_body(n, wsi, p, in, len);
    case LWS_CALLBACK_HTTP_BODY_COMPLETION:
        return on_body_done(n, wsi, p);
    case LWS_CALLBACK_HTTP_WRITEABLE:
        return p && !p->is_ws ? http_tx_write(wsi, &p->tx) : 0;
    case LWS_CALLBACK_CLOSED_HTTP:
    case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
        if (p && p->in_use && !p->is_ws) {
            pss_reset(n, p);
            p->in_use = false;
        }
        return 0;

    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
        if (p && p->in_use) {
            pss_reset(n, p);
            p->in_use = false;
        }
        return ev_filter(n, wsi);
    case LWS_CALLBACK_ESTABLISHED:
        p->is_ws = true;
        ev_established(n, &p->ev, wsi);
        return 0;
    case LWS_CALLBACK_RECEIVE:
        return ev_receive(&p->ev, in, len);
    case LWS_CALLBACK_SERVER_WRITEABLE:
        return ev_writeable(&p->ev);
    case LWS_CALLBACK_CLOSED:
        if (p && p->is_ws) ev_closed(&p->ev);
        return 0;
    default:
        return 0;
    }
}

const struct lws_protocols http_protocols[] = {
    {"voxd-rpc", rpc_callback, sizeof(rpc_pss), 4096, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};
