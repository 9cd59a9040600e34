/*
 * lib/conf — see conf.h.
 *
 * How it works: `opts[]` is the only description of the options. Each entry knows the offset of
 * its field in `conf`, its type and bounds, and its default *as text*: defaults go through the
 * same parser as the file, the environment and the flags, so a default can never be out of
 * bounds without the unit tests noticing. Every assignment records the rank of its source
 * (default < file < env < flag); a source only overrides a value set by a lower or equal rank,
 * which makes the order of the passes irrelevant to correctness and lets the secrets choose
 * between "file named by a flag" and "secret in the environment" by rank too.
 */
#include "lib/conf.h"
#include "lib/log.h"
#include "lib/util.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <openssl/rand.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum opt_type { T_STR, T_INT, T_BOOL, T_DUR, T_ADDR, T_ENDPOINT, T_IP, T_LEVEL };
enum rank { R_NONE, R_DEFAULT, R_FILE, R_ENV, R_FLAG };

typedef struct opt {
    const char *name;
    enum opt_type type;
    size_t off;
    int64_t min, max; /* ints and durations (ms) */
    const char *def;
    const char *env; /* environment variable naming the same value, or NULL */
    const char *help;
} opt;

#define F(field) offsetof(conf, field)
#define NOLIM    0, 0
static const opt opts[] = {
    {"config", T_STR, F(config), NOLIM, "", "VOXD_CONFIG", "config file (`key = value` lines)"},
    {"rpc-listen", T_ADDR, F(rpc_listen), NOLIM, "127.0.0.1:8700", NULL,
     "internal RPC, /events, /metrics, /healthz, /readyz"},
    {"voice-listen", T_ADDR, F(voice_listen), NOLIM, "127.0.0.1:8701", NULL,
     "the voice WebSocket (/voice)"},
    {"public-endpoint", T_ENDPOINT, F(public_endpoint), NOLIM, "", NULL,
     "HOST:PORT that grants name as `endpoint` (empty: the voice listen address)"},
    {"media-addr", T_IP, F(media_addr), NOLIM, "127.0.0.1", NULL, "UDP media address"},
    {"media-port-base", T_INT, F(media_port_base), 0, 65535, "50000", NULL,
     "first UDP media port (one per worker: base + index); 0: ephemeral ports"},
    {"workers", T_INT, F(workers), 0, 256, "0", NULL, "media worker threads (0: number of cores)"},
    {"rpc-secret-file", T_STR, F(rpc_secret_file), NOLIM, "", NULL,
     "file holding the bearer secret of /rpc and /events (env VOXD_RPC_SECRET: the secret)"},
    {"token-secret-file", T_STR, F(token_secret_file), NOLIM, "", NULL,
     "file holding the HS256 grant secret (env VOXD_TOKEN_SECRET: the secret)"},
    {"db", T_STR, F(db), NOLIM, "", "VOXD_DB", "PostgreSQL connection string"},
    {"node-id", T_STR, F(node_id), NOLIM, "voxd-1", NULL, "identity of this node in the region"},
    {"region", T_STR, F(region), NOLIM, "local", NULL, "region name"},
    {"dev", T_BOOL, F(dev), NOLIM, "false", NULL,
     "development mode: missing secrets are generated; never in production"},
    {"web-root", T_STR, F(web_root), NOLIM, "web", NULL,
     "--dev: folder of the demo page and the JavaScript client"},
    {"log-level", T_LEVEL, F(log_level), NOLIM, "info", NULL, "debug, info, warn, error, off"},
    {"rpc-max-body", T_INT, F(rpc_max_body), 256, 64 << 20, "65536", NULL,
     "largest /rpc request body in bytes (413 above)"},
    {"events-retention", T_INT, F(events_retention), 1, 100000000, "100000", NULL,
     "events kept for the event stream at most"},
    {"grant-ttl", T_DUR, F(grant_ttl_ms), 1000, 3600000, "120s", NULL,
     "voice grant token lifetime"},
    {"pending-timeout", T_DUR, F(pending_timeout_ms), 1000, 3600000, "30s", NULL,
     "a join unconfirmed by its media transport is removed after this"},
    {"ring-timeout", T_DUR, F(ring_timeout_ms), 1000, 3600000, "30s", NULL,
     "how long a call rings a user"},
    {"call-idle", T_DUR, F(call_idle_ms), 1000, 86400000, "120s", NULL,
     "a call with nobody connected and nobody ringing ends after this"},
    {"join-hold", T_DUR, F(join_hold_ms), 0, 60000, "3s", NULL,
     "how long a DM join waits for its call.create"},
    {"transport-reap", T_DUR, F(transport_reap_ms), 1000, 3600000, "30s", NULL,
     "a connection whose transport is gone is removed after this"},
    {"store-deadline", T_DUR, F(store_deadline_ms), 100, 60000, "2s", NULL,
     "how long a change waits for the database before STORE_UNAVAILABLE (503)"},
    {"commit-pipeline", T_INT, F(commit_pipeline), 1, 16, "1", NULL,
     "group commits in flight at once, pipelined in order on one database connection"},
    {"heartbeat-interval", T_DUR, F(heartbeat_interval_ms), 1000, 600000, "13750ms", NULL,
     "voice WS heartbeat interval (sent in Hello; 2x without heartbeat closes 4009)"},
    {"max-conns-per-user", T_INT, F(max_conns_per_user), 1, 1000, "5", NULL,
     "voice connections per user per guild / per DM call"},
};
#undef F

