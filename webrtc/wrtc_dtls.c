/*
 * webrtc/wrtc_dtls.c — the DTLS 1.2 server of a webrtc transport (RFC 6347, RFC 5764 DTLS-SRTP,
 * RFC 8842 a=setup:passive), OpenSSL 3 behind memory BIOs: no socket, no thread, no clock of ours.
 *
 * How it works: one SSL_CTX per node (wrtc_dtls_ctx) with its ECDSA P-256 certificate, DTLS 1.2
 * only, ECDHE-ECDSA AEAD ciphers, a client certificate required, and use_srtp with our preference
 * SRTP_AEAD_AES_128_GCM, then SRTP_AES128_CM_SHA1_80 (OpenSSL's server picks the first of ours the
 * client offers). One SSL per transport with a memory BIO each way:
 *   - wrtc_dtls_feed() writes the peer's datagram into the read BIO and runs the handshake (or,
 * once connected, SSL_read, which answers a retransmitted client Finished and notices
 * close_notify). OpenSSL drops records that do not parse or authenticate without failing the
 * connection.
 *   - OpenSSL writes records into the write BIO back to back; wrtc_dtls_pull() cuts them at record
 *     boundaries (13-byte header with a length) and packs whole records into datagrams of at most
 *     WRTC_DTLS_MTU bytes (SSL_set_mtu keeps each record under it).
 *   - The peer certificate is checked by our own verify callback instead of a chain: its sha-256
 *     digest must equal the a=fingerprint of the offer (RFC 8122), compared in constant time; a
 *     mismatch fails the handshake with an alert.
 *   - When the handshake completes, the selected profile must be one of ours and the keying
 *     material "EXTRACTOR-dtls_srtp" (2 × (key + salt)) is split per RFC 5764 §4.2:
 *     client key | server key | client salt | server salt. The client's pair unprotects what the
 *     browser sends (`in`), the server's protects what we send (`out`).
 * Retransmission: OpenSSL's DTLS timer (1 s doubling, gives up after 12 tries) read with
 * DTLSv1_get_timeout and fired by the caller with wrtc_dtls_on_timeout().
 *
 * No cookie exchange (HelloVerifyRequest): the worker feeds DTLS only from the address that has
 * passed an authenticated ICE check (STUN MESSAGE-INTEGRITY with our ice-pwd), which already proves
 * the address is reachable; browsers do not need it. Allocation: OpenSSL allocates during the
 * handshake (records, BIO buffers); after it, DTLS sees only a rare alert or retransmission.
 */
#include "webrtc/webrtc.h"
#include "lib/log.h"

#include <errno.h>
#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <string.h>

#define SRTP_PROFILES "SRTP_AEAD_AES_128_GCM:SRTP_AES128_CM_SHA1_80"
#define CIPHERS                                                                                    \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-ECDSA-AES256-GCM-SHA384:"   \
    "ECDHE-ECDSA-AES128-SHA"
#define EXPORTER_LABEL "EXTRACTOR-dtls_srtp"
#define REC_HDR        13

struct wrtc_dtls_ctx {
    SSL_CTX *ssl_ctx;
    char fingerprint[WRTC_SDP_FP_STR];
};

struct wrtc_dtls {
    SSL *ssl;
    BIO *rbio, *wbio; /* owned by ssl */
    uint8_t peer_fp[WRTC_SDP_FP_LEN];
    wrtc_dtls_state state;
    const char *fail_reason;
    bool fp_mismatch, no_cert;
    wrtc_srtp_profile profile;
    wrtc_srtp_key in, out;
};

/* ---- context ----------------------------------------------------------------------------------
 */

static void log_ssl_error(const char *what)
{
    unsigned long e = ERR_get_error();
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    LOGC(LOG_ERROR, "webrtc", "%s: %s", what, e ? buf : "(no OpenSSL error)");
    ERR_clear_error();
}

static int self_signed(EVP_PKEY **pkey_out, X509 **cert_out)
{
    EVP_PKEY *pkey = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    uint64_t serial = 0;
    if (!pkey || !x || RAND_bytes((unsigned char *)&serial, sizeof serial) != 1) goto fail;
    serial &= INT64_MAX;
    X509_NAME *name = X509_get_subject_name(x);
    if (!X509_set_version(x, 2) || !ASN1_INTEGER_set_uint64(X509_get_serialNumber(x), serial) ||
        !X509_gmtime_adj(X509_getm_notBefore(x), -30L * 86400) ||
        !X509_gmtime_adj(X509_getm_notAfter(x), 30L * 86400) || !X509_set_pubkey(x, pkey) ||
        !X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"voxd", -1, -1,
                                    0) ||
        !X509_set_issuer_name(x, name) || !X509_sign(x, pkey, EVP_sha256()))
        goto fail;
    *pkey_out = pkey;
    *cert_out = x;
    return 0;
