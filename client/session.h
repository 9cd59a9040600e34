/*
 * client/session.h — the signalling half of a voice client: obtain a grant (voice.connect over the
 * node's RPC, or a token given), join the voice WebSocket (Hello, Identify or Resume, Ready,
 * heartbeats, Select Protocol, Session Description) and report what the node says afterwards
 * (Speaking, Client Connect/Disconnect, a re-sent Session Description, the close). The contract is
 * docs/protocol.md, "Media: the srtp transport".
 *
 * Two layers:
 *   - pure message parsing (vc_sdesc_parse, vc_b64_decode, vc_mode_*): no I/O, unit-tested;
 *   - vc_net + vc_session: libwebsockets client connections (HTTP for the RPC, WebSocket for
 *     /voice) on the caller's libuv loop. Event driven, no thread of its own: one vc_net (one lws
 *     context) carries any number of sessions, so a load generator runs hundreds in one process.
 *
 * Threads: everything here runs on the thread of the loop given to vc_net_new().
 * Ownership: vc_net_new() returns a net freed by vc_net_shutdown() (asynchronously: its `done`
 * callback says when the loop holds nothing of it any more). A session is created by
 * vc_session_start() and owned by the net; it reports through its callback and frees itself after
 * its last event, VC_EV_CLOSED (the caller must not touch it after that event).
 * Host names: endpoints and RPC URLs should be numeric addresses (lws resolves names
 * synchronously).
 */
#ifndef VOXD_VC_SESSION_H
#define VOXD_VC_SESSION_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- pure: messages ------------------------------------------------------------------------ */

#define VC_KEY_MAX   30 /* master key + salt: 30 bytes for AES_CM, 28 for GCM */
#define VC_MAX_SLOTS 8

/* Values equal rtp_srtp_profile's (rtp/rtp.h). */
typedef enum vc_mode {
    VC_MODE_AES_CM = 1, /* AES_CM_128_HMAC_SHA1_80, key 16 + salt 14 */
    VC_MODE_GCM = 2,    /* AEAD_AES_128_GCM, key 16 + salt 12 */
} vc_mode;

/* "AES_CM_128_HMAC_SHA1_80" / "AEAD_AES_128_GCM" (the protocol's names); NULL for others. */
const char *vc_mode_name(vc_mode m);
/* Accepts the protocol's names and the short "aes_cm" / "gcm". 0 or -EINVAL. */
int vc_mode_parse(const char *s, vc_mode *out);
/* Master key + salt length of a mode (30 or 28), 0 for an unknown mode. */
size_t vc_mode_key_len(vc_mode m);

/* Standard base64 (RFC 4648 §4) with padding. Returns the decoded length or -EINVAL (bad
 * character, bad padding, length not a multiple of 4) or -ENOSPC (more than cap bytes). */
long vc_b64_decode(const char *in, size_t n, uint8_t *out, size_t cap);

typedef struct vc_slot_desc {
    unsigned slot;
    uint32_t ssrc;
} vc_slot_desc;

/* A Session Description (op 4). */
typedef struct vc_sdesc {
    vc_mode mode;
    char address[64]; /* numeric IPv4 or IPv6 */
    uint16_t port;
    uint32_t ssrc; /* ours: what we send with */
    uint8_t payload_type;
    uint8_t level_ext_id; /* RFC 6464 one-byte extension id, 1–14 */
    uint8_t send_key[VC_KEY_MAX];
    uint8_t recv_key[VC_KEY_MAX];
    size_t key_len; /* vc_mode_key_len(mode) */
    unsigned n_slots;
    vc_slot_desc slots[VC_MAX_SLOTS];
} vc_sdesc;

/* Parses op 4's `d` strictly (every field of the contract, no other). 0, or -EINVAL with a
 * message naming the offending field in err (errlen bytes). */
int vc_sdesc_parse(const json_t *d, vc_sdesc *out, char *err, size_t errlen);

/* ---- the net: one lws context on a libuv loop ---------------------------------------------- */

typedef struct vc_net vc_net;

/* Creates the lws client context on `loop` (a uv_loop_t *). 0 with *out, or -ENOMEM / -EIO. */
int vc_net_new(void *loop, vc_net **out);
/* Destroys the context once every session has closed (call it after their VC_EV_CLOSED, or it
 * closes them first, without events), then calls done(arg). NULL is fine (done is not called). */
void vc_net_shutdown(vc_net *n, void (*done)(void *arg), void *arg);

/* ---- a session --------------------------------------------------------------------------------
 */

typedef struct vc_session vc_session;

typedef struct vc_session_config {
    /* a grant given: token and endpoint "HOST:PORT" ... */
    const char *token;
    const char *endpoint;
    /* ... or one obtained with voice.connect: POST rpc_url/rpc with the bearer secret */
    const char *rpc_url; /* "http://127.0.0.1:8700" */
    const char *rpc_secret;
    const char *guild_id; /* NULL: a DM call */
    const char *channel_id, *user_id, *session_id;
    /* media negotiation: modes in order of preference */
    vc_mode modes[2];
    unsigned n_modes;
    /* reopen the WebSocket with Resume (op 7) when it drops without a close frame */
    bool resume;
} vc_session_config;

typedef enum vc_event_kind {
    VC_EV_GRANT = 1,      /* voice.connect answered: token, endpoint, connection_id */
    VC_EV_HELLO,          /* heartbeat_interval */
    VC_EV_READY,          /* connection_id, user_id */
    VC_EV_SDESC,          /* sdesc (the first, or a later one: re-target its port) */
    VC_EV_SPEAKING,       /* slot, user_id (NULL: nobody), connection_id */
    VC_EV_CLIENT_CONNECT, /* user_id, connection_id */
    VC_EV_CLIENT_DISCONNECT,
    VC_EV_RESUMED,   /* after a Resume: the slot table and roster are sent again */
    VC_EV_RECONNECT, /* the WebSocket dropped; reconnecting to Resume */
    VC_EV_CLOSED,    /* the last event: close_code (0: no close frame), close_reason, err */
} vc_event_kind;

typedef struct vc_event {
    vc_event_kind kind;
    const vc_sdesc *sdesc;
    int slot;
    const char *user_id;
    const char *connection_id;
    const char *token, *endpoint;
    int64_t heartbeat_interval;
    int close_code;           /* the node's close code; 1000 when we closed; 0 when none */
    const char *close_reason; /* never NULL for VC_EV_CLOSED */
    bool by_us;               /* VC_EV_CLOSED: vc_session_close() asked for it */
    int err;                  /* VC_EV_CLOSED: 0, or the negative errno that ended the session */
} vc_event;

typedef void (*vc_session_cb)(vc_session *s, const vc_event *ev, void *arg);

/* Starts a session (strings are copied). 0 with *out, or -EINVAL (neither token+endpoint nor the
 * RPC fields, a malformed URL or endpoint). Later failures arrive as VC_EV_CLOSED with err. */
int vc_session_start(vc_net *n, const vc_session_config *cfg, vc_session_cb cb, void *arg,
                     vc_session **out);
/* Closes with 1000, a goodbye (the node removes the connection at once, D27); VC_EV_CLOSED
 * (by_us) follows once the node echoed the close, or after lws' 5 s close timeouts. Idempotent. */
void vc_session_close(vc_session *s);
/* Queues Speaking {"speaking":on} (advisory). 0, or -EAGAIN (queue full) / -ENOTCONN. */
int vc_session_speaking(vc_session *s, bool on);

#endif