static const char *const type_names[] = {"string", "int",      "bool", "duration",
                                         "addr",   "endpoint", "ip",   "level"};

typedef struct loader {
    conf *c;
    enum rank rank[ARRAY_LEN(opts)];
    char *err;
    size_t errlen;
} loader;

static int fail(loader *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(loader *l, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(l->err, l->errlen, fmt, ap);
    va_end(ap);
    return -EINVAL;
}

static const opt *find_opt(const char *name, size_t n)
{
    for (size_t i = 0; i < ARRAY_LEN(opts); i++)
        if (strlen(opts[i].name) == n && memcmp(opts[i].name, name, n) == 0) return &opts[i];
    return NULL;
}

/* "123" -> 123, strictly decimal, no sign games. */
static int parse_i64(const char *s, int64_t *out)
{
    if (!*s) return -EINVAL;
    const char *p = s;
    if (*p == '-') p++;
    if (!isdigit((unsigned char)*p)) return -EINVAL;
    errno = 0;
    char *end;
    long long v = strtoll(s, &end, 10);
    if (errno || *end) return -EINVAL;
    *out = v;
    return 0;
}

/* "500ms", "30s", "2m", "1h"; a bare number is refused (the unit is never guessed). */
static int parse_duration(const char *s, int64_t *ms)
{
    char *end;
    if (!isdigit((unsigned char)*s)) return -EINVAL;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s) return -EINVAL;
    int64_t mul;
    if (strcmp(end, "ms") == 0)
        mul = 1;
    else if (strcmp(end, "s") == 0)
        mul = 1000;
    else if (strcmp(end, "m") == 0)
        mul = 60000;
    else if (strcmp(end, "h") == 0)
        mul = 3600000;
    else
        return -EINVAL;
    if (v > (unsigned long long)(INT64_MAX / mul)) return -EINVAL;
    *ms = (int64_t)v * mul;
    return 0;
}

static int parse_port(const char *s, int *port)
{
    int64_t v;
    if (parse_i64(s, &v) < 0 || v < 1 || v > 65535) return -EINVAL;
    *port = (int)v;
    return 0;
}

int conf_addr_split(const char *s, char *host, size_t hostlen, int *port)
{
    const char *colon, *h = s;
    size_t hl;
    if (*s == '[') {
        const char *rb = strchr(s, ']');
        if (!rb || rb[1] != ':') return -EINVAL;
        h = s + 1;
        hl = (size_t)(rb - h);
        colon = rb + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon) return -EINVAL;
        hl = (size_t)(colon - s);
    }
    if (hl == 0 || hl >= hostlen) return -EINVAL;
    memcpy(host, h, hl);
    host[hl] = '\0';
    if (parse_port(colon + 1, port) < 0) return -EINVAL;
    unsigned char buf[16];
    if (inet_pton(AF_INET, host, buf) != 1 && inet_pton(AF_INET6, host, buf) != 1) return -EINVAL;
    return 0;
}