fail:
    X509_free(x);
    EVP_PKEY_free(pkey);
    return -EIO;
}

static int load_pem(const char *cert_pem, const char *key_pem, EVP_PKEY **pkey_out, X509 **cert_out)
{
    FILE *cf = fopen(cert_pem, "r");
    if (!cf) return -ENOENT;
    X509 *x = PEM_read_X509(cf, NULL, NULL, NULL);
    fclose(cf);
    FILE *kf = fopen(key_pem, "r");
    if (!kf) {
        X509_free(x);
        return -ENOENT;
    }
    EVP_PKEY *pkey = PEM_read_PrivateKey(kf, NULL, NULL, NULL);
    fclose(kf);
    if (!x || !pkey || X509_check_private_key(x, pkey) != 1) {
        ERR_clear_error();
        X509_free(x);
        EVP_PKEY_free(pkey);
        return -EINVAL;
    }
    *pkey_out = pkey;
    *cert_out = x;
    return 0;
}

static int fingerprint_of(X509 *x, uint8_t md[WRTC_SDP_FP_LEN])
{
    unsigned int len = 0;
    if (!X509_digest(x, EVP_sha256(), md, &len) || len != WRTC_SDP_FP_LEN) return -EIO;
    return 0;
}

/* Our own check of the peer's certificate (replaces chain verification): its sha-256 digest must
 * be the offer's a=fingerprint. */
static int verify_cert(X509_STORE_CTX *store, void *arg)
{
    (void)arg;
    SSL *ssl = X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx());
    wrtc_dtls *d = ssl ? SSL_get_app_data(ssl) : NULL;
    X509 *peer = X509_STORE_CTX_get0_cert(store);
    if (!d) return 0;
    uint8_t md[WRTC_SDP_FP_LEN];
    if (!peer || fingerprint_of(peer, md) != 0) {
        d->no_cert = true;
        X509_STORE_CTX_set_error(store, X509_V_ERR_UNSPECIFIED);
        return 0;
    }
    if (CRYPTO_memcmp(md, d->peer_fp, sizeof md) != 0) {
        d->fp_mismatch = true;
        X509_STORE_CTX_set_error(store, X509_V_ERR_CERT_REJECTED);
        return 0;
    }
    return 1;
}

