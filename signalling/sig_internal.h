/*
 * signalling/sig_internal.h — the core's internal data model, shared by the files of the module
 * and by nobody else.
 *
 *   sig_conn   one voice connection = one voice state. Indexed by connection id (core->conns), by
 *              user (sig_user.conns) and by room (sig_room.conns).
 *   sig_room   one channel with connections in it: (guild_id, channel_id), guild_id 0 = a DM call.
 *              Counts its distinct users for user_limit.
 *   sig_call   one DM/group-DM call, keyed by channel id; its participants are the connections in
 *              the room (0, channel_id).
 *   timers     one binary min-heap of (deadline, kind, key). Entries are validated lazily when they
 *              fire: an entry whose object is gone or whose deadline moved is ignored.
 */
#ifndef VOXD_SIG_INTERNAL_H
#define VOXD_SIG_INTERNAL_H

#include "lib/hmap.h"
#include "signalling/sig.h"

#include <stdbool.h>

#define SIG_CONN_ID_LEN 22 /* 16 random bytes in base64url */

typedef struct sig_room sig_room;
typedef struct sig_user sig_user;

typedef struct sig_conn {
    char id[SIG_CONN_ID_LEN + 1];
    uint64_t user_id, guild_id, channel_id;
    char *session_id;
    json_t *member; /* NULL when null */
    bool mute, deaf, self_mute, self_deaf, self_video, self_stream, is_mobile, suppress;
    bool can_speak, can_stream, can_video;
    json_t *viewer_keys; /* array of strings */
    uint64_t version;
    bool pending;
    int64_t pending_deadline;
    int64_t created_at;
    sig_room *room;
    sig_user *user;
    struct sig_conn *room_prev, *room_next;
    struct sig_conn *user_prev, *user_next;
} sig_conn;

struct sig_room {
    uint64_t guild_id, channel_id;
    sig_conn *conns;
    size_t nconns;
    hmap *users; /* user id -> (uintptr_t) number of connections */
};

struct sig_user {
    uint64_t user_id;
    sig_conn *conns;
    size_t nconns;
};

typedef struct sig_ring {
    uint64_t user_id;
    int64_t deadline;
} sig_ring;

typedef struct sig_call {
    uint64_t channel_id, message_id;
    char *region; /* NULL = null */
    uint64_t *recipients;
    size_t nrecipients;
    sig_ring *rings;
    size_t nrings;
    uint64_t *history; /* users ever connected, in join order */
    size_t nhistory;
    char *created_at;      /* ISO 8601 */
    int64_t idle_deadline; /* SIG_NEVER when not armed */
    char *last_sig;        /* content of the last CALL_CREATE/UPDATE: dedupe */
    bool ending;
} sig_call;

typedef struct sig_nonce {
    int64_t exp_ms;
    char connection_id[SIG_CONN_ID_LEN + 1];
} sig_nonce;

enum sig_timer_kind { T_PENDING, T_RING, T_IDLE, T_HOLD, T_NONCE };

typedef struct sig_timer {
    int64_t deadline;
    uint64_t aux; /* T_RING: user id; T_HOLD: request handle */
    uint8_t kind;
    char key[31]; /* connection id, channel id or nonce */
} sig_timer;

typedef struct sig_held {
    uint64_t req;
    uint64_t channel_id;
    int64_t deadline;
    json_t *params;
    char *request_id;
    uint8_t fingerprint[32];
    struct sig_held *next;
} sig_held;

typedef struct sig_idem {
    char *request_id;
    uint8_t fingerprint[32];
    int status; /* 0 = in progress (held) */
    const char *method;
    char *body;
    size_t len;
    int64_t expires;
    struct sig_idem *next; /* FIFO by expiry */
} sig_idem;

