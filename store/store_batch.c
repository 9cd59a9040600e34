/*
 * store/store_batch.c — a batch of writes for one transaction.
 *
 * Each kind is a vector of entries in first-write order plus an hmap from key to position, so a
 * later write to the same key replaces the earlier one in place: a batch holds the final state of
 * each key it touches, which is what one multi-row INSERT ... ON CONFLICT DO UPDATE (that may not
 * touch a row twice) and one DELETE ... = ANY() need, and what makes merging queued batches into
 * one transaction (group commit) a plain replay of the later batch over the earlier one.
 *
 * Also here: the builder of PostgreSQL arrays in the binary wire format that carry the rows as
 * statement parameters (no escaping, no text parsing in the server).
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>

#include "lib/log.h"
#include "lib/util.h"
#include "store/store_int.h"

#define GROW(v, n, cap)                                                                            \
    do {                                                                                           \
        if ((n) == (cap)) {                                                                        \
            (cap) = (cap) ? 2 * (cap) : 16;                                                        \
            (v) = xrealloc((v), sizeof *(v) * (cap));                                              \
        }                                                                                          \
    } while (0)

store_batch *store_batch_new(void)
{
    store_batch *b = xcalloc(1, sizeof *b);
    for (int k = 0; k < STORE_NPUT; k++)
        b->put[k].idx = hmap_new();
    b->reqidx = hmap_new();
    b->ackidx = hmap_new();
    return b;
}

void store_batch_free(store_batch *b)
{
    if (!b) return;
    for (int k = 0; k < STORE_NPUT; k++) {
        for (size_t i = 0; i < b->put[k].n; i++) {
            free(b->put[k].v[i].key);
            json_decref(b->put[k].v[i].row);
            free(b->put[k].v[i].text);
        }
        free(b->put[k].v);
        hmap_free(b->put[k].idx);
    }
    for (size_t i = 0; i < b->nreq; i++) {
        free(b->req[i].id);
        free(b->req[i].method);
        free(b->req[i].body);
    }
    free(b->req);
    hmap_free(b->reqidx);
    for (size_t i = 0; i < b->nev; i++)
        free(b->ev[i].text);
    free(b->ev);
    for (size_t i = 0; i < b->nack; i++)
        free(b->ack[i].name);
    free(b->ack);
    hmap_free(b->ackidx);
    free(b);
}

size_t store_batch_size(const store_batch *b)
{
    if (!b) return 0;
    size_t n = b->nreq + b->nev + b->nack;
    for (int k = 0; k < STORE_NPUT; k++)
        n += b->put[k].n;
    return n;
}

static void put_kv(store_batch *b, int kind, const char *key, json_t *row, char *text)
{
    size_t pos = (size_t)(uintptr_t)hmap_gets(b->put[kind].idx, key);
    if (pos) {
        store_put *p = &b->put[kind].v[pos - 1];
        json_decref(p->row);
        free(p->text);
        p->row = row;
        p->text = row ? text : NULL;
        if (!row) free(text);
        return;
    }
    GROW(b->put[kind].v, b->put[kind].n, b->put[kind].cap);
    b->put[kind].v[b->put[kind].n++] = (store_put){xstrdup(key), row, row ? text : NULL};
    if (!row) free(text);
    hmap_puts(b->put[kind].idx, key, (void *)(uintptr_t)b->put[kind].n);
}

static store_req *req_slot(store_batch *b, const char *id)
{
    size_t pos = (size_t)(uintptr_t)hmap_gets(b->reqidx, id);
    if (pos) {
        store_req *r = &b->req[pos - 1];
        free(r->method);
        free(r->body);
        r->method = r->body = NULL;
        return r;
    }
    GROW(b->req, b->nreq, b->capreq);
    store_req *r = &b->req[b->nreq++];
    memset(r, 0, sizeof *r);
    r->id = xstrdup(id);
    hmap_puts(b->reqidx, id, (void *)(uintptr_t)b->nreq);
    return r;
}

static int unhex32(const char *s, unsigned char out[32])
{
    if (!s || strlen(s) != 64) return -EINVAL;
    for (int i = 0; i < 32; i++) {
        unsigned v;
        char two[3] = {s[2 * i], s[2 * i + 1], 0};
        char *end;
        v = (unsigned)strtoul(two, &end, 16);
        if (*end) return -EINVAL;
        out[i] = (unsigned char)v;
    }
    return 0;
}

/* The core's remembered-reply row -> a request entry. */
static int put_request_row(store_batch *b, const char *key, json_t *row)
{
    if (!row) {
        store_req *r = req_slot(b, key);
        r->body = NULL; /* delete */
        return 0;
    }
    unsigned char fp[32];
    json_t *st = json_object_get(row, "status"), *exp = json_object_get(row, "expires");
    const char *body = json_string_value(json_object_get(row, "body"));
    const char *method = json_string_value(json_object_get(row, "method"));
    if (unhex32(json_string_value(json_object_get(row, "fingerprint")), fp) < 0 ||
        !json_is_integer(st) || !json_is_integer(exp) || !body)
        return -EINVAL;
    store_batch_request(b, key, fp, (int)json_integer_value(st), method, body,
                        json_integer_value(exp));
    return 0;
}