/* HOST:PORT where HOST is a name or an address (it is only ever printed into grants). */
static int check_endpoint(const char *s)
{
    const char *colon = strrchr(s, ':');
    if (!colon || colon == s) return -EINVAL;
    for (const char *p = s; p < colon; p++)
        if (!isalnum((unsigned char)*p) && !strchr(".-_[]:", *p)) return -EINVAL;
    int port;
    return parse_port(colon + 1, &port);
}

static int set_value(loader *l, const opt *o, const char *val, enum rank rank, const char *src)
{
    size_t idx = (size_t)(o - opts);
    if (l->rank[idx] > rank) return 0; /* a stronger source already set it */
    void *field = (char *)l->c + o->off;
    char host[64];
    int port;
    int64_t v;
    unsigned char ip[16];

    switch (o->type) {
    case T_INT:
        if (parse_i64(val, &v) < 0)
            return fail(l, "%s: --%s: \"%s\" is not an integer", src, o->name, val);
        if (v < o->min || v > o->max)
            return fail(l, "%s: --%s: %" PRId64 " is out of bounds [%" PRId64 ", %" PRId64 "]", src,
                        o->name, v, o->min, o->max);
        *(int64_t *)field = v;
        break;
    case T_DUR:
        if (parse_duration(val, &v) < 0)
            return fail(l, "%s: --%s: \"%s\" is not a duration (like 500ms, 30s, 2m, 1h)", src,
                        o->name, val);
        if (v < o->min || v > o->max)
            return fail(l, "%s: --%s: %s is out of bounds [%" PRId64 "ms, %" PRId64 "ms]", src,
                        o->name, val, o->min, o->max);
        *(int64_t *)field = v;
        break;
    case T_BOOL:
        if (strcmp(val, "true") == 0 || strcmp(val, "1") == 0 || strcmp(val, "yes") == 0)
            *(bool *)field = true;
        else if (strcmp(val, "false") == 0 || strcmp(val, "0") == 0 || strcmp(val, "no") == 0)
            *(bool *)field = false;
        else
            return fail(l, "%s: --%s: \"%s\" is not a bool (true/false)", src, o->name, val);
        break;
    case T_ADDR:
        if (conf_addr_split(val, host, sizeof host, &port) < 0)
            return fail(l, "%s: --%s: \"%s\" is not a numeric ADDR:PORT", src, o->name, val);
        goto str;
    case T_ENDPOINT:
        if (*val && check_endpoint(val) < 0)
            return fail(l, "%s: --%s: \"%s\" is not HOST:PORT", src, o->name, val);
        goto str;
    case T_IP:
        if (inet_pton(AF_INET, val, ip) != 1 && inet_pton(AF_INET6, val, ip) != 1)
            return fail(l, "%s: --%s: \"%s\" is not a numeric IP address", src, o->name, val);
        goto str;
    case T_LEVEL:
        if (log_level_parse(val) < 0)
            return fail(l, "%s: --%s: \"%s\" is not one of debug, info, warn, error, off", src,
                        o->name, val);
        goto str;
    case T_STR:
    str:
        free(*(char **)field);
        *(char **)field = xstrdup(val);
        break;
    }
    l->rank[idx] = rank;
    return 0;
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    return s;
}

static int load_file(loader *l, const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) return fail(l, "config file %s: %s", path, strerror(errno));
    char line[4096], src[600];
    int lineno = 0, rc = 0;
    while (rc == 0 && fgets(line, sizeof line, f)) {
        lineno++;
        snprintf(src, sizeof src, "%s:%d", path, lineno);
        if (!strchr(line, '\n') && !feof(f)) {
            rc = fail(l, "%s: line too long", src);
            break;
        }
        char *s = trim(line);
        if (!*s || *s == '#') continue;
        char *eq = strchr(s, '=');
        if (!eq) {
            rc = fail(l, "%s: expected `key = value`", src);
            break;
        }
        *eq = '\0';
        char *key = trim(s), *val = trim(eq + 1);
        const opt *o = find_opt(key, strlen(key));
        if (!o || strcmp(key, "config") == 0) {
            rc = fail(l, "%s: unknown option \"%s\"", src, key);
            break;
        }
        rc = set_value(l, o, val, R_FILE, src);
    }
    fclose(f);
    return rc;
}

