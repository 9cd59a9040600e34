/*
 * Fuzzer of the ICE-lite STUN code (webrtc/wrtc_stun.c): any bytes through wrtc_stun_parse; a
 * parsed message through wrtc_stun_local_ufrag, wrtc_stun_verify_integrity and wrtc_stun_check with
 * fixed credentials (and with the ufrag/password the message itself would need, so the integrity
 * path is reached), then every response we would write to it (success from IPv4 and IPv6, each
 * error code) is parsed back. Invariants (abort on violation): borrowed pointers lie within the
 * input; a refusal has a reason and a success none; our responses parse, carry FINGERPRINT, keep
 * the transaction id and verify with the password that made them; their length is at most
 * WRTC_STUN_RESP_MAX. Deterministic, no state between inputs.
 */
#include "webrtc/webrtc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK_(c)                                                                                  \
    do {                                                                                           \
        if (!(c)) abort();                                                                         \
    } while (0)

static const char *PWD = "VOkJxbRl1RmTxUk/WvJxBt";

static void check_response(const wrtc_stun_msg *req, const uint8_t *r, int rn, const char *pwd)
{
    CHECK_(rn > 0 && rn <= WRTC_STUN_RESP_MAX);
    wrtc_stun_msg m;
    wrtc_stun_err why;
    CHECK_(wrtc_stun_parse(r, (size_t)rn, &m, &why) == 0);
    CHECK_(m.has_fingerprint && m.cls >= 2 && m.method == 1);
    CHECK_(memcmp(m.txid, req->txid, 12) == 0);
    if (pwd) CHECK_(wrtc_stun_verify_integrity(&m, pwd, strlen(pwd)) == 0);
}

static void respond_all(const wrtc_stun_msg *m, const char *pwd)
{
    uint8_t r[WRTC_STUN_RESP_MAX];
    struct sockaddr_in s4 = {.sin_family = AF_INET, .sin_port = htons(40000)};
    s4.sin_addr.s_addr = htonl(0xC0000201);
    check_response(m, r, wrtc_stun_write_success(m, (struct sockaddr *)&s4, pwd, r, sizeof r), pwd);
    struct sockaddr_in6 s6 = {.sin6_family = AF_INET6, .sin6_port = htons(1)};
    memcpy(&s6.sin6_addr, m->txid, 12);
    check_response(m, r, wrtc_stun_write_success(m, (struct sockaddr *)&s6, pwd, r, sizeof r), pwd);
    static const int codes[] = {400, 401, 420, 487};
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        int n = wrtc_stun_write_error(m, codes[i], pwd, r, sizeof r);
        check_response(m, r, n, codes[i] >= 420 ? pwd : NULL);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    wrtc_stun_msg m;
    wrtc_stun_err why = WRTC_STUN_ERR_COUNT_;
    int rc = wrtc_stun_parse(data, size, &m, &why);
    if (rc != 0) {
        CHECK_(rc == -EINVAL && (why == WRTC_STUN_MALFORMED || why == WRTC_STUN_BAD_FINGERPRINT));
        return 0;
    }
    CHECK_(why == WRTC_STUN_OK && m.data == data && m.len == size);
    if (m.username)
        CHECK_(m.username >= data && m.username_len <= size &&
               m.username + m.username_len <= data + size);
    CHECK_(m.integrity_off == 0 || m.integrity_off + 24 <= size);
    CHECK_(m.n_unknown <= WRTC_STUN_MAX_UNKNOWN);

    const char *uf;
    size_t ul;
    char local[600];
    rc = wrtc_stun_local_ufrag(&m, &uf, &ul);
    CHECK_(rc == 0 || rc == -ENOENT);
    if (rc == 0) {
        CHECK_(ul < m.username_len && uf[ul] == ':');
        memcpy(local, uf, ul);
        local[ul] = 0; /* a NUL inside the ufrag makes it shorter: then unknown_username */
    } else {
        strcpy(local, "evtj");
    }
    rc = wrtc_stun_verify_integrity(&m, PWD, strlen(PWD));
    CHECK_(rc == 0 || rc == -ENOENT || rc == -EACCES);
    rc = wrtc_stun_check(&m, local, NULL, PWD, &why);
    if (rc == 0) {
        CHECK_(why == WRTC_STUN_OK);
    } else {
        CHECK_((rc == -EINVAL || rc == -EACCES) && why > WRTC_STUN_OK &&
               why < WRTC_STUN_ERR_COUNT_);
        int code = wrtc_stun_err_code(why);
        CHECK_(code == 0 || code == 400 || code == 401 || code == 420 || code == 487);
        CHECK_(strcmp(wrtc_stun_err_name(why), "unknown") != 0);
    }
    wrtc_stun_check(&m, "evtj", "h6vY", PWD, &why);
    respond_all(&m, PWD);
    return 0;
}
