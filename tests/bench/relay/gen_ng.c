/*
 * gen_ng — relay_gen's setup for rtpengine, over its ng control protocol: one UDP datagram per
 * command, "<cookie> <bencoded dictionary>", answered with the same cookie and a dictionary
 * ("result": "ok", "sdp": …, or "result": "error", "error-reason": …). A tiny bencode writer and
 * reader live here; the reader is bounded (lengths checked against the datagram, nesting depth
 * limited) since the reply is another program's bytes.
 *
 * One 1:1 call per group (legs A = 2c, B = 2c + 1), SDES on both legs, four distinct keys:
 *   offer  (from-tag a<c>) carries A's SDP: A's address, RTP/SAVP, one crypto line, tag 1
 *          AES_CM_128_HMAC_SHA1_32 with KA, the key A protects with. The reply is the SDP rtpengine
 *          would give B: its port for B (where B sends) and its crypto lines; we take the
 *          AES_CM_128_HMAC_SHA1_80 one, which rtpengine generated: its tag and RB, the key
 *          rtpengine protects towards B with.
 *   answer (to-tag b<c>) carries B's SDP with that tag and KB, the key B protects with. The reply
 *          is the SDP for A: rtpengine's port for A and RA (tag 1, AES_CM_128_HMAC_SHA1_32), the
 *          key it protects towards A with.
 * So A sends with KA to A's port, rtpengine decrypts with KA and protects with RB towards B,
 * which unprotects with RB; and the reverse with KB and RA.
 *
 * Why leg A is AES_CM_128_HMAC_SHA1_32: rtpengine 10.5 copies the offerer's SDES lines (keys
 * included) into the offer it generates, and when the answerer accepts one of them it copies the
 * answerer's key back to the offerer ("SRTP passthrough", daemon/call.c). With equal keys on both
 * legs its packet handler forwards SRTP untouched (media_socket.c recrypts only when a leg's key
 * differs from its peer's). Offering a suite on leg A that B does not pick makes rtpengine
 * generate fresh keys on both legs, so it must decrypt and re-encrypt every packet. The _32 suite
 * costs what _80 costs (the same AES-CM and full HMAC-SHA1, a 4-byte instead of a 10-byte tag).
 * Setup refuses a call where any two of KA, RB, KB, RA are equal, and relay_gen refuses a run in
 * which a delivered packet does not unprotect.
 */
#include "tests/bench/relay/gen.h"

#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#define NG_MAX   16384
#define SUITE_A  "AES_CM_128_HMAC_SHA1_32"
#define SUITE_B  "AES_CM_128_HMAC_SHA1_80" /* datagram bound for commands and replies */
#define BE_DEPTH 16

/* ---- bencode writer ---------------------------------------------------------------------- */

typedef struct be_buf {
    char *p;
    size_t len, cap;
    bool overflow;
} be_buf;

