/*
 * signalling/sig_outbox.c — the event outbox: published events with their seq, kept in a ring
 * until every known consumer has acked them or the retention bound pushes them out.
 *
 * The ring holds complete event texts {"seq":N,...} so a stream writer sends bytes straight from
 * it, with no per-client copy. Slot of seq s: (s - first) offset from the ring's head.
 */
#include "signalling/sig.h"
#include "lib/util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_CONSUMERS 64

typedef struct ev {
    char *text;
    size_t len;
} ev;

typedef struct consumer {
    char name[65];
    uint64_t acked;
} consumer;

struct sig_outbox {
    ev *ring;
    size_t cap, head, n; /* n retained events, the oldest at ring[head] */
    size_t retention;
    uint64_t first; /* seq of ring[head] (== next when empty) */
    uint64_t next;  /* seq the next publish gets */
    consumer consumers[MAX_CONSUMERS];
    size_t nconsumers;
};

sig_outbox *sig_outbox_new(size_t retention, uint64_t next_seq)
{
    sig_outbox *o = xcalloc(1, sizeof *o);
    o->retention = retention ? retention : 1;
    o->cap = 64;
    o->ring = xcalloc(o->cap, sizeof *o->ring);
    o->next = next_seq ? next_seq : 1;
    o->first = o->next;
    return o;
}

void sig_outbox_free(sig_outbox *o)
{
    if (!o) return;
    for (size_t i = 0; i < o->n; i++)
        free(o->ring[(o->head + i) % o->cap].text);
    free(o->ring);
    free(o);
}

static void drop_oldest(sig_outbox *o)
{
    free(o->ring[o->head].text);
    o->ring[o->head].text = NULL;
    o->head = (o->head + 1) % o->cap;
    o->n--;
    o->first++;
}

static void grow(sig_outbox *o)
{
    ev *r = xcalloc(o->cap * 2, sizeof *r);
    for (size_t i = 0; i < o->n; i++)
        r[i] = o->ring[(o->head + i) % o->cap];
    free(o->ring);
    o->ring = r;
    o->head = 0;
    o->cap *= 2;
}

char *sig_event_text(uint64_t seq, const char *fragment)
{
    char head[32];
    int h = snprintf(head, sizeof head, "{\"seq\":%llu,", (unsigned long long)seq);
    size_t f = strlen(fragment);
    char *t = xmalloc((size_t)h + f + 2);
    memcpy(t, head, (size_t)h);
    memcpy(t + h, fragment, f);
    t[h + f] = '}';
    t[h + f + 1] = 0;
    return t;
}

uint64_t sig_outbox_next_seq(const sig_outbox *o)
{
    return o->next;
}

int sig_outbox_publish_text(sig_outbox *o, uint64_t seq, char *text)
{
    if (seq != o->next) {
        free(text);
        return -EINVAL;
    }
    while (o->n >= o->retention)
        drop_oldest(o);
    if (o->n == o->cap) grow(o);
    o->next++;
    ev *e = &o->ring[(o->head + o->n) % o->cap];
    e->text = text;
    e->len = strlen(text);
    o->n++;
    return 0;
}

uint64_t sig_outbox_publish(sig_outbox *o, char *fragment)
{
    uint64_t seq = o->next;
    sig_outbox_publish_text(o, seq, sig_event_text(seq, fragment));
    free(fragment);
    return seq;
}

uint64_t sig_outbox_last_seq(const sig_outbox *o)
{
    return o->next - 1;
}

uint64_t sig_outbox_first_seq(const sig_outbox *o)
{
    return o->first;
}

const char *sig_outbox_get(const sig_outbox *o, uint64_t seq, size_t *len)
{
    if (seq < o->first || seq >= o->next) return NULL;
    const ev *e = &o->ring[(o->head + (size_t)(seq - o->first)) % o->cap];
    if (len) *len = e->len;
    return e->text;
}

static consumer *find(sig_outbox *o, const char *name)
{
    for (size_t i = 0; i < o->nconsumers; i++)
        if (strcmp(o->consumers[i].name, name) == 0) return &o->consumers[i];
    return NULL;
}

int sig_outbox_consumer(sig_outbox *o, const char *name)
{
    if (!name || !*name || strlen(name) > 64) return -EINVAL;
    if (find(o, name)) return 0;
    if (o->nconsumers == MAX_CONSUMERS) return -ENOSPC;
    consumer *c = &o->consumers[o->nconsumers++];
    snprintf(c->name, sizeof c->name, "%s", name);
    c->acked = o->first - 1; /* a new consumer holds back nothing already gone */
    return 0;
}

uint64_t sig_outbox_acked(const sig_outbox *o)
{
    if (!o->nconsumers) return 0;
    uint64_t m = UINT64_MAX;
    for (size_t i = 0; i < o->nconsumers; i++)
        if (o->consumers[i].acked < m) m = o->consumers[i].acked;
    return m;
}

int sig_outbox_ack(sig_outbox *o, const char *name, uint64_t seq)
{
    consumer *c = find(o, name);
    if (!c) return -ENOENT;
    if (seq > o->next - 1) seq = o->next - 1;
    if (seq > c->acked) c->acked = seq;
    uint64_t m = sig_outbox_acked(o);
    while (o->n && o->first <= m)
        drop_oldest(o);
    return 0;
}

size_t sig_outbox_retained(const sig_outbox *o)
{
    return o->n;
}
