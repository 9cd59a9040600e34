/*
 * lib/hmap — see hmap.h. Slots hold (hash, key pointer, key length, value). The table doubles
 * at 70 % load. Deletion shifts the following cluster back (Knuth's algorithm R), keeping every
 * probe sequence unbroken without tombstones.
 */
#include "lib/hmap.h"
#include "lib/util.h"

#include <stdlib.h>
#include <string.h>

typedef struct slot {
    uint64_t hash; /* 0 = empty */
    void *key;
    size_t klen;
    void *val;
} slot;

struct hmap {
    slot *slots;
    size_t cap; /* power of two */
    size_t n;
};

static uint64_t hash_bytes(const void *p, size_t n)
{
    /* FNV-1a 64 with a final avalanche (murmur3 fmix64). */
    const unsigned char *s = p;
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) {
        h ^= s[i];
        h *= 1099511628211ULL;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return h ? h : 1;
}

hmap *hmap_new(void)
{
    hmap *m = xcalloc(1, sizeof *m);
    m->cap = 16;
    m->slots = xcalloc(m->cap, sizeof(slot));
    return m;
}

void hmap_free(hmap *m)
{
    if (!m) return;
    for (size_t i = 0; i < m->cap; i++)
        if (m->slots[i].hash) free(m->slots[i].key);
    free(m->slots);
    free(m);
}

size_t hmap_size(const hmap *m)
{
    return m->n;
}

static size_t find(const hmap *m, uint64_t h, const void *key, size_t klen)
{
    size_t mask = m->cap - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        const slot *s = &m->slots[i];
        if (!s->hash) return i;
        if (s->hash == h && s->klen == klen && memcmp(s->key, key, klen) == 0) return i;
    }
}

static void grow(hmap *m)
{
    slot *old = m->slots;
    size_t ocap = m->cap;
    m->cap *= 2;
    m->slots = xcalloc(m->cap, sizeof(slot));
    for (size_t i = 0; i < ocap; i++) {
        if (!old[i].hash) continue;
        size_t mask = m->cap - 1, j = old[i].hash & mask;
        while (m->slots[j].hash)
            j = (j + 1) & mask;
        m->slots[j] = old[i];
    }
    free(old);
}

void *hmap_get(const hmap *m, const void *key, size_t klen)
{
    size_t i = find(m, hash_bytes(key, klen), key, klen);
    return m->slots[i].hash ? m->slots[i].val : NULL;
}

void *hmap_put(hmap *m, const void *key, size_t klen, void *val)
{
    if ((m->n + 1) * 10 > m->cap * 7) grow(m);
    uint64_t h = hash_bytes(key, klen);
    size_t i = find(m, h, key, klen);
    slot *s = &m->slots[i];
    if (s->hash) {
        void *prev = s->val;
        s->val = val;
        return prev;
    }
    s->hash = h;
    s->key = xmalloc(klen ? klen : 1);
    memcpy(s->key, key, klen);
    s->klen = klen;
    s->val = val;
    m->n++;
    return NULL;
}

void *hmap_del(hmap *m, const void *key, size_t klen)
{
    size_t mask = m->cap - 1;
    size_t i = find(m, hash_bytes(key, klen), key, klen);
    if (!m->slots[i].hash) return NULL;
    void *val = m->slots[i].val;
    free(m->slots[i].key);
    m->slots[i].hash = 0;
    m->n--;
    /* backward shift */
    size_t j = i;
    for (;;) {
        j = (j + 1) & mask;
        if (!m->slots[j].hash) break;
        size_t home = m->slots[j].hash & mask;
        /* can slot j move to i? only if home is not cyclically in (i, j] */
        int in_range = (i <= j) ? (home > i && home <= j) : (home > i || home <= j);
        if (in_range) continue;
        m->slots[i] = m->slots[j];
        m->slots[j].hash = 0;
        i = j;
    }
    return val;
}

void *hmap_getu(const hmap *m, uint64_t k)
{
    return hmap_get(m, &k, sizeof k);
}

void *hmap_putu(hmap *m, uint64_t k, void *val)
{
    return hmap_put(m, &k, sizeof k, val);
}

void *hmap_delu(hmap *m, uint64_t k)
{
    return hmap_del(m, &k, sizeof k);
}

int hmap_next(const hmap *m, size_t *it, const void **key, size_t *klen, void **val)
{
    while (*it < m->cap) {
        const slot *s = &m->slots[(*it)++];
        if (!s->hash) continue;
        if (key) *key = s->key;
        if (klen) *klen = s->klen;
        if (val) *val = s->val;
        return 1;
    }
    return 0;
}