static void be_raw(be_buf *b, const char *s, size_t n)
{
    if (b->overflow || n > b->cap - b->len) {
        b->overflow = true;
        return;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

static void be_str(be_buf *b, const char *s)
{
    char hdr[24];
    size_t n = strlen(s);
    int h = snprintf(hdr, sizeof hdr, "%zu:", n);
    be_raw(b, hdr, (size_t)h);
    be_raw(b, s, n);
}

static void be_kv(be_buf *b, const char *k, const char *v)
{
    be_str(b, k);
    be_str(b, v);
}

/* ---- bencode reader ---------------------------------------------------------------------- */

/* a string at p: its bytes and the position after it, or NULL */
static const char *be_read_str(const char *p, const char *end, const char **s, size_t *n)
{
    size_t len = 0;
    const char *q = p;
    while (q < end && *q >= '0' && *q <= '9') {
        if (len > NG_MAX) return NULL;
        len = len * 10 + (size_t)(*q++ - '0');
    }
    if (q == p || q >= end || *q != ':') return NULL;
    q++;
    if (len > (size_t)(end - q)) return NULL;
    *s = q;
    *n = len;
    return q + len;
}

/* the position after the value at p, or NULL */
static const char *be_skip(const char *p, const char *end, int depth)
{
    if (p >= end || depth > BE_DEPTH) return NULL;
    const char *s;
    size_t n;
    switch (*p) {
    case 'i':
        for (p++; p < end && *p != 'e'; p++)
            if (!(*p == '-' || (*p >= '0' && *p <= '9'))) return NULL;
        return p < end ? p + 1 : NULL;
    case 'l':
    case 'd':
        for (p++; p < end && *p != 'e';)
            if (!(p = be_skip(p, end, depth + 1))) return NULL;
        return p < end ? p + 1 : NULL;
    default:
        return be_read_str(p, end, &s, &n);
    }
}

/* the string value of `key` in the dictionary at p, or -ENOENT / -EINVAL */
static int be_dict_str(const char *p, const char *end, const char *key, const char **v, size_t *vn)
{
    if (p >= end || *p != 'd') return -EINVAL;
    for (p++; p < end && *p != 'e';) {
        const char *k;
        size_t kn;
        if (!(p = be_read_str(p, end, &k, &kn))) return -EINVAL;
        if (kn == strlen(key) && memcmp(k, key, kn) == 0 && p < end && *p >= '0' && *p <= '9')
            return be_read_str(p, end, v, vn) ? 0 : -EINVAL;
        if (!(p = be_skip(p, end, 1))) return -EINVAL;
    }
    return -ENOENT;
}

/* ---- base64 (standard, padded) ----------------------------------------------------------- */

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

void gen_b64_encode(const uint8_t *in, size_t n, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0) |
                     (i + 2 < n ? in[i + 2] : 0);
        out[o++] = b64[v >> 18 & 63];
        out[o++] = b64[v >> 12 & 63];
        out[o++] = i + 1 < n ? b64[v >> 6 & 63] : '=';
        out[o++] = i + 2 < n ? b64[v & 63] : '=';
    }
    out[o] = 0;
}

long gen_b64_decode(const char *in, size_t n, uint8_t *out, size_t cap)
{
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        if (in[i] == '=') break;
        const char *c = memchr(b64, in[i], 64);
        if (!c || !in[i]) return -EINVAL;
        acc = acc << 6 | (uint32_t)(c - b64);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (o >= cap) return -EINVAL;
            out[o++] = (uint8_t)(acc >> bits);
        }
    }
    return (long)o;
}

/* ---- ng ------------------------------------------------------------------------------------ */

typedef struct ng {
    int fd;
    unsigned seq;
    char out[NG_MAX], in[NG_MAX];
} ng;

/* sends the dictionary in b (without cookie), waits for the reply; *d, *dend: its dictionary */
static int ng_call(ng *c, const be_buf *b, const char **d, const char **dend)
{
    char cookie[32];
    int cl = snprintf(cookie, sizeof cookie, "rb%u ", ++c->seq);
    if (b->overflow || b->len + (size_t)cl > sizeof c->out) return -EMSGSIZE;
    memmove(c->out + cl, b->p, b->len);
    memcpy(c->out, cookie, (size_t)cl);
    for (int attempt = 0; attempt < 3; attempt++) {
        if (send(c->fd, c->out, b->len + (size_t)cl, 0) < 0) return -errno;
        struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
        while (poll(&pfd, 1, 2000) > 0) {
            ssize_t n = recv(c->fd, c->in, sizeof c->in, 0);
            if (n < 0) return -errno;
            if (n <= cl || memcmp(c->in, cookie, (size_t)cl) != 0) continue; /* a stale reply */
            *d = c->in + cl;
            *dend = c->in + n;
            return 0;
        }
    }
    return -ETIMEDOUT;
}

