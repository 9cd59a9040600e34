/*
 * Fuzzer of the RPC body parser and every method's parameter validation: any bytes go to
 * sig_rpc_submit() of one long-lived core (so state accumulates across inputs, as in a node), and
 * the clock moves so timers fire. The core must never crash, leak or leave a request unanswered
 * (a deferred DM join is answered by its hold timer).
 */
#include "signalling/sig.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static sig_core *core;
static int64_t now = 1700000000000LL;
static uint64_t req;

static void cleanup(void)
{
    sig_core_free(core);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!core) {
        sig_config cfg;
        sig_config_defaults(&cfg);
        static const unsigned char secret[] = "fuzz-secret-fuzz-secret-fuzz-sec";
        cfg.token_secret = secret;
        cfg.token_secret_len = 32;
        core = sig_core_new(&cfg);
        atexit(cleanup);
    }
    sig_rpc_submit(core, ++req, (const char *)data, size, now);
    now += 1000;
    sig_tick(core, now);
    sig_effects fx;
    sig_effects_take(core, &fx);
    for (size_t i = 0; i < fx.nreplies; i++)
        if (fx.replies[i].status < 200 || fx.replies[i].status > 599 || !fx.replies[i].body)
            abort();
    sig_effects_free(&fx);
    return 0;
}