void store_batch_put(store_batch *b, int kind, const char *key, json_t *row)
{
    if (!b || !key) {
        json_decref(row);
        return;
    }
    if (kind >= 0 && kind < STORE_NPUT) {
        put_kv(b, kind, key, row, NULL);
        return;
    }
    if (kind == STORE_REQUEST && put_request_row(b, key, row) == 0) {
        json_decref(row);
        return;
    }
    LOGC(LOG_ERROR, "store", "batch: dropped a write of kind %d key '%.64s' (not writable so)",
         kind, key);
    json_decref(row);
}

void store_batch_put_text(store_batch *b, int kind, const char *key, json_t *row, char *text)
{
    if (!b || !key || kind < 0 || kind >= STORE_NPUT || !row || !text) {
        free(text);
        store_batch_put(b, kind, key, row);
        return;
    }
    put_kv(b, kind, key, row, text);
}

void store_batch_event(store_batch *b, uint64_t seq, const char *text)
{
    GROW(b->ev, b->nev, b->capev);
    b->ev[b->nev++] = (store_ev){seq, xstrdup(text)};
    if (seq > b->last_seq) b->last_seq = seq;
}

void store_batch_request(store_batch *b, const char *request_id, const unsigned char fp[32],
                         int status, const char *method, const char *body, int64_t expires_ms)
{
    store_req *r = req_slot(b, request_id);
    memcpy(r->fp, fp, 32);
    r->status = status;
    r->method = method ? xstrdup(method) : NULL;
    r->body = xstrdup(body ? body : "");
    r->expires_ms = expires_ms;
}

void store_batch_ack(store_batch *b, const char *consumer, uint64_t acked)
{
    size_t pos = (size_t)(uintptr_t)hmap_gets(b->ackidx, consumer);
    if (pos) {
        if (acked > b->ack[pos - 1].acked) b->ack[pos - 1].acked = acked;
        return;
    }
    GROW(b->ack, b->nack, b->capack);
    b->ack[b->nack++] = (store_ack){xstrdup(consumer), acked};
    hmap_puts(b->ackidx, consumer, (void *)(uintptr_t)b->nack);
}

void store_batch_merge(store_batch *dst, store_batch *src)
{
    for (int k = 0; k < STORE_NPUT; k++)
        for (size_t i = 0; i < src->put[k].n; i++) {
            put_kv(dst, k, src->put[k].v[i].key, src->put[k].v[i].row, src->put[k].v[i].text);
            src->put[k].v[i].row = NULL;
            src->put[k].v[i].text = NULL;
        }
    for (size_t i = 0; i < src->nreq; i++) {
        store_req *s = &src->req[i], *r = req_slot(dst, s->id);
        memcpy(r->fp, s->fp, 32);
        r->status = s->status;
        r->expires_ms = s->expires_ms;
        r->method = s->method;
        r->body = s->body;
        s->method = s->body = NULL;
    }
    for (size_t i = 0; i < src->nev; i++) {
        GROW(dst->ev, dst->nev, dst->capev);
        dst->ev[dst->nev++] = src->ev[i];
        src->ev[i].text = NULL;
    }
    if (src->last_seq > dst->last_seq) dst->last_seq = src->last_seq;
    for (size_t i = 0; i < src->nack; i++)
        store_batch_ack(dst, src->ack[i].name, src->ack[i].acked);
    store_batch_free(src);
}