struct sig_core {
    sig_config cfg;
    hmap *conns;  /* connection id -> sig_conn */
    hmap *rooms;  /* (guild, channel) -> sig_room */
    hmap *users;  /* user id -> sig_user */
    hmap *calls;  /* channel id -> sig_call */
    hmap *nonces; /* nonce -> sig_nonce */
    hmap *server; /* "guild:user" -> (uintptr_t) bit0 mute, bit1 deaf */
    sig_timer *heap;
    size_t nheap, capheap;
    sig_held *held;
    char *raw_result; /* a method's reply body already serialized (sig_set_raw_result) */
    hmap *idem;       /* request id -> sig_idem */
    sig_idem *idem_head, *idem_tail;
    sig_effects fx;
    size_t cap_replies, cap_events, cap_writes;
    sig_stats st;
    int64_t started_at;
    const char *health; /* static */
};

/* sig_core.c: effects, timers, randomness */
void sig_emit_reply(sig_core *c, uint64_t req, int status, const char *method, char *body);
void sig_emit_event(sig_core *c, const char *name, json_t *scope, json_t *data); /* steals both */
/* sig_emit_write with the row also as compact JSON text (owned; the same content as row). */
void sig_emit_write_text(sig_core *c, sig_write_kind kind, const char *key, json_t *row,
                         char *text);
/* The same with the data already serialized (compact JSON text of len bytes); steals scope. */
void sig_emit_event_text(sig_core *c, const char *name, json_t *scope, const char *data,
                         size_t len);
/* A method that returns 200 may hand over its whole reply body ({"result":...}, compact JSON,
 * owned) instead of a result object: then it leaves *result NULL. */
void sig_set_raw_result(sig_core *c, char *body);
/* json_dumps(j, JSON_COMPACT) into one buffer grown in place (no strbuffer copies); aborts on
 * failure (only out of memory: j is a container the core built). */
char *sig_dumps(const json_t *j);
void sig_emit_write(sig_core *c, sig_write_kind kind, const char *key,
                    json_t *row); /* steals row */
void sig_timer_arm(sig_core *c, int kind, const char *key, uint64_t aux, int64_t deadline);
int sig_random(sig_core *c, void *buf, size_t n);

/* sig_voice.c */
json_t *sig_conn_json(const sig_conn *k); /* the voice state */
json_t *sig_conn_row(const sig_conn *k);  /* voice state + internal fields */
sig_room *sig_room_get(sig_core *c, uint64_t guild, uint64_t channel);
void sig_conn_persist(sig_core *c, const sig_conn *k); /* SIG_W_CONN_PUT */
/* Removes a connection: version+1, broadcast as a leave, call bookkeeping. */
void sig_conn_remove(sig_core *c, sig_conn *k, const char *reason, int64_t now);
void sig_voice_fire_pending(sig_core *c, const char *conn_id, int64_t deadline, int64_t now);
json_t *sig_states_json(sig_core *c, sig_conn **v, size_t n); /* sorted array */
/* Links a fully filled connection into the indexes (used by connect and by restore). */
void sig_conn_link(sig_core *c, sig_conn *k);

/* sig_call.c */
sig_call *sig_call_get(sig_core *c, uint64_t channel_id);
json_t *sig_call_scope(const sig_call *call);
bool sig_call_is_recipient(const sig_call *call, uint64_t user);
void sig_call_on_join(sig_core *c, sig_call *call, sig_conn *k, int64_t now);
void sig_call_on_leave(sig_core *c, sig_call *call, int64_t now);
void sig_call_fire_ring(sig_core *c, uint64_t channel, uint64_t user, int64_t deadline,
                        int64_t now);
void sig_call_fire_idle(sig_core *c, uint64_t channel, int64_t deadline, int64_t now);
void sig_call_free(sig_call *call);
char *sig_call_visible_sig(sig_core *c, const sig_call *call);

/* sig_grant.c */
/* Mints a grant for k: returns the VOICE_SERVER_UPDATE payload and emits nothing. */
json_t *sig_grant_issue(sig_core *c, const sig_conn *k, int64_t now);
void sig_grant_fire_nonce(sig_core *c, const char *nonce, int64_t deadline);

