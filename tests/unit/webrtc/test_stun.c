/*
 * tests/unit/webrtc/test_stun.c — ICE-lite STUN: the RFC 5769 test vectors (sample request, IPv4
 * and IPv6 responses) parse with their MESSAGE-INTEGRITY and FINGERPRINT verified, every bit flip
 * and truncation is refused, our responses carry the vectors' XOR-MAPPED-ADDRESS bytes and verify
 * with our own parser, a browser-shaped request passes wrtc_stun_check, and each refusal gets its
 * reason and error code.
 */
#include "tests/unit/test.h"
#include "webrtc/webrtc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>

/* RFC 5769 §2.1: username "evtj:h6vY", password "VOkJxbRl1RmTxUk/WvJxBt" */
static const uint8_t sample_req[] = {
    0x00, 0x01, 0x00, 0x58, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86,
    0xfa, 0x87, 0xdf, 0xae, 0x80, 0x22, 0x00, 0x10, 0x53, 0x54, 0x55, 0x4e, 0x20, 0x74, 0x65, 0x73,
    0x74, 0x20, 0x63, 0x6c, 0x69, 0x65, 0x6e, 0x74, 0x00, 0x24, 0x00, 0x04, 0x6e, 0x00, 0x01, 0xff,
    0x80, 0x29, 0x00, 0x08, 0x93, 0x2f, 0xf9, 0xb1, 0x51, 0x26, 0x3b, 0x36, 0x00, 0x06, 0x00, 0x09,
    0x65, 0x76, 0x74, 0x6a, 0x3a, 0x68, 0x36, 0x76, 0x59, 0x20, 0x20, 0x20, 0x00, 0x08, 0x00, 0x14,
    0x9a, 0xea, 0xa7, 0x0c, 0xbf, 0xd8, 0xcb, 0x56, 0x78, 0x1e, 0xf2, 0xb5, 0xb2, 0xd3, 0xf2, 0x49,
    0xc1, 0xb5, 0x71, 0xa2, 0x80, 0x28, 0x00, 0x04, 0xe5, 0x7a, 0x3b, 0xcf,
};

/* §2.2: 192.0.2.1 port 32853 */
static const uint8_t sample_resp4[] = {
    0x01, 0x01, 0x00, 0x3c, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86,
    0xfa, 0x87, 0xdf, 0xae, 0x80, 0x22, 0x00, 0x0b, 0x74, 0x65, 0x73, 0x74, 0x20, 0x76, 0x65, 0x63,
    0x74, 0x6f, 0x72, 0x20, 0x00, 0x20, 0x00, 0x08, 0x00, 0x01, 0xa1, 0x47, 0xe1, 0x12, 0xa6, 0x43,
    0x00, 0x08, 0x00, 0x14, 0x2b, 0x91, 0xf5, 0x99, 0xfd, 0x9e, 0x90, 0xc3, 0x8c, 0x74, 0x89, 0xf9,
    0x2a, 0xf9, 0xba, 0x53, 0xf0, 0x6b, 0xe7, 0xd7, 0x80, 0x28, 0x00, 0x04, 0xc0, 0x7d, 0x4c, 0x96,
};

/* §2.3: 2001:db8:1234:5678:11:2233:4455:6677 port 32853 */
static const uint8_t sample_resp6[] = {
    0x01, 0x01, 0x00, 0x48, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86,
    0xfa, 0x87, 0xdf, 0xae, 0x80, 0x22, 0x00, 0x0b, 0x74, 0x65, 0x73, 0x74, 0x20, 0x76, 0x65, 0x63,
    0x74, 0x6f, 0x72, 0x20, 0x00, 0x20, 0x00, 0x14, 0x00, 0x02, 0xa1, 0x47, 0x01, 0x13, 0xa9, 0xfa,
    0xa5, 0xd3, 0xf1, 0x79, 0xbc, 0x25, 0xf4, 0xb5, 0xbe, 0xd2, 0xb9, 0xd9, 0x00, 0x08, 0x00, 0x14,
    0xa3, 0x82, 0x95, 0x4e, 0x4b, 0xe6, 0x7b, 0xf1, 0x17, 0x84, 0xc9, 0x7c, 0x82, 0x92, 0xc2, 0x75,
    0xbf, 0xe3, 0xed, 0x41, 0x80, 0x28, 0x00, 0x04, 0xc8, 0xfb, 0x0b, 0x4c,
};