/* ---- binary arrays ----------------------------------------------------------------------------
 */

#define ARR_HDR 20 /* ndim, flags, element type, dim 1's length and lower bound */

static void ab_reserve(store_abuf *b, size_t n)
{
    if (b->n + n <= b->cap) return;
    while (b->n + n > b->cap)
        b->cap = b->cap ? 2 * b->cap : 1024;
    b->p = xrealloc(b->p, b->cap);
}

static void put_be32(char *p, uint32_t v)
{
    v = htonl(v);
    memcpy(p, &v, 4);
}

static void ab_u32(store_abuf *b, uint32_t v)
{
    ab_reserve(b, 4);
    put_be32(b->p + b->n, v);
    b->n += 4;
}

void store_arr_begin(store_abuf *b, uint32_t elem_oid)
{
    b->n = 0;
    b->nelem = 0;
    b->oid = elem_oid;
    ab_reserve(b, ARR_HDR);
    b->n = ARR_HDR;
}

void store_arr_bytes(store_abuf *b, const void *p, size_t n)
{
    if (n > INT32_MAX) abort(); /* rows are far smaller; the server refuses > 1 GB anyway */
    ab_reserve(b, 4 + n);
    put_be32(b->p + b->n, (uint32_t)n);
    memcpy(b->p + b->n + 4, p, n);
    b->n += 4 + n;
    b->nelem++;
}

void store_arr_str(store_abuf *b, const char *s)
{
    if (!s) {
        ab_u32(b, UINT32_MAX); /* -1: NULL */
        b->nelem++;
        return;
    }
    store_arr_bytes(b, s, strlen(s));
}

void store_arr_json(store_abuf *b, const json_t *v)
{
    /* dumped straight into the buffer behind its length word; redone once if it did not fit
     * (room for 2 KiB first: a voice state row is ~600 bytes, so nearly none is dumped twice) */
    ab_reserve(b, 4 + 2048);
    size_t room = b->cap - b->n - 4;
    size_t len = json_dumpb(v, b->p + b->n + 4, room, JSON_COMPACT | JSON_ENCODE_ANY);
    if (len == 0) abort(); /* only on allocation failure or an invalid value: rows are objects */
    if (len > room) {
        ab_reserve(b, 4 + len);
        if (json_dumpb(v, b->p + b->n + 4, len, JSON_COMPACT | JSON_ENCODE_ANY) != len) abort();
    }
    if (len > INT32_MAX) abort();
    put_be32(b->p + b->n, (uint32_t)len);
    b->n += 4 + len;
    b->nelem++;
}

void store_arr_i64(store_abuf *b, int64_t v)
{
    ab_reserve(b, 12);
    put_be32(b->p + b->n, 8);
    put_be32(b->p + b->n + 4, (uint32_t)((uint64_t)v >> 32));
    put_be32(b->p + b->n + 8, (uint32_t)v);
    b->n += 12;
    b->nelem++;
}

void store_arr_i32(store_abuf *b, int32_t v)
{
    ab_reserve(b, 8);
    put_be32(b->p + b->n, 4);
    put_be32(b->p + b->n + 4, (uint32_t)v);
    b->n += 8;
    b->nelem++;
}

void store_arr_end(store_abuf *b)
{
    /* ndim 1 (an empty array is ndim 0 and stops after the element type), no NULL bitmap flag
     * needed (array_recv finds NULLs by their -1 length), lower bound 1 */
    put_be32(b->p, b->nelem ? 1 : 0);
    put_be32(b->p + 4, 0);
    put_be32(b->p + 8, b->oid);
    if (!b->nelem) {
        b->n = 12;
        return;
    }
    put_be32(b->p + 12, b->nelem);
    put_be32(b->p + 16, 1);
}

void store_abuf_free(store_abuf *b)
{
    free(b->p);
    b->p = NULL;
    b->n = b->cap = 0;
}
