/*
 * lib/conf — voxd's configuration: one table of options (name, type, bounds, default, help)
 * filled in this order, a later source overriding an earlier one:
 *
 *   1. the defaults of the table
 *   2. the config file (--config FILE or VOXD_CONFIG): lines `key = value`, `#` comments,
 *      keys are the flag names without `--`
 *   3. the environment: VOXD_RPC_SECRET, VOXD_TOKEN_SECRET (the secrets themselves), VOXD_DB
 *   4. the command line: `--name value`, `--name=value`, a bare `--name` for a bool
 *
 * Types: string, int (bounded), bool, duration (`500ms`, `30s`, `2m`, `1h`; stored in ms),
 * addr (numeric `ADDR:PORT`, IPv4 or `[IPv6]`), endpoint (`HOST:PORT`, what grants name), ip.
 *
 * conf_load() returns an owned, complete `conf` that the program treats as const from then on
 * and passes explicitly; nothing here is global. Called from the main thread at start-up only
 * (it reads files: blocking I/O before the loop runs).
 */
#ifndef VOXD_CONF_H
#define VOXD_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef struct conf {
    char *config;
    char *rpc_listen;
    char *voice_listen;
    char *public_endpoint; /* "" in the table = the voice listen address */
    char *media_addr;
    int64_t media_port_base;
    int64_t workers; /* 0 in the table = number of cores (resolved by conf_load) */
    char *rpc_secret_file;
    char *token_secret_file;
    char *db;
    char *node_id;
    char *region;
    bool dev;
    char *web_root;
    char *log_level;
    int64_t rpc_max_body;
    int64_t events_retention;
    int64_t grant_ttl_ms;
    int64_t pending_timeout_ms;
    int64_t ring_timeout_ms;
    int64_t call_idle_ms;
    int64_t join_hold_ms;
    int64_t transport_reap_ms;
    int64_t heartbeat_interval_ms;
    int64_t store_deadline_ms;
    int64_t commit_pipeline;
    int64_t max_conns_per_user;

    /* Resolved from the *-secret-file options or the environment (or generated with --dev). */
    unsigned char *rpc_secret;
    size_t rpc_secret_len;
    unsigned char *token_secret;
    size_t token_secret_len;
    bool rpc_secret_generated, token_secret_generated;
} conf;

#define CONF_SECRET_MIN 16

/* Where conf_load reads the environment from (tests pass their own). */
typedef const char *(*conf_getenv_fn)(const char *name);

enum { CONF_OK = 0, CONF_HELP = 1 };

/* Builds the configuration from defaults, file, environment and argv (argv[0] is skipped).
 * Returns CONF_OK with *out set (free with conf_free), CONF_HELP when --help was asked (the
 * caller prints conf_help() and exits 0), or -EINVAL with a one-line explanation in err (the
 * caller prints it and exits 2). Secrets: missing ones are an error unless `dev`, where they are
 * generated randomly (and flagged *_generated so the caller can warn). */
int conf_load(int argc, char *const argv[], conf_getenv_fn getenv_fn, conf **out, char *err,
              size_t errlen);
void conf_free(conf *c);

/* Lists every option with its type, default and help. */
void conf_help(FILE *f, const char *prog);

/* Splits a numeric "ADDR:PORT" / "[V6]:PORT" into host (without brackets) and port.
 * 0 or -EINVAL. */
int conf_addr_split(const char *s, char *host, size_t hostlen, int *port);

#endif
