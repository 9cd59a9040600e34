/*
 * webrtc/wrtc_stun.c — STUN for an ICE-lite server (RFC 8489, RFC 5389, RFC 8445 §7.3, RFC 7675).
 *
 * How it works: wrtc_stun_parse() checks the 20-byte header (first two bits zero, length a multiple
 * of 4 equal to what follows the header, magic cookie) and walks the attributes once, each one's
 * 4-byte header and padded value checked against the end before it is read. It notes what ICE
 * needs (USERNAME, PRIORITY, USE-CANDIDATE, ICE-CONTROLLING/-CONTROLLED and their tie-breaker), the
 * offset of MESSAGE-INTEGRITY (after which only FINGERPRINT counts, RFC 8489 §14.5) and verifies
 * FINGERPRINT, which must be the last attribute. wrtc_stun_check() then applies the server rules
 * (RFC 8489 §9.1.3 for short-term credentials, RFC 8445 §7.3.1.1 for roles) in the order the RFCs
 * give, so that the first failing rule names the refusal and the error response it deserves.
 *
 * MESSAGE-INTEGRITY is HMAC-SHA1 (key = the ice-pwd as is: ICE passwords are ASCII, SASLprep leaves
 * them alone) over the message up to the attribute with the header length set to end just after
 * it; FINGERPRINT is CRC-32 xor 0x5354554e over the message up to it. The HMAC is OpenSSL's
 * one-shot HMAC() on a stack copy of the covered bytes (the length field must be patched); OpenSSL
 * allocates inside it, which is acceptable at STUN's rate (connectivity checks, then one consent
 * check every ~5 s per peer), never the RTP rate.
 */
#include "webrtc/webrtc.h"

#include <errno.h>
#include <netinet/in.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <string.h>

enum {
    ATTR_MAPPED_ADDRESS = 0x0001,
    ATTR_USERNAME = 0x0006,
    ATTR_MESSAGE_INTEGRITY = 0x0008,
    ATTR_ERROR_CODE = 0x0009,
    ATTR_UNKNOWN_ATTRIBUTES = 0x000A,
    ATTR_REALM = 0x0014,
    ATTR_NONCE = 0x0015,
    ATTR_MESSAGE_INTEGRITY_SHA256 = 0x001C,
    ATTR_PASSWORD_ALGORITHM = 0x001D,
    ATTR_USERHASH = 0x001E,
    ATTR_XOR_MAPPED_ADDRESS = 0x0020,
    ATTR_PRIORITY = 0x0024,
    ATTR_USE_CANDIDATE = 0x0025,
    ATTR_FINGERPRINT = 0x8028,
    ATTR_ICE_CONTROLLED = 0x8029,
    ATTR_ICE_CONTROLLING = 0x802A,
};

#define FINGERPRINT_XOR 0x5354554eu
#define MI_LEN          20
#define USERNAME_MAX    513 /* RFC 8489 §14.3 */

static uint16_t get16(const uint8_t *p)
{
    return (uint16_t)((p[0] << 8) | p[1]);
}

static uint32_t get32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* ---- CRC-32 (reflected 0xEDB88320, init and final xor ~0), four bits at a time --------------- */

static const uint32_t crc_nibble[16] = {
    0x00000000, 0x1db71064, 0x3b6e20c8, 0x26d930ac, 0x76dc4190, 0x6b6b51f4, 0x4db26158, 0x5005713c,
    0xedb88320, 0xf00f9344, 0xd6d6a3e8, 0xcb61b38c, 0x9b64c2b0, 0x86d3d2d4, 0xa00ae278, 0xbdbdf21c,
};

uint32_t wrtc_crc32(const uint8_t *p, size_t n)
{
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        c = (c >> 4) ^ crc_nibble[c & 15];
        c = (c >> 4) ^ crc_nibble[c & 15];
    }
    return ~c;
}

/* ---- names -------------------------------------------------------------------------------- */

const char *wrtc_stun_err_name(wrtc_stun_err e)
{
    switch (e) {
    case WRTC_STUN_OK:
        return "ok";
    case WRTC_STUN_MALFORMED:
        return "malformed";
    case WRTC_STUN_BAD_FINGERPRINT:
        return "bad_fingerprint";
    case WRTC_STUN_NOT_REQUEST:
        return "not_request";
    case WRTC_STUN_NOT_BINDING:
        return "not_binding";
    case WRTC_STUN_NO_FINGERPRINT:
        return "no_fingerprint";
    case WRTC_STUN_NO_CREDENTIALS:
        return "no_credentials";
    case WRTC_STUN_UNKNOWN_USERNAME:
        return "unknown_username";
    case WRTC_STUN_BAD_INTEGRITY:
        return "bad_integrity";
    case WRTC_STUN_UNKNOWN_ATTRIBUTE:
        return "unknown_attribute";
    case WRTC_STUN_ROLE_CONFLICT:
        return "role_conflict";
    case WRTC_STUN_ERR_COUNT_:
        break;
    }
    return "unknown";
}

