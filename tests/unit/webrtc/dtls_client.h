/*
 * tests/unit/webrtc/dtls_client.h — a browser-like DTLS client for the tests and the bench: OpenSSL
 * with memory BIOs, its own self-signed ECDSA P-256 certificate, use_srtp with the profiles given,
 * a=setup:active. Header-only (static inline functions), included by test_dtls.c and dtls_bench.c.
 */
#ifndef VOXD_TEST_DTLS_CLIENT_H
#define VOXD_TEST_DTLS_CLIENT_H

#include "webrtc/webrtc.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <string.h>

typedef struct tclient {
    SSL_CTX *ctx;
    SSL *ssl;
    BIO *rbio, *wbio;
    EVP_PKEY *pkey;
    X509 *cert;
    uint8_t fp[WRTC_SDP_FP_LEN];     /* its certificate's sha-256, for the server's "offer" */
    char server_fp[WRTC_SDP_FP_STR]; /* what the server presented, "AB:CD:…" */
} tclient;

static inline int tclient_accept_any(X509_STORE_CTX *store, void *arg)
{
    tclient *c = arg;
    X509 *x = X509_STORE_CTX_get0_cert(store);
    uint8_t md[32];
    unsigned len = 0;
    if (x && X509_digest(x, EVP_sha256(), md, &len) && len == 32)
        for (int i = 0; i < 32; i++)
            snprintf(c->server_fp + 3 * i, 4, i < 31 ? "%02X:" : "%02X", md[i]);
    return 1;
}

static inline int tclient_cert(EVP_PKEY **pk, X509 **cert)
{
    EVP_PKEY *pkey = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    if (!pkey || !x) return -1;
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 7);
    X509_gmtime_adj(X509_getm_notBefore(x), -86400);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_set_pubkey(x, pkey);
    X509_NAME *n = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"WebRTC", -1, -1, 0);
    X509_set_issuer_name(x, n);
    if (!X509_sign(x, pkey, EVP_sha256())) return -1;
    *pk = pkey;
    *cert = x;
    return 0;
}

/* A client context (certificate made once); profiles NULL: no use_srtp extension. */
static inline int tclient_init(tclient *c, const char *profiles)
{
    memset(c, 0, sizeof *c);
    if (tclient_cert(&c->pkey, &c->cert)) return -1;
    unsigned len = 0;
    X509_digest(c->cert, EVP_sha256(), c->fp, &len);
    c->ctx = SSL_CTX_new(DTLS_client_method());
    if (!c->ctx) return -1;
    SSL_CTX_use_certificate(c->ctx, c->cert);
    SSL_CTX_use_PrivateKey(c->ctx, c->pkey);
    SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_cert_verify_callback(c->ctx, tclient_accept_any, c);
    SSL_CTX_set_options(c->ctx, SSL_OP_NO_QUERY_MTU);
    if (profiles && SSL_CTX_set_tlsext_use_srtp(c->ctx, profiles) != 0) return -1;
    return 0;
}

/* A fresh connection (a new handshake) on the client's context. */
static inline int tclient_connect(tclient *c)
{
    if (c->ssl) SSL_free(c->ssl);
    c->ssl = SSL_new(c->ctx);
    c->rbio = BIO_new(BIO_s_mem());
    c->wbio = BIO_new(BIO_s_mem());
    BIO_set_mem_eof_return(c->rbio, -1);
    BIO_set_mem_eof_return(c->wbio, -1);
    SSL_set_bio(c->ssl, c->rbio, c->wbio);
    SSL_set_connect_state(c->ssl);
    SSL_set_mtu(c->ssl, 1200);
    return c->ssl ? 0 : -1;
}

static inline void tclient_free(tclient *c)
{
    SSL_free(c->ssl);
    SSL_CTX_free(c->ctx);
    X509_free(c->cert);
    EVP_PKEY_free(c->pkey);
    memset(c, 0, sizeof *c);
}

/* Runs the client's side once; returns 1 when its handshake is done, 0 to go on, -1 on failure. */
static inline int tclient_step(tclient *c)
{
    int r = SSL_do_handshake(c->ssl);
    if (r == 1) return 1;
    int e = SSL_get_error(c->ssl, r);
    ERR_clear_error();
    return (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) ? 0 : -1;
}

/* Takes everything the client wrote (one "datagram" of back-to-back records) into buf. */
static inline size_t tclient_take(tclient *c, uint8_t *buf, size_t cap)
{
    int n = BIO_read(c->wbio, buf, (int)cap);
    return n > 0 ? (size_t)n : 0;
}

static inline void tclient_give(tclient *c, const uint8_t *p, size_t n)
{
    BIO_write(c->rbio, p, (int)n);
}

/* The client's view of the SRTP keys: its write key (client key + salt) and the server's. */
static inline int tclient_keys(tclient *c, wrtc_srtp_key *client_write, wrtc_srtp_key *server_write)
{
    const SRTP_PROTECTION_PROFILE *p = SSL_get_selected_srtp_profile(c->ssl);
    if (!p) return -1;
    size_t salt = p->id == SRTP_AEAD_AES_128_GCM ? 12 : 14;
    uint8_t km[60];
    if (SSL_export_keying_material(c->ssl, km, 2 * (16 + salt), "EXTRACTOR-dtls_srtp", 19, NULL, 0,
                                   0) != 1)
        return -1;
    memset(client_write, 0, sizeof *client_write);
    memset(server_write, 0, sizeof *server_write);
    client_write->profile = server_write->profile = p->id == SRTP_AEAD_AES_128_GCM
                                                        ? WRTC_SRTP_AEAD_AES_128_GCM
                                                        : WRTC_SRTP_AES_CM_128_HMAC_SHA1_80;
    memcpy(client_write->key, km, 16);
    memcpy(server_write->key, km + 16, 16);
    memcpy(client_write->key + 16, km + 32, salt);
    memcpy(server_write->key + 16, km + 32 + salt, salt);
    return 0;
}

#endif
