/*
 * Unit tests of lib/util and lib/hmap.
 */
#include "lib/hmap.h"
#include "lib/util.h"
#include "tests/unit/test.h"

#include <stdlib.h>

TEST(snowflakes)
{
    uint64_t v;
    CHECK_EQ_INT(snowflake_parse("1", &v), 0);
    CHECK_EQ_INT(v, 1);
    CHECK_EQ_INT(snowflake_parse("18446744073709551615", &v), 0);
    CHECK(v == UINT64_MAX);
    CHECK(snowflake_parse("18446744073709551616", &v) < 0);
    CHECK(snowflake_parse("0", &v) < 0);
    CHECK(snowflake_parse("", &v) < 0);
    CHECK(snowflake_parse("12a", &v) < 0);
    CHECK(snowflake_parse("-1", &v) < 0);
    CHECK(snowflake_parse("000000000000000000001", &v) < 0); /* 21 digits */
    char b[21];
    CHECK_EQ_STR(snowflake_fmt(1234567890123ULL, b), "1234567890123");
}

TEST(base64url_round_trip_and_strictness)
{
    unsigned char in[64], out[64];
    for (int i = 0; i < 64; i++)
        in[i] = (unsigned char)(i * 37 + 11);
    for (size_t n = 0; n <= 64; n++) {
        char enc[100];
        b64url_encode(in, n, enc);
        CHECK_EQ_INT(strlen(enc), b64url_len(n));
        long d = b64url_decode(enc, strlen(enc), out, sizeof out);
        CHECK_EQ_INT(d, (long)n);
        CHECK(memcmp(in, out, n) == 0);
    }
    CHECK(b64url_decode("ab=", 3, out, sizeof out) < 0);
    CHECK(b64url_decode("a+b/", 4, out, sizeof out) < 0);
    CHECK(b64url_decode("a", 1, out, sizeof out) < 0);
    CHECK(b64url_decode("AB", 2, out, sizeof out) < 0); /* non-canonical trailing bits */
    CHECK(b64url_decode("AAAAAAAA", 8, out, 2) < 0);    /* does not fit */
}

TEST(hmap_put_get_del_many)
{
    hmap *m = hmap_new();
    char k[32];
    for (long i = 0; i < 5000; i++) {
        snprintf(k, sizeof k, "key-%ld", i);
        CHECK(hmap_puts(m, k, (void *)(i + 1)) == NULL);
    }
    CHECK_EQ_INT(hmap_size(m), 5000);
    for (long i = 0; i < 5000; i += 2) {
        snprintf(k, sizeof k, "key-%ld", i);
        CHECK(hmap_dels(m, k) == (void *)(i + 1));
    }
    for (long i = 0; i < 5000; i++) {
        snprintf(k, sizeof k, "key-%ld", i);
        void *v = hmap_gets(m, k);
        CHECK(i % 2 ? v == (void *)(i + 1) : v == NULL);
    }
    CHECK(hmap_putu(m, 77, (void *)5) == NULL);
    CHECK(hmap_getu(m, 77) == (void *)5);
    CHECK(hmap_putu(m, 77, (void *)6) == (void *)5);
    size_t it = 0, n = 0;
    while (hmap_next(m, &it, NULL, NULL, NULL))
        n++;
    CHECK_EQ_INT(n, 2501);
    hmap_free(m);
}

int main(void)
{
    RUN(snowflakes);
    RUN(base64url_round_trip_and_strictness);
    RUN(hmap_put_get_del_many);
    return test_summary();
}
