/*
 * signalling/sig_grant.c — voice server grants (spec §3): HS256 compact JWTs bound to user,
 * session, connection, room and node, with a single-use nonce and an expiry.
 *
 * Issue: header.claims signed with HMAC-SHA256 (OpenSSL) under the region's secret; the nonce is
 * remembered until the token expires. Redeem: the header must be exactly ours (no "alg" games),
 * the signature is checked in constant time BEFORE the claims are parsed, then expiry, node,
 * nonce (consumed only when every check passed), connection, user/session/room.
 */
#include "signalling/sig_internal.h"
#include "lib/util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

/* {"alg":"HS256","typ":"JWT"} */
static const char jwt_header[] = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9";

#define MAX_TOKEN 2048

static void room_name(uint64_t guild, uint64_t channel, char out[64])
{
    char g[21], ch[21];
    if (guild)
        snprintf(out, 64, "guild:%s:%s", snowflake_fmt(guild, g), snowflake_fmt(channel, ch));
    else
        snprintf(out, 64, "dm:%s", snowflake_fmt(channel, ch));
}

static void sign(const sig_core *c, const char *data, size_t n, unsigned char mac[32])
{
    unsigned int len = 32;
    if (!HMAC(EVP_sha256(), c->cfg.token_secret, (int)c->cfg.token_secret_len,
              (const unsigned char *)data, n, mac, &len))
        abort();
}

json_t *sig_grant_issue(sig_core *c, const sig_conn *k, int64_t now)
{
    unsigned char rnd[16];
    char nonce[32], room[64], user[21];
    if (sig_random(c, rnd, sizeof rnd) != 0) abort();
    b64url_encode(rnd, sizeof rnd, nonce);
    room_name(k->guild_id, k->channel_id, room);
    int64_t exp_ms = now + c->cfg.grant_ttl_ms;
    json_t *claims = json_pack(
        "{s:s,s:s,s:s,s:s,s:s,s:s,s:I,s:I}", "sub", snowflake_fmt(k->user_id, user), "sid",
        k->session_id, "cid", k->id, "room", room, "node", c->cfg.node_id, "nonce", nonce, "iat",
        (json_int_t)(now / 1000), "exp", (json_int_t)((exp_ms + 999) / 1000));
    char *cj = json_dumps(claims, JSON_COMPACT);
    json_decref(claims);
    if (!cj) abort();
    size_t clen = strlen(cj);
    size_t hlen = sizeof jwt_header - 1;
    char *tok = xmalloc(hlen + 1 + b64url_len(clen) + 1 + b64url_len(32) + 1);
    memcpy(tok, jwt_header, hlen);
    tok[hlen] = '.';
    b64url_encode(cj, clen, tok + hlen + 1);
    free(cj);
    size_t signed_len = strlen(tok);
    unsigned char mac[32];
    sign(c, tok, signed_len, mac);
    tok[signed_len] = '.';
    b64url_encode(mac, sizeof mac, tok + signed_len + 1);

    sig_nonce *nn = xcalloc(1, sizeof *nn);
    nn->exp_ms = ((exp_ms + 999) / 1000) * 1000;
    memcpy(nn->connection_id, k->id, sizeof nn->connection_id);
    hmap_puts(c->nonces, nonce, nn);
    sig_timer_arm(c, T_NONCE, nonce, 0, nn->exp_ms);
    sig_emit_write(c, SIG_W_NONCE_PUT, nonce,
                   json_pack("{s:I,s:s}", "exp", (json_int_t)nn->exp_ms, "connection_id", k->id));
    c->st.grants_issued++;

    json_t *vs = json_pack("{s:s,s:s,s:s}", "token", tok, "endpoint", c->cfg.endpoint,
                           "connection_id", k->id);
    char b[21];
    if (k->guild_id)
        json_object_set_new(vs, "guild_id", json_string(snowflake_fmt(k->guild_id, b)));
    else
        json_object_set_new(vs, "channel_id", json_string(snowflake_fmt(k->channel_id, b)));
    free(tok);
    return vs;
}

void sig_grant_fire_nonce(sig_core *c, const char *nonce, int64_t deadline)
{
    sig_nonce *nn = hmap_gets(c->nonces, nonce);
    if (!nn || nn->exp_ms != deadline) return;
    hmap_dels(c->nonces, nonce);
    free(nn);
    sig_emit_write(c, SIG_W_NONCE_DEL, nonce, NULL);
}

static int refuse(sig_core *c, int why, int err)
{
    c->st.grants_refused++;
    c->st.token_fail[why]++;
    return err;
}