int wrtc_dtls_ctx_new(const char *cert_pem, const char *key_pem, wrtc_dtls_ctx **out)
{
    if ((cert_pem == NULL) != (key_pem == NULL)) return -EINVAL;
    EVP_PKEY *pkey = NULL;
    X509 *cert = NULL;
    SSL_CTX *sc = NULL;
    int rc = cert_pem ? load_pem(cert_pem, key_pem, &pkey, &cert) : self_signed(&pkey, &cert);
    if (rc) {
        if (rc == -EIO) log_ssl_error("certificate generation");
        return rc;
    }
    uint8_t md[WRTC_SDP_FP_LEN];
    rc = -EIO;
    sc = SSL_CTX_new(DTLS_server_method());
    if (!sc || fingerprint_of(cert, md) != 0) goto fail;
    if (!SSL_CTX_set_min_proto_version(sc, DTLS1_2_VERSION) ||
        !SSL_CTX_set_max_proto_version(sc, DTLS1_2_VERSION) ||
        SSL_CTX_use_certificate(sc, cert) != 1 || SSL_CTX_use_PrivateKey(sc, pkey) != 1 ||
        SSL_CTX_check_private_key(sc) != 1 || SSL_CTX_set_cipher_list(sc, CIPHERS) != 1 ||
        SSL_CTX_set_tlsext_use_srtp(sc, SRTP_PROFILES) != 0) /* 0 is success here */
        goto fail;
    SSL_CTX_set_verify(sc, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    SSL_CTX_set_cert_verify_callback(sc, verify_cert, NULL);
    SSL_CTX_set_session_cache_mode(sc, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_options(sc, SSL_OP_NO_QUERY_MTU | SSL_OP_NO_TICKET | SSL_OP_SINGLE_ECDH_USE);
    SSL_CTX_set_read_ahead(sc, 1);

    wrtc_dtls_ctx *c = OPENSSL_zalloc(sizeof *c);
    if (!c) {
        rc = -ENOMEM;
        goto fail;
    }
    c->ssl_ctx = sc;
    for (size_t i = 0; i < WRTC_SDP_FP_LEN; i++)
        snprintf(c->fingerprint + 3 * i, 4, i + 1 < WRTC_SDP_FP_LEN ? "%02X:" : "%02X", md[i]);
    X509_free(cert); /* the SSL_CTX holds its own references */
    EVP_PKEY_free(pkey);
    *out = c;
    return 0;
fail:
    if (rc == -EIO) log_ssl_error("DTLS context");
    SSL_CTX_free(sc);
    X509_free(cert);
    EVP_PKEY_free(pkey);
    return rc;
}

void wrtc_dtls_ctx_free(wrtc_dtls_ctx *c)
{
    if (!c) return;
    SSL_CTX_free(c->ssl_ctx);
    OPENSSL_free(c);
}

const char *wrtc_dtls_ctx_fingerprint(const wrtc_dtls_ctx *c)
{
    return c->fingerprint;
}

/* ---- transport --------------------------------------------------------------------------------
 */

int wrtc_dtls_new(wrtc_dtls_ctx *c, const uint8_t peer_fp[WRTC_SDP_FP_LEN], wrtc_dtls **out)
{
    wrtc_dtls *d = OPENSSL_zalloc(sizeof *d);
    if (!d) return -ENOMEM;
    memcpy(d->peer_fp, peer_fp, WRTC_SDP_FP_LEN);
    d->fail_reason = "";
    d->ssl = SSL_new(c->ssl_ctx);
    d->rbio = BIO_new(BIO_s_mem());
    d->wbio = BIO_new(BIO_s_mem());
    if (!d->ssl || !d->rbio || !d->wbio) {
        BIO_free(d->rbio);
        BIO_free(d->wbio);
        SSL_free(d->ssl);
        OPENSSL_free(d);
        ERR_clear_error();
        return -ENOMEM;
    }
    BIO_set_mem_eof_return(d->rbio, -1); /* empty means "retry", not EOF */
    BIO_set_mem_eof_return(d->wbio, -1);
    SSL_set_bio(d->ssl, d->rbio, d->wbio);
    SSL_set_app_data(d->ssl, d);
    SSL_set_accept_state(d->ssl);
    SSL_set_mtu(d->ssl, WRTC_DTLS_MTU);
    *out = d;
    return 0;
}

void wrtc_dtls_free(wrtc_dtls *d)
{
    if (!d) return;
    SSL_free(d->ssl);
    OPENSSL_cleanse(&d->in, sizeof d->in);
    OPENSSL_cleanse(&d->out, sizeof d->out);
    OPENSSL_free(d);
}

static int fail(wrtc_dtls *d, const char *reason, int rc)
{
    d->state = WRTC_DTLS_FAILED;
    d->fail_reason = reason;
    ERR_clear_error();
    return rc;
}

static int on_connected(wrtc_dtls *d)
{
    const SRTP_PROTECTION_PROFILE *p = SSL_get_selected_srtp_profile(d->ssl);
    size_t key_len = 16, salt_len;
    if (p && p->id == SRTP_AEAD_AES_128_GCM) {
        d->profile = WRTC_SRTP_AEAD_AES_128_GCM;
        salt_len = 12;
    } else if (p && p->id == SRTP_AES128_CM_SHA1_80) {
        d->profile = WRTC_SRTP_AES_CM_128_HMAC_SHA1_80;
        salt_len = 14;
    } else {
        SSL_shutdown(d->ssl); /* a close_notify for the peer */
        return fail(d, "no_srtp_profile", -EPROTO);
    }
    uint8_t km[2 * (16 + 14)];
    size_t n = 2 * (key_len + salt_len);
    if (SSL_export_keying_material(d->ssl, km, n, EXPORTER_LABEL, strlen(EXPORTER_LABEL), NULL, 0,
                                   0) != 1)
        return fail(d, "handshake", -EPROTO);
    d->in.profile = d->out.profile = d->profile;
    memcpy(d->in.key, km, key_len);                                      /* client key */
    memcpy(d->out.key, km + key_len, key_len);                           /* server key */
    memcpy(d->in.key + key_len, km + 2 * key_len, salt_len);             /* client salt */
    memcpy(d->out.key + key_len, km + 2 * key_len + salt_len, salt_len); /* server salt */
    OPENSSL_cleanse(km, sizeof km);
    d->state = WRTC_DTLS_CONNECTED;
    return (int)d->state;
}

int wrtc_dtls_feed(wrtc_dtls *d, const uint8_t *p, size_t n)
{
    if (d->state == WRTC_DTLS_FAILED) return -EPROTO;
    if (n == 0 || p[0] < 20 || p[0] > 63 || n > INT32_MAX) return -EINVAL;
    if (d->state == WRTC_DTLS_CLOSED) return (int)d->state;
    if (BIO_write(d->rbio, p, (int)n) != (int)n) return fail(d, "handshake", -EPROTO);
    int rc;
    if (d->state == WRTC_DTLS_HANDSHAKING) {
        int r = SSL_do_handshake(d->ssl);
        if (r == 1) {
            rc = on_connected(d);
        } else {
            int e = SSL_get_error(d->ssl, r);
            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
                rc = (int)d->state;
            else if (d->fp_mismatch)
                rc = fail(d, "fingerprint_mismatch", -EACCES);
            else if (d->no_cert || SSL_get0_peer_certificate(d->ssl) == NULL)
                rc = fail(d, "no_certificate", -EACCES);
            else
                rc = fail(d, "handshake", -EPROTO);
        }
    } else { /* connected: application data is not expected (no data channel); alerts are */
        uint8_t buf[2048];
        rc = (int)d->state;
        for (;;) {
            int r = SSL_read(d->ssl, buf, sizeof buf);
            if (r > 0) continue;
            int e = SSL_get_error(d->ssl, r);
            if (e == SSL_ERROR_ZERO_RETURN) {
                d->state = WRTC_DTLS_CLOSED;
                rc = (int)d->state;
            } else if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
                rc = fail(d, "handshake", -EPROTO);
            }
            break;
        }
    }
    (void)BIO_reset(d->rbio); /* nothing of this datagram is carried over to the next */
    ERR_clear_error();
    return rc;
}

int wrtc_dtls_pull(wrtc_dtls *d, uint8_t *buf, size_t cap)
{
    char *data = NULL;
    long pending = BIO_get_mem_data(d->wbio, &data);
    if (pending <= 0 || !data) return 0;
    size_t avail = (size_t)pending, limit = cap < WRTC_DTLS_MTU ? cap : WRTC_DTLS_MTU, take = 0;
    const uint8_t *p = (const uint8_t *)data;
    while (take < avail) {
        size_t rec = avail - take;
        if (rec >= REC_HDR) {
            size_t body = ((size_t)p[take + 11] << 8) | p[take + 12];
            if (REC_HDR + body < rec) rec = REC_HDR + body;
        }
        if (take + rec > limit) break;
        take += rec;
    }
    if (take == 0) { /* a single record longer than the buffer: hand out what fits */
        if (cap == 0) return 0;
        take = avail < cap ? avail : cap;
    }
    int r = BIO_read(d->wbio, buf, (int)take);
    return r > 0 ? r : 0;
}

long wrtc_dtls_timeout_ms(wrtc_dtls *d)
{
    if (d->state != WRTC_DTLS_HANDSHAKING) return -1;
    struct timeval tv;
    if (DTLSv1_get_timeout(d->ssl, &tv) != 1) return -1;
    return (long)tv.tv_sec * 1000 + (tv.tv_usec + 999) / 1000;
}

int wrtc_dtls_on_timeout(wrtc_dtls *d)
{
    if (d->state == WRTC_DTLS_FAILED) return -EPROTO;
    if (d->state != WRTC_DTLS_HANDSHAKING) return (int)d->state;
    if (DTLSv1_handle_timeout(d->ssl) < 0) return fail(d, "timeout", -EPROTO);
    ERR_clear_error();
    return (int)d->state;
}

wrtc_dtls_state wrtc_dtls_get_state(const wrtc_dtls *d)
{
    return d->state;
}

const char *wrtc_dtls_state_name(wrtc_dtls_state s)
{
    switch (s) {
    case WRTC_DTLS_HANDSHAKING:
        return "handshaking";
    case WRTC_DTLS_CONNECTED:
        return "connected";
    case WRTC_DTLS_FAILED:
        return "failed";
    case WRTC_DTLS_CLOSED:
        return "closed";
    }
    return "unknown";
}

const char *wrtc_dtls_fail_reason(const wrtc_dtls *d)
{
    return d->fail_reason;
}

wrtc_srtp_profile wrtc_dtls_profile(const wrtc_dtls *d)
{
    return d->state == WRTC_DTLS_CONNECTED || d->state == WRTC_DTLS_CLOSED ? d->profile
                                                                           : (wrtc_srtp_profile)0;
}

int wrtc_dtls_srtp_keys(const wrtc_dtls *d, wrtc_srtp_key *in, wrtc_srtp_key *out)
{
    if (d->state != WRTC_DTLS_CONNECTED) return -EAGAIN;
    *in = d->in;
    *out = d->out;
    return 0;
}
