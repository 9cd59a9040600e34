/*
 * voice/main.c — the voxd binary: configuration, logging, the loop, the node.
 *
 * Exit status: 0 after --help or a clean shutdown (SIGTERM/SIGINT), 2 on a configuration error,
 * 1 when the node cannot start (a port in use, ...). The loop must close cleanly
 * (uv_loop_close() == 0): every handle of lws and of the node is closed before main returns.
 */
#include "lib/conf.h"
#include "lib/log.h"
#include "voice/voice.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <uv.h>

static const char *env_get(const char *name)
{
    return getenv(name);
}

static void walk_cb(uv_handle_t *h, void *arg)
{
    LOG(LOG_ERROR, "handle still open at exit: type=%s active=%d", uv_handle_type_name(h->type),
        uv_is_active(h));
}

int main(int argc, char **argv)
{
    char err[512];
    conf *cf;
    int rc = conf_load(argc, argv, env_get, &cf, err, sizeof err);
    if (rc == CONF_HELP) {
        conf_help(stdout, "voxd");
        return 0;
    }
    if (rc < 0) {
        fprintf(stderr, "voxd: %s\n", err);
        return 2;
    }
    log_min_level = (enum log_level)log_level_parse(cf->log_level);
    if (cf->rpc_secret_generated)
        LOG(LOG_WARN, "dev mode: no rpc secret given, generated a random one (clients cannot "
                      "know it: use --rpc-secret-file)");
    if (cf->token_secret_generated)
        LOG(LOG_WARN, "dev mode: no token secret given, generated a random one (grants are not "
                      "valid on other nodes)");
    signal(SIGPIPE, SIG_IGN);

    uv_loop_t loop;
    if (uv_loop_init(&loop) != 0) {
        LOG(LOG_ERROR, "uv_loop_init failed");
        conf_free(cf);
        return 1;
    }
    int status = 0;
    voice_node *n = voice_node_new(&loop, cf);
    if (!n) {
        status = 1;
    } else {
        uv_run(&loop, UV_RUN_DEFAULT);
        voice_node_free(n);
    }
    int lc = uv_loop_close(&loop);
    if (lc != 0) {
        LOG(LOG_ERROR, "uv_loop_close: %s", uv_strerror(lc));
        uv_walk(&loop, walk_cb, NULL);
        status = 1;
    } else if (status == 0) {
        LOG(LOG_INFO, "shut down cleanly");
    }
    conf_free(cf);
    return status;
}
