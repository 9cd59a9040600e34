/*
 * rtp/rtp_hmac.c — libsrtp's HMAC-SHA1 (SRTP_HMAC_SHA1, the authentication of
 * AES_CM_128_HMAC_SHA1_80/_32) on OpenSSL's SHA-1 core with the key's pads precomputed, installed
 * through libsrtp's own extension point (srtp_replace_auth_type, which runs the type's self-test).
 *
 * Why (docs/decisions.md D35): libsrtp 2.5's OpenSSL glue (crypto/hash/hmac_ossl.c) restarts an
 * OpenSSL 3 HMAC context for every packet; HMAC_Init_ex/EVP_MAC_init copy the keyed digest
 * context with EVP_MD_CTX_copy_ex, which frees and mallocs the provider's context each time: two
 * allocations and a walk through the EVP layers per protect or unprotect, about a sixth of the
 * relay's CPU at fan-out 1. Here a key's inner and outer states are hashed once (RFC 2104: the
 * ipad and opad blocks), and a packet costs two struct copies and SHA1_Update/SHA1_Final (the same
 * assembly, SHA-NI where the CPU has it, that OpenSSL's EVP path reaches): no allocation, no
 * indirection. State and libsrtp's srtp_auth_t are one allocation.
 *
 * SHA1_Init/Update/Final are deprecated in OpenSSL 3 (not removed); the deprecation attributes
 * are silenced for this file alone. Correctness: libsrtp's self-test (RFC 2202 case 1) on install,
 * tests/unit/rtp/test_hmac.c against OpenSSL's HMAC() and against packets protected by libsrtp's
 * own glue, and every interoperability test (GStreamer's libsrtp on NSS, Chromium).
 */
#define OPENSSL_SUPPRESS_DEPRECATED
#include "rtp/rtp.h"

#include <errno.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <srtp2/auth.h>
#include <srtp2/srtp.h>
#include <stdlib.h>
#include <string.h>

#define HMAC_BLOCK 64
#define HMAC_OUT   SHA_DIGEST_LENGTH

typedef struct hmac_state {
    SHA_CTX inner; /* after the key ^ ipad block */
    SHA_CTX outer; /* after the key ^ opad block */
    SHA_CTX work;  /* the packet being authenticated */
} hmac_state;

typedef struct hmac_auth {
    srtp_auth_t a;
    hmac_state s;
} hmac_auth;

extern const srtp_auth_type_t rtp_hmac_sha1;

static srtp_err_status_t hmac_alloc(srtp_auth_t **ap, int key_len, int out_len)
{
    if (key_len < 0 || out_len < 0 || out_len > HMAC_OUT) return srtp_err_status_bad_param;
    hmac_auth *h = calloc(1, sizeof *h);
    if (!h) return srtp_err_status_alloc_fail;
    h->a.type = &rtp_hmac_sha1;
    h->a.state = &h->s;
    h->a.out_len = out_len;
    h->a.key_len = key_len;
    h->a.prefix_len = 0;
    *ap = &h->a;
    return srtp_err_status_ok;
}

static srtp_err_status_t hmac_dealloc(srtp_auth_t *a)
{
    hmac_auth *h = (hmac_auth *)a; /* a is the first member */
    explicit_bzero(h, sizeof *h);
    free(h);
    return srtp_err_status_ok;
}

static srtp_err_status_t hmac_init(void *state, const uint8_t *key, int key_len)
{
    hmac_state *s = state;
    uint8_t k[HMAC_BLOCK] = {0}, pad[HMAC_BLOCK];
    if (key_len < 0) return srtp_err_status_bad_param;
    if (key_len > HMAC_BLOCK) /* RFC 2104: a longer key is hashed first */
        SHA1(key, (size_t)key_len, k);
    else if (key_len > 0)
        memcpy(k, key, (size_t)key_len);
    for (int i = 0; i < HMAC_BLOCK; i++)
        pad[i] = k[i] ^ 0x36;
    SHA1_Init(&s->inner);
    SHA1_Update(&s->inner, pad, HMAC_BLOCK);
    for (int i = 0; i < HMAC_BLOCK; i++)
        pad[i] = k[i] ^ 0x5c;
    SHA1_Init(&s->outer);
    SHA1_Update(&s->outer, pad, HMAC_BLOCK);
    s->work = s->inner;
    explicit_bzero(k, sizeof k);
    explicit_bzero(pad, sizeof pad);
    return srtp_err_status_ok;
}

