/*
 * signalling — the pure core of voxd: voice states, voice server grants, DM/group-DM calls,
 * the RPC method dispatch and the event outbox.
 *
 * No I/O, no threads, no clock of its own: the node feeds it request bodies, the current time
 * (milliseconds since the Unix epoch) and randomness (injected, OpenSSL by default), and takes
 * back *effects*: RPC replies, events to publish and writes to persist. Every function here is
 * called from the signalling loop thread only.
 *
 * One "step" is one call to sig_rpc_submit(), sig_tick(), sig_grant_redeem() or another mutating
 * entry point. Its effects accumulate in the core until the node takes them with
 * sig_effects_take(). A durable node first commits the writes of a batch of steps, then publishes
 * their events into the outbox and sends their replies: so nothing is reported done, or broadcast,
 * before it is durable. The in-memory node applies them at once.
 *
 * Ownership: objects returned by _new are freed by _free; strings in effects are owned by the
 * effects struct and freed by sig_effects_free().
 */
#ifndef VOXD_SIG_H
#define VOXD_SIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "rtp/rtp.h"

#define SIG_NEVER INT64_MAX

typedef struct sig_core sig_core;

typedef int (*sig_random_fn)(void *buf, size_t len, void *ud); /* 0 or -errno */

typedef struct sig_config {
    const char *node_id;               /* identity in the region, bound into grants */
    const char *region;                /* region name, reported by node.status */
    const char *endpoint;              /* host:port that grants name as `endpoint` */
    const unsigned char *token_secret; /* HS256 key shared by the region */
    size_t token_secret_len;
    int64_t grant_ttl_ms;        /* token lifetime (default 120 s) */
    int64_t pending_timeout_ms;  /* pending join gate (default 30 s) */
    int64_t ring_timeout_ms;     /* per rung user (default 30 s) */
    int64_t call_idle_ms;        /* nobody connected, nobody ringing (default 120 s) */
    int64_t join_hold_ms;        /* DM join waiting for its call (default 3 s) */
    int64_t idempotency_ttl_ms;  /* how long a request_id's reply is remembered (default 10 min) */
    size_t idempotency_max;      /* and how many at most (default 100000) */
    unsigned max_conns_per_user; /* per guild / per DM call (default 5) */
    sig_random_fn random;        /* CSPRNG; NULL = OpenSSL RAND_bytes */
    void *random_ud;
} sig_config;

/* Fills every field with its default (strings NULL). */
void sig_config_defaults(sig_config *cfg);

sig_core *sig_core_new(const sig_config *cfg); /* copies cfg (and its strings) */
void sig_core_free(sig_core *c);

/* ---- RPC ------------------------------------------------------------------------------------
 * The node checks the bearer secret and the body size (it owns HTTP); everything inside the body
 * is the core's. `req` is the node's handle for the HTTP request; the reply for it comes out in the
 * effects, either from this same step or later (a DM join held for its call, see docs/rpc.md). */
void sig_rpc_submit(sig_core *c, uint64_t req, const char *body, size_t len, int64_t now_ms);
/* Whether a body names a method that changes state (false for reads and for bodies that do not
 * parse, which fail at once anyway). A durable node parks changes while its store is down and
 * still answers reads. */
bool sig_rpc_mutates(const char *body, size_t len);
/* The HTTP request went away: forget a deferred reply for it (no effect if there is none). */
void sig_rpc_cancel(sig_core *c, uint64_t req);

/* An error body in the RPC's shape: {"error":{"code":...,"message":...}}; caller frees. */
char *sig_error_body(const char *code, const char *message);

/* What node.status reports as "health": "ok", "degraded", "draining" or "starting" (a static
 * string; the node knows its database and shutdown state, the core does not). */
void sig_set_health(sig_core *c, const char *health);

/* ---- time ------------------------------------------------------------------------------------ */
int64_t sig_next_deadline(const sig_core *c); /* SIG_NEVER when nothing is armed */
void sig_tick(sig_core *c, int64_t now_ms);   /* fire everything due at or before now_ms */

