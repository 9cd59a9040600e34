/*
 * gen_voxd — relay_gen's setup for voxd: per participant a grant from the node's RPC
 * (voice.connect with the bearer secret; docs/rpc.md) and a voice WebSocket (Hello, Identify,
 * Ready, Select Protocol "srtp" with AES_CM_128_HMAC_SHA1_80, Session Description;
 * docs/protocol.md "Media: the srtp transport"), all through libvoxclient's event-driven sessions
 * (client/session.h) on one libuv loop in a thread of our own. The Session Description fills the
 * participant's relay address and port, SSRC, send and receive keys. The thread then keeps every
 * WebSocket heartbeated (the node reaps a session whose WebSocket is gone, D23) until
 * gen_voxd_teardown(), which closes them with 1000 (a goodbye, D27).
 *
 * Participant i joins channel GEN_VOXD_CHANNEL_BASE + its room as user GEN_VOXD_USER_BASE + i
 * (session "bench-i"), in guild o->guild, or in guild GEN_VOXD_GUILD_BASE + its room with
 * o->guild_per_room (a guild's rooms share one media worker, D26: one guild per room spreads rooms
 * over workers when the node has several). Handshakes run GEN_VOXD_INFLIGHT at a time; setup
 * fails (-ETIMEDOUT) past a deadline that grows with the participants, or at the first session
 * the node refuses (-EPROTO, the reason printed).
 *
 * Threads: the loop thread owns the net and the sessions; the caller's thread only reads the
 * participant table after setup returned (the mutex orders the writes) and signals the stop.
 */
#include "client/session.h"
#include "lib/util.h"
#include "tests/bench/relay/gen.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

/* concurrent handshakes (RPC + WebSocket up to Session Description); the environment's
 * GEN_VOXD_INFLIGHT (1–4096) overrides it */
#define GEN_VOXD_INFLIGHT     256
#define GEN_VOXD_CHANNEL_BASE 100000u
#define GEN_VOXD_GUILD_BASE   2000000u
#define GEN_VOXD_USER_BASE    10000000u
#define GEN_VOXD_STOP_S       15 /* teardown waits this long for the sessions to close */

typedef struct vpart {
    struct gen_voxd *v;
    uint32_t i;
    vc_session *s;
    bool described;
} vpart;

struct gen_voxd {
    gen_ctx *g;
    vpart *p;
    char rpc_url[80], *secret, *guild;
    bool guild_per_room;
    uv_loop_t loop;
    uv_async_t stop;
    uv_timer_t progress;
    vc_net *net;
    pthread_t thread;
    /* loop thread */
    uint32_t next, inflight, max_inflight;
    int64_t t0;
    /* under mu */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint32_t ready, failed, lost, reconnects, moved;
    int setup_rc; /* 1 while running */
    bool loop_done;
    char why[192];
};

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* under mu: setup ends (once) with rc */
static void setup_end_locked(struct gen_voxd *v, int rc)
{
    if (v->setup_rc != 1) return;
    v->setup_rc = rc;
    pthread_cond_broadcast(&v->cv);
}

static void launch(struct gen_voxd *v);

static int take_sdesc(struct gen_voxd *v, uint32_t i, const vc_sdesc *sd)
{
    gen_part *p = &v->g->parts[i];
    if (sd->mode != VC_MODE_AES_CM || sd->key_len != RB_KEY_LEN) {
        snprintf(v->why, sizeof v->why, "participant %u: the node chose mode %d (key %zu bytes)", i,
                 (int)sd->mode, sd->key_len);
        return -EPROTO;
    }
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(sd->port)};
    if (inet_pton(AF_INET, sd->address, &a.sin_addr) != 1) {
        snprintf(v->why, sizeof v->why, "participant %u: address \"%s\" is not IPv4", i,
                 sd->address);
        return -EPROTO;
    }
    p->relay = a;
    p->ssrc = sd->ssrc;
    memcpy(p->send_key, sd->send_key, RB_KEY_LEN);
    memcpy(p->recv_key, sd->recv_key, RB_KEY_LEN);
    p->profile = RB_PROFILE_AES_CM_80;
    /* every voiced packet is expected at every other member of its room: a listener must have
     * a slot for each speaker of its room, a speaker for each other one */
    uint32_t k = v->g->speakers_per_room;
    uint32_t heard = v->g->room_size > k ? k : k - 1;
    if (sd->n_slots > RB_MAX_SLOTS || heard > sd->n_slots) {
        snprintf(v->why, sizeof v->why, "participant %u: %u slots for %u speakers heard", i,
                 sd->n_slots, heard);
        return -EPROTO;
    }
    p->n_slots = (uint8_t)sd->n_slots;
    for (unsigned s = 0; s < sd->n_slots; s++)
        p->slot_ssrc[s] = sd->slots[s].ssrc;
    return 0;
}

