/*
 * voice/devsite.c — development mode only (--dev): the demo page, the JavaScript client and a
 * grant endpoint on the voice listener, so a person can open http://127.0.0.1:8701/ and talk.
 * Without --dev every path here is 404 like any other on this listener.
 *
 *   GET /                       -> the demo page
 *   GET /demo.html, /voxclient.js, /demo.js, /demo.css  -> files from --web-root (default "web")
 *   GET /dev/grant?name=N&channel=C  -> the node acts as its own gateway: voice.connect for user
 *                                      "N" (a snowflake derived from the name) in channel "C" of
 *                                      the development guild 1; replies the RPC's reply verbatim
 *   GET /dev/names               -> {"<user_id>": "<name>", ...} of every name granted so far
 *
 * The grant goes through the core exactly like an RPC (sig_rpc_submit, durable commit included);
 * its reply comes back through node_deliver_reply() by request id.
 */
#include "voice/node_priv.h"

#include "lib/log.h"
#include "lib/util.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define DEV_GUILD     "1"
#define DEV_MAX_NAMES 10000
#define DEV_FILE_MAX  (1 << 20)

typedef struct devreq {
    struct lws *wsi;
    http_tx *tx;
    uint64_t *slot;
} devreq;

/* A snowflake-looking id from a name: stable, so a name is one user and one channel. */
static uint64_t name_id(const char *kind, const char *name)
{
    unsigned char h[SHA256_DIGEST_LENGTH];
    char buf[160];
    snprintf(buf, sizeof buf, "%s:%s", kind, name);
    SHA256((const unsigned char *)buf, strlen(buf), h);
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | h[i];
    return (v >> 2) % 9000000000000000000ull + 100000000000000000ull;
}

static bool name_ok(const char *s)
{
    size_t l = strlen(s);
    if (l < 1 || l > 32) return false;
    for (size_t i = 0; i < l; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
              (s[i] >= '0' && s[i] <= '9') || s[i] == '-' || s[i] == '_' || s[i] == ' '))
            return false;
    return true;
}

static const char *ctype_of(const char *path)
{
    const char *dot = strrchr(path, '.');
    if (!dot) return "application/octet-stream";
    if (!strcmp(dot, ".html")) return "text/html; charset=utf-8";
    if (!strcmp(dot, ".js")) return "text/javascript; charset=utf-8";
    if (!strcmp(dot, ".css")) return "text/css; charset=utf-8";
    return "application/octet-stream";
}

static int serve_file(voice_node *n, struct lws *wsi, http_tx *tx, const char *name)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", n->cf->web_root, name);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > DEV_FILE_MAX) {
        if (fd >= 0) close(fd);
        http_tx_error(wsi, tx, 404, "NOT_FOUND", "no such file under --web-root", false);
        return 0;
    }
    char *body = xmalloc((size_t)st.st_size + 1);
    ssize_t got = read(fd, body, (size_t)st.st_size);
    close(fd);
    if (got != st.st_size) {
        free(body);
        http_tx_error(wsi, tx, 500, "INTERNAL", "cannot read the file", false);
        return 0;
    }
    http_tx_set(wsi, tx, 200, ctype_of(name), body, (size_t)got, false);
    return 0;
}