/* ---- the voice endpoint ------------------------------------------------------------------------
 * Redeems a grant token presented in Identify: checks its signature, expiry, node binding, that
 * its connection exists, belongs to its user and session and is in its room, and consumes its
 * nonce (single use). Returns 0 and fills `out`, or one of:
 *   -EBADMSG       malformed token (not a compact HS256 JWT with our claims)
 *   -EKEYREJECTED  bad signature
 *   -EKEYEXPIRED   expired
 *   -EALREADY      nonce already used (replay)
 *   -EXDEV         issued for another node
 *   -ENOENT        its connection no longer exists
 *   -EACCES        user, session or room do not match the connection */
typedef struct sig_identity {
    char connection_id[32];
    char session_id[132];
    char room[64];
    uint64_t user_id;
    uint64_t guild_id; /* 0 in a DM call */
    uint64_t channel_id;
} sig_identity;
int sig_grant_redeem(sig_core *c, const char *token, int64_t now_ms, sig_identity *out);

/* The connection's media transport is up: confirms a pending join (idempotent).
 * -ENOENT if the connection does not exist. */
int sig_conn_confirm(sig_core *c, const char *connection_id, int64_t now_ms);

/* What the media plane needs to know of a connection: its room (guild 0 in a DM call) and the
 * flags the relay enforces. 0, or -ENOENT if the connection does not exist. Not a step. */
typedef struct sig_conn_view {
    uint64_t user_id, guild_id, channel_id;
    bool mute, deaf, self_mute, self_deaf, suppress, pending;
} sig_conn_view;
int sig_conn_get(const sig_core *c, const char *connection_id, sig_conn_view *out);

/* The connection's transport has been dead for the reap time (spec §2 "no ghosts" (b)): removes
 * it with one leave broadcast and counts a transport reap. 0 or -ENOENT. A step. */
int sig_conn_reap_transport(sig_core *c, const char *connection_id, int64_t now_ms);
/* The client said goodbye on its transport (a voice WebSocket closed with 1000, D27): removes the
 * connection with one leave broadcast, as a reap does, but it is no ghost and is not counted as
 * one. 0 or -ENOENT. A step. */
int sig_conn_goodbye(sig_core *c, const char *connection_id, int64_t now_ms);

/* ---- voice WebSocket messages (docs/protocol.md) ---------------------------------------------
 * Decodes and validates one client text message of the voice WebSocket for a connection in
 * `state`, without acting on it: the node does the actions (redeem the token, open or resume the
 * media session, acknowledge). Pure: no I/O, no core needed. The rules, in order:
 *   - over SIG_VMSG_MAX bytes, not JSON, not exactly {"op": int, "d"?: any} (duplicate keys
 *     refused): 4002;
 *   - op 3 Heartbeat: accepted in every state (`heartbeat_d`, NULL when d is absent);
 *   - op 0 Identify: 4005 once identified (READY or MEDIA); d must be exactly {"token": string},
 *     else 4004;
 *   - op 7 Resume: 4005 once identified; d must be exactly {"connection_id", "session_id",
 *     "resume_token"} (strings), else 4002;
 *   - op 1 Select Protocol, op 5 Speaking, any other op: 4003 before Identify (HELLO);
 *   - op 1: 4005 in MEDIA (a protocol was selected); d.protocol must be a string (4002),
 *     "webrtc" or "srtp" (4012); webrtc: d must be exactly {"protocol", "sdp": string} (4002; the
 *     offer is parsed by the media plane); srtp: d must be exactly {"protocol", "modes"} with 1–8
 *     strings in modes (4002); `mode` is the first supported one in the client's order, none: 4016;
 *   - op 5: d must be exactly {"speaking": bool} (4002);
 *   - any other op: 4001.
 * Returns 0 with out->op and that op's fields set, or -EPROTO with out->close_code and
 * out->close_reason (a static string, the close frame's reason) set. Strings and heartbeat_d
 * borrow from the parsed message owned by *out: release it with sig_vmsg_clear() in both cases. */
