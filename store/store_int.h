/*
 * store/store_int.h — private to store/: the batch's layout (built by store_batch.c, turned into
 * statement parameters by store.c) and the text-array builder both use.
 */
#ifndef VOXD_STORE_INT_H
#define VOXD_STORE_INT_H

#include "lib/hmap.h"
#include "store/store.h"

#define STORE_NPUT 4 /* STORE_CONN .. STORE_SERVER: the kinds with a plain (key, jsonb) table */

typedef struct store_put {
    char *key;
    json_t *row; /* NULL = delete */
} store_put;

typedef struct store_req {
    char *id;
    unsigned char fp[32];
    int status;
    char *method; /* may be NULL */
    char *body;   /* NULL = delete */
    int64_t expires_ms;
} store_req;

typedef struct store_ev {
    uint64_t seq;
    char *text;
} store_ev;

typedef struct store_ack {
    char *name;
    uint64_t acked;
} store_ack;

/* A vector of entries plus an index key -> position+1 so that the last write to a key wins. */
struct store_batch {
    struct {
        store_put *v;
        size_t n, cap;
        hmap *idx;
    } put[STORE_NPUT];
    store_req *req;
    size_t nreq, capreq;
    hmap *reqidx;
    store_ev *ev;
    size_t nev, capev;
    store_ack *ack;
    size_t nack, capack;
    hmap *ackidx;
    uint64_t last_seq;
};

/* Moves every write of src into dst after dst's own (src's later writes win); frees src. */
void store_batch_merge(store_batch *dst, store_batch *src);

/* A growing string for PostgreSQL array literals ({"a","b"}). */
typedef struct store_sbuf {
    char *p;
    size_t n, cap;
    size_t nelem;
} store_sbuf;
void store_arr_begin(store_sbuf *b);
void store_arr_str(store_sbuf *b, const char *s); /* a quoted element; NULL = NULL */
void store_arr_u64(store_sbuf *b, uint64_t v);
void store_arr_i64(store_sbuf *b, int64_t v);
void store_arr_end(store_sbuf *b); /* NUL-terminates; p is the literal */
void store_sbuf_free(store_sbuf *b);

#endif