static const char *claim_str(json_t *claims, const char *key)
{
    json_t *v = json_object_get(claims, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

int sig_grant_redeem(sig_core *c, const char *token, int64_t now, sig_identity *out)
{
    size_t n = token ? strnlen(token, MAX_TOKEN + 1) : 0;
    if (n == 0 || n > MAX_TOKEN) return refuse(c, SIG_TOKEN_FAIL_MALFORMED, -EBADMSG);
    const char *d1 = strchr(token, '.');
    const char *d2 = d1 ? strchr(d1 + 1, '.') : NULL;
    if (!d1 || !d2 || strchr(d2 + 1, '.')) return refuse(c, SIG_TOKEN_FAIL_MALFORMED, -EBADMSG);
    size_t hlen = (size_t)(d1 - token);
    if (hlen != sizeof jwt_header - 1 || memcmp(token, jwt_header, hlen) != 0)
        return refuse(c, SIG_TOKEN_FAIL_MALFORMED, -EBADMSG);
    unsigned char mac[32], want[32];
    if (b64url_decode(d2 + 1, strlen(d2 + 1), mac, sizeof mac) != 32)
        return refuse(c, SIG_TOKEN_FAIL_MALFORMED, -EBADMSG);
    sign(c, token, (size_t)(d2 - token), want);
    if (!ct_equal(mac, want, 32)) return refuse(c, SIG_TOKEN_FAIL_SIGNATURE, -EKEYREJECTED);

    char payload[MAX_TOKEN];
    long plen = b64url_decode(d1 + 1, (size_t)(d2 - d1 - 1), payload, sizeof payload);
    if (plen <= 0) return refuse(c, SIG_TOKEN_FAIL_MALFORMED, -EBADMSG);
    json_error_t jerr;
    json_t *claims = json_loadb(payload, (size_t)plen, JSON_REJECT_DUPLICATES, &jerr);
    int rc = 0;
    const char *sub = claim_str(claims, "sub"), *sid = claim_str(claims, "sid"),
               *cid = claim_str(claims, "cid"), *room = claim_str(claims, "room"),
               *node = claim_str(claims, "node"), *nonce = claim_str(claims, "nonce");
    json_t *exp = json_object_get(claims, "exp");
    uint64_t user;
    if (!claims || !sub || !sid || !cid || !room || !node || !nonce || !json_is_integer(exp) ||
        snowflake_parse(sub, &user) != 0 || strlen(cid) != SIG_CONN_ID_LEN ||
        strlen(sid) >= sizeof out->session_id || strlen(room) >= sizeof out->room) {
        rc = refuse(c, SIG_TOKEN_FAIL_MALFORMED, -EBADMSG);
        goto out;
    }
    if (now >= json_integer_value(exp) * 1000) {
        rc = refuse(c, SIG_TOKEN_FAIL_EXPIRED, -EKEYEXPIRED);
        goto out;
    }
    if (strcmp(node, c->cfg.node_id) != 0) {
        rc = refuse(c, SIG_TOKEN_FAIL_NODE, -EXDEV);
        goto out;
    }
    sig_nonce *nn = hmap_gets(c->nonces, nonce);
    if (!nn) {
        rc = refuse(c, SIG_TOKEN_FAIL_REPLAYED, -EALREADY);
        goto out;
    }
    sig_conn *k = hmap_gets(c->conns, cid);
    if (!k) {
        rc = refuse(c, SIG_TOKEN_FAIL_CONNECTION, -ENOENT);
        goto out;
    }
    char cur_room[64];
    room_name(k->guild_id, k->channel_id, cur_room);
    if (k->user_id != user || strcmp(k->session_id, sid) != 0 || strcmp(cur_room, room) != 0 ||
        strcmp(nn->connection_id, cid) != 0) {
        rc = refuse(c, SIG_TOKEN_FAIL_MISMATCH, -EACCES);
        goto out;
    }
    hmap_dels(c->nonces, nonce);
    free(nn);
    sig_emit_write(c, SIG_W_NONCE_DEL, nonce, NULL);
    c->st.grants_redeemed++;
    memset(out, 0, sizeof *out);
    snprintf(out->connection_id, sizeof out->connection_id, "%s", k->id);
    snprintf(out->session_id, sizeof out->session_id, "%s", k->session_id);
    snprintf(out->room, sizeof out->room, "%s", cur_room);
    out->user_id = k->user_id;
    out->guild_id = k->guild_id;
    out->channel_id = k->channel_id;
out:
    json_decref(claims);
    return rc;
}