#define SIG_VMSG_MAX 16384

typedef enum sig_vstate {
    SIG_VSTATE_HELLO, /* connected, not identified */
    SIG_VSTATE_READY, /* identified (Ready sent), no protocol selected */
    SIG_VSTATE_MEDIA, /* a media session: selected a protocol, or resumed */
} sig_vstate;

typedef enum sig_vop {
    SIG_VOP_IDENTIFY = 0,
    SIG_VOP_SELECT_PROTOCOL = 1,
    SIG_VOP_HEARTBEAT = 3,
    SIG_VOP_SPEAKING = 5,
    SIG_VOP_RESUME = 7,
} sig_vop;

typedef struct sig_vmsg {
    sig_vop op;
    int close_code;           /* refused: the WebSocket close code (4001 …), else 0 */
    const char *close_reason; /* refused: static reason text, else NULL */
    const char *token;        /* Identify */
    const char *protocol;     /* Select Protocol: "srtp" or "webrtc" */
    const char *sdp;          /* Select Protocol webrtc: the offer (not parsed here) */
    rtp_srtp_profile mode;    /* Select Protocol: the chosen encryption mode */
    const char *connection_id, *session_id, *resume_token; /* Resume */
    bool speaking;                                         /* Speaking */
    json_t *heartbeat_d; /* Heartbeat: d (borrowed), NULL when absent */
    json_t *root;        /* owned: the parsed message */
} sig_vmsg;

int sig_vmsg_decode(const char *text, size_t len, sig_vstate state, sig_vmsg *out);
void sig_vmsg_clear(sig_vmsg *m); /* releases the parsed message; NULL and cleared are fine */

/* ---- effects ----------------------------------------------------------------------------------
 */
typedef struct sig_reply {
    uint64_t req;
    int status;         /* HTTP status */
    const char *method; /* static string: the method name, or "invalid" when unparsable */
    char *body;         /* JSON, owned */
    size_t len;
} sig_reply;

typedef enum sig_write_kind {
    SIG_W_CONN_PUT,   /* key = connection_id, row = the voice state and its internal fields */
    SIG_W_CONN_DEL,   /* key = connection_id */
    SIG_W_CALL_PUT,   /* key = channel_id, row = the call with deadlines and history */
    SIG_W_CALL_DEL,   /* key = channel_id */
    SIG_W_NONCE_PUT,  /* key = nonce, row = {"exp":ms,"connection_id":...} */
    SIG_W_NONCE_DEL,  /* key = nonce (used or expired) */
    SIG_W_SERVER_PUT, /* key = "guild:user", row = {"mute":b,"deaf":b} (absent = both false) */
    SIG_W_SERVER_DEL,
    SIG_W_REQUEST_PUT, /* key = request_id, row = {"fingerprint":hex,"status":N,"method":s,
                          "body":s,"expires":ms}: a remembered RPC reply (idempotency) */
} sig_write_kind;

typedef struct sig_write {
    sig_write_kind kind;
    char *key;   /* owned */
    json_t *row; /* owned reference, NULL for deletes */
    char *text;  /* owned, may be NULL: the row already as compact JSON (same content) */
} sig_write;

typedef struct sig_effects {
    sig_reply *replies;
    size_t nreplies;
    char **events; /* each `"event":"NAME","scope":{...},"data":{...}` (no braces, no seq) */
    size_t nevents;
    sig_write *writes;
    size_t nwrites;
} sig_effects;

/* Moves every effect accumulated since the last take into *out (which it overwrites). The caller
 * may take ownership of individual strings (events[i], replies[i].body) by setting them to NULL
 * before sig_effects_free(). */
void sig_effects_take(sig_core *c, sig_effects *out);
void sig_effects_free(sig_effects *fx); /* frees the contents (NULL entries skipped), not fx */