/* Reads a secret file: at most 4 KiB, one trailing newline (\n or \r\n) stripped. */
static int read_secret_file(loader *l, const char *what, const char *path, unsigned char **out,
                            size_t *outlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) return fail(l, "%s %s: %s", what, path, strerror(errno));
    unsigned char buf[4097];
    size_t n = fread(buf, 1, sizeof buf, f);
    int bad = ferror(f);
    fclose(f);
    if (bad) return fail(l, "%s %s: read error", what, path);
    if (n == sizeof buf) return fail(l, "%s %s: larger than 4096 bytes", what, path);
    if (n && buf[n - 1] == '\n') n--;
    if (n && buf[n - 1] == '\r') n--;
    *out = xmalloc(n + 1);
    memcpy(*out, buf, n);
    (*out)[n] = 0;
    *outlen = n;
    return 0;
}

static int resolve_secret(loader *l, const char *name, size_t file_idx, const char *env_name,
                          conf_getenv_fn getenv_fn, unsigned char **out, size_t *outlen,
                          bool *generated)
{
    const char *path = *(char **)((char *)l->c + opts[file_idx].off);
    const char *env = getenv_fn(env_name);
    bool use_file = *path && (l->rank[file_idx] == R_FLAG || !env || !*env);
    if (use_file) {
        int rc = read_secret_file(l, name, path, out, outlen);
        if (rc < 0) return rc;
    } else if (env && *env) {
        *outlen = strlen(env);
        *out = (unsigned char *)xstrdup(env);
    } else if (l->c->dev) {
        unsigned char raw[32];
        if (RAND_bytes(raw, sizeof raw) != 1) return fail(l, "%s: no randomness", name);
        *out = xmalloc(b64url_len(sizeof raw) + 1);
        b64url_encode(raw, sizeof raw, (char *)*out);
        *outlen = strlen((char *)*out);
        *generated = true;
        return 0;
    } else {
        return fail(l, "the %s is missing: give --%s FILE or %s (or --dev)", name,
                    opts[file_idx].name, env_name);
    }
    if (*outlen < CONF_SECRET_MIN)
        return fail(l, "the %s is too short: %zu bytes, at least %d needed", name, *outlen,
                    CONF_SECRET_MIN);
    return 0;
}

static size_t opt_index(const char *name)
{
    const opt *o = find_opt(name, strlen(name));
    return (size_t)(o - opts);
}

static int cpu_count(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > 256 ? 256 : (int)n;
}

