/*
 * voice/voicews.c — the voice vhost (--voice-listen): the clients' voice WebSocket at /voice,
 * a first version of spec §6 without media (docs/protocol.md has every message and close code).
 *
 *   node: Hello {"op":8,"d":{"heartbeat_interval":MS}}         on connect
 *   client: Identify {"op":0,"d":{"token":"..."}}  -> sig_grant_redeem()
 *   node: Ready {"op":2,"d":{"connection_id","user_id","session_id"}}   or a close code
 *   client: Heartbeat {"op":3,"d":nonce} -> node: Heartbeat ACK {"op":6,"d":nonce}
 *
 * A per-connection lws timer closes with 4009 when no heartbeat came for 2x the interval. The
 * send queue is bounded (VW_QMAX messages): a client that floods heartbeats faster than it reads
 * the acks is closed with 4008. Messages above 16 KiB close with 4002 before being buffered whole.
 */
#include "voice/node_priv.h"

#include "lib/log.h"
#include "lib/util.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#define VW_RX_MAX 16384
#define VW_QMAX   8

enum { VW_HELLO, VW_READY };

typedef struct vw_pss {
    voice_node *n;
    struct lws *wsi;
    http_tx tx; /* plain HTTP on this vhost: 404 */
    bool ws;
    int state;
    sig_identity id;
    char *q[VW_QMAX];
    int qhead, qn;
    size_t rx_len;
    char *rx; /* VW_RX_MAX, allocated on connect */
} vw_pss;

static void arm_heartbeat(vw_pss *p)
{
    lws_set_timer_usecs(p->wsi, (lws_usec_t)p->n->cf->heartbeat_interval_ms * 2 * 1000);
}

static int vw_close(vw_pss *p, int code, const char *reason)
{
    LOGC(code == 4009 ? LOG_INFO : LOG_WARN, "voice", "closing %s: %d %s",
         p->state == VW_READY ? p->id.connection_id : "(unidentified)", code, reason);
    lws_close_reason(p->wsi, (enum lws_close_status)code, (unsigned char *)reason, strlen(reason));
    return -1;
}

/* Queues a message (takes it). -1 when the queue is full (the caller closes). */
static int vw_send(vw_pss *p, char *msg)
{
    if (p->qn == VW_QMAX) {
        free(msg);
        return -1;
    }
    p->q[(p->qhead + p->qn++) % VW_QMAX] = msg;
    lws_callback_on_writable(p->wsi);
    return 0;
}

static int send_json(vw_pss *p, json_t *j)
{
    char *s = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(j);
    if (vw_send(p, s) < 0) return vw_close(p, 4008, "rate limited: send queue full");
    return 0;
}

static int redeem_failure(vw_pss *p, int rc)
{
    switch (rc) {
    case -EBADMSG:
        return vw_close(p, 4004, "authentication failed: malformed token");
    case -EKEYREJECTED:
        return vw_close(p, 4004, "authentication failed: bad signature");
    case -EKEYEXPIRED:
        return vw_close(p, 4021, "token expired");
    case -EALREADY:
        return vw_close(p, 4022, "token already used");
    case -EXDEV:
        return vw_close(p, 4023, "token issued for another node");
    case -EACCES:
        return vw_close(p, 4023, "token does not match its connection (user/session/room)");
    case -ENOENT:
        return vw_close(p, 4024, "voice connection no longer exists");
    default:
        return vw_close(p, 4004, "authentication failed");
    }
}

static int on_identify(vw_pss *p, json_t *d)
{
    voice_node *n = p->n;
    const char *token;
    json_error_t e;
    if (p->state == VW_READY) return vw_close(p, 4005, "already identified");
    if (!d || json_unpack_ex(d, &e, JSON_STRICT, "{s:s}", "token", &token) < 0)
        return vw_close(p, 4004, "authentication failed: identify needs d.token (a string)");
    int rc = sig_grant_redeem(n->core, token, time_now_ms(), &p->id);
    node_after_step(n);
    if (rc < 0) return redeem_failure(p, rc);
    p->state = VW_READY;
    char uid[21];
    LOGC(LOG_INFO, "voice", "identified connection_id=%s user_id=%s room=%s", p->id.connection_id,
         snowflake_fmt(p->id.user_id, uid), p->id.room);
    return send_json(p, json_pack("{s:i,s:{s:s,s:s,s:s}}", "op", 2, "d", "connection_id",
                                  p->id.connection_id, "user_id", uid, "session_id",
                                  p->id.session_id));
}

