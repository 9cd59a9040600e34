/*
 * voice/events.c — the /events WebSocket (docs/rpc.md, "The event stream").
 *
 * A client is a cursor into the outbox, nothing more: the outbox holds each event's bytes once
 * and every client sends from there (copied only into the shared LWS_PRE scratch of one write).
 * Per-client memory is bounded: a 4 KiB receive buffer and at most two small control messages
 * (hello, gap). One lws_write per WRITEABLE; after a write the client asks for WRITEABLE again
 * while it is behind; node_after_step() wakes the clients that are behind when events arrive.
 *
 * States: connected (hello queued) -> resumed (streaming from `cursor`). Protocol faults close
 * with 1008 and a reason naming the fault.
 */
#include "voice/node_priv.h"

#include "lib/log.h"
#include "lib/util.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void queue_ctrl(ev_client *c, char *text)
{
    /* cannot overflow: hello and one gap at most are ever queued together */
    if (c->nctrl < EV_CTRL_MAX) snprintf(c->ctrl[c->nctrl++], sizeof c->ctrl[0], "%s", text);
    free(text);
    lws_callback_on_writable(c->wsi);
}

static void queue_hello(ev_client *c, const char *node_id, uint64_t first, uint64_t last)
{
    json_t *j = json_pack("{s:s,s:s,s:I,s:I}", "op", "hello", "node_id", node_id, "first_seq",
                          (json_int_t)first, "last_seq", (json_int_t)last);
    queue_ctrl(c, json_dumps(j, JSON_COMPACT));
    json_decref(j);
}

static void queue_gap(ev_client *c, uint64_t after, uint64_t first)
{
    queue_ctrl(c, xasprintf("{\"op\":\"gap\",\"after\":%llu,\"first_seq\":%llu}",
                            (unsigned long long)after, (unsigned long long)first));
}

int ev_filter(voice_node *n, struct lws *wsi)
{
    char uri[64];
    if (lws_hdr_copy(wsi, uri, sizeof uri, WSI_TOKEN_GET_URI) <= 0 || strcmp(uri, "/events") != 0) {
        LOG(LOG_INFO, "events: upgrade refused: not /events");
        return 1;
    }
    if (!node_bearer_ok(n, wsi)) {
        LOG(LOG_WARN, "events: upgrade refused: missing or wrong bearer");
        return 1;
    }
    if (!durable_loaded(n)) {
        LOG(LOG_INFO, "events: upgrade refused: state still loading");
        return 1;
    }
    return 0;
}

void ev_established(voice_node *n, ev_client *c, struct lws *wsi)
{
    memset(c, 0, sizeof *c);
    c->n = n;
    c->wsi = wsi;
    c->linked = true;
    c->next = n->ev_head;
    if (n->ev_head) n->ev_head->prev = c;
    n->ev_head = c;
    n->ev_count++;
    uint64_t last = sig_outbox_last_seq(n->outbox), first = sig_outbox_first_seq(n->outbox);
    if (last == 0) first = 0; /* docs: 0 if none */
    queue_hello(c, n->cf->node_id, first, last);
    LOG(LOG_INFO, "events: client connected (clients=%zu)", n->ev_count);
}

void ev_closed(ev_client *c)
{
    voice_node *n = c->n;
    if (!c->linked) return;
    if (c->prev)
        c->prev->next = c->next;
    else
        n->ev_head = c->next;
    if (c->next) c->next->prev = c->prev;
    c->linked = false;
    n->ev_count--;
    LOG(LOG_INFO, "events: client %s disconnected at seq %llu (clients=%zu)",
        c->consumer[0] ? c->consumer : "(not resumed)", (unsigned long long)c->cursor, n->ev_count);
}

static int fault(ev_client *c, const char *reason)
{
    LOG(LOG_WARN, "events: closing %s: %s", c->consumer[0] ? c->consumer : "client", reason);
    lws_close_reason(c->wsi, LWS_CLOSE_STATUS_POLICY_VIOLATION, (unsigned char *)reason,
                     strlen(reason));
    return -1;
}

