/*
 * client/voxclient.c — voxclient, the native voice client: joins a voxd node's voice WebSocket
 * (client/session.h), sends a sine tone over SRTP and analyses what it hears (client/media.h),
 * then prints one JSON report on stdout. A line of progress per second goes to stderr.
 * Usage and the report's fields: docs/voxclient.md and `voxclient --help`.
 *
 * One libuv loop runs everything. Shutdown (duration over, SIGTERM/SIGINT, or the node closed):
 * close the session (its VC_EV_CLOSED), close the media, close our own handles, and shut the lws
 * context down last (it waits for the loop to hold nothing but itself); then the report.
 * Exit status: 0 after a clean run (the duration elapsed, or a signal), 1 when the node closed
 * the session or it failed, 2 for a usage error.
 */
#include "client/media.h"
#include "client/session.h"
#include "lib/log.h"
#include "lib/util.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#define MAX_EVENTS 500

typedef struct opts {
    const char *token, *endpoint, *rpc, *rpc_secret_file, *guild, *channel, *user, *session;
    const char *mode, *bind, *log_level;
    double freq, amplitude, duration;
    int complexity;
    bool silent, resume, quiet;
} opts;

typedef struct app {
    uv_loop_t loop;
    uv_timer_t duration, progress;
    uv_signal_t sigterm, sigint;
    opts o;
    vc_net *net;
    vc_session *sess;
    vc_media *media;
    bool finishing, media_started;
    int exit_code;
    /* report */
    char *connection_id, *user_id;
    json_t *close; /* {"code","reason"} or NULL */
    json_t *roster, *events;
    json_t *media_report;
    uint64_t t0_ms;
} app;

/* ---- options ------------------------------------------------------------------------------- */

