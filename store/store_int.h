/*
 * store/store_int.h — private to store/: the batch's layout (built by store_batch.c, turned into
 * statement parameters by store.c) and the binary array builder both use.
 */
#ifndef VOXD_STORE_INT_H
#define VOXD_STORE_INT_H

#include "lib/hmap.h"
#include "store/store.h"

#define STORE_NPUT                                                                                 \
    4 /* STORE_CONN .. STORE_SERVER: the kinds with a plain (key, text row) table                  \
       */

typedef struct store_put {
    char *key;
    json_t *row; /* NULL = delete */
    char *text;  /* the row already serialized (store_batch_put_text), or NULL */
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

/* A one-dimensional PostgreSQL array in the binary wire format (array_recv), sent as a binary
 * statement parameter: a 20-byte header (ndim, flags, element type, length, lower bound), then
 * per element its length (-1 = NULL) and its bytes, all integers big-endian. Nothing is escaped
 * and the server copies the elements as they are. */
#define STORE_OID_BYTEA 17
#define STORE_OID_INT8  20
#define STORE_OID_INT4  23
#define STORE_OID_TEXT  25
typedef struct store_abuf {
    char *p;
    size_t n, cap;
    uint32_t nelem, oid;
} store_abuf;
void store_arr_begin(store_abuf *b, uint32_t elem_oid);
void store_arr_str(store_abuf *b, const char *s); /* text element; NULL = NULL */
void store_arr_bytes(store_abuf *b, const void *p, size_t n);
void store_arr_json(store_abuf *b, const json_t *v); /* text element: v dumped compact */
void store_arr_i64(store_abuf *b, int64_t v);        /* int8 element */
void store_arr_i32(store_abuf *b, int32_t v);        /* int4 element */
void store_arr_end(store_abuf *b); /* fills the header; p[0..n) is the parameter */
void store_abuf_free(store_abuf *b);

#endif
