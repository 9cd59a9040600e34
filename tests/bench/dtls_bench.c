/*
 * tests/bench/dtls_bench.c — DTLS-SRTP handshakes per second on one core: the node's server
 * (webrtc/wrtc_dtls.c) against an in-process OpenSSL client (tests/unit/webrtc/dtls_client.h),
 * memory BIOs, one thread. Each handshake: a new server transport and client connection, the full
 * exchange (ECDHE P-256, ECDSA P-256 certificates both ways, client certificate verified against
 * its fingerprint), key export on both sides, both freed. Prints the total rate (both sides on one
 * core) and the server's share: CPU time spent inside the wrtc_dtls_* calls, as handshakes per
 * server CPU-second. Run by `make bench` (scripts/bench.sh, 1 s; BENCH_WEBRTC=0 skips it).
 *
 *   build/tests/bench/dtls_bench [seconds]   (default 3)
 */
#include "tests/unit/webrtc/dtls_client.h"
#include "webrtc/webrtc.h"

#include <stdlib.h>
#include <time.h>

static double now_cpu(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double server_s;

static int feed(wrtc_dtls *s, const uint8_t *p, size_t n)
{
    double t = now_cpu();
    int rc = wrtc_dtls_feed(s, p, n);
    server_s += now_cpu() - t;
    return rc;
}

static int one(wrtc_dtls_ctx *ctx, tclient *c, const char *label)
{
    double t = now_cpu();
    wrtc_dtls *s;
    if (wrtc_dtls_new(ctx, c->fp, &s) != 0) return -1;
    server_s += now_cpu() - t;
    tclient_connect(c);
    uint8_t buf[8192], out[2048];
    int done = 0, src = 0;
    for (int round = 0; round < 10 && !(done == 1 && src == WRTC_DTLS_CONNECTED); round++) {
        done = tclient_step(c);
        size_t n = tclient_take(c, buf, sizeof buf);
        if (n) src = feed(s, buf, n);
        int m;
        t = now_cpu();
        while ((m = wrtc_dtls_pull(s, out, sizeof out)) > 0) {
            server_s += now_cpu() - t;
            tclient_give(c, out, (size_t)m);
            t = now_cpu();
        }
        server_s += now_cpu() - t;
        if (src < 0 || done < 0) break;
    }
    wrtc_srtp_key in, o;
    t = now_cpu();
    int rc = wrtc_dtls_srtp_keys(s, &in, &o);
    wrtc_dtls_free(s);
    server_s += now_cpu() - t;
    (void)label;
    return rc == 0 && done == 1 ? 0 : -1;
}

int main(int argc, char **argv)
{
    double secs = argc > 1 ? atof(argv[1]) : 3.0;
    wrtc_dtls_ctx *ctx;
    if (wrtc_dtls_ctx_new(NULL, NULL, &ctx) != 0) return 1;
    const char *profiles[] = {"SRTP_AES128_CM_SHA1_80", "SRTP_AEAD_AES_128_GCM"};
    printf("%-24s %10s %12s %16s %18s\n", "client profiles", "handshakes", "cpu_s", "handshakes/s",
           "server-only hs/s");
    for (int k = 0; k < 2; k++) {
        tclient c;
        if (tclient_init(&c, profiles[k]) != 0) return 1;
        server_s = 0;
        int n = 0, failed = 0;
        double t0 = now_cpu();
        while (now_cpu() - t0 < secs) {
            if (one(ctx, &c, profiles[k]) != 0) failed++;
            n++;
        }
        double cpu = now_cpu() - t0;
        printf("%-24s %10d %12.3f %16.1f %18.1f%s\n", profiles[k], n, cpu, n / cpu, n / server_s,
               failed ? "  (failures!)" : "");
        tclient_free(&c);
    }
    wrtc_dtls_ctx_free(ctx);
    return 0;
}