static const struct option long_opts[] = {
    {"token", required_argument, NULL, 't'},
    {"endpoint", required_argument, NULL, 'e'},
    {"rpc", required_argument, NULL, 'r'},
    {"rpc-secret-file", required_argument, NULL, 'S'},
    {"guild", required_argument, NULL, 'g'},
    {"channel", required_argument, NULL, 'c'},
    {"user", required_argument, NULL, 'u'},
    {"session", required_argument, NULL, 's'},
    {"mode", required_argument, NULL, 'm'},
    {"freq", required_argument, NULL, 'f'},
    {"amplitude", required_argument, NULL, 'a'},
    {"complexity", required_argument, NULL, 'C'},
    {"silent", no_argument, NULL, 'q'},
    {"duration", required_argument, NULL, 'd'},
    {"resume", no_argument, NULL, 'R'},
    {"bind", required_argument, NULL, 'b'},
    {"log-level", required_argument, NULL, 'l'},
    {"no-progress", no_argument, NULL, 'P'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

static void usage(FILE *f)
{
    fputs(
        "usage: voxclient (--token T --endpoint HOST:PORT | --rpc URL --rpc-secret-file F\n"
        "                  --channel C --user U --session S [--guild G]) [options]\n"
        "\n"
        "Joins a voxd voice node, sends a sine tone over SRTP, analyses what it hears and prints\n"
        "a JSON report on stdout when it ends (a progress line per second on stderr).\n"
        "\n"
        "grant:\n"
        "  --token T              a grant token (voice_server.token)\n"
        "  --endpoint HOST:PORT   the grant's voice_server.endpoint (numeric address)\n"
        "  --rpc URL              or call voice.connect on the node's RPC, e.g.\n"
        "                         http://127.0.0.1:8700 (numeric address)\n"
        "  --rpc-secret-file F    file holding the RPC bearer secret (trailing newline ignored)\n"
        "  --guild G              guild id (omit for a DM call)\n"
        "  --channel C            channel id\n"
        "  --user U               user id\n"
        "  --session S            gateway session id\n"
        "media:\n"
        "  --mode gcm|aes_cm      SRTP mode to ask for (default aes_cm:\n"
        "                         AES_CM_128_HMAC_SHA1_80; gcm: AEAD_AES_128_GCM)\n"
        "  --freq HZ              tone frequency (default 440)\n"
        "  --amplitude A          tone amplitude, fraction of full scale (default 0.3)\n"
        "  --complexity N         Opus complexity 0..10 (default 5)\n"
        "  --silent               send no audio (RTCP only)\n"
        "  --bind ADDR            local UDP address (default 0.0.0.0)\n"
        "run:\n"
        "  --duration SECONDS     stop after this long (default 10; 0 = until a signal)\n"
        "  --resume               reopen the WebSocket with Resume if it drops without a close\n"
        "  --log-level L          debug|info|warn|error (default warn)\n"
        "  --no-progress          no progress lines on stderr\n"
        "  --help                 this text\n"
        "\n"
        "Exit status: 0 clean end (duration or SIGTERM/SIGINT), 1 the node closed the session or\n"
        "it failed (see \"close\" in the report), 2 usage error.\n",
        f);
}

static int parse_num(const char *s, double lo, double hi, double *out)
{
    char *end;
    double v = strtod(s, &end);
    if (!*s || *end || v < lo || v > hi) return -EINVAL;
    *out = v;
    return 0;
}

/* 0, 1 for --help, -EINVAL (message printed) */
static int parse_opts(int argc, char **argv, opts *o)
{
    *o = (opts){.freq = 440,
                .amplitude = 0.3,
                .duration = 10,
                .complexity = 5,
                .mode = "aes_cm",
                .log_level = "warn",
                .bind = "0.0.0.0"};
    int c, idx = 0;
    double v;
    while ((c = getopt_long(argc, argv, "", long_opts, &idx)) != -1) {
        switch (c) {
        case 't':
            o->token = optarg;
            break;
        case 'e':
            o->endpoint = optarg;
            break;
        case 'r':
            o->rpc = optarg;
            break;
        case 'S':
            o->rpc_secret_file = optarg;
            break;
        case 'g':
            o->guild = optarg;
            break;
        case 'c':
            o->channel = optarg;
            break;
        case 'u':
            o->user = optarg;
            break;
        case 's':
            o->session = optarg;
            break;
        case 'm':
            o->mode = optarg;
            break;
        case 'b':
            o->bind = optarg;
            break;
        case 'l':
            o->log_level = optarg;
            break;
        case 'q':
            o->silent = true;
            break;
        case 'R':
            o->resume = true;
            break;
        case 'P':
            o->quiet = true;
            break;
        case 'f':
            if (parse_num(optarg, 20, 20000, &o->freq) < 0) goto bad;
            break;
        case 'a':
            if (parse_num(optarg, 0.001, 1, &o->amplitude) < 0) goto bad;
            break;
        case 'd':
            if (parse_num(optarg, 0, 86400, &o->duration) < 0) goto bad;
            break;
        case 'C':
            if (parse_num(optarg, 0, 10, &v) < 0) goto bad;
            o->complexity = (int)v;
            break;
        case 'h':
            return 1;
        default:
            return -EINVAL;
        }
        continue;
    bad:
        fprintf(stderr, "voxclient: --%s: bad value \"%s\"\n", long_opts[idx].name, optarg);
        return -EINVAL;
    }
    if (optind < argc) {
        fprintf(stderr, "voxclient: unexpected argument \"%s\"\n", argv[optind]);
        return -EINVAL;
    }
    vc_mode m;
    if (vc_mode_parse(o->mode, &m) < 0) {
        fprintf(stderr, "voxclient: --mode: \"%s\" is neither gcm nor aes_cm\n", o->mode);
        return -EINVAL;
    }
    if (log_level_parse(o->log_level) < 0) {
        fprintf(stderr, "voxclient: --log-level: \"%s\"\n", o->log_level);
        return -EINVAL;
    }
    bool grant = o->token && o->endpoint;
    bool rpc = o->rpc && o->rpc_secret_file && o->channel && o->user && o->session;
    if (grant == rpc) {
        fprintf(stderr, "voxclient: give either --token and --endpoint, or --rpc, "
                        "--rpc-secret-file, --channel, --user and --session\n");
        return -EINVAL;
    }
    return 0;
}

static char *read_secret(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) return NULL;
    char buf[512];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' '))
        buf[--n] = 0;
    return n ? xstrdup(buf) : NULL;
}

/* ---- report --------------------------------------------------------------------------------- */

