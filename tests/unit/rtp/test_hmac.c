/*
 * Unit tests of rtp's HMAC-SHA1 for libsrtp (rtp/rtp_hmac.c, D35): the auth type against
 * OpenSSL's one-shot HMAC() for keys and messages of many lengths, fed whole and in pieces; and
 * SRTP/SRTCP packets protected by libsrtp's own OpenSSL glue (before rtp_srtp_init() replaces it)
 * against the same packets protected and unprotected after, for both tag lengths.
 */
#include "rtp/rtp.h"
#include "tests/unit/test.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <srtp2/auth.h>
#include <srtp2/srtp.h>
#include <stdlib.h>

/* the auth type itself (rtp_hmac.c); libsrtp reaches it through srtp_replace_auth_type */
extern const srtp_auth_type_t rtp_hmac_sha1;

#define NPKT 40
#define PKT_MAX (200 + SRTP_MAX_TRAILER_LEN)

static uint8_t master[30];

static void fill(uint8_t *p, size_t n, uint32_t seed)
{
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1103515245u + 12345u;
        p[i] = (uint8_t)(seed >> 16);
    }
}

/* packet i: an RTP header (seq i, SSRC 0x1234abcd) and 1 + 4i bytes of payload */
static int make_rtp(uint8_t *p, int i)
{
    int len = 12 + 1 + 4 * i;
    fill(p, (size_t)len, (uint32_t)i + 7);
    p[0] = 0x80;
    p[1] = 111;
    p[2] = (uint8_t)(i >> 8);
    p[3] = (uint8_t)i;
    p[8] = 0x12, p[9] = 0x34, p[10] = 0xab, p[11] = 0xcd;
    return len;
}

/* an RTCP receiver report from the same SSRC */
static int make_rtcp(uint8_t *p)
{
    memset(p, 0, 8);
    p[0] = 0x80;
    p[1] = 201;
    p[3] = 1;
    p[4] = 0x12, p[5] = 0x34, p[6] = 0xab, p[7] = 0xcd;
    return 8;
}

static srtp_t session(bool tag32, bool inbound)
{
    srtp_policy_t pol;
    memset(&pol, 0, sizeof pol);
    if (tag32)
        srtp_crypto_policy_set_aes_cm_128_hmac_sha1_32(&pol.rtp);
    else
        srtp_crypto_policy_set_aes_cm_128_hmac_sha1_80(&pol.rtp);
    srtp_crypto_policy_set_aes_cm_128_hmac_sha1_80(&pol.rtcp);
    pol.ssrc.type = inbound ? ssrc_any_inbound : ssrc_any_outbound;
    pol.key = master;
    pol.window_size = 128;
    srtp_t s = NULL;
    return srtp_create(&s, &pol) == srtp_err_status_ok ? s : NULL;
}

/* what libsrtp's own HMAC glue made, before the replacement */
static uint8_t stock[2][NPKT][PKT_MAX];
static int stock_len[2][NPKT];
static uint8_t stock_rtcp[PKT_MAX];
static int stock_rtcp_len;

static int protect_all(bool tag32, uint8_t out[NPKT][PKT_MAX], int *out_len)
{
    srtp_t s = session(tag32, false);
    if (!s) return -1;
    for (int i = 0; i < NPKT; i++) {
        out_len[i] = make_rtp(out[i], i);
        if (srtp_protect(s, out[i], &out_len[i]) != srtp_err_status_ok) return -1;
    }
    srtp_dealloc(s);
    return 0;
}

TEST(matches_openssl_hmac)
{
    uint8_t key[100], msg[300], want[EVP_MAX_MD_SIZE], tag[20];
    for (int klen = 0; klen <= 100; klen += 5) {
        fill(key, sizeof key, (uint32_t)klen);
        srtp_auth_t *a = NULL;
        CHECK_EQ_INT(rtp_hmac_sha1.alloc(&a, klen, 20), srtp_err_status_ok);
        CHECK_EQ_INT(rtp_hmac_sha1.init(a->state, key, klen), srtp_err_status_ok);
        for (int mlen = 0; mlen <= 300; mlen += 13) {
            fill(msg, sizeof msg, (uint32_t)(mlen * 31 + klen));
            unsigned wl = 0;
            CHECK(HMAC(EVP_sha1(), key, klen, msg, (size_t)mlen, want, &wl) != NULL);
            CHECK_EQ_INT(wl, 20);
            /* whole */
            CHECK_EQ_INT(rtp_hmac_sha1.start(a->state), srtp_err_status_ok);
            CHECK_EQ_INT(rtp_hmac_sha1.compute(a->state, msg, mlen, 20, tag), srtp_err_status_ok);
            CHECK(memcmp(tag, want, 20) == 0);
            /* in pieces, as libsrtp does (the packet, then the ROC), with a 10-byte tag */
            int cut = mlen / 3;
            CHECK_EQ_INT(rtp_hmac_sha1.start(a->state), srtp_err_status_ok);
            CHECK_EQ_INT(rtp_hmac_sha1.update(a->state, msg, cut), srtp_err_status_ok);
            memset(tag, 0, sizeof tag);
            CHECK_EQ_INT(rtp_hmac_sha1.compute(a->state, msg + cut, mlen - cut, 10, tag),
                         srtp_err_status_ok);
            CHECK(memcmp(tag, want, 10) == 0);
            CHECK_EQ_INT(tag[10], 0); /* nothing past the tag length */
        }
        CHECK_EQ_INT(rtp_hmac_sha1.dealloc(a), srtp_err_status_ok);
    }
}

