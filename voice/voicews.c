/*
 * voice/voicews.c — the voice vhost (--voice-listen): the clients' voice WebSocket at /voice,
 * spec §6 (docs/protocol.md has every message and close code).
 *
 *   node: Hello {"op":8,"d":{"heartbeat_interval":MS}}         on connect
 *   client: Identify {"op":0,"d":{"token":"..."}}  -> sig_grant_redeem()
 *   node: Ready {"op":2,"d":{"connection_id","user_id","session_id","resume_token"}}
 *   client: Select Protocol {"op":1,"d":{"protocol":"srtp","modes":[...]}} -> media_open()
 *   node: Session Description (op 4), Client Connect (op 12) per participant, Speaking (op 5)
 *   client: Resume {"op":7,...} instead of Identify -> media_resume() -> Resumed (op 9)
 *   client: Heartbeat {"op":3,"d":nonce} -> node: Heartbeat ACK {"op":6,"d":nonce}
 *
 * A per-connection lws timer closes with 4009 when no heartbeat came for 2x the interval. The
 * send queue is bounded (VW_QMAX messages): a client that floods heartbeats faster than it reads
 * the acks is closed with 4008. Messages above 16 KiB close with 4002 before being buffered whole.
 * A complete message is decoded and validated by sig_vmsg_decode() (signalling/, pure, fuzzed);
 * this file only acts on the result or closes with the code it gives.
 * media.c ends a session from outside a callback with vw_end(): the close happens in the next
 * WRITEABLE, after what is queued.
 */
#include "voice/node_priv.h"

#include "lib/log.h"
#include "lib/util.h"

#include <errno.h>
#include <jansson.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define VW_RX_MAX SIG_VMSG_MAX
#define VW_LWS_RX 2048 /* lws' per-connection receive buffer */
#define VW_QMAX   4096 /* queued messages (a room's roster after Session Description) */

enum { VW_HELLO, VW_READY, VW_MEDIA };

struct vw_pss {
    voice_node *n;
    struct lws *wsi;
    http_tx tx;       /* plain HTTP on this vhost: 404, or the --dev site */
    uint64_t dev_req; /* a dev grant waiting for the core's reply */
    bool ws;
    int state;
    sig_identity id;
    char resume_token[32];
    msess *sess; /* the media session (VW_MEDIA), until media.c detaches it */
    char **q;    /* ring of queued messages, grown up to VW_QMAX */
    int qhead, qn, qcap;
    int end_code;     /* vw_end(): close after the queue */
    bool client_left; /* the client closed with 1000: it left (D27) */
    bool ready_wait;  /* identified; Ready waits for the token's use to be committed */
    uint64_t ready_req;
    char end_reason[124];
    size_t rx_len;
    char *rx; /* the message being assembled: grows in powers of two up to VW_RX_MAX */
    size_t rx_cap;
};

static void arm_heartbeat(vw_pss *p)
{
    if (p->end_code) return; /* the timer is ending the session */
    lws_set_timer_usecs(p->wsi, (lws_usec_t)p->n->cf->heartbeat_interval_ms * 2 * 1000);
}

static int vw_close(vw_pss *p, int code, const char *reason)
{
    LOGC(code == 4009 || code == 4006 || code == 4015 ? LOG_INFO : LOG_WARN, "voice",
         "closing %s: %d %s", p->state != VW_HELLO ? p->id.connection_id : "(unidentified)", code,
         reason);
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
    if (p->qn == p->qcap) {
        int cap = p->qcap ? p->qcap * 2 : 16;
        char **q = xcalloc((size_t)cap, sizeof *q);
        for (int i = 0; i < p->qn; i++)
            q[i] = p->q[(p->qhead + i) % p->qcap];
        free(p->q);
        p->q = q;
        p->qcap = cap;
        p->qhead = 0;
    }
    p->q[(p->qhead + p->qn++) % p->qcap] = msg;
    lws_callback_on_writable(p->wsi);
    return 0;
}

