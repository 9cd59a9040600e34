/*
 * Unit tests of the event outbox: seq, reading back, acks and pruning, the retention bound.
 */
#include "signalling/sig.h"
#include "tests/unit/test.h"
#include "lib/util.h"

#include <errno.h>
#include <stdlib.h>

static uint64_t pub(sig_outbox *o, int i)
{
    return sig_outbox_publish(o, xasprintf("\"event\":\"E\",\"scope\":{},\"data\":{\"i\":%d}", i));
}

TEST(seq_is_strictly_increasing_and_text_is_complete)
{
    sig_outbox *o = sig_outbox_new(100, 1);
    CHECK_EQ_INT(sig_outbox_last_seq(o), 0);
    CHECK_EQ_INT(sig_outbox_first_seq(o), 1);
    CHECK_EQ_INT(pub(o, 0), 1);
    CHECK_EQ_INT(pub(o, 1), 2);
    size_t n;
    const char *s = sig_outbox_get(o, 2, &n);
    CHECK_EQ_STR(s, "{\"seq\":2,\"event\":\"E\",\"scope\":{},\"data\":{\"i\":1}}");
    CHECK_EQ_INT(n, strlen(s));
    CHECK(sig_outbox_get(o, 3, &n) == NULL);
    CHECK(sig_outbox_get(o, 0, &n) == NULL);
    sig_outbox_free(o);
}

TEST(acks_prune_what_every_consumer_acked)
{
    sig_outbox *o = sig_outbox_new(100, 1);
    CHECK_EQ_INT(sig_outbox_consumer(o, "gw-a"), 0);
    CHECK_EQ_INT(sig_outbox_consumer(o, "gw-b"), 0);
    for (int i = 0; i < 10; i++)
        pub(o, i);
    CHECK_EQ_INT(sig_outbox_ack(o, "gw-a", 7), 0);
    CHECK_EQ_INT(sig_outbox_retained(o), 10); /* b has acked nothing */
    CHECK_EQ_INT(sig_outbox_ack(o, "gw-b", 4), 0);
    CHECK_EQ_INT(sig_outbox_first_seq(o), 5);
    CHECK_EQ_INT(sig_outbox_retained(o), 6);
    CHECK_EQ_INT(sig_outbox_acked(o), 4);
    CHECK(sig_outbox_get(o, 4, NULL) == NULL);
    CHECK(sig_outbox_get(o, 5, NULL) != NULL);
    CHECK_EQ_INT(sig_outbox_ack(o, "gw-b", 2), 0); /* acks never go back */
    CHECK_EQ_INT(sig_outbox_acked(o), 4);
    CHECK_EQ_INT(sig_outbox_ack(o, "nobody", 9), -ENOENT);
    CHECK_EQ_INT(sig_outbox_ack(o, "gw-a", 999), 0); /* clamped to last */
    CHECK_EQ_INT(sig_outbox_ack(o, "gw-b", 999), 0);
    CHECK_EQ_INT(sig_outbox_retained(o), 0);
    CHECK_EQ_INT(sig_outbox_first_seq(o), 11);
    CHECK_EQ_INT(pub(o, 10), 11);
    sig_outbox_free(o);
}

TEST(retention_bound_drops_the_oldest)
{
    sig_outbox *o = sig_outbox_new(5, 1);
    for (int i = 0; i < 200; i++)
        pub(o, i); /* also exercises ring growth/wrap */
    CHECK_EQ_INT(sig_outbox_retained(o), 5);
    CHECK_EQ_INT(sig_outbox_first_seq(o), 196);
    CHECK_EQ_INT(sig_outbox_last_seq(o), 200);
    CHECK_EQ_STR(sig_outbox_get(o, 196, NULL),
                 "{\"seq\":196,\"event\":\"E\",\"scope\":{},\"data\":{\"i\":195}}");
    sig_outbox_free(o);
}

TEST(ring_wraps_with_acks)
{
    sig_outbox *o = sig_outbox_new(1000, 1);
    sig_outbox_consumer(o, "g");
    for (int i = 1; i <= 1000; i++) {
        CHECK_EQ_INT(pub(o, i), i);
        if (i % 3 == 0) sig_outbox_ack(o, "g", (uint64_t)i - 1);
    }
    for (uint64_t s = sig_outbox_first_seq(o); s <= 1000; s++) {
        char want[64];
        snprintf(want, sizeof want, "{\"seq\":%llu,", (unsigned long long)s);
        const char *got = sig_outbox_get(o, s, NULL);
        CHECK(got && strncmp(got, want, strlen(want)) == 0);
    }
    CHECK_EQ_INT(sig_outbox_consumer(o, ""), -EINVAL);
    sig_outbox_free(o);
}

TEST(next_seq_continues_from_a_given_start)
{
    sig_outbox *o = sig_outbox_new(10, 5000);
    CHECK_EQ_INT(pub(o, 0), 5000);
    CHECK_EQ_INT(sig_outbox_first_seq(o), 5000);
    sig_outbox_free(o);
}

TEST(prenumbered_texts_publish_only_in_order)
{
    sig_outbox *o = sig_outbox_new(10, 7);
    CHECK_EQ_INT(sig_outbox_next_seq(o), 7);
    char *t7 = sig_event_text(7, "\"event\":\"E\",\"scope\":{},\"data\":{}");
    CHECK_EQ_STR(t7, "{\"seq\":7,\"event\":\"E\",\"scope\":{},\"data\":{}}");
    CHECK_EQ_INT(sig_outbox_publish_text(o, 8, sig_event_text(8, "\"x\":1")), -EINVAL);
    CHECK_EQ_INT(sig_outbox_publish_text(o, 7, t7), 0);
    CHECK_EQ_INT(sig_outbox_last_seq(o), 7);
    CHECK_EQ_INT(pub(o, 1), 8);
    sig_outbox_free(o);
}

int main(void)
{
    RUN(seq_is_strictly_increasing_and_text_is_complete);
    RUN(acks_prune_what_every_consumer_acked);
    RUN(retention_bound_drops_the_oldest);
    RUN(ring_wraps_with_acks);
    RUN(next_seq_continues_from_a_given_start);
    RUN(prenumbered_texts_publish_only_in_order);
    return test_summary();
}
