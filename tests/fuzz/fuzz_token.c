/*
 * Fuzzer of grant token redemption (the voice endpoint's Identify): any bytes as a token.
 * One genuine grant exists so inputs near a real token reach the deeper checks.
 */
#include "signalling/sig.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static sig_core *core;

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
        const char *b = "{\"method\":\"voice.connect\",\"params\":{\"guild_id\":\"1\","
                        "\"channel_id\":\"2\",\"user_id\":\"3\",\"session_id\":\"s\"}}";
        sig_rpc_submit(core, 1, b, strlen(b), 1700000000000LL);
        sig_effects fx;
        sig_effects_take(core, &fx);
        sig_effects_free(&fx);
    }
    char *tok = malloc(size + 1);
    if (!tok) return 0;
    memcpy(tok, data, size);
    tok[size] = '\0';
    sig_identity id;
    int rc = sig_grant_redeem(core, tok, 1700000001000LL, &id);
    if (rc > 0) abort();
    free(tok);
    sig_effects fx;
    sig_effects_take(core, &fx);
    sig_effects_free(&fx);
    return 0;
}