/* ---- recovery -----------------------------------------------------------------------------------
 * A durable node rebuilds the core from the rows it persisted (the `row`s of the PUT writes, keyed
 * as there): call sig_core_restore() for each row in any order, then sig_core_restore_done() once,
 * then sig_tick(now) so that deadlines that passed while the node was down fire at once. Timers
 * resume at their original absolute deadlines. Returns 0, or -EINVAL for a row that does not parse
 * (skip it and log it), or -EEXIST for a duplicate key. Restoring emits no effects. */
int sig_core_restore(sig_core *c, sig_write_kind kind, const char *key, json_t *row);
void sig_core_restore_done(sig_core *c);

/* ---- counters and gauges for /metrics -------------------------------------------------------- */
enum {
    SIG_TOKEN_FAIL_MALFORMED,
    SIG_TOKEN_FAIL_SIGNATURE,
    SIG_TOKEN_FAIL_EXPIRED,
    SIG_TOKEN_FAIL_REPLAYED,
    SIG_TOKEN_FAIL_NODE,
    SIG_TOKEN_FAIL_CONNECTION,
    SIG_TOKEN_FAIL_MISMATCH,
    SIG_TOKEN_FAIL__N
};
extern const char *const sig_token_fail_names[SIG_TOKEN_FAIL__N]; /* "malformed", ... */

typedef struct sig_stats {
    uint64_t conns_pending, conns_active; /* gauges */
    uint64_t calls_ringing, calls_active; /* gauges: calls with someone ringing / without */
    uint64_t ring_answered, ring_declined, ring_timed_out;
    uint64_t grants_issued, grants_redeemed, grants_refused;
    uint64_t token_fail[SIG_TOKEN_FAIL__N];
    uint64_t reaped_pending, reaped_transport; /* ghost reaps by cause */
    uint64_t calls_created, calls_ended;
    uint64_t idempotent_replays;
    uint64_t held_joins; /* gauge: DM joins waiting for their call */
} sig_stats;
void sig_get_stats(const sig_core *c, sig_stats *out);

/* ---- the event outbox --------------------------------------------------------------------------
 * Events published by the node after their step is durable. Each gets the next seq (strictly
 * increasing, starting at 1); consumers (gateways, by name) read from any retained seq, ack, and
 * events acked by every known consumer are pruned. At most `retention` events are kept: beyond it
 * the oldest go even if unacked, and a consumer resuming before them is told (a gap). */
typedef struct sig_outbox sig_outbox;
sig_outbox *sig_outbox_new(size_t retention, uint64_t next_seq);
void sig_outbox_free(sig_outbox *o);
/* Takes ownership of `fragment` (as in sig_effects.events); returns the event's seq. */
uint64_t sig_outbox_publish(sig_outbox *o, char *fragment);
/* A durable node numbers events before committing them: the complete text {"seq":N,<fragment>}
 * (caller frees), then publishes that text once committed (taken; its seq must be the next one:
 * -EINVAL otherwise, and the text is freed). */
char *sig_event_text(uint64_t seq, const char *fragment);
uint64_t sig_outbox_next_seq(const sig_outbox *o);
int sig_outbox_publish_text(sig_outbox *o, uint64_t seq, char *text);
uint64_t sig_outbox_last_seq(const sig_outbox *o);  /* 0 if nothing was ever published */
uint64_t sig_outbox_first_seq(const sig_outbox *o); /* oldest retained; last+1 when empty */
/* The complete event JSON {"seq":N,...} or NULL when seq is pruned or not yet published. */
const char *sig_outbox_get(const sig_outbox *o, uint64_t seq, size_t *len);
/* Registers a consumer (idempotent); returns -ENOSPC past 64 consumers. */
int sig_outbox_consumer(sig_outbox *o, const char *name);
/* Records consumer's ack (monotonic; an ack beyond last_seq is clamped) and prunes. */
int sig_outbox_ack(sig_outbox *o, const char *name, uint64_t seq);
size_t sig_outbox_retained(const sig_outbox *o);
uint64_t sig_outbox_acked(const sig_outbox *o); /* min ack over consumers */

#endif