int conf_load(int argc, char *const argv[], conf_getenv_fn getenv_fn, conf **out, char *err,
              size_t errlen)
{
    loader l = {.c = xcalloc(1, sizeof(conf)), .err = err, .errlen = errlen};
    int rc = 0;
    char src[32];
    if (errlen) err[0] = '\0';

    for (size_t i = 0; i < ARRAY_LEN(opts) && rc == 0; i++)
        rc = set_value(&l, &opts[i], opts[i].def, R_DEFAULT, "default");
    if (rc < 0) goto fail;

    /* Pass 1 over argv: --help and --config (which decides what the file pass reads); every
     * other flag is validated in pass 2, after the file, so that the flag wins. */
    const char *cfg_flag = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            conf_free(l.c);
            return CONF_HELP;
        }
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) cfg_flag = argv[i + 1];
        if (strncmp(argv[i], "--config=", 9) == 0) cfg_flag = argv[i] + 9;
    }
    const char *cfg_env = getenv_fn("VOXD_CONFIG");
    const char *cfg = cfg_flag ? cfg_flag : (cfg_env && *cfg_env ? cfg_env : NULL);
    if (cfg) {
        rc = set_value(&l, &opts[opt_index("config")], cfg, cfg_flag ? R_FLAG : R_ENV,
                       cfg_flag ? "flag" : "VOXD_CONFIG");
        if (rc == 0) rc = load_file(&l, cfg);
        if (rc < 0) goto fail;
    }

    for (size_t i = 0; i < ARRAY_LEN(opts); i++) {
        if (!opts[i].env || strcmp(opts[i].name, "config") == 0) continue;
        const char *v = getenv_fn(opts[i].env);
        if (v && *v && (rc = set_value(&l, &opts[i], v, R_ENV, opts[i].env)) < 0) goto fail;
    }

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        snprintf(src, sizeof src, "argument %d", i);
        if (strncmp(a, "--", 2) != 0) {
            rc = fail(&l, "%s: unexpected \"%s\" (options start with --)", src, a);
            goto fail;
        }
        const char *name = a + 2, *eq = strchr(name, '=');
        size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
        const opt *o = find_opt(name, nlen);
        if (!o) {
            rc = fail(&l, "unknown option --%.*s (see --help)", (int)nlen, name);
            goto fail;
        }
        const char *val;
        if (eq)
            val = eq + 1;
        else if (o->type == T_BOOL)
            val = "true";
        else if (i + 1 < argc)
            val = argv[++i];
        else {
            rc = fail(&l, "--%s needs a value", o->name);
            goto fail;
        }
        if ((rc = set_value(&l, o, val, R_FLAG, "flag")) < 0) goto fail;
    }

    conf *c = l.c;
    if (!*c->public_endpoint) {
        free(c->public_endpoint);
        c->public_endpoint = xstrdup(c->voice_listen);
    }
    if (c->workers == 0) c->workers = cpu_count();
    if (!*c->node_id || strlen(c->node_id) > 64 || strlen(c->region) > 64) {
        rc = fail(&l, "--node-id (not empty) and --region must be at most 64 characters");
        goto fail;
    }
    rc = resolve_secret(&l, "rpc secret", opt_index("rpc-secret-file"), "VOXD_RPC_SECRET",
                        getenv_fn, &c->rpc_secret, &c->rpc_secret_len, &c->rpc_secret_generated);
    if (rc < 0) goto fail;
    rc = resolve_secret(&l, "token secret", opt_index("token-secret-file"), "VOXD_TOKEN_SECRET",
                        getenv_fn, &c->token_secret, &c->token_secret_len,
                        &c->token_secret_generated);
    if (rc < 0) goto fail;
    *out = c;
    return CONF_OK;
fail:
    conf_free(l.c);
    *out = NULL;
    return rc;
}

void conf_free(conf *c)
{
    if (!c) return;
    for (size_t i = 0; i < ARRAY_LEN(opts); i++) {
        enum opt_type t = opts[i].type;
        if (t == T_STR || t == T_ADDR || t == T_ENDPOINT || t == T_IP || t == T_LEVEL)
            free(*(char **)((char *)c + opts[i].off));
    }
    if (c->rpc_secret) memset(c->rpc_secret, 0, c->rpc_secret_len);
    if (c->token_secret) memset(c->token_secret, 0, c->token_secret_len);
    free(c->rpc_secret);
    free(c->token_secret);
    free(c);
}

void conf_help(FILE *f, const char *prog)
{
    fprintf(f,
            "usage: %s [--option value | --option=value]...\n\n"
            "Precedence: defaults < config file < environment < flags.\n\n",
            prog);
    for (size_t i = 0; i < ARRAY_LEN(opts); i++) {
        const opt *o = &opts[i];
        char arg[64];
        snprintf(arg, sizeof arg, "--%s %s", o->name, o->type == T_BOOL ? "" : type_names[o->type]);
        fprintf(f, "  %-36s %s\n", arg, o->help);
        fprintf(f, "  %-36s   type %s, default \"%s\"", "", type_names[o->type], o->def);
        if (o->type == T_INT || o->type == T_DUR)
            fprintf(f, ", bounds [%" PRId64 ", %" PRId64 "]%s", o->min, o->max,
                    o->type == T_DUR ? " ms" : "");
        if (o->env) fprintf(f, ", env %s", o->env);
        fputc('\n', f);
    }
    fprintf(f, "\nEnvironment: VOXD_CONFIG, VOXD_RPC_SECRET and VOXD_TOKEN_SECRET (the secrets "
               "themselves), VOXD_DB.\n"
               "Exit status: 0 after --help or a clean shutdown, 2 on a configuration error.\n");
}