static srtp_err_status_t hmac_start(void *state)
{
    hmac_state *s = state;
    s->work = s->inner;
    return srtp_err_status_ok;
}

static srtp_err_status_t hmac_update(void *state, const uint8_t *msg, int len)
{
    hmac_state *s = state;
    if (len < 0) return srtp_err_status_bad_param;
    SHA1_Update(&s->work, msg, (size_t)len);
    return srtp_err_status_ok;
}

static srtp_err_status_t hmac_compute(void *state, const uint8_t *msg, int len, int tag_len,
                                      uint8_t *tag)
{
    hmac_state *s = state;
    uint8_t h[HMAC_OUT];
    if (len < 0 || tag_len < 0 || tag_len > HMAC_OUT) return srtp_err_status_bad_param;
    SHA1_Update(&s->work, msg, (size_t)len);
    SHA1_Final(h, &s->work);
    SHA_CTX o = s->outer;
    SHA1_Update(&o, h, HMAC_OUT);
    SHA1_Final(h, &o);
    memcpy(tag, h, (size_t)tag_len);
    return srtp_err_status_ok;
}

/* RFC 2202 test case 1 (libsrtp runs it when the type is installed) */
static const uint8_t tc1_key[20] = {0x0b, 0x0b, 0x0b, 0x0b, 0x0b, 0x0b, 0x0b, 0x0b, 0x0b, 0x0b,
                                    0x0b, 0x0b, 0x0b, 0x0b, 0x0b, 0x0b, 0x0b, 0x0b, 0x0b, 0x0b};
static const uint8_t tc1_data[8] = {'H', 'i', ' ', 'T', 'h', 'e', 'r', 'e'};
static const uint8_t tc1_tag[20] = {0xb6, 0x17, 0x31, 0x86, 0x55, 0x05, 0x72, 0x64, 0xe2, 0x8b,
                                    0xc0, 0xb6, 0xfb, 0x37, 0x8c, 0x8e, 0xf1, 0x46, 0xbe, 0x00};
static const srtp_auth_test_case_t tc1 = {
    .key_length_octets = sizeof tc1_key,
    .key = tc1_key,
    .data_length_octets = sizeof tc1_data,
    .data = tc1_data,
    .tag_length_octets = sizeof tc1_tag,
    .tag = tc1_tag,
    .next_test_case = NULL,
};

const srtp_auth_type_t rtp_hmac_sha1 = {
    .alloc = hmac_alloc,
    .dealloc = hmac_dealloc,
    .init = hmac_init,
    .compute = hmac_compute,
    .update = hmac_update,
    .start = hmac_start,
    .description = "hmac sha-1 (voxd: OpenSSL SHA-1 core, precomputed pads)",
    .test_data = &tc1,
    .id = SRTP_HMAC_SHA1,
};

static pthread_once_t srtp_once = PTHREAD_ONCE_INIT;
static int srtp_init_rc;

static void srtp_init_once(void)
{
    if (srtp_init() != srtp_err_status_ok) {
        srtp_init_rc = -EIO;
        return;
    }
    if (srtp_replace_auth_type(&rtp_hmac_sha1, SRTP_HMAC_SHA1) != srtp_err_status_ok)
        srtp_init_rc = -EIO;
}

int rtp_srtp_init(void)
{
    pthread_once(&srtp_once, srtp_init_once);
    return srtp_init_rc;
}