int wrtc_stun_err_code(wrtc_stun_err e)
{
    switch (e) {
    case WRTC_STUN_NO_CREDENTIALS:
        return 400;
    case WRTC_STUN_UNKNOWN_USERNAME:
    case WRTC_STUN_BAD_INTEGRITY:
        return 401;
    case WRTC_STUN_UNKNOWN_ATTRIBUTE:
        return 420;
    case WRTC_STUN_ROLE_CONFLICT:
        return 487;
    default:
        return 0;
    }
}

/* ---- parse -------------------------------------------------------------------------------- */

static bool attr_known(uint16_t t)
{
    switch (t) {
    case ATTR_MAPPED_ADDRESS:
    case ATTR_USERNAME:
    case ATTR_MESSAGE_INTEGRITY:
    case ATTR_ERROR_CODE:
    case ATTR_UNKNOWN_ATTRIBUTES:
    case ATTR_REALM:
    case ATTR_NONCE:
    case ATTR_MESSAGE_INTEGRITY_SHA256:
    case ATTR_PASSWORD_ALGORITHM:
    case ATTR_USERHASH:
    case ATTR_XOR_MAPPED_ADDRESS:
    case ATTR_PRIORITY:
    case ATTR_USE_CANDIDATE:
        return true;
    default:
        return t >= 0x8000; /* comprehension-optional: ignored when unknown */
    }
}

static int refuse(wrtc_stun_err *why, wrtc_stun_err e, int rc)
{
    if (why) *why = e;
    return rc;
}

int wrtc_stun_parse(const uint8_t *p, size_t n, wrtc_stun_msg *m, wrtc_stun_err *why)
{
    memset(m, 0, sizeof *m);
    if (why) *why = WRTC_STUN_OK;
    if (n < WRTC_STUN_HDR || n > WRTC_STUN_MAX_LEN || (p[0] & 0xC0) != 0)
        return refuse(why, WRTC_STUN_MALFORMED, -EINVAL);
    uint16_t type = get16(p), len = get16(p + 2);
    if (len % 4 != 0 || (size_t)len != n - WRTC_STUN_HDR || get32(p + 4) != WRTC_STUN_COOKIE)
        return refuse(why, WRTC_STUN_MALFORMED, -EINVAL);
    m->data = p;
    m->len = n;
    m->cls = (uint8_t)(((type >> 7) & 2) | ((type >> 4) & 1));
    m->method = (uint16_t)((type & 0x000F) | ((type >> 1) & 0x0070) | ((type >> 2) & 0x0F80));
    memcpy(m->txid, p + 8, 12);

    size_t off = WRTC_STUN_HDR;
    while (off < n) {
        if (n - off < 4) return refuse(why, WRTC_STUN_MALFORMED, -EINVAL);
        uint16_t at = get16(p + off), alen = get16(p + off + 2);
        size_t padded = ((size_t)alen + 3) & ~(size_t)3;
        if (padded > n - off - 4) return refuse(why, WRTC_STUN_MALFORMED, -EINVAL);
        const uint8_t *v = p + off + 4;
        if (m->has_fingerprint) return refuse(why, WRTC_STUN_MALFORMED, -EINVAL); /* not last */
        if (at == ATTR_FINGERPRINT) {
            if (alen != 4 || off + 8 != n) return refuse(why, WRTC_STUN_MALFORMED, -EINVAL);
            if ((wrtc_crc32(p, off) ^ FINGERPRINT_XOR) != get32(v))
                return refuse(why, WRTC_STUN_BAD_FINGERPRINT, -EINVAL);
            m->has_fingerprint = true;
        } else if (m->integrity_off) {
            /* after MESSAGE-INTEGRITY only FINGERPRINT counts (RFC 8489 §14.5): ignored */
        } else {
            switch (at) {
            case ATTR_USERNAME:
                if (alen == 0 || alen > USERNAME_MAX || m->username)
                    return refuse(why, WRTC_STUN_MALFORMED, -EINVAL);
                m->username = v;
                m->username_len = alen;
                break;
            case ATTR_MESSAGE_INTEGRITY:
                if (alen != MI_LEN) return refuse(why, WRTC_STUN_MALFORMED, -EINVAL);
                m->integrity_off = off;
                break;
            case ATTR_PRIORITY:
                if (alen != 4) return refuse(why, WRTC_STUN_MALFORMED, -EINVAL);
                m->has_priority = true;
                m->priority = get32(v);
                break;
            case ATTR_USE_CANDIDATE:
                if (alen != 0) return refuse(why, WRTC_STUN_MALFORMED, -EINVAL);
                m->use_candidate = true;
                break;
            case ATTR_ICE_CONTROLLED:
            case ATTR_ICE_CONTROLLING:
                if (alen != 8) return refuse(why, WRTC_STUN_MALFORMED, -EINVAL);
                if (at == ATTR_ICE_CONTROLLED)
                    m->ice_controlled = true;
                else
                    m->ice_controlling = true;
                m->tiebreaker = ((uint64_t)get32(v) << 32) | get32(v + 4);
                break;
            default:
                if (!attr_known(at) && m->n_unknown < WRTC_STUN_MAX_UNKNOWN)
                    m->unknown[m->n_unknown++] = at;
                break;
            }
        }
        off += 4 + padded;
    }
    return 0;
}