static const char *PWD = "VOkJxbRl1RmTxUk/WvJxBt";

TEST(crc32_known)
{
    CHECK_EQ_INT(wrtc_crc32((const uint8_t *)"123456789", 9), 0xCBF43926u);
    CHECK_EQ_INT(wrtc_crc32(NULL, 0), 0);
}

TEST(rfc5769_request)
{
    wrtc_stun_msg m;
    wrtc_stun_err why;
    CHECK_EQ_INT(wrtc_stun_parse(sample_req, sizeof sample_req, &m, &why), 0);
    CHECK_EQ_INT(m.cls, 0);
    CHECK_EQ_INT(m.method, 1);
    CHECK(m.has_fingerprint);
    CHECK_EQ_INT(m.integrity_off, 76);
    CHECK_EQ_INT(m.username_len, 9);
    CHECK(memcmp(m.username, "evtj:h6vY", 9) == 0);
    CHECK(m.has_priority);
    CHECK_EQ_INT(m.priority, 0x6e0001ffu);
    CHECK(m.ice_controlled && !m.ice_controlling && !m.use_candidate);
    CHECK_EQ_INT(m.tiebreaker >> 32, 0x932ff9b1u);
    CHECK_EQ_INT(m.n_unknown, 0);
    CHECK_EQ_INT(wrtc_stun_verify_integrity(&m, PWD, strlen(PWD)), 0);
    CHECK_EQ_INT(wrtc_stun_verify_integrity(&m, "VOkJxbRl1RmTxUk/WvJxBT", 22), -EACCES);
    const char *uf;
    size_t ul;
    CHECK_EQ_INT(wrtc_stun_local_ufrag(&m, &uf, &ul), 0);
    CHECK_EQ_INT(ul, 4);
    CHECK(memcmp(uf, "evtj", 4) == 0);
    /* authenticated, but the vector's client claims the controlled role, as we are: 487 */
    CHECK_EQ_INT(wrtc_stun_check(&m, "evtj", "h6vY", PWD, &why), -EINVAL);
    CHECK_EQ_INT(why, WRTC_STUN_ROLE_CONFLICT);
    CHECK_EQ_INT(wrtc_stun_err_code(why), 487);
    CHECK_EQ_INT(wrtc_stun_check(&m, "evtj", "h6vZ", PWD, &why), -EACCES);
    CHECK_EQ_STR(wrtc_stun_err_name(why), "unknown_username");
    CHECK_EQ_INT(wrtc_stun_check(&m, "evt", NULL, PWD, &why), -EACCES);
    CHECK_EQ_STR(wrtc_stun_err_name(why), "unknown_username");
    CHECK_EQ_INT(wrtc_stun_check(&m, "evtj", NULL, "wrongpasswordwrongpass", &why), -EACCES);
    CHECK_EQ_STR(wrtc_stun_err_name(why), "bad_integrity");
    CHECK_EQ_INT(wrtc_stun_err_code(why), 401);
}

TEST(rfc5769_responses)
{
    wrtc_stun_msg m;
    CHECK_EQ_INT(wrtc_stun_parse(sample_resp4, sizeof sample_resp4, &m, NULL), 0);
    CHECK_EQ_INT(m.cls, 2);
    CHECK_EQ_INT(m.method, 1);
    CHECK(m.has_fingerprint);
    CHECK_EQ_INT(wrtc_stun_verify_integrity(&m, PWD, strlen(PWD)), 0);
    wrtc_stun_err why;
    CHECK_EQ_INT(wrtc_stun_check(&m, "evtj", NULL, PWD, &why), -EINVAL);
    CHECK_EQ_STR(wrtc_stun_err_name(why), "not_request");
    CHECK_EQ_INT(wrtc_stun_err_code(why), 0);
    CHECK_EQ_INT(wrtc_stun_parse(sample_resp6, sizeof sample_resp6, &m, NULL), 0);
    CHECK_EQ_INT(wrtc_stun_verify_integrity(&m, PWD, strlen(PWD)), 0);
}