static int on_resume(ev_client *c, json_t *msg)
{
    voice_node *n = c->n;
    const char *op, *consumer = "default";
    json_int_t after;
    json_error_t e;
    if (c->resumed) return fault(c, "resume twice");
    if (json_unpack_ex(msg, &e, JSON_STRICT, "{s:s,s:I,s?s}", "op", &op, "after", &after,
                       "consumer", &consumer) < 0) {
        char r[120];
        snprintf(r, sizeof r, "bad resume: %.100s", e.text);
        return fault(c, r);
    }
    if (after < 0) return fault(c, "bad resume: after must be >= 0");
    size_t cl = strlen(consumer);
    if (cl < 1 || cl > 64) return fault(c, "bad resume: consumer must be 1-64 characters");
    if (sig_outbox_consumer(n->outbox, consumer) < 0) return fault(c, "too many consumers");
    memcpy(c->consumer, consumer, cl + 1);
    c->resumed = true;
    uint64_t first = sig_outbox_first_seq(n->outbox), last = sig_outbox_last_seq(n->outbox);
    /* a durable node remembers the consumer (acks only move forward in the store) */
    if (n->durable) durable_ack(n, consumer, first ? first - 1 : 0);
    uint64_t a = (uint64_t)after;
    if (a + 1 < first || a > last) {
        /* pruned already, or a seq this node never published (it restarted): re-snapshot */
        queue_gap(c, a, first);
        c->cursor = first;
    } else {
        c->cursor = a + 1 > first ? a + 1 : first;
    }
    LOG(LOG_INFO, "events: %s resumes after %llu (first=%llu last=%llu)", c->consumer,
        (unsigned long long)a, (unsigned long long)first, (unsigned long long)last);
    lws_callback_on_writable(c->wsi);
    return 0;
}

static int on_message(ev_client *c, const char *text, size_t len)
{
    json_error_t e;
    json_t *msg = json_loadb(text, len, JSON_REJECT_DUPLICATES, &e);
    int rc;
    if (!msg || !json_is_object(msg)) {
        json_decref(msg);
        return fault(c, "not a JSON object");
    }
    if (json_object_get(msg, "op")) {
        const char *op = json_string_value(json_object_get(msg, "op"));
        rc = op && strcmp(op, "resume") == 0 ? on_resume(c, msg) : fault(c, "unknown op");
    } else if (json_object_get(msg, "ack")) {
        json_int_t ack;
        if (json_unpack_ex(msg, &e, JSON_STRICT, "{s:I}", "ack", &ack) < 0 || ack < 0)
            rc = fault(c, "bad ack: {\"ack\": N} with N >= 0 and nothing else");
        else if (!c->resumed)
            rc = fault(c, "ack before resume");
        else {
            sig_outbox_ack(c->n->outbox, c->consumer, (uint64_t)ack);
            if (c->n->durable) durable_ack(c->n, c->consumer, (uint64_t)ack);
            rc = 0;
        }
    } else {
        rc = fault(c, "unknown message (expected resume or ack)");
    }
    json_decref(msg);
    return rc;
}

int ev_receive(ev_client *c, const void *in, size_t len)
{
    if (lws_frame_is_binary(c->wsi)) return fault(c, "binary message");
    if (lws_is_first_fragment(c->wsi)) c->rx_len = 0;
    if (c->rx_len + len > EV_RX_MAX) return fault(c, "message too large");
    memcpy(c->rx + c->rx_len, in, len);
    c->rx_len += len;
    if (!lws_is_final_fragment(c->wsi)) return 0;
    size_t l = c->rx_len;
    c->rx_len = 0;
    return on_message(c, c->rx, l);
}

int ev_writeable(ev_client *c)
{
    voice_node *n = c->n;
    if (c->nctrl) {
        char *m = c->ctrl[0];
        if (node_ws_send(n, c->wsi, m, strlen(m)) < 0) return -1;
        memmove(c->ctrl[0], c->ctrl[1], sizeof c->ctrl[0] * (EV_CTRL_MAX - 1));
        c->nctrl--;
        if (c->nctrl || (c->resumed && c->cursor <= sig_outbox_last_seq(n->outbox)))
            lws_callback_on_writable(c->wsi);
        return 0;
    }
    if (!c->resumed) return 0;
    uint64_t last = sig_outbox_last_seq(n->outbox);
    if (c->cursor > last) return 0;
    uint64_t first = sig_outbox_first_seq(n->outbox);
    if (c->cursor < first) {
        /* retention pushed events out before this client read them */
        queue_gap(c, c->cursor - 1, first);
        c->cursor = first;
        return 0;
    }
    size_t len;
    const char *ev = sig_outbox_get(n->outbox, c->cursor, &len);
    if (!ev) return 0;
    if (node_ws_send(n, c->wsi, ev, len) < 0) return -1;
    c->cursor++;
    if (c->cursor <= last) lws_callback_on_writable(c->wsi);
    return 0;
}

void ev_notify_all(voice_node *n)
{
    uint64_t last = sig_outbox_last_seq(n->outbox);
    for (ev_client *c = n->ev_head; c; c = c->next)
        if (c->resumed && c->cursor <= last) lws_callback_on_writable(c->wsi);
}
