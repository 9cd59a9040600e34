/* Unit tests of lib/conf: precedence, types, bounds, secrets. */
#include "lib/conf.h"
#include "tests/unit/test.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <unistd.h>

/* A fake environment: NAME=VALUE strings. */
static const char *const *fake_env;
static const char *env_get(const char *name)
{
    size_t n = strlen(name);
    for (const char *const *e = fake_env; e && *e; e++)
        if (strncmp(*e, name, n) == 0 && (*e)[n] == '=') return *e + n + 1;
    return NULL;
}

static const char *const secrets_env[] = {"VOXD_RPC_SECRET=rpc-secret-0123456789",
                                          "VOXD_TOKEN_SECRET=token-secret-0123456789", NULL};

static char errbuf[512];

static int load(const char *const *env, conf **c, int argc, ...)
{
    static char prog[] = "voxd";
    char *argv[32] = {prog};
    va_list ap;
    va_start(ap, argc);
    for (int i = 0; i < argc; i++)
        argv[i + 1] = va_arg(ap, char *);
    va_end(ap);
    fake_env = env;
    return conf_load(argc + 1, argv, env_get, c, errbuf, sizeof errbuf);
}

static char *write_tmp(const char *text)
{
    char *path = strdup("/tmp/voxd-test-conf-XXXXXX");
    int fd = mkstemp(path);
    if (fd < 0) abort();
    ssize_t w = write(fd, text, strlen(text));
    (void)w;
    close(fd);
    return path;
}

TEST(defaults)
{
    conf *c;
    CHECK_EQ_INT(load(secrets_env, &c, 0), 0);
    CHECK_EQ_STR(c->rpc_listen, "127.0.0.1:8700");
    CHECK_EQ_STR(c->voice_listen, "127.0.0.1:8701");
    CHECK_EQ_STR(c->public_endpoint, "127.0.0.1:8701");
    CHECK_EQ_STR(c->node_id, "voxd-1");
    CHECK_EQ_STR(c->region, "local");
    CHECK_EQ_INT(c->rpc_max_body, 65536);
    CHECK_EQ_INT(c->grant_ttl_ms, 120000);
    CHECK_EQ_INT(c->heartbeat_interval_ms, 13750);
    CHECK_EQ_INT(c->join_hold_ms, 3000);
    CHECK_EQ_INT(c->max_conns_per_user, 5);
    CHECK(c->workers >= 1);
    CHECK(!c->dev);
    CHECK_EQ_INT(c->rpc_secret_len, strlen("rpc-secret-0123456789"));
    conf_free(c);
}

TEST(flags_both_forms_and_durations)
{
    conf *c;
    CHECK_EQ_INT(load(secrets_env, &c, 5, "--rpc-listen=127.0.0.1:9000", "--ring-timeout", "2m",
                      "--join-hold=500ms", "--dev"),
                 0);
    CHECK_EQ_STR(c->rpc_listen, "127.0.0.1:9000");
    CHECK_EQ_INT(c->ring_timeout_ms, 120000);
    CHECK_EQ_INT(c->join_hold_ms, 500);
    CHECK(c->dev);
    conf_free(c);
}

TEST(errors_are_refused_with_a_reason)
{
    conf *c;
    CHECK_EQ_INT(load(secrets_env, &c, 1, "--nope"), -EINVAL);
    CHECK(strstr(errbuf, "--nope") != NULL);
    CHECK_EQ_INT(load(secrets_env, &c, 2, "--workers", "999"), -EINVAL);
    CHECK(strstr(errbuf, "out of bounds") != NULL);
    CHECK_EQ_INT(load(secrets_env, &c, 1, "--grant-ttl=30"), -EINVAL); /* unit required */
    CHECK_EQ_INT(load(secrets_env, &c, 1, "--rpc-listen=localhost:80"), -EINVAL);
    CHECK_EQ_INT(load(secrets_env, &c, 1, "--dev=maybe"), -EINVAL);
    CHECK_EQ_INT(load(secrets_env, &c, 1, "--log-level=loud"), -EINVAL);
    CHECK_EQ_INT(load(secrets_env, &c, 1, "--media-port-base"), -EINVAL);
    CHECK(c == NULL);
}

TEST(help)
{
    conf *c;
    CHECK_EQ_INT(load(secrets_env, &c, 3, "--workers", "999", "--help"), CONF_HELP);
}

TEST(precedence_file_env_flag)
{
    char *cfg = write_tmp("# comment\n region = eu-west \n node-id=file-node\n"
                          "db = host=/nonexistent\n grant-ttl = 10s\n");
    const char *env[] = {"VOXD_RPC_SECRET=rpc-secret-0123456789",
                         "VOXD_TOKEN_SECRET=token-secret-0123456789", "VOXD_DB=from-env", NULL};
    conf *c;
    CHECK_EQ_INT(load(env, &c, 4, "--config", cfg, "--node-id", "flag-node"), 0);
    CHECK_EQ_STR(c->region, "eu-west");    /* file over default */
    CHECK_EQ_STR(c->db, "from-env");       /* env over file */
    CHECK_EQ_STR(c->node_id, "flag-node"); /* flag over file */
    CHECK_EQ_INT(c->grant_ttl_ms, 10000);
    conf_free(c);
    CHECK_EQ_INT(load(env, &c, 3, "--config", cfg, "--db=flag-db"), 0);
    CHECK_EQ_STR(c->db, "flag-db"); /* flag over env */
    conf_free(c);
    unlink(cfg);
    free(cfg);
}

TEST(config_file_errors_name_the_line)
{
    char *cfg = write_tmp("region = x\nbogus = 1\n");
    conf *c;
    CHECK_EQ_INT(load(secrets_env, &c, 2, "--config", cfg), -EINVAL);
    CHECK(strstr(errbuf, ":2:") != NULL);
    CHECK(strstr(errbuf, "bogus") != NULL);
    unlink(cfg);
    free(cfg);
    CHECK_EQ_INT(load(secrets_env, &c, 2, "--config", "/nonexistent/voxd.conf"), -EINVAL);
}

TEST(secrets)
{
    conf *c;
    const char *none[] = {NULL};
    CHECK_EQ_INT(load(none, &c, 0), -EINVAL);
    CHECK(strstr(errbuf, "rpc secret") != NULL);
    const char *short_env[] = {"VOXD_RPC_SECRET=short", "VOXD_TOKEN_SECRET=token-secret-0123456789",
                               NULL};
    CHECK_EQ_INT(load(short_env, &c, 0), -EINVAL);
    CHECK(strstr(errbuf, "too short") != NULL);

    /* a file named by a flag wins over the environment; its trailing newline is stripped */
    char *f = write_tmp("file-secret-0123456789\n");
    CHECK_EQ_INT(load(secrets_env, &c, 2, "--rpc-secret-file", f), 0);
    CHECK_EQ_INT(c->rpc_secret_len, 22);
    CHECK(memcmp(c->rpc_secret, "file-secret-0123456789", 22) == 0);
    conf_free(c);
    unlink(f);
    free(f);

    /* --dev generates what is missing */
    CHECK_EQ_INT(load(none, &c, 1, "--dev"), 0);
    CHECK(c->rpc_secret_generated && c->token_secret_generated);
    CHECK(c->rpc_secret_len >= CONF_SECRET_MIN);
    conf_free(c);
}

int main(void)
{
    RUN(defaults);
    RUN(flags_both_forms_and_durations);
    RUN(errors_are_refused_with_a_reason);
    RUN(help);
    RUN(precedence_file_env_flag);
    RUN(config_file_errors_name_the_line);
    RUN(secrets);
    return test_summary();
}