/* Every single-bit flip of the vectors is refused: structure, fingerprint or integrity. */
TEST(rfc5769_bit_flips)
{
    const uint8_t *v[] = {sample_req, sample_resp4, sample_resp6};
    size_t vl[] = {sizeof sample_req, sizeof sample_resp4, sizeof sample_resp6};
    for (int k = 0; k < 3; k++) {
        uint8_t buf[128];
        for (size_t i = 0; i < vl[k] * 8; i++) {
            memcpy(buf, v[k], vl[k]);
            buf[i / 8] ^= (uint8_t)(1u << (i % 8));
            wrtc_stun_msg m;
            wrtc_stun_err why;
            int rc = wrtc_stun_parse(buf, vl[k], &m, &why);
            if (rc == 0) {
                /* only a longer USERNAME/SOFTWARE length that swallows MESSAGE-INTEGRITY and
                 * FINGERPRINT parses — and then has no FINGERPRINT, which the check refuses */
                CHECK(!m.has_fingerprint);
                CHECK_EQ_INT(wrtc_stun_check(&m, "evtj", NULL, PWD, &why), -EINVAL);
                CHECK(why == WRTC_STUN_NO_FINGERPRINT || why == WRTC_STUN_NOT_REQUEST);
                continue;
            }
            CHECK(why == WRTC_STUN_MALFORMED || why == WRTC_STUN_BAD_FINGERPRINT);
        }
        for (size_t n = 0; n < vl[k]; n++) {
            wrtc_stun_msg m;
            CHECK_EQ_INT(wrtc_stun_parse(v[k], n, &m, NULL), -EINVAL);
        }
    }
}

/* Our success response to the sample request, from the vectors' addresses: the XOR-MAPPED-ADDRESS
 * attribute is byte for byte the vectors', and the message verifies with our parser. */
TEST(success_matches_vectors)
{
    wrtc_stun_msg req, resp;
    CHECK_EQ_INT(wrtc_stun_parse(sample_req, sizeof sample_req, &req, NULL), 0);
    struct sockaddr_in s4 = {.sin_family = AF_INET, .sin_port = htons(32853)};
    inet_pton(AF_INET, "192.0.2.1", &s4.sin_addr);
    uint8_t buf[WRTC_STUN_RESP_MAX];
    int n = wrtc_stun_write_success(&req, (struct sockaddr *)&s4, PWD, buf, sizeof buf);
    CHECK_EQ_INT(n, 20 + 12 + 24 + 8);
    CHECK(memcmp(buf + 20, sample_resp4 + 36, 12) == 0);
    CHECK(memcmp(buf + 8, sample_req + 8, 12) == 0);
    CHECK_EQ_INT(wrtc_stun_parse(buf, (size_t)n, &resp, NULL), 0);
    CHECK_EQ_INT(resp.cls, 2);
    CHECK_EQ_INT(wrtc_stun_verify_integrity(&resp, PWD, strlen(PWD)), 0);

    struct sockaddr_in6 s6 = {.sin6_family = AF_INET6, .sin6_port = htons(32853)};
    inet_pton(AF_INET6, "2001:db8:1234:5678:11:2233:4455:6677", &s6.sin6_addr);
    n = wrtc_stun_write_success(&req, (struct sockaddr *)&s6, PWD, buf, sizeof buf);
    CHECK_EQ_INT(n, 20 + 24 + 24 + 8);
    CHECK(memcmp(buf + 20, sample_resp6 + 36, 24) == 0);
    CHECK_EQ_INT(wrtc_stun_parse(buf, (size_t)n, &resp, NULL), 0);
    CHECK_EQ_INT(wrtc_stun_verify_integrity(&resp, PWD, strlen(PWD)), 0);

    /* an IPv4-mapped IPv6 source (dual-stack socket) is reported as the IPv4 address */
    inet_pton(AF_INET6, "::ffff:192.0.2.1", &s6.sin6_addr);
    n = wrtc_stun_write_success(&req, (struct sockaddr *)&s6, PWD, buf, sizeof buf);
    CHECK_EQ_INT(n, 64);
    CHECK(memcmp(buf + 20, sample_resp4 + 36, 12) == 0);

    CHECK_EQ_INT(wrtc_stun_write_success(&req, (struct sockaddr *)&s4, PWD, buf, 63), -ENOSPC);
    CHECK_EQ_INT(wrtc_stun_write_success(&req, (struct sockaddr *)&s4, PWD, buf, 20), -ENOSPC);
    struct sockaddr unk = {.sa_family = AF_UNIX};
    CHECK_EQ_INT(wrtc_stun_write_success(&req, &unk, PWD, buf, sizeof buf), -EAFNOSUPPORT);
}