/* what we need from an SDP: the first m=audio port, the connection address and the crypto line
 * of the given suite (tag, key) */
typedef struct sdp_info {
    uint16_t port;
    struct in_addr addr;
    int tag;
    uint8_t key[RB_KEY_LEN];
    bool has_key;
} sdp_info;

static int sdp_parse(const char *s, size_t n, const char *suite, sdp_info *out)
{
    memset(out, 0, sizeof *out);
    bool has_addr = false;
    for (const char *p = s, *end = s + n; p < end;) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t ll = (size_t)((nl ? nl : end) - p);
        char line[512];
        if (ll >= sizeof line) ll = sizeof line - 1;
        memcpy(line, p, ll);
        line[ll] = 0;
        line[strcspn(line, "\r")] = 0;
        p = nl ? nl + 1 : end;
        unsigned port;
        char ip[64], b64k[128], su[64];
        int tag;
        if (!out->port && sscanf(line, "m=audio %u", &port) == 1 && port > 0 && port < 65536)
            out->port = (uint16_t)port;
        else if (!has_addr && sscanf(line, "c=IN IP4 %63s", ip) == 1)
            has_addr = inet_pton(AF_INET, ip, &out->addr) == 1;
        else if (!out->has_key &&
                 sscanf(line, "a=crypto:%d %63s inline:%127[A-Za-z0-9+/=]", &tag, su, b64k) == 3 &&
                 strcmp(su, suite) == 0) {
            if (gen_b64_decode(b64k, strlen(b64k), out->key, sizeof out->key) != RB_KEY_LEN)
                return -EINVAL;
            out->tag = tag;
            out->has_key = true;
        }
    }
    return out->port && has_addr && out->has_key ? 0 : -EINVAL;
}

static void sdp_write(char *buf, size_t cap, const gen_part *p, int tag, const char *suite,
                      const uint8_t *key)
{
    char ip[INET_ADDRSTRLEN], k64[64];
    inet_ntop(AF_INET, &p->src.sin_addr, ip, sizeof ip);
    gen_b64_encode(key, RB_KEY_LEN, k64);
    snprintf(buf, cap,
             "v=0\r\no=- %u 1 IN IP4 %s\r\ns=relaybench\r\nc=IN IP4 %s\r\nt=0 0\r\n"
             "m=audio %u RTP/SAVP %d\r\na=rtpmap:%d opus/48000/2\r\n"
             "a=extmap:%d urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n"
             "a=extmap:%d urn:x-voxd:relaybench:send-time\r\n"
             "a=rtcp-mux\r\na=sendrecv\r\na=crypto:%d %s inline:%s\r\n",
             p->idx + 1, ip, ip, ntohs(p->src.sin_port), RB_PT, RB_PT, RB_EXT_LEVEL,
             RB_EXT_SENDTIME, tag, suite, k64);
}

/* one command: dictionary of string pairs plus "sdp"; the reply's SDP parsed into *info */
static int ng_sdp_command(ng *c, const char *const *kv, const char *sdp, const char *suite,
                          sdp_info *info)
{
    char buf[NG_MAX];
    be_buf b = {.p = buf, .cap = sizeof buf};
    be_raw(&b, "d", 1);
    for (size_t i = 0; kv[i]; i += 2)
        be_kv(&b, kv[i], kv[i + 1]);
    be_kv(&b, "sdp", sdp);
    be_raw(&b, "e", 1);
    const char *d = NULL, *dend = NULL, *v;
    size_t vn;
    int rc = ng_call(c, &b, &d, &dend);
    if (rc != 0) return rc;
    if (be_dict_str(d, dend, "result", &v, &vn) != 0 || vn != 2 || memcmp(v, "ok", 2) != 0) {
        const char *why = "?";
        size_t wn = 1;
        be_dict_str(d, dend, "error-reason", &why, &wn);
        fprintf(stderr, "gen_ng: %s refused: %.*s\n", kv[1], (int)wn, why);
        return -EPROTO;
    }
    if (be_dict_str(d, dend, "sdp", &v, &vn) != 0 || sdp_parse(v, vn, suite, info) != 0) {
        fprintf(stderr, "gen_ng: %s: no usable SDP in the reply (port, c=, %s crypto)\n", kv[1],
                suite);
        return -EPROTO;
    }
    return 0;
}