static int on_message(vw_pss *p, const char *text, size_t len)
{
    json_error_t e;
    json_t *msg = json_loadb(text, len, JSON_REJECT_DUPLICATES, &e);
    json_int_t op;
    json_t *d = NULL;
    int rc;
    if (!msg || json_unpack_ex(msg, &e, JSON_STRICT, "{s:I,s?o}", "op", &op, "d", &d) < 0) {
        json_decref(msg);
        return vw_close(p, 4002, "decode error: expected {\"op\": int, \"d\": ...}");
    }
    switch (op) {
    case 0:
        rc = on_identify(p, d);
        break;
    case 3:
        arm_heartbeat(p);
        rc = send_json(p, json_pack("{s:i,s:O?}", "op", 6, "d", d));
        break;
    default:
        rc = p->state == VW_READY ? vw_close(p, 4001, "unknown opcode")
                                  : vw_close(p, 4003, "not authenticated: identify first");
    }
    json_decref(msg);
    return rc;
}

static int vw_receive(vw_pss *p, const void *in, size_t len)
{
    if (lws_is_first_fragment(p->wsi)) p->rx_len = 0;
    if (p->rx_len + len > VW_RX_MAX) return vw_close(p, 4002, "decode error: message over 16 KiB");
    memcpy(p->rx + p->rx_len, in, len);
    p->rx_len += len;
    if (!lws_is_final_fragment(p->wsi)) return 0;
    size_t l = p->rx_len;
    p->rx_len = 0;
    return on_message(p, p->rx, l);
}

static int vw_writeable(vw_pss *p)
{
    if (!p->qn) return 0;
    char *m = p->q[p->qhead];
    p->q[p->qhead] = NULL;
    p->qhead = (p->qhead + 1) % VW_QMAX;
    p->qn--;
    int rc = node_ws_send(p->n, p->wsi, m, strlen(m));
    free(m);
    if (rc < 0) return -1;
    if (p->qn) lws_callback_on_writable(p->wsi);
    return 0;
}

static void vw_free(vw_pss *p)
{
    if (!p->ws) return;
    for (int i = 0; i < p->qn; i++)
        free(p->q[(p->qhead + i) % VW_QMAX]);
    p->qn = 0;
    free(p->rx);
    p->rx = NULL;
    p->ws = false;
    p->n->voice_ws_count--;
}

static int voice_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                          size_t len)
{
    struct lws_vhost *vh = lws_get_vhost(wsi);
    voice_node *n = vh ? lws_get_vhost_user(vh) : NULL;
    vw_pss *p = user;
    char uri[64];

    switch (reason) {
    case LWS_CALLBACK_HTTP:
        http_tx_error(wsi, &p->tx, 404, "NOT_FOUND", "the voice endpoint serves /voice only",
                      false);
        return 0;
    case LWS_CALLBACK_HTTP_WRITEABLE:
        return http_tx_write(wsi, &p->tx);
    case LWS_CALLBACK_CLOSED_HTTP:
    case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
        if (p && !p->ws) http_tx_clear(&p->tx);
        return 0;

    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
        if (lws_hdr_copy(wsi, uri, sizeof uri, WSI_TOKEN_GET_URI) <= 0 ||
            strcmp(uri, "/voice") != 0)
            return 1;
        if (n->stopping || !durable_loaded(n)) return 1;
        return 0;
    case LWS_CALLBACK_ESTABLISHED: {
        http_tx_clear(&p->tx);
        memset(p, 0, sizeof *p);
        p->n = n;
        p->wsi = wsi;
        p->ws = true;
        p->state = VW_HELLO;
        p->rx = xmalloc(VW_RX_MAX);
        n->voice_ws_count++;
        arm_heartbeat(p);
        LOGC(LOG_DEBUG, "voice", "connected (voice_ws=%zu)", n->voice_ws_count);
        return send_json(p, json_pack("{s:i,s:{s:I}}", "op", 8, "d", "heartbeat_interval",
                                      (json_int_t)n->cf->heartbeat_interval_ms));
    }
    case LWS_CALLBACK_RECEIVE:
        return vw_receive(p, in, len);
    case LWS_CALLBACK_SERVER_WRITEABLE:
        return vw_writeable(p);
    case LWS_CALLBACK_TIMER:
        return vw_close(p, 4009, "session timed out: no heartbeat");
    case LWS_CALLBACK_CLOSED:
        if (p) vw_free(p);
        return 0;
    default:
        return 0;
    }
}

const struct lws_protocols voicews_protocols[] = {
    {"voxd-voice", voice_callback, sizeof(vw_pss), VW_RX_MAX, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};
