/*
 * tests/unit/test.h — the smallest test harness that does the job.
 *
 *   TEST(name) { CHECK(x == 1); CHECK_EQ_INT(a, b); CHECK_EQ_STR(s, "x"); }
 *   int main(void) { RUN(name); ...; return test_summary(); }
 *
 * Each test prints one line, "ok - <file>:<name>" or "not ok - <file>:<name>: <first failure>",
 * which tests/run-all.sh counts. A failed CHECK ends its test (the rest of it would only cascade).
 */
#ifndef VOXD_TEST_H
#define VOXD_TEST_H

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static int test_failed_, test_nfail_, test_npass_;
static char test_msg_[512];

#define TEST(name) static void test_##name(void)

#define RUN(name)                                                                                  \
    do {                                                                                           \
        test_failed_ = 0;                                                                          \
        test_msg_[0] = 0;                                                                          \
        test_##name();                                                                             \
        if (test_failed_) {                                                                        \
            test_nfail_++;                                                                         \
            printf("not ok - %s:%s: %s\n", __FILE__, #name, test_msg_);                            \
        } else {                                                                                   \
            test_npass_++;                                                                         \
            printf("ok - %s:%s\n", __FILE__, #name);                                               \
        }                                                                                          \
        fflush(stdout);                                                                            \
    } while (0)

#define FAIL_(...)                                                                                 \
    do {                                                                                           \
        if (!test_failed_) snprintf(test_msg_, sizeof test_msg_, __VA_ARGS__);                     \
        test_failed_ = 1;                                                                          \
        return;                                                                                    \
    } while (0)

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) FAIL_("line %d: CHECK(%s)", __LINE__, #cond);                                 \
    } while (0)

#define CHECK_EQ_INT(a, b)                                                                         \
    do {                                                                                           \
        long long a_ = (long long)(a), b_ = (long long)(b);                                        \
        if (a_ != b_) FAIL_("line %d: %s == %lld, expected %s == %lld", __LINE__, #a, a_, #b, b_); \
    } while (0)

#define CHECK_EQ_STR(a, b)                                                                         \
    do {                                                                                           \
        const char *a_ = (a), *b_ = (b);                                                           \
        if (!a_ || !b_ || strcmp(a_, b_) != 0)                                                     \
            FAIL_("line %d: %s == \"%s\", expected \"%s\"", __LINE__, #a, a_ ? a_ : "(null)",      \
                  b_ ? b_ : "(null)");                                                             \
    } while (0)

static inline int test_summary(void)
{
    return test_nfail_ ? 1 : 0;
}

#endif