/* sig_rpc.c: idempotency records (restore) */
int sig_rpc_restore_request(sig_core *c, const char *request_id, json_t *row);

/* sig_rpc.c: deferred join bookkeeping */
void sig_rpc_fire_hold(sig_core *c, uint64_t req, int64_t now);
void sig_rpc_release_held(sig_core *c, uint64_t channel_id, int64_t now);

/* methods (sig_voice.c / sig_call.c): each validates its params and emits its reply body.
 * Return: HTTP status, with *result (200) or *err filled. */
typedef struct sig_err {
    const char *code;
    char message[200];
    char field[64];
} sig_err;

typedef int (*sig_method_fn)(sig_core *c, json_t *params, int64_t now, json_t **result, sig_err *e);

/* parameter validation (sig_rpc.c) */
typedef struct sig_params {
    json_t *obj;
    const char *seen[24];
    size_t nseen;
    sig_err *e;
} sig_params;
void sp_init(sig_params *p, json_t *obj, sig_err *e);
int sp_snowflake(sig_params *p, const char *key, bool required, uint64_t *out); /* 1 present */
int sp_snowflake_or_null(sig_params *p, const char *key, uint64_t *out); /* 0 = null/absent */
int sp_bool(sig_params *p, const char *key, bool *out);                  /* 1 present */
int sp_int(sig_params *p, const char *key, bool required, long long lo, long long hi,
           long long *out);
int sp_string(sig_params *p, const char *key, bool required, size_t maxlen, const char **out);
int sp_json(sig_params *p, const char *key, json_t **out); /* any value; borrowed */
int sp_snowflake_array(sig_params *p, const char *key, bool required, size_t maxn, uint64_t **out,
                       size_t *n); /* returns 1 if present; *out malloc'd */
int sp_done(sig_params *p);        /* refuses unknown keys */
int sig_fail(sig_err *e, int status, const char *code, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
#define SP_ERR (-1)

int sig_m_voice_connect(sig_core *c, json_t *params, int64_t now, json_t **result, sig_err *e);
int sig_m_voice_update(sig_core *c, json_t *params, int64_t now, json_t **result, sig_err *e);
int sig_m_voice_move(sig_core *c, json_t *params, int64_t now, json_t **result, sig_err *e);
int sig_m_voice_disconnect(sig_core *c, json_t *params, int64_t now, json_t **result, sig_err *e);
int sig_m_voice_set_server_state(sig_core *c, json_t *params, int64_t now, json_t **result,
                                 sig_err *e);
int sig_m_voice_set_permissions(sig_core *c, json_t *params, int64_t now, json_t **result,
                                sig_err *e);
int sig_m_voice_get(sig_core *c, json_t *params, int64_t now, json_t **result, sig_err *e);
int sig_m_session_gone(sig_core *c, json_t *params, int64_t now, json_t **result, sig_err *e);
int sig_m_call_create(sig_core *c, json_t *params, int64_t now, json_t **result, sig_err *e);
int sig_m_call_ring(sig_core *c, json_t *params, int64_t now, json_t **result, sig_err *e);
int sig_m_call_stop_ringing(sig_core *c, json_t *params, int64_t now, json_t **result, sig_err *e);
int sig_m_call_update_region(sig_core *c, json_t *params, int64_t now, json_t **result, sig_err *e);
int sig_m_call_get(sig_core *c, json_t *params, int64_t now, json_t **result, sig_err *e);
int sig_m_call_delete(sig_core *c, json_t *params, int64_t now, json_t **result, sig_err *e);
int sig_m_node_status(sig_core *c, json_t *params, int64_t now, json_t **result, sig_err *e);

/* The DM join held for its call: voice.connect returns this to ask for a hold. */
#define SIG_HOLD 1

#endif