void vw_end(vw_pss *p, int code, const char *reason)
{
    if (p->end_code) return;
    p->end_code = code;
    snprintf(p->end_reason, sizeof p->end_reason, "%s", reason);
    /* lws sends our close code only when the close starts in RECEIVE or TIMER (returning -1 from
     * WRITEABLE drops the socket without a close frame): end in the TIMER callback, once the
     * queue is written */
    lws_set_timer_usecs(p->wsi, p->qn ? 20000 : 1);
    /* lws' libuv glue re-arms its timer only after its own I/O: from outside its callbacks (a
     * worker event, a uv timer) the close would wait for some other socket's traffic. A byte on
     * lws' event pipe is such I/O (libvoxclient does the same, client/session.c). */
    lws_cancel_service(p->n->lws);
}

void vw_send_json(vw_pss *p, json_t *j)
{
    char *s = j ? json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    json_decref(j);
    if (!s) { /* a json_pack that failed is a bug: never queue NULL */
        vw_end(p, 1011, "internal error");
        return;
    }
    if (vw_send(p, s) < 0) vw_end(p, 4008, "rate limited: send queue full");
}

void vw_detach(vw_pss *p)
{
    p->sess = NULL;
}

static int send_json(vw_pss *p, json_t *j)
{
    char *s = j ? json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    json_decref(j);
    if (!s) return vw_close(p, 1011, "internal error"); /* a failed json_pack: never queue NULL */
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

/* The message was decoded and validated by sig_vmsg_decode(): from here on, only actions. */
static void on_token_committed(void *arg, int status)
{
    vw_pss *p = arg;
    p->ready_wait = false;
    p->ready_req = 0;
    if (status != 200) {
        vw_end(p, 4017, "try again later: the node cannot store the token's use (get a new grant)");
        return;
    }
    char uid[21];
    snowflake_fmt(p->id.user_id, uid); /* not inside LOGC: its arguments may not be evaluated */
    LOGC(LOG_INFO, "voice", "identified connection_id=%s user_id=%s room=%s", p->id.connection_id,
         uid, p->id.room);
    vw_send_json(p, json_pack("{s:i,s:{s:s,s:s,s:s,s:s}}", "op", 2, "d", "connection_id",
                              p->id.connection_id, "user_id", uid, "session_id", p->id.session_id,
                              "resume_token", p->resume_token));
}

static int on_identify(vw_pss *p, const sig_vmsg *m)
{
    voice_node *n = p->n;
    int rc = sig_grant_redeem(n->core, m->token, time_now_ms(), &p->id);
    node_after_step(n);
    if (rc < 0) return redeem_failure(p, rc);
    p->state = VW_READY;
    unsigned char rnd[16];
    if (RAND_bytes(rnd, sizeof rnd) != 1) return vw_close(p, 1011, "internal error");
    b64url_encode(rnd, sizeof rnd, p->resume_token);
    /* Ready only once the token's use is committed: a crash before that must not let the token
     * be redeemed again (with a database; at once without one) */
    p->ready_wait = true;
    p->ready_req = node_after_commit(n, on_token_committed, p);
    return 0;
}

static int on_select_protocol(vw_pss *p, const sig_vmsg *m)
{
    const char *why = NULL;
    if (p->ready_wait) return vw_close(p, 4003, "not authenticated: wait for Ready");
    bool webrtc = strcmp(m->protocol, "webrtc") == 0;
    int rc = media_open(p->n, p, &p->id, p->resume_token, m->mode, webrtc ? m->sdp : NULL, &p->sess,
                        &why);
    if (rc == -EINVAL) {
        char reason[120];
        snprintf(reason, sizeof reason, "invalid offer: %s", why ? why : "refused");
        return vw_close(p, 4013, reason);
    }
    if (rc < 0)
        return vw_close(p, 4006, "session no longer valid: the voice connection was removed");
    p->state = VW_MEDIA;
    return 0;
}

static int on_resume(vw_pss *p, const sig_vmsg *m)
{
    if (media_resume(p->n, p, m->connection_id, m->session_id, m->resume_token, &p->sess, &p->id) <
        0)
        return vw_close(p, 4006, "session no longer valid: nothing to resume");
    p->state = VW_MEDIA;
    LOGC(LOG_INFO, "voice", "resumed connection_id=%s", p->id.connection_id);
    return 0;
}

static const sig_vstate vw_vstate[] = {
    [VW_HELLO] = SIG_VSTATE_HELLO,
    [VW_READY] = SIG_VSTATE_READY,
    [VW_MEDIA] = SIG_VSTATE_MEDIA,
};

static int on_message(vw_pss *p, const char *text, size_t len)
{
    sig_vmsg m;
    int rc;
    if (sig_vmsg_decode(text, len, vw_vstate[p->state], &m) < 0) {
        rc = vw_close(p, m.close_code, m.close_reason);
        sig_vmsg_clear(&m);
        return rc;
    }
    switch (m.op) {
    case SIG_VOP_IDENTIFY:
        rc = on_identify(p, &m);
        break;
    case SIG_VOP_SELECT_PROTOCOL:
        rc = on_select_protocol(p, &m);
        break;
    case SIG_VOP_HEARTBEAT:
        arm_heartbeat(p);
        rc = send_json(p, json_pack("{s:i,s:O?}", "op", 6, "d", m.heartbeat_d));
        break;
    case SIG_VOP_RESUME:
        rc = on_resume(p, &m);
        break;
    case SIG_VOP_SPEAKING:
    default:
        rc = 0; /* advisory: the relay goes by the audio level */
        break;
    }
    sig_vmsg_clear(&m);
    return rc;
}

static int vw_receive(vw_pss *p, const void *in, size_t len)
{
    if (lws_is_first_fragment(p->wsi)) p->rx_len = 0;
    if (p->rx_len + len > VW_RX_MAX) return vw_close(p, 4002, "decode error: message over 16 KiB");
    if (p->rx_len + len > p->rx_cap) { /* most messages fit the first 512 bytes; an SDP offer not */
        size_t cap = p->rx_cap ? p->rx_cap : 512;
        while (cap < p->rx_len + len)
            cap *= 2;
        p->rx_cap = cap < VW_RX_MAX ? cap : VW_RX_MAX;
        p->rx = xrealloc(p->rx, p->rx_cap);
    }
    memcpy(p->rx + p->rx_len, in, len);
    p->rx_len += len;
    /* a frame longer than lws' receive buffer arrives in pieces: the message ends with the last
     * piece of its final frame */
    if (!lws_is_final_fragment(p->wsi) || lws_remaining_packet_payload(p->wsi)) return 0;
    size_t l = p->rx_len;
    p->rx_len = 0;
    return on_message(p, p->rx, l);
}

static int vw_writeable(vw_pss *p)
{
    if (!p->qn) return 0;
    char *m = p->q[p->qhead];
    p->q[p->qhead] = NULL;
    p->qhead = (p->qhead + 1) % p->qcap;
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
    if (p->ready_wait) node_after_commit_cancel(p->n, p->ready_req);
    p->ready_wait = false;
    if (p->sess) media_ws_closed(p->n, p->sess, p->client_left);
    p->sess = NULL;
    for (int i = 0; i < p->qn; i++)
        free(p->q[(p->qhead + i) % p->qcap]);
    free(p->q);
    p->q = NULL;
    p->qn = p->qcap = 0;
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
        if (devsite_http(n, wsi, &p->tx, &p->dev_req, in ? (const char *)in : "")) return 0;
        http_tx_error(wsi, &p->tx, 404, "NOT_FOUND", "the voice endpoint serves /voice only",
                      false);
        return 0;
    case LWS_CALLBACK_HTTP_WRITEABLE:
        return http_tx_write(wsi, &p->tx);
    case LWS_CALLBACK_CLOSED_HTTP:
    case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
        if (p && !p->ws) {
            devsite_cancel(n, &p->dev_req);
            http_tx_clear(&p->tx);
        }
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
        if (p->end_code && p->qn) { /* vw_end(): let the queue drain first */
            lws_set_timer_usecs(wsi, 20000);
            return 0;
        }
        if (p->end_code) return vw_close(p, p->end_code, p->end_reason);
        return vw_close(p, 4009, "session timed out: no heartbeat");
    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
        if (p && p->ws && len >= 2 && ((const uint8_t *)in)[0] == 0x03 &&
            ((const uint8_t *)in)[1] == 0xe8)
            p->client_left = true; /* 1000: a goodbye, not a lost connection */
        return 0;
    case LWS_CALLBACK_CLOSED:
        if (p) vw_free(p);
        return 0;
    default:
        return 0;
    }
}

const struct lws_protocols voicews_protocols[] = {
    /* lws' receive buffer (one per connection) is small: vw_receive assembles longer messages */
    {"voxd-voice", voice_callback, sizeof(vw_pss), VW_LWS_RX, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};