static void event_log(app *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void event_log(app *a, const char *fmt, ...)
{
    if (json_array_size(a->events) >= MAX_EVENTS) return;
    char buf[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    json_array_append_new(
        a->events,
        json_pack("{s:I,s:s}", "t_ms", (json_int_t)(uv_now(&a->loop) - a->t0_ms), "ev", buf));
}

static void print_report(app *a)
{
    json_t *r = json_pack("{s:o,s:o,s:o}", "connection_id",
                          a->connection_id ? json_string(a->connection_id) : json_null(), "user_id",
                          a->user_id ? json_string(a->user_id) : json_null(), "close",
                          a->close ? json_incref(a->close) : json_null());
    if (a->media_report) {
        json_object_update(r, a->media_report);
    } else {
        json_object_set_new(r, "sent", json_integer(0));
        json_object_set_new(r, "slots", json_array());
        json_object_set_new(r, "speakers", json_object());
    }
    json_object_set(r, "roster", a->roster);
    json_object_set(r, "events", a->events);
    char *s = json_dumps(r, JSON_COMPACT);
    if (s) {
        fputs(s, stdout);
        fputc('\n', stdout);
        fflush(stdout);
    }
    free(s);
    json_decref(r);
}

/* ---- shutdown chain: session -> media -> our handles -> lws ------------------------------ */

static void net_done(void *arg)
{
    app *a = arg;
    a->net = NULL;
}

static void close_own(app *a)
{
    uv_close((uv_handle_t *)&a->duration, NULL);
    uv_close((uv_handle_t *)&a->progress, NULL);
    uv_close((uv_handle_t *)&a->sigterm, NULL);
    uv_close((uv_handle_t *)&a->sigint, NULL);
    vc_net_shutdown(a->net, net_done, a);
}

static void media_done(void *arg)
{
    close_own(arg);
}

static void finish(app *a)
{
    if (a->finishing) return;
    a->finishing = true;
    uv_timer_stop(&a->duration);
    uv_timer_stop(&a->progress);
    if (a->sess) {
        vc_session_close(a->sess); /* continues in on_event(VC_EV_CLOSED) */
        return;
    }
    if (a->media) {
        a->media_report = vc_media_report(a->media);
        vc_media_close(a->media, media_done, a);
        a->media = NULL;
        return;
    }
    close_own(a);
}

/* ---- events --------------------------------------------------------------------------------- */

static void roster_add(app *a, const char *uid)
{
    size_t i;
    json_t *v;
    json_array_foreach(a->roster, i, v) if (!strcmp(json_string_value(v), uid)) return;
    json_array_append_new(a->roster, json_string(uid));
}

static void on_event(vc_session *s, const vc_event *ev, void *arg)
{
    app *a = arg;
    int rc;
    switch (ev->kind) {
    case VC_EV_GRANT:
        event_log(a, "grant endpoint=%s", ev->endpoint);
        break;
    case VC_EV_HELLO:
        event_log(a, "hello heartbeat_interval=%lld", (long long)ev->heartbeat_interval);
        break;
    case VC_EV_READY:
        free(a->connection_id);
        free(a->user_id);
        a->connection_id = xstrdup(ev->connection_id);
        a->user_id = xstrdup(ev->user_id);
        event_log(a, "ready connection_id=%s user_id=%s", ev->connection_id, ev->user_id);
        break;
    case VC_EV_SDESC:
        event_log(a, "session_description mode=%s address=%s port=%u ssrc=%u slots=%u",
                  vc_mode_name(ev->sdesc->mode), ev->sdesc->address, ev->sdesc->port,
                  ev->sdesc->ssrc, ev->sdesc->n_slots);
        rc = vc_media_start(a->media, ev->sdesc);
        if (rc < 0) {
            event_log(a, "media start failed: %s", strerror(-rc));
            a->exit_code = 1;
            finish(a);
        } else if (!a->media_started) {
            a->media_started = true;
            if (!a->o.silent) vc_session_speaking(s, true);
        }
        break;
    case VC_EV_SPEAKING:
        event_log(a, "speaking slot=%d user_id=%s", ev->slot, ev->user_id ? ev->user_id : "null");
        vc_media_set_speaker(a->media, (unsigned)ev->slot, ev->user_id);
        break;
    case VC_EV_CLIENT_CONNECT:
        event_log(a, "client_connect user_id=%s", ev->user_id);
        roster_add(a, ev->user_id);
        break;
    case VC_EV_CLIENT_DISCONNECT:
        event_log(a, "client_disconnect user_id=%s", ev->user_id);
        break;
    case VC_EV_RESUMED:
        event_log(a, "resumed");
        break;
    case VC_EV_RECONNECT:
        event_log(a, "reconnect (resume)");
        break;
    case VC_EV_CLOSED:
        a->sess = NULL;
        event_log(a, "closed code=%d by_us=%d reason=%s", ev->close_code, ev->by_us,
                  ev->close_reason);
        if (!ev->by_us) {
            a->close = json_pack("{s:i,s:s}", "code", ev->close_code, "reason", ev->close_reason);
            a->exit_code = 1;
        }
        a->finishing = false; /* the chain goes on from here */
        finish(a);
        break;
    }
}

/* ---- timers and signals --------------------------------------------------------------------- */

static void on_duration(uv_timer_t *t)
{
    finish(t->data);
}

static void on_progress(uv_timer_t *t)
{
    app *a = t->data;
    char line[512];
    vc_media_progress(a->media, line, sizeof line);
    fprintf(stderr, "voxclient %s t=%.0fs %s\n", a->user_id ? a->user_id : "-",
            (double)(uv_now(&a->loop) - a->t0_ms) / 1000, line);
}

static void on_signal(uv_signal_t *s, int signum)
{
    app *a = s->data;
    event_log(a, "signal %d", signum);
    finish(a);
}

int main(int argc, char **argv)
{
    app a;
    memset(&a, 0, sizeof a);
    int rc = parse_opts(argc, argv, &a.o);
    if (rc == 1) {
        usage(stdout);
        return 0;
    }
    if (rc < 0) {
        usage(stderr);
        return 2;
    }
    log_min_level = (enum log_level)log_level_parse(a.o.log_level);
    signal(SIGPIPE, SIG_IGN);

    vc_session_config sc = {.token = a.o.token,
                            .endpoint = a.o.endpoint,
                            .rpc_url = a.o.rpc,
                            .guild_id = a.o.guild,
                            .channel_id = a.o.channel,
                            .user_id = a.o.user,
                            .session_id = a.o.session,
                            .n_modes = 1,
                            .resume = a.o.resume};
    vc_mode_parse(a.o.mode, &sc.modes[0]);
    char *secret = NULL;
    if (a.o.rpc) {
        secret = read_secret(a.o.rpc_secret_file);
        if (!secret) {
            fprintf(stderr, "voxclient: cannot read a secret from %s\n", a.o.rpc_secret_file);
            return 2;
        }
        sc.rpc_secret = secret;
    }

    uv_loop_init(&a.loop);
    a.roster = json_array();
    a.events = json_array();
    a.t0_ms = uv_now(&a.loop);
    uv_timer_init(&a.loop, &a.duration);
    uv_timer_init(&a.loop, &a.progress);
    uv_signal_init(&a.loop, &a.sigterm);
    uv_signal_init(&a.loop, &a.sigint);
    a.duration.data = a.progress.data = a.sigterm.data = a.sigint.data = &a;
    uv_signal_start(&a.sigterm, on_signal, SIGTERM);
    uv_signal_start(&a.sigint, on_signal, SIGINT);

    vc_media_config mc = {.bind_addr = a.o.bind,
                          .freq_hz = a.o.freq,
                          .amplitude = a.o.amplitude,
                          .silent = a.o.silent,
                          .complexity = a.o.complexity};
    rc = vc_media_new(&a.loop, &mc, &a.media);
    if (rc == 0) rc = vc_net_new(&a.loop, &a.net);
    if (rc == 0) rc = vc_session_start(a.net, &sc, on_event, &a, &a.sess);
    if (rc < 0) {
        fprintf(stderr, "voxclient: cannot start: %s\n", strerror(-rc));
        a.exit_code = rc == -EINVAL ? 2 : 1;
        a.close = json_pack("{s:i,s:s}", "code", 0, "reason", strerror(-rc));
        a.sess = NULL;
        a.finishing = false;
        finish(&a);
    } else {
        if (a.o.duration > 0)
            uv_timer_start(&a.duration, on_duration, (uint64_t)(a.o.duration * 1000), 0);
        if (!a.o.quiet) uv_timer_start(&a.progress, on_progress, 1000, 1000);
    }
    uv_run(&a.loop, UV_RUN_DEFAULT);
    print_report(&a);
    int lc = uv_loop_close(&a.loop);
    if (lc != 0) LOG(LOG_ERROR, "uv_loop_close: %s", uv_strerror(lc));
    json_decref(a.close);
    json_decref(a.roster);
    json_decref(a.events);
    json_decref(a.media_report);
    free(a.connection_id);
    free(a.user_id);
    free(secret);
    return a.exit_code;
}