static void on_event(vc_session *s, const vc_event *ev, void *arg)
{
    (void)s;
    vpart *vp = arg;
    struct gen_voxd *v = vp->v;
    switch (ev->kind) {
    case VC_EV_SDESC:
        pthread_mutex_lock(&v->mu);
        if (vp->described) {
            v->moved++; /* a later one: the benchmark never moves anybody */
        } else {
            vp->described = true;
            int rc = take_sdesc(v, vp->i, ev->sdesc);
            if (rc < 0) {
                v->failed++;
                setup_end_locked(v, rc);
            } else if (++v->ready == v->g->n) {
                setup_end_locked(v, 0);
            }
        }
        pthread_mutex_unlock(&v->mu);
        if (v->inflight) v->inflight--;
        launch(v);
        break;
    case VC_EV_RECONNECT:
        pthread_mutex_lock(&v->mu);
        v->reconnects++;
        pthread_mutex_unlock(&v->mu);
        break;
    case VC_EV_CLOSED:
        vp->s = NULL;
        pthread_mutex_lock(&v->mu);
        if (!vp->described) {
            v->failed++;
            if (v->setup_rc == 1)
                snprintf(v->why, sizeof v->why, "participant %u: %s (code %d, err %d)", vp->i,
                         ev->close_reason, ev->close_code, ev->err);
            setup_end_locked(v, ev->err ? ev->err : -EPROTO);
        } else if (!ev->by_us) {
            v->lost++; /* the node or the network ended a described session during the run */
            if (v->lost == 1)
                fprintf(stderr, "gen_voxd: participant %u lost its session: %s (code %d)\n", vp->i,
                        ev->close_reason, ev->close_code);
        }
        pthread_mutex_unlock(&v->mu);
        if (!vp->described && v->inflight) {
            v->inflight--;
            launch(v);
        }
        break;
    default:
        break;
    }
}

static void launch(struct gen_voxd *v)
{
    pthread_mutex_lock(&v->mu);
    bool go = v->setup_rc == 1;
    pthread_mutex_unlock(&v->mu);
    while (go && v->inflight < v->max_inflight && v->next < v->g->n) {
        uint32_t i = v->next++;
        const gen_part *gp = &v->g->parts[i];
        char guild[24], channel[24], user[24], session[24];
        if (v->guild_per_room)
            snprintf(guild, sizeof guild, "%" PRIu32, GEN_VOXD_GUILD_BASE + gp->group);
        else
            snprintf(guild, sizeof guild, "%s", v->guild);
        snprintf(channel, sizeof channel, "%" PRIu32, GEN_VOXD_CHANNEL_BASE + gp->group);
        snprintf(user, sizeof user, "%" PRIu32, GEN_VOXD_USER_BASE + i);
        snprintf(session, sizeof session, "bench-%" PRIu32, i);
        vc_session_config cfg = {
            .rpc_url = v->rpc_url,
            .rpc_secret = v->secret,
            .guild_id = guild,
            .channel_id = channel,
            .user_id = user,
            .session_id = session,
            .modes = {VC_MODE_AES_CM},
            .n_modes = 1,
            .resume = true, /* a WebSocket dropped without a close frame is resumed */
        };
        v->p[i] = (vpart){.v = v, .i = i};
        int rc = vc_session_start(v->net, &cfg, on_event, &v->p[i], &v->p[i].s);
        if (rc < 0) {
            pthread_mutex_lock(&v->mu);
            snprintf(v->why, sizeof v->why, "participant %u: vc_session_start: %s", i,
                     strerror(-rc));
            setup_end_locked(v, rc);
            pthread_mutex_unlock(&v->mu);
            return;
        }
        v->inflight++;
    }
}

static void on_progress(uv_timer_t *t)
{
    struct gen_voxd *v = t->data;
    launch(v); /* the first call, and a safety net */
    if (!v->g->verbose) return;
    pthread_mutex_lock(&v->mu);
    if (v->setup_rc == 1)
        fprintf(stderr, "gen_voxd: %.1fs ready=%u failed=%u in flight=%u\n",
                (double)(now_ns() - v->t0) / 1e9, v->ready, v->failed, v->inflight);
    pthread_mutex_unlock(&v->mu);
}

static void net_done(void *arg)
{
    struct gen_voxd *v = arg;
    v->net = NULL;
}

/* Our own handles go first: vc_net_shutdown() waits until the loop holds nothing but lws'. */
static void on_stop(uv_async_t *a)
{
    struct gen_voxd *v = a->data;
    uv_timer_stop(&v->progress);
    uv_close((uv_handle_t *)&v->progress, NULL);
    uv_close((uv_handle_t *)&v->stop, NULL);
    vc_net_shutdown(v->net, net_done, v); /* closes every session with 1000 first */
}

static void *loop_main(void *arg)
{
    struct gen_voxd *v = arg;
    uv_run(&v->loop, UV_RUN_DEFAULT);
    int rc = uv_loop_close(&v->loop);
    pthread_mutex_lock(&v->mu);
    v->loop_done = true;
    if (rc != 0) fprintf(stderr, "gen_voxd: the loop still held handles at its end\n");
    pthread_cond_broadcast(&v->cv);
    pthread_mutex_unlock(&v->mu);
    return NULL;
}