TEST(refuses_bad_lengths)
{
    srtp_auth_t *a = NULL;
    uint8_t tag[32];
    CHECK_EQ_INT(rtp_hmac_sha1.alloc(&a, 20, 21), srtp_err_status_bad_param);
    CHECK_EQ_INT(rtp_hmac_sha1.alloc(&a, -1, 10), srtp_err_status_bad_param);
    CHECK_EQ_INT(rtp_hmac_sha1.alloc(&a, 20, 10), srtp_err_status_ok);
    CHECK_EQ_INT(rtp_hmac_sha1.init(a->state, master, 20), srtp_err_status_ok);
    CHECK_EQ_INT(rtp_hmac_sha1.start(a->state), srtp_err_status_ok);
    CHECK_EQ_INT(rtp_hmac_sha1.update(a->state, master, -1), srtp_err_status_bad_param);
    CHECK_EQ_INT(rtp_hmac_sha1.compute(a->state, master, 4, 21, tag), srtp_err_status_bad_param);
    CHECK_EQ_INT(rtp_hmac_sha1.dealloc(a), srtp_err_status_ok);
}

/* after rtp_srtp_init(): the same bytes as libsrtp's glue, both ways */
TEST(srtp_same_as_libsrtp_glue)
{
    for (int t = 0; t < 2; t++) {
        uint8_t mine[NPKT][PKT_MAX];
        int mine_len[NPKT];
        CHECK_EQ_INT(protect_all(t == 1, mine, mine_len), 0);
        for (int i = 0; i < NPKT; i++) {
            CHECK_EQ_INT(mine_len[i], stock_len[t][i]);
            CHECK(memcmp(mine[i], stock[t][i], (size_t)mine_len[i]) == 0);
        }
        /* the stock packets unprotect with ours; a flipped bit anywhere is refused */
        srtp_t rx = session(t == 1, true);
        CHECK(rx != NULL);
        for (int i = 0; i < NPKT; i++) {
            uint8_t p[PKT_MAX], want[PKT_MAX];
            memcpy(p, stock[t][i], (size_t)stock_len[t][i]);
            int len = stock_len[t][i];
            if (i % 4 == 1) { /* a forgery first: it must not spend the index */
                p[len - 1 - i % 7] ^= 0x10;
                int flen = len;
                CHECK_EQ_INT(srtp_unprotect(rx, p, &flen), srtp_err_status_auth_fail);
                p[len - 1 - i % 7] ^= 0x10;
            }
            CHECK_EQ_INT(srtp_unprotect(rx, p, &len), srtp_err_status_ok);
            CHECK_EQ_INT(len, make_rtp(want, i));
            CHECK(memcmp(p, want, (size_t)len) == 0);
        }
        srtp_dealloc(rx);
    }
    /* SRTCP the same */
    srtp_t tx = session(false, false);
    CHECK(tx != NULL);
    uint8_t p[PKT_MAX];
    int len = make_rtcp(p);
    CHECK_EQ_INT(srtp_protect_rtcp(tx, p, &len), srtp_err_status_ok);
    CHECK_EQ_INT(len, stock_rtcp_len);
    CHECK(memcmp(p, stock_rtcp, (size_t)len) == 0);
    srtp_dealloc(tx);
}

int main(void)
{
    fill(master, sizeof master, 0xC0FFEE);
    /* libsrtp's own glue first */
    if (srtp_init() != srtp_err_status_ok) return 1;
    for (int t = 0; t < 2; t++)
        if (protect_all(t == 1, stock[t], stock_len[t]) != 0) return 1;
    srtp_t tx = session(false, false);
    if (!tx) return 1;
    stock_rtcp_len = make_rtcp(stock_rtcp);
    if (srtp_protect_rtcp(tx, stock_rtcp, &stock_rtcp_len) != srtp_err_status_ok) return 1;
    srtp_dealloc(tx);
    srtp_shutdown(); /* libsrtp refuses a second srtp_init() while it is up */
    /* then ours (runs libsrtp's self-test of the type) */
    if (rtp_srtp_init() != 0) {
        printf("not ok - %s:rtp_srtp_init\n", __FILE__);
        return 1;
    }
    printf("ok - %s:rtp_srtp_init\n", __FILE__);
    RUN(matches_openssl_hmac);
    RUN(refuses_bad_lengths);
    RUN(srtp_same_as_libsrtp_glue);
    return test_summary();
}