int wrtc_stun_local_ufrag(const wrtc_stun_msg *m, const char **ufrag, size_t *len)
{
    if (!m->username) return -ENOENT;
    const uint8_t *colon = memchr(m->username, ':', m->username_len);
    if (!colon) return -ENOENT;
    *ufrag = (const char *)m->username;
    *len = (size_t)(colon - m->username);
    return 0;
}

/* HMAC-SHA1 over buf[0, off) where buf's length field is taken as `hdr_len` (patched in a copy). */
static int mi_compute(const uint8_t *buf, size_t off, uint16_t hdr_len, const void *key,
                      size_t key_len, uint8_t out[MI_LEN])
{
    uint8_t copy[WRTC_STUN_MAX_LEN];
    if (off > sizeof copy || off < WRTC_STUN_HDR || key_len > INT32_MAX) return -EINVAL;
    memcpy(copy, buf, off);
    put16(copy + 2, hdr_len);
    unsigned int md_len = 0;
    if (!HMAC(EVP_sha1(), key, (int)key_len, copy, off, out, &md_len) || md_len != MI_LEN)
        return -EIO;
    return 0;
}

int wrtc_stun_verify_integrity(const wrtc_stun_msg *m, const void *key, size_t key_len)
{
    if (!m->integrity_off) return -ENOENT;
    size_t off = m->integrity_off;
    uint8_t mac[MI_LEN];
    if (mi_compute(m->data, off, (uint16_t)(off + 4 + MI_LEN - WRTC_STUN_HDR), key, key_len, mac))
        return -EACCES;
    return CRYPTO_memcmp(mac, m->data + off + 4, MI_LEN) == 0 ? 0 : -EACCES;
}

int wrtc_stun_check(const wrtc_stun_msg *m, const char *local_ufrag, const char *remote_ufrag,
                    const char *local_pwd, wrtc_stun_err *why)
{
    if (why) *why = WRTC_STUN_OK;
    if (m->cls != 0) return refuse(why, WRTC_STUN_NOT_REQUEST, -EINVAL);
    if (m->method != 0x001) return refuse(why, WRTC_STUN_NOT_BINDING, -EINVAL);
    if (!m->has_fingerprint) return refuse(why, WRTC_STUN_NO_FINGERPRINT, -EINVAL);
    if (!m->username || !m->integrity_off) return refuse(why, WRTC_STUN_NO_CREDENTIALS, -EACCES);
    size_t ll = strlen(local_ufrag);
    const uint8_t *u = m->username;
    size_t ul = m->username_len;
    if (ul <= ll || memcmp(u, local_ufrag, ll) != 0 || u[ll] != ':')
        return refuse(why, WRTC_STUN_UNKNOWN_USERNAME, -EACCES);
    if (remote_ufrag) {
        size_t rl = strlen(remote_ufrag);
        if (ul - ll - 1 != rl || memcmp(u + ll + 1, remote_ufrag, rl) != 0)
            return refuse(why, WRTC_STUN_UNKNOWN_USERNAME, -EACCES);
    }
    if (wrtc_stun_verify_integrity(m, local_pwd, strlen(local_pwd)) != 0)
        return refuse(why, WRTC_STUN_BAD_INTEGRITY, -EACCES);
    if (m->n_unknown) return refuse(why, WRTC_STUN_UNKNOWN_ATTRIBUTE, -EINVAL);
    if (m->ice_controlled && !m->ice_controlling)
        return refuse(why, WRTC_STUN_ROLE_CONFLICT, -EINVAL);
    return 0;
}

/* ---- writing ------------------------------------------------------------------------------ */

static void write_hdr(uint8_t *buf, uint16_t type, const uint8_t txid[12])
{
    put16(buf, type);
    put16(buf + 2, 0);
    put32(buf + 4, WRTC_STUN_COOKIE);
    memcpy(buf + 8, txid, 12);
}