static int dev_grant(voice_node *n, struct lws *wsi, http_tx *tx, uint64_t *slot)
{
    char nb[64], cb[64];
    const char *name = lws_get_urlarg_by_name(wsi, "name=", nb, sizeof nb);
    const char *chan = lws_get_urlarg_by_name(wsi, "channel=", cb, sizeof cb);
    if (!name || !chan || !name_ok(name) || !name_ok(chan)) {
        http_tx_error(wsi, tx, 400, "INVALID_REQUEST",
                      "name and channel: 1 to 32 of letters, digits, space, - and _", false);
        return 0;
    }
    if (n->stopping) {
        http_tx_error(wsi, tx, 503, "NODE_DRAINING", "the node is shutting down", false);
        return 0;
    }
    uint64_t uid = name_id("user", name), cid = name_id("channel", chan);
    if (!hmap_getu(n->dev_names, uid)) {
        if (hmap_size(n->dev_names) >= DEV_MAX_NAMES) {
            http_tx_error(wsi, tx, 429, "RATE_LIMITED", "too many development names", false);
            return 0;
        }
        hmap_putu(n->dev_names, uid, xstrdup(name));
    }
    unsigned char rnd[9];
    char sess[16];
    if (RAND_bytes(rnd, sizeof rnd) != 1) abort();
    b64url_encode(rnd, sizeof rnd, sess);
    char *body = xasprintf("{\"method\":\"voice.connect\",\"params\":{\"guild_id\":\"" DEV_GUILD
                           "\",\"channel_id\":\"%llu\",\"user_id\":\"%llu\",\"session_id\":"
                           "\"dev-%s\"}}",
                           (unsigned long long)cid, (unsigned long long)uid, sess);
    devreq *d = xcalloc(1, sizeof *d);
    d->wsi = wsi;
    d->tx = tx;
    d->slot = slot;
    *slot = ++n->next_req;
    hmap_putu(n->dev_pending, *slot, d);
    size_t len = strlen(body);
    if (!durable_admit(n, *slot, body, len)) {
        sig_rpc_submit(n->core, *slot, body, len, time_now_ms());
        node_after_step(n);
    }
    free(body);
    return 0;
}

static int dev_names(voice_node *n, struct lws *wsi, http_tx *tx)
{
    json_t *o = json_object();
    size_t it = 0;
    const void *k;
    size_t kl;
    void *v;
    char id[21];
    while (hmap_next(n->dev_names, &it, &k, &kl, &v)) {
        uint64_t u;
        memcpy(&u, k, sizeof u);
        json_object_set_new(o, snowflake_fmt(u, id), json_string(v));
    }
    char *s = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(o);
    http_tx_set(wsi, tx, 200, "application/json", s, strlen(s), false);
    return 0;
}

bool devsite_http(voice_node *n, struct lws *wsi, http_tx *tx, uint64_t *slot, const char *uri)
{
    if (!n->cf->dev) return false;
    if (lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI) <= 0) return false;
    if (!strcmp(uri, "/")) {
        serve_file(n, wsi, tx, "demo.html");
        return true;
    }
    if (!strcmp(uri, "/demo.html") || !strcmp(uri, "/voxclient.js") || !strcmp(uri, "/demo.js") ||
        !strcmp(uri, "/demo.css")) {
        serve_file(n, wsi, tx, uri + 1);
        return true;
    }
    if (!strcmp(uri, "/dev/grant")) {
        dev_grant(n, wsi, tx, slot);
        return true;
    }
    if (!strcmp(uri, "/dev/names")) {
        dev_names(n, wsi, tx);
        return true;
    }
    return false;
}

bool devsite_reply(voice_node *n, uint64_t req, int status, char *body, size_t len)
{
    devreq *d = hmap_delu(n->dev_pending, req);
    if (!d) return false;
    *d->slot = 0;
    http_tx_set(d->wsi, d->tx, status, "application/json", body, len, false);
    free(d);
    return true;
}

void devsite_cancel(voice_node *n, uint64_t *slot)
{
    if (!*slot) return;
    devreq *d = hmap_delu(n->dev_pending, *slot);
    sig_rpc_cancel(n->core, *slot);
    durable_cancel(n, *slot);
    free(d);
    *slot = 0;
}

void devsite_free(voice_node *n)
{
    size_t it = 0;
    const void *k;
    size_t kl;
    void *v;
    if (n->dev_names) {
        while (hmap_next(n->dev_names, &it, &k, &kl, &v))
            free(v);
        hmap_free(n->dev_names);
    }
    it = 0;
    if (n->dev_pending) {
        while (hmap_next(n->dev_pending, &it, &k, &kl, &v))
            free(v);
        hmap_free(n->dev_pending);
    }
}