int gen_ng_setup(gen_ctx *g, const struct sockaddr_in *addr)
{
    if (g->room_size != 2 || g->n % 2 != 0) return -EINVAL;
    ng *c = calloc(1, sizeof *c);
    if (!c) return -ENOMEM;
    int rc = 0;
    c->fd = socket(AF_INET, SOCK_DGRAM, 0);
    if (c->fd < 0 || connect(c->fd, (const struct sockaddr *)addr, sizeof *addr) != 0) {
        rc = -errno;
        goto out;
    }
    for (uint32_t call = 0; call < g->n / 2; call++) {
        gen_part *a = &g->parts[2 * call], *b = &g->parts[2 * call + 1];
        a->ssrc = RB_SSRC_BASE + a->idx;
        b->ssrc = RB_SSRC_BASE + b->idx;
        if (getrandom(a->send_key, RB_KEY_LEN, 0) != RB_KEY_LEN ||
            getrandom(b->send_key, RB_KEY_LEN, 0) != RB_KEY_LEN) {
            rc = -EIO;
            goto out;
        }
        char call_id[48], ftag[24], ttag[24], sdp[2048];
        snprintf(call_id, sizeof call_id, "relaybench-%d-%u", (int)getpid(), call);
        snprintf(ftag, sizeof ftag, "a%u", call);
        snprintf(ttag, sizeof ttag, "b%u", call);
        sdp_info to_b, to_a;
        sdp_write(sdp, sizeof sdp, a, 1, SUITE_A, a->send_key);
        const char *offer[] = {"command", "offer", "call-id", call_id, "from-tag", ftag, NULL};
        if ((rc = ng_sdp_command(c, offer, sdp, SUITE_B, &to_b)) != 0) goto out;
        sdp_write(sdp, sizeof sdp, b, to_b.tag, SUITE_B, b->send_key);
        const char *answer[] = {"command", "answer", "call-id", call_id, "from-tag",
                                ftag,      "to-tag", ttag,      NULL};
        if ((rc = ng_sdp_command(c, answer, sdp, SUITE_A, &to_a)) != 0) goto out;
        const uint8_t *keys[4] = {a->send_key, to_b.key, b->send_key, to_a.key};
        for (int x = 0; x < 4; x++)
            for (int y = x + 1; y < 4; y++)
                if (memcmp(keys[x], keys[y], RB_KEY_LEN) == 0) {
                    fprintf(stderr,
                            "gen_ng: call %u: rtpengine reuses a key (KA RB KB RA: %d = "
                            "%d): it would pass SRTP through\n",
                            call, x, y);
                    rc = -EPROTO;
                    goto out;
                }
        a->profile = RB_PROFILE_AES_CM_32;
        b->profile = RB_PROFILE_AES_CM_80;
        b->relay = (struct sockaddr_in){
            .sin_family = AF_INET, .sin_port = htons(to_b.port), .sin_addr = to_b.addr};
        memcpy(b->recv_key, to_b.key, RB_KEY_LEN);
        a->relay = (struct sockaddr_in){
            .sin_family = AF_INET, .sin_port = htons(to_a.port), .sin_addr = to_a.addr};
        memcpy(a->recv_key, to_a.key, RB_KEY_LEN);
        if (g->verbose && call == 0)
            fprintf(stderr, "gen_ng: call 0: A sends to port %u, B to port %u\n", to_a.port,
                    to_b.port);
    }
out:
    if (c->fd >= 0) close(c->fd);
    free(c);
    return rc;
}