/* ---- a browser-shaped request built here ---------------------------------------------------- */

typedef struct req_opts {
    const char *username; /* NULL: none */
    const char *pwd;      /* NULL: no MESSAGE-INTEGRITY */
    bool fingerprint;
    bool controlling, controlled, use_candidate;
    uint16_t extra_attr; /* 0: none */
    uint16_t type;       /* 0: Binding request */
} req_opts;

static size_t put_attr(uint8_t *b, size_t off, uint16_t t, const void *v, size_t l)
{
    b[off] = (uint8_t)(t >> 8);
    b[off + 1] = (uint8_t)t;
    b[off + 2] = (uint8_t)(l >> 8);
    b[off + 3] = (uint8_t)l;
    memset(b + off + 4, 0, (l + 3) & ~(size_t)3);
    if (l) memcpy(b + off + 4, v, l);
    return off + 4 + ((l + 3) & ~(size_t)3);
}

/* Builds a request shaped like Chrome's. MESSAGE-INTEGRITY is computed here with OpenSSL's HMAC
 * directly, independently of the module's code (the RFC 5769 vectors above pin the module's). */
#include <openssl/evp.h>
#include <openssl/hmac.h>

static size_t build_req(uint8_t *b, const req_opts *o)
{
    uint16_t type = o->type ? o->type : 0x0001;
    b[0] = (uint8_t)(type >> 8);
    b[1] = (uint8_t)type;
    b[2] = b[3] = 0;
    b[4] = 0x21, b[5] = 0x12, b[6] = 0xa4, b[7] = 0x42;
    for (int i = 0; i < 12; i++)
        b[8 + i] = (uint8_t)(0x10 + i);
    size_t off = 20;
    if (o->username) off = put_attr(b, off, 0x0006, o->username, strlen(o->username));
    uint8_t netinfo[4] = {0, 1, 0, 0x0a};
    off = put_attr(b, off, 0xC057, netinfo, 4); /* GOOG-NETWORK-INFO: optional, ignored */
    uint8_t tb[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    if (o->controlling) off = put_attr(b, off, 0x802A, tb, 8);
    if (o->controlled) off = put_attr(b, off, 0x8029, tb, 8);
    if (o->use_candidate) off = put_attr(b, off, 0x0025, NULL, 0);
    uint8_t prio[4] = {0x6e, 0x7f, 0x1e, 0xff};
    off = put_attr(b, off, 0x0024, prio, 4);
    if (o->extra_attr) off = put_attr(b, off, o->extra_attr, "xyzw", 4);
    if (o->pwd) {
        size_t l = off + 24 - 20;
        b[2] = (uint8_t)(l >> 8), b[3] = (uint8_t)l;
        unsigned ml = 0;
        uint8_t mac[20];
        HMAC(EVP_sha1(), o->pwd, (int)strlen(o->pwd), b, off, mac, &ml);
        off = put_attr(b, off, 0x0008, mac, 20);
    }
    if (o->fingerprint) {
        size_t l = off + 8 - 20;
        b[2] = (uint8_t)(l >> 8), b[3] = (uint8_t)l;
        uint32_t c = wrtc_crc32(b, off) ^ 0x5354554eu;
        uint8_t cb[4] = {(uint8_t)(c >> 24), (uint8_t)(c >> 16), (uint8_t)(c >> 8), (uint8_t)c};
        off = put_attr(b, off, 0x8028, cb, 4);
    }
    b[2] = (uint8_t)((off - 20) >> 8), b[3] = (uint8_t)(off - 20);
    return off;
}

#define OUR_UFRAG "Xk3p"
#define OUR_PWD   "hN7rQe2mVb9sLw4tYc6zAa"
#define PEER      "4Zq9"

static wrtc_stun_err check_of(const req_opts *o, int *rc)
{
    uint8_t b[512];
    size_t n = build_req(b, o);
    wrtc_stun_msg m;
    wrtc_stun_err why = WRTC_STUN_OK;
    *rc = wrtc_stun_parse(b, n, &m, &why);
    if (*rc) return why;
    *rc = wrtc_stun_check(&m, OUR_UFRAG, PEER, OUR_PWD, &why);
    return why;
}

TEST(browser_request_accepted)
{
    uint8_t b[512];
    req_opts o = {.username = OUR_UFRAG ":" PEER,
                  .pwd = OUR_PWD,
                  .fingerprint = true,
                  .controlling = true,
                  .use_candidate = true};
    size_t n = build_req(b, &o);
    wrtc_stun_msg m;
    wrtc_stun_err why;
    CHECK_EQ_INT(wrtc_stun_parse(b, n, &m, &why), 0);
    CHECK_EQ_INT(wrtc_stun_check(&m, OUR_UFRAG, PEER, OUR_PWD, &why), 0);
    CHECK_EQ_INT(wrtc_stun_check(&m, OUR_UFRAG, NULL, OUR_PWD, &why), 0);
    CHECK(m.use_candidate && m.ice_controlling && m.has_priority);
    CHECK_EQ_INT(m.priority, 0x6e7f1effu);
    CHECK_EQ_INT(m.tiebreaker, 0x0102030405060708ull);
    struct sockaddr_in s4 = {.sin_family = AF_INET, .sin_port = htons(50000)};
    inet_pton(AF_INET, "127.0.0.1", &s4.sin_addr);
    uint8_t r[WRTC_STUN_RESP_MAX];
    int rn = wrtc_stun_write_success(&m, (struct sockaddr *)&s4, OUR_PWD, r, sizeof r);
    CHECK_EQ_INT(rn, 64);
    wrtc_stun_msg rm;
    CHECK_EQ_INT(wrtc_stun_parse(r, (size_t)rn, &rm, NULL), 0);
    CHECK_EQ_INT(wrtc_stun_verify_integrity(&rm, OUR_PWD, strlen(OUR_PWD)), 0);
    CHECK(memcmp(rm.txid, m.txid, 12) == 0);
    /* consent check (RFC 7675): the same request again, no USE-CANDIDATE — same answer */
    o.use_candidate = false;
    int rc;
    CHECK_EQ_INT(check_of(&o, &rc), WRTC_STUN_OK);
    CHECK_EQ_INT(rc, 0);
    /* no role attribute at all: accepted */
    o.controlling = false;
    CHECK_EQ_INT(check_of(&o, &rc), WRTC_STUN_OK);
}

TEST(refusals)
{
    int rc;
    req_opts ok = {
        .username = OUR_UFRAG ":" PEER, .pwd = OUR_PWD, .fingerprint = true, .controlling = true};
    req_opts o = ok;
    o.fingerprint = false;
    CHECK_EQ_INT(check_of(&o, &rc), WRTC_STUN_NO_FINGERPRINT);
    CHECK_EQ_INT(wrtc_stun_err_code(WRTC_STUN_NO_FINGERPRINT), 0);
    o = ok, o.username = NULL;
    CHECK_EQ_INT(check_of(&o, &rc), WRTC_STUN_NO_CREDENTIALS);
    CHECK_EQ_INT(rc, -EACCES);
    o = ok, o.pwd = NULL;
    CHECK_EQ_INT(check_of(&o, &rc), WRTC_STUN_NO_CREDENTIALS);
    o = ok, o.username = "Xk3q:" PEER;
    CHECK_EQ_INT(check_of(&o, &rc), WRTC_STUN_UNKNOWN_USERNAME);
    o = ok, o.username = OUR_UFRAG;
    CHECK_EQ_INT(check_of(&o, &rc), WRTC_STUN_UNKNOWN_USERNAME);
    o = ok, o.username = OUR_UFRAG ":" PEER "x";
    CHECK_EQ_INT(check_of(&o, &rc), WRTC_STUN_UNKNOWN_USERNAME);
    o = ok, o.pwd = "hN7rQe2mVb9sLw4tYc6zAb";
    CHECK_EQ_INT(check_of(&o, &rc), WRTC_STUN_BAD_INTEGRITY);
    o = ok, o.extra_attr = 0x0033; /* unknown comprehension-required */
    CHECK_EQ_INT(check_of(&o, &rc), WRTC_STUN_UNKNOWN_ATTRIBUTE);
    o = ok, o.extra_attr = 0x8033; /* unknown comprehension-optional: ignored */
    CHECK_EQ_INT(check_of(&o, &rc), WRTC_STUN_OK);
    o = ok, o.controlling = false, o.controlled = true;
    CHECK_EQ_INT(check_of(&o, &rc), WRTC_STUN_ROLE_CONFLICT);
    o = ok, o.type = 0x0011; /* Binding indication */
    CHECK_EQ_INT(check_of(&o, &rc), WRTC_STUN_NOT_REQUEST);
    o = ok, o.type = 0x0003; /* Allocate request */
    CHECK_EQ_INT(check_of(&o, &rc), WRTC_STUN_NOT_BINDING);
    CHECK_EQ_STR(wrtc_stun_err_name(WRTC_STUN_NOT_BINDING), "not_binding");
    for (int e = 0; e < WRTC_STUN_ERR_COUNT_; e++)
        CHECK(strcmp(wrtc_stun_err_name((wrtc_stun_err)e), "unknown") != 0);
}

TEST(malformed)
{
    uint8_t b[512];
    req_opts ok = {.username = OUR_UFRAG ":" PEER, .pwd = OUR_PWD, .fingerprint = true};
    size_t n = build_req(b, &ok);
    wrtc_stun_msg m;
    wrtc_stun_err why;
    CHECK_EQ_INT(wrtc_stun_parse(b, n, &m, &why), 0);
    uint8_t c[512];
    memcpy(c, b, n), c[0] |= 0x40;
    CHECK_EQ_INT(wrtc_stun_parse(c, n, &m, &why), -EINVAL);
    CHECK_EQ_INT(why, WRTC_STUN_MALFORMED);
    memcpy(c, b, n), c[4] ^= 1; /* cookie */
    CHECK_EQ_INT(wrtc_stun_parse(c, n, &m, &why), -EINVAL);
    memcpy(c, b, n), c[3] += 4; /* length beyond the datagram */
    CHECK_EQ_INT(wrtc_stun_parse(c, n, &m, &why), -EINVAL);
    memcpy(c, b, n), c[n - 1] ^= 1; /* fingerprint */
    CHECK_EQ_INT(wrtc_stun_parse(c, n, &m, &why), -EINVAL);
    CHECK_EQ_INT(why, WRTC_STUN_BAD_FINGERPRINT);
    /* an attribute after FINGERPRINT */
    memcpy(c, b, n);
    size_t n2 = put_attr(c, n, 0x8022, "ab", 2);
    c[2] = (uint8_t)((n2 - 20) >> 8), c[3] = (uint8_t)(n2 - 20);
    CHECK_EQ_INT(wrtc_stun_parse(c, n2, &m, &why), -EINVAL);
    CHECK_EQ_INT(why, WRTC_STUN_MALFORMED);
    /* an oversize datagram */
    static uint8_t big[WRTC_STUN_MAX_LEN + 4];
    memset(big, 0, sizeof big);
    big[1] = 1, big[2] = (uint8_t)((sizeof big - 20) >> 8), big[3] = (uint8_t)(sizeof big - 20);
    big[4] = 0x21, big[5] = 0x12, big[6] = 0xa4, big[7] = 0x42;
    CHECK_EQ_INT(wrtc_stun_parse(big, sizeof big, &m, &why), -EINVAL);
}

TEST(error_responses)
{
    uint8_t b[512];
    req_opts o = {
        .username = OUR_UFRAG ":" PEER, .pwd = OUR_PWD, .fingerprint = true, .extra_attr = 0x0033};
    size_t n = build_req(b, &o);
    wrtc_stun_msg m, r;
    CHECK_EQ_INT(wrtc_stun_parse(b, n, &m, NULL), 0);
    uint8_t buf[WRTC_STUN_RESP_MAX];
    int rn = wrtc_stun_write_error(&m, 401, OUR_PWD, buf, sizeof buf);
    CHECK_EQ_INT(rn, 20 + 4 + 4 + 12 + 8); /* "Unauthorized", no MESSAGE-INTEGRITY */
    CHECK_EQ_INT(wrtc_stun_parse(buf, (size_t)rn, &r, NULL), 0);
    CHECK_EQ_INT(r.cls, 3);
    CHECK_EQ_INT(r.integrity_off, 0);
    CHECK_EQ_INT(buf[26], 4);
    CHECK_EQ_INT(buf[27], 1);
    rn = wrtc_stun_write_error(&m, 400, NULL, buf, sizeof buf);
    CHECK_EQ_INT(rn, 20 + 4 + 4 + 12 + 8); /* "Bad Request" + 1 byte of padding */
    rn = wrtc_stun_write_error(&m, 420, OUR_PWD, buf, sizeof buf);
    CHECK_EQ_INT(rn, 20 + 4 + 4 + 20 + 8 + 24 + 8);
    CHECK_EQ_INT(wrtc_stun_parse(buf, (size_t)rn, &r, NULL), 0);
    CHECK_EQ_INT(wrtc_stun_verify_integrity(&r, OUR_PWD, strlen(OUR_PWD)), 0);
    CHECK_EQ_INT(buf[48], 0x00);
    CHECK_EQ_INT(buf[49], 0x0A); /* UNKNOWN-ATTRIBUTES */
    CHECK_EQ_INT(buf[51], 2);
    CHECK_EQ_INT(buf[52], 0x00);
    CHECK_EQ_INT(buf[53], 0x33);
    rn = wrtc_stun_write_error(&m, 487, OUR_PWD, buf, sizeof buf);
    CHECK_EQ_INT(rn, 20 + 4 + 4 + 16 + 24 + 8); /* "Role Conflict" */
    CHECK_EQ_INT(wrtc_stun_parse(buf, (size_t)rn, &r, NULL), 0);
    CHECK_EQ_INT(wrtc_stun_verify_integrity(&r, OUR_PWD, strlen(OUR_PWD)), 0);
    CHECK_EQ_INT(wrtc_stun_write_error(&m, 500, NULL, buf, sizeof buf), -EINVAL);
    CHECK_EQ_INT(wrtc_stun_write_error(&m, 487, OUR_PWD, buf, 60), -ENOSPC);
    /* no response is longer than WRTC_STUN_RESP_MAX (the 420 with 4 unknowns is the longest) */
    CHECK(WRTC_STUN_RESP_MAX >= 20 + 4 + 4 + 20 + 4 + 8 + 24 + 8);
}

int main(void)
{
    RUN(crc32_known);
    RUN(rfc5769_request);
    RUN(rfc5769_responses);
    RUN(rfc5769_bit_flips);
    RUN(success_matches_vectors);
    RUN(browser_request_accepted);
    RUN(refusals);
    RUN(malformed);
    RUN(error_responses);
    return test_summary();
}