/* Appends MESSAGE-INTEGRITY (if pwd) and FINGERPRINT at `off`; returns the final length. */
static int finish(uint8_t *buf, size_t off, size_t cap, const char *pwd)
{
    if (pwd) {
        if (cap - off < 4 + MI_LEN) return -ENOSPC;
        uint8_t mac[MI_LEN];
        if (mi_compute(buf, off, (uint16_t)(off + 4 + MI_LEN - WRTC_STUN_HDR), pwd, strlen(pwd),
                       mac))
            return -EIO;
        put16(buf + off, ATTR_MESSAGE_INTEGRITY);
        put16(buf + off + 2, MI_LEN);
        memcpy(buf + off + 4, mac, MI_LEN);
        off += 4 + MI_LEN;
    }
    if (cap - off < 8) return -ENOSPC;
    put16(buf + 2, (uint16_t)(off + 8 - WRTC_STUN_HDR));
    put16(buf + off, ATTR_FINGERPRINT);
    put16(buf + off + 2, 4);
    put32(buf + off + 4, wrtc_crc32(buf, off) ^ FINGERPRINT_XOR);
    return (int)(off + 8);
}

int wrtc_stun_write_success(const wrtc_stun_msg *req, const struct sockaddr *from, const char *pwd,
                            uint8_t *buf, size_t cap)
{
    uint8_t addr[16];
    size_t alen;
    uint16_t port;
    if (from->sa_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)from;
        memcpy(addr, &s4->sin_addr, 4);
        alen = 4;
        port = ntohs(s4->sin_port);
    } else if (from->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)from;
        port = ntohs(s6->sin6_port);
        if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) { /* a dual-stack socket: the peer is IPv4 */
            memcpy(addr, s6->sin6_addr.s6_addr + 12, 4);
            alen = 4;
        } else {
            memcpy(addr, &s6->sin6_addr, 16);
            alen = 16;
        }
    } else {
        return -EAFNOSUPPORT;
    }
    if (cap < WRTC_STUN_HDR + 4 + 4 + alen) return -ENOSPC;
    write_hdr(buf, 0x0101, req->txid);
    size_t off = WRTC_STUN_HDR;
    put16(buf + off, ATTR_XOR_MAPPED_ADDRESS);
    put16(buf + off + 2, (uint16_t)(4 + alen));
    buf[off + 4] = 0;
    buf[off + 5] = alen == 4 ? 0x01 : 0x02;
    put16(buf + off + 6, (uint16_t)(port ^ (WRTC_STUN_COOKIE >> 16)));
    uint8_t mask[16];
    put32(mask, WRTC_STUN_COOKIE);
    memcpy(mask + 4, req->txid, 12);
    for (size_t i = 0; i < alen; i++)
        buf[off + 8 + i] = addr[i] ^ mask[i];
    off += 8 + alen;
    return finish(buf, off, cap, pwd);
}

int wrtc_stun_write_error(const wrtc_stun_msg *req, int code, const char *pwd, uint8_t *buf,
                          size_t cap)
{
    const char *reason;
    switch (code) {
    case 400:
        reason = "Bad Request";
        break;
    case 401:
        reason = "Unauthorized";
        break;
    case 420:
        reason = "Unknown Attribute";
        break;
    case 487:
        reason = "Role Conflict";
        break;
    default:
        return -EINVAL;
    }
    size_t rl = strlen(reason), rpad = (rl + 3) & ~(size_t)3;
    size_t nu = code == 420 ? req->n_unknown : 0, upad = (nu * 2 + 3) & ~(size_t)3;
    if (cap < WRTC_STUN_HDR + 8 + rpad + (nu ? 4 + upad : 0)) return -ENOSPC;
    write_hdr(buf, 0x0111, req->txid);
    size_t off = WRTC_STUN_HDR;
    put16(buf + off, ATTR_ERROR_CODE);
    put16(buf + off + 2, (uint16_t)(4 + rl));
    buf[off + 4] = 0;
    buf[off + 5] = 0;
    buf[off + 6] = (uint8_t)(code / 100);
    buf[off + 7] = (uint8_t)(code % 100);
    memset(buf + off + 8, 0, rpad);
    memcpy(buf + off + 8, reason, rl);
    off += 8 + rpad;
    if (nu) {
        put16(buf + off, ATTR_UNKNOWN_ATTRIBUTES);
        put16(buf + off + 2, (uint16_t)(nu * 2));
        memset(buf + off + 4, 0, upad);
        for (size_t i = 0; i < nu; i++)
            put16(buf + off + 4 + 2 * i, req->unknown[i]);
        off += 4 + upad;
    }
    return finish(buf, off, cap, code == 400 || code == 401 ? NULL : pwd);
}
