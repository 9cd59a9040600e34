/*
 * Unit tests of voice server grants (spec §3): the token's shape and claims, single use, expiry,
 * signature, node/room/connection binding.
 */
#include "tests/unit/sig_harness.h"
#include "tests/unit/test.h"
#include "lib/util.h"

#include <errno.h>
#include <stdlib.h>

static char token[2048];
static char conn[64];

static void join(th *t)
{
    json_t *r;
    th_rpc(t, "voice.connect",
           "{\"guild_id\":\"100\",\"channel_id\":\"201\",\"user_id\":\"7\",\"session_id\":\"sx\"}",
           &r);
    snprintf(token, sizeof token, "%s", jstr(r, "voice_server.token"));
    snprintf(conn, sizeof conn, "%s", jstr(r, "voice_state.connection_id"));
}

TEST(token_is_hs256_jwt_with_bound_claims)
{
    th *t = th_new(NULL);
    join(t);
    char *d1 = strchr(token, '.'), *d2 = d1 ? strchr(d1 + 1, '.') : NULL;
    CHECK(d1 && d2);
    char hdr[128], pay[1024];
    long hn = b64url_decode(token, (size_t)(d1 - token), hdr, sizeof hdr - 1);
    CHECK(hn > 0);
    hdr[hn] = 0;
    CHECK_EQ_STR(hdr, "{\"alg\":\"HS256\",\"typ\":\"JWT\"}");
    long pn = b64url_decode(d1 + 1, (size_t)(d2 - d1 - 1), pay, sizeof pay - 1);
    CHECK(pn > 0);
    pay[pn] = 0;
    json_error_t e;
    json_t *c = json_loads(pay, 0, &e);
    CHECK(c != NULL);
    CHECK_EQ_STR(jstr(c, "sub"), "7");
    CHECK_EQ_STR(jstr(c, "sid"), "sx");
    CHECK_EQ_STR(jstr(c, "cid"), conn);
    CHECK_EQ_STR(jstr(c, "room"), "guild:100:201");
    CHECK_EQ_STR(jstr(c, "node"), "voxd-1");
    CHECK(jstr(c, "nonce") && strlen(jstr(c, "nonce")) == 22);
    CHECK_EQ_INT(jint(c, "exp") - jint(c, "iat"), 120);
    json_decref(c);
    th_free(t);
}

TEST(redeem_once_then_replay_is_refused)
{
    th *t = th_new(NULL);
    join(t);
    sig_identity id;
    CHECK_EQ_INT(sig_grant_redeem(t->c, token, t->now, &id), 0);
    CHECK_EQ_STR(id.connection_id, conn);
    CHECK_EQ_STR(id.session_id, "sx");
    CHECK_EQ_STR(id.room, "guild:100:201");
    CHECK_EQ_INT(id.user_id, 7);
    CHECK_EQ_INT(id.guild_id, 100);
    CHECK_EQ_INT(id.channel_id, 201);
    CHECK_EQ_INT(sig_grant_redeem(t->c, token, t->now, &id), -EALREADY);
    sig_stats st;
    sig_get_stats(t->c, &st);
    CHECK_EQ_INT(st.grants_issued, 1);
    CHECK_EQ_INT(st.grants_redeemed, 1);
    CHECK_EQ_INT(st.token_fail[SIG_TOKEN_FAIL_REPLAYED], 1);
    th_free(t);
}

TEST(expired_token_is_refused)
{
    th *t = th_new(NULL);
    join(t);
    sig_conn_confirm(t->c, conn, t->now); /* keep the connection past the pending gate */
    th_advance(t, 120000);
    sig_identity id;
    CHECK_EQ_INT(sig_grant_redeem(t->c, token, t->now, &id), -EKEYEXPIRED);
    th_free(t);
}

TEST(bad_signature_and_malformed_tokens_are_refused)
{
    th *t = th_new(NULL);
    join(t);
    sig_identity id;
    char bad[2048];
    snprintf(bad, sizeof bad, "%s", token);
    size_t n = strlen(bad);
    bad[n - 2] = bad[n - 2] == 'A' ? 'B' : 'A'; /* flip a signature character */
    CHECK_EQ_INT(sig_grant_redeem(t->c, bad, t->now, &id), -EKEYREJECTED);
    /* a claim changed, signature kept */
    snprintf(bad, sizeof bad, "%s", token);
    char *d1 = strchr(bad, '.');
    d1[5] = d1[5] == 'a' ? 'b' : 'a';
    int rc = sig_grant_redeem(t->c, bad, t->now, &id);
    CHECK(rc == -EKEYREJECTED || rc == -EBADMSG);
    CHECK_EQ_INT(sig_grant_redeem(t->c, "", t->now, &id), -EBADMSG);
    CHECK_EQ_INT(sig_grant_redeem(t->c, "a.b", t->now, &id), -EBADMSG);
    CHECK_EQ_INT(sig_grant_redeem(t->c, "a.b.c.d", t->now, &id), -EBADMSG);
    /* alg "none" */
    snprintf(bad, sizeof bad, "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0%s", strchr(token, '.'));
    CHECK_EQ_INT(sig_grant_redeem(t->c, bad, t->now, &id), -EBADMSG);
    /* the genuine token still works after all that */
    CHECK_EQ_INT(sig_grant_redeem(t->c, token, t->now, &id), 0);
    th_free(t);
}

static void other_node(sig_config *cfg)
{
    cfg->node_id = "voxd-2";
}

TEST(token_for_another_node_is_refused)
{
    th *a = th_new(NULL);
    join(a);
    th *b = th_new(other_node); /* same region secret, another node */
    sig_identity id;
    CHECK_EQ_INT(sig_grant_redeem(b->c, token, b->now, &id), -EXDEV);
    th_free(a);
    th_free(b);
}

static void other_secret(sig_config *cfg)
{
    static const unsigned char s[] = "another-secret-another-secret!!!";
    cfg->token_secret = s;
    cfg->token_secret_len = 32;
}

TEST(token_signed_with_another_secret_is_refused)
{
    th *a = th_new(other_secret);
    join(a);
    th *b = th_new(NULL);
    sig_identity id;
    CHECK_EQ_INT(sig_grant_redeem(b->c, token, b->now, &id), -EKEYREJECTED);
    th_free(a);
    th_free(b);
}

TEST(token_of_a_gone_or_moved_connection_is_refused)
{
    th *t = th_new(NULL);
    join(t);
    json_t *r;
    char *p = xasprintf("{\"connection_id\":\"%s\"}", conn);
    th_rpc(t, "voice.disconnect", p, &r);
    free(p);
    sig_identity id;
    CHECK_EQ_INT(sig_grant_redeem(t->c, token, t->now, &id), -ENOENT);
    join(t);
    p = xasprintf("{\"connection_id\":\"%s\",\"channel_id\":\"202\"}", conn);
    CHECK_EQ_INT(th_rpc(t, "voice.move", p, &r), 200);
    free(p);
    CHECK_EQ_INT(sig_grant_redeem(t->c, token, t->now, &id), -EACCES);
    th_free(t);
}

int main(void)
{
    RUN(token_is_hs256_jwt_with_bound_claims);
    RUN(redeem_once_then_replay_is_refused);
    RUN(expired_token_is_refused);
    RUN(bad_signature_and_malformed_tokens_are_refused);
    RUN(token_for_another_node_is_refused);
    RUN(token_signed_with_another_secret_is_refused);
    RUN(token_of_a_gone_or_moved_connection_is_refused);
    return test_summary();
}
