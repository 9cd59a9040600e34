/*
 * gen — the relay load generator's internals (tests/bench/relay_gen.c is its main and media
 * phase). Two phases:
 *
 *   setup  one function per relay kind fills, for every participant, where to send (the relay's
 *          address and port), the SSRC to send with, the key it protects with (send_key) and the
 *          key the relay protects towards it with (recv_key). The core has already chosen the
 *          participant's own address (a distinct loopback address per participant, one shared
 *          UDP port), its room (group) and whether it speaks.
 *   media  common to all relays: relay_gen.c paces, protects, sends, receives, unprotects and
 *          counts. It never calls into a setup module.
 *
 * Setup modules: gen_ng.c (rtpengine over its ng control protocol), gen_voxd.c (voxd's RPC and
 * voice WebSocket; it keeps the WebSockets alive through the run on a thread of its own), and
 * the static topology of rb.h (in relay_gen.c) for the ceiling relay and the bare worker host.
 * Setup runs before the media threads start and may block (a benchmark tool, not the node).
 */
#ifndef VOXD_RB_GEN_H
#define VOXD_RB_GEN_H

#include "tests/bench/relay/rb.h"

#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct gen_part {
    /* chosen by the core before setup */
    struct sockaddr_in src; /* our address: 127.x.y.z, the generator's port */
    uint32_t idx;
    uint32_t group; /* room (1:1 call) index */
    bool speaker;
    /* filled by setup */
    struct sockaddr_in relay; /* where this participant sends */
    uint32_t ssrc;
    uint8_t send_key[RB_KEY_LEN]; /* we protect with it */
    uint8_t recv_key[RB_KEY_LEN]; /* the relay protects towards us with it */
    uint8_t profile;              /* RB_PROFILE_*: 0 is AES_CM_128_HMAC_SHA1_80 */
    uint8_t n_slots;              /* voxd: the slot SSRCs packets arrive with; 0: not checked */
    uint32_t slot_ssrc[RB_MAX_SLOTS];
} gen_part;

typedef struct gen_ctx {
    gen_part *parts;
    uint32_t n;
    uint32_t room_size;
    uint32_t speakers_per_room;
    uint16_t port; /* the generator's UDP port (every participant's source port) */
    bool verbose;
} gen_ctx;

/* rtpengine: the ng control address (127.0.0.1:PORT). Every group must have exactly 2 members,
 * both of which speak. 0 or a negative errno (the reason is printed). */
int gen_ng_setup(gen_ctx *g, const struct sockaddr_in *ng);

/* voxd: RPC at rpc (with the bearer secret), voice WebSocket from each grant's endpoint. The
 * session stays alive (heartbeats) until gen_voxd_teardown(). */
typedef struct gen_voxd gen_voxd;
typedef struct gen_voxd_opts {
    const char *rpc_host;
    uint16_t rpc_port;
    const char *secret;  /* RPC bearer secret */
    const char *guild;   /* guild id for voice.connect */
    bool guild_per_room; /* instead: one guild per room (rooms spread over the node's workers) */
} gen_voxd_opts;
int gen_voxd_setup(gen_ctx *g, const gen_voxd_opts *o, gen_voxd **out);
void gen_voxd_teardown(gen_voxd *v); /* NULL is fine */
/* Described sessions the node (or the network) ended since setup: non-zero spoils the run. */
uint32_t gen_voxd_lost(gen_voxd *v);

/* Standard base64 with padding (RFC 4648 §4), for SDES inline keys and voxd's keys. */
void gen_b64_encode(const uint8_t *in, size_t n, char *out); /* out: 4 * ((n + 2) / 3) + 1 */
long gen_b64_decode(const char *in, size_t n, uint8_t *out, size_t cap); /* length or -EINVAL */

#endif
