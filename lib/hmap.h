/*
 * lib/hmap — a hash map from byte-string keys to pointers. Keys are copied in; values are
 * borrowed (the caller owns what they point to). Open addressing with linear probing and
 * backward-shift deletion, so there are no tombstones and lookups stay short.
 * Not thread-safe: one owner thread.
 */
#ifndef VOXD_HMAP_H
#define VOXD_HMAP_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef struct hmap hmap;

hmap *hmap_new(void);
void hmap_free(hmap *m); /* frees the keys, not the values */
size_t hmap_size(const hmap *m);

void *hmap_get(const hmap *m, const void *key, size_t klen);
/* Inserts or replaces; returns the previous value or NULL. */
void *hmap_put(hmap *m, const void *key, size_t klen, void *val);
/* Removes; returns the removed value or NULL. */
void *hmap_del(hmap *m, const void *key, size_t klen);

/* String-key conveniences. */
#define hmap_gets(m, s)    hmap_get((m), (s), strlen(s))
#define hmap_puts(m, s, v) hmap_put((m), (s), strlen(s), (v))
#define hmap_dels(m, s)    hmap_del((m), (s), strlen(s))
/* uint64-key conveniences (the key is the 8 bytes of the value). */
void *hmap_getu(const hmap *m, uint64_t k);
void *hmap_putu(hmap *m, uint64_t k, void *val);
void *hmap_delu(hmap *m, uint64_t k);

/* Iteration: `it` starts at 0; returns 0 at the end. Do not insert while iterating; deleting
 * the current entry is not allowed either (collect first). */
int hmap_next(const hmap *m, size_t *it, const void **key, size_t *klen, void **val);

#endif