static void timespec_at(struct timespec *ts, int64_t mono_ns)
{
    ts->tv_sec = mono_ns / 1000000000LL;
    ts->tv_nsec = mono_ns % 1000000000LL;
}

static void v_free(struct gen_voxd *v)
{
    pthread_mutex_destroy(&v->mu);
    pthread_cond_destroy(&v->cv);
    free(v->p);
    free(v->secret);
    free(v->guild);
    free(v);
}

int gen_voxd_setup(gen_ctx *g, const gen_voxd_opts *o, gen_voxd **out)
{
    *out = NULL;
    struct gen_voxd *v = xcalloc(1, sizeof *v);
    v->g = g;
    v->p = xcalloc(g->n, sizeof *v->p);
    v->secret = xstrdup(o->secret);
    v->guild = xstrdup(o->guild ? o->guild : "1");
    v->guild_per_room = o->guild_per_room;
    const char *env = getenv("GEN_VOXD_INFLIGHT");
    long mi = env ? strtol(env, NULL, 10) : GEN_VOXD_INFLIGHT;
    v->max_inflight = mi >= 1 && mi <= 4096 ? (uint32_t)mi : GEN_VOXD_INFLIGHT;
    v->setup_rc = 1;
    snprintf(v->rpc_url, sizeof v->rpc_url, "http://%s:%u", o->rpc_host, (unsigned)o->rpc_port);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&v->cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&v->mu, NULL);

    /* Everything is set up here, before the loop thread exists; from its start on only it
     * touches the loop, the net and the sessions. */
    if (uv_loop_init(&v->loop) != 0) {
        v_free(v);
        return -ENOMEM;
    }
    int rc = vc_net_new(&v->loop, &v->net);
    if (rc < 0) {
        uv_loop_close(&v->loop);
        v_free(v);
        return rc;
    }
    uv_async_init(&v->loop, &v->stop, on_stop);
    v->stop.data = v;
    uv_timer_init(&v->loop, &v->progress);
    v->progress.data = v;
    v->t0 = now_ns();
    uv_timer_start(&v->progress, on_progress, 0, 1000);
    if (pthread_create(&v->thread, NULL, loop_main, v) != 0) {
        fprintf(stderr, "gen_voxd: cannot start the loop thread\n");
        exit(2); /* a benchmark tool: nothing to unwind */
    }
    *out = v;

    /* 20 s, plus 10 ms per participant (1,000 sessions take well under a second here) */
    int64_t deadline = v->t0 + 20000000000LL + (int64_t)g->n * 10000000LL;
    struct timespec ts;
    timespec_at(&ts, deadline);
    pthread_mutex_lock(&v->mu);
    while (v->setup_rc == 1)
        if (pthread_cond_timedwait(&v->cv, &v->mu, &ts) == ETIMEDOUT) {
            snprintf(v->why, sizeof v->why, "%u of %u sessions described after %.0f s", v->ready,
                     g->n, (double)(deadline - v->t0) / 1e9);
            setup_end_locked(v, -ETIMEDOUT);
        }
    rc = v->setup_rc;
    if (rc == 0 && g->verbose)
        fprintf(stderr, "gen_voxd: %u sessions described in %.2f s\n", v->ready,
                (double)(now_ns() - v->t0) / 1e9);
    if (rc < 0) fprintf(stderr, "gen_voxd: setup failed: %s\n", v->why);
    pthread_mutex_unlock(&v->mu);
    if (rc < 0) {
        gen_voxd_teardown(v);
        *out = NULL;
    }
    return rc;
}

void gen_voxd_teardown(gen_voxd *v)
{
    if (!v) return;
    uv_async_send(&v->stop);
    struct timespec ts;
    timespec_at(&ts, now_ns() + GEN_VOXD_STOP_S * 1000000000LL);
    pthread_mutex_lock(&v->mu);
    while (!v->loop_done)
        if (pthread_cond_timedwait(&v->cv, &v->mu, &ts) == ETIMEDOUT) break;
    bool done = v->loop_done;
    if (v->lost || v->reconnects || v->moved)
        fprintf(stderr,
                "gen_voxd: during the run %u sessions were lost, %u WebSockets resumed, %u "
                "Session Descriptions re-sent\n",
                v->lost, v->reconnects, v->moved);
    pthread_mutex_unlock(&v->mu);
    if (!done) {
        /* the node did not answer the closes in time: leave the thread to the process's exit */
        fprintf(stderr, "gen_voxd: sessions still closing after %d s; not waiting\n",
                GEN_VOXD_STOP_S);
        return;
    }
    pthread_join(v->thread, NULL);
    v_free(v);
}

uint32_t gen_voxd_lost(gen_voxd *v)
{
    if (!v) return 0;
    pthread_mutex_lock(&v->mu);
    uint32_t n = v->lost;
    pthread_mutex_unlock(&v->mu);
    return n;
}
