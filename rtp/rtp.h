/*
 * rtp — the packet-level code of the media relay: RFC 7983 demultiplexing of the one UDP port,
 * RTP parsing (RFC 3550) with RFC 8285 header extensions and the RFC 6464 audio level, RTCP
 * compound parsing, the slot rewrite of the selective forwarding unit, and the writing of the
 * relay's own RTP headers; and the forwarding decisions of a room (rtp_room, at the end).
 *
 * Pure code: no sockets, no threads, no clock, no allocation on the packet path (a room allocates
 * everything once, in rtp_room_create()). Every function works on bytes the
 * caller owns and on small structs the caller owns (stack, or embedded in its own objects); the
 * parsed contexts (rtp_pkt, rtp_rtcp) hold borrowed pointers into the caller's buffer and are valid
 * as long as it is. Nothing here keeps global state, so any thread may call any function; a given
 * rtp_slot is used by one thread at a time (the media worker that owns its listener).
 *
 * Untrusted input: every length is checked against the buffer. A refused packet gives a negative
 * errno (-EINVAL) and, through the optional `why`, a reason the caller can count (rtp_err_name()
 * for a metric label). The packet path is documented in docs/media.md.
 */
#ifndef VOXD_RTP_H
#define VOXD_RTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- demultiplexing (RFC 7983, updated by RFC 9443) ----------------------------------------- */

typedef enum rtp_kind {
    RTP_KIND_UNKNOWN = 0, /* drop */
    RTP_KIND_STUN,        /* first byte 0–3 */
    RTP_KIND_ZRTP,        /* 16–19: not supported, drop */
    RTP_KIND_DTLS,        /* 20–63 */
    RTP_KIND_TURN,        /* 64–79: TURN channel data, not supported, drop */
    RTP_KIND_RTP,         /* 128–191, second byte (marker masked) not in 64–95 */
    RTP_KIND_RTCP,        /* 128–191, second byte 192–223 (RFC 5761 payload types 64–95) */
} rtp_kind;

/* Classifies a datagram by its first byte (and, for RTP/RTCP, its second). Looks at no more than
 * two bytes; an empty datagram, or an RTP-range one of a single byte, is RTP_KIND_UNKNOWN. */
rtp_kind rtp_demux(const uint8_t *p, size_t n);
const char *rtp_kind_name(rtp_kind k);

/* ---- refusal reasons ------------------------------------------------------------------------ */

typedef enum rtp_err {
    RTP_OK = 0,
    RTP_ERR_TRUNCATED,  /* shorter than a header, CSRC list, extension or length field says */
    RTP_ERR_VERSION,    /* version is not 2 */
    RTP_ERR_PADDING,    /* padding count 0 or past the header / packet; RTCP padding not last */
    RTP_ERR_EXTENSION,  /* an RFC 8285 extension element runs past its block */
    RTP_ERR_RTCP_TYPE,  /* RTCP packet type outside 192–223 */
    RTP_ERR_RTCP_BODY,  /* RTCP body too short for its type and count, or a malformed SDES */
    RTP_ERR_SLOT_STALE, /* slot: a packet older than its source's first on this slot */
    RTP_ERR_COUNT_
} rtp_err;

const char *rtp_err_name(rtp_err e); /* "truncated", "bad_version", … (static strings) */

/* ---- RTP ------------------------------------------------------------------------------------ */

#define RTP_HDR_MIN 12

/* A parsed RTP packet. All pointers point into the parsed buffer; `csrc`, `ext` and `payload`
 * are NULL when their length is 0. Layout: data[0, hdr_len) header (fixed 12 bytes, CSRCs,
 * extension), then payload_len bytes of payload, then pad_len bytes of padding, = len. */
typedef struct rtp_pkt {
    const uint8_t *data;
    size_t len;
    uint8_t version; /* always 2 after a successful parse */
    bool padding;
    bool extension;
    uint8_t cc; /* CSRC count */
    bool marker;
    uint8_t pt; /* payload type, 0–127 */
    uint16_t seq;
    uint32_t ts;
    uint32_t ssrc;
    const uint8_t *csrc;  /* cc big-endian 32-bit words */
    uint16_t ext_profile; /* 0xBEDE one-byte, 0x100x two-byte, anything else opaque */
    const uint8_t *ext;   /* extension data after its 4-byte header */
    size_t ext_len;       /* a multiple of 4 */
    size_t hdr_len;
    const uint8_t *payload;
    size_t payload_len;
    uint8_t pad_len;
} rtp_pkt;

/* Parses p[0, n) into *out. 0, or -EINVAL with *why (if not NULL) set and *out unspecified.
 * One-byte and two-byte extension blocks are walked and refused (RTP_ERR_EXTENSION) if an element
 * runs past the block; per RFC 8285 a one-byte ID 15 (or an ID 0 with a non-zero length, as
 * libwebrtc does) ends the walk and what follows is ignored. */
int rtp_parse(const uint8_t *p, size_t n, rtp_pkt *out, rtp_err *why);

/* Finds extension element `id` (one-byte form 1–14, two-byte form 1–255) in a parsed packet.
 * 0 with *data and *len set (borrowed; *len may be 0 in the two-byte form), or -ENOENT (no
 * extension, an opaque profile, no such element). */
int rtp_ext_find(const rtp_pkt *pkt, uint8_t id, const uint8_t **data, size_t *len);

/* RFC 6464 client-to-mixer audio level from extension element `id`: *voice = the V flag, *level =
 * 0–127 (-dBov: 0 is loudest, 127 silence). 0, -ENOENT (absent) or -EINVAL (element length not
 * exactly 1 byte). */
int rtp_audio_level(const rtp_pkt *pkt, uint8_t id, bool *voice, uint8_t *level);

/* ---- RTCP (RFC 3550 §6, RFC 4585 feedback) --------------------------------------------------- */

enum {
    RTP_RTCP_SR = 200,
    RTP_RTCP_RR = 201,
    RTP_RTCP_SDES = 202,
    RTP_RTCP_BYE = 203,
    RTP_RTCP_APP = 204,
    RTP_RTCP_RTPFB = 205,
    RTP_RTCP_PSFB = 206,
};

/* One packet of a compound. Pointers borrow from the compound buffer. */
typedef struct rtp_rtcp {
    const uint8_t *data; /* the packet from its 4-byte header, `len` bytes including padding */
    size_t len;
    uint8_t pt;          /* 192–223 */
    uint8_t count;       /* RC (SR, RR), SC (SDES, BYE) or FMT (RTPFB, PSFB, APP subtype) */
    bool padding;        /* only ever on the last packet of a compound */
    const uint8_t *body; /* after the header, without padding; NULL when body_len is 0 */
    size_t body_len;
    uint32_t ssrc;         /* sender (SR, RR, APP, RTPFB, PSFB, others with a body); first
                              chunk/source (SDES, BYE with count > 0); else 0 */
    uint32_t media_ssrc;   /* RTPFB, PSFB: the media source; else 0 */
    const uint8_t *blocks; /* SR, RR: `count` report blocks of 24 bytes; else NULL */
    /* SR only (else 0) */
    uint64_t ntp; /* NTP timestamp, 32.32 fixed point */
    uint32_t rtp_ts;
    uint32_t packets;
    uint32_t octets;
} rtp_rtcp;

/* Iterator over a compound packet; initialise with rtp_rtcp_begin(). */
typedef struct rtp_rtcp_iter {
    const uint8_t *p;
    size_t n;
    size_t off;
} rtp_rtcp_iter;

void rtp_rtcp_begin(rtp_rtcp_iter *it, const uint8_t *p, size_t n);
/* Next packet into *out: 0; -ENODATA when the compound ended exactly at its last packet (an empty
 * buffer has no packets: -ENODATA at once); -EINVAL with *why for a malformed packet (the
 * iteration is then over: later calls return -EINVAL again). Trailing bytes that do not form a
 * header are RTP_ERR_TRUNCATED. */
int rtp_rtcp_next(rtp_rtcp_iter *it, rtp_rtcp *out, rtp_err *why);

/* ---- slot rewrite (the forwarding unit's downstream streams) -------------------------------
 *
 * A slot is one of a listener's N fixed downstream streams. Whatever source (speaker SSRC) the
 * forwarding unit puts on it, the listener sees one continuous stream: the slot's SSRC, sequence
 * numbers that go on by +1 across a change of source, timestamps that never go back.
 *
 * Rules, for a packet `in` of source S mapped at time `now` (the caller's monotonic clock in RTP
 * clock units, e.g. 48 kHz ticks, modulo 2^32):
 *   1. Within S, out.seq = in.seq + seq_delta and out.ts = in.ts + ts_delta (both modular), so
 *      S's relative order, gaps (loss), reordering and duplicates pass through unchanged and
 *      wraparound (65535 -> 0, 2^32 -> 0) needs no special case.
 *   2. The first packet of the slot's first source gets (init_seq, init_ts).
 *   3. A packet whose SSRC differs from the slot's current source starts a new source S': its
 *      deltas are chosen so that this packet gets out.seq = highest seq sent on the slot + 1 and
 *      out.ts = highest timestamp sent + max(elapsed, min_ts_step), where elapsed is `now` minus
 *      the `now` at which that highest timestamp was sent (a negative or zero elapsed counts as
 *      0). Its marker bit is set (a new talkspurt for the receiver's jitter buffer).
 *   4. A packet of the current source whose sequence number is before that source's first packet
 *      on this slot, or whose mapped timestamp is before that first packet's, is refused
 *      (-EALREADY, RTP_ERR_SLOT_STALE): its numbers would collide with the previous source's.
 *      "Before" is judged on 64-bit extended counters (seq from int16 and ts from int32
 *      differences to the highest seen), so long-lived sources never trip it.
 *   5. A source that restarted its numbering under the same SSRC is re-anchored as in rule 3
 *      (not refused forever): a packet more than RTP_SLOT_MAX_MISORDER sequence numbers behind
 *      the source's highest, or a packet newer than the highest whose mapped timestamp falls
 *      before the source's first.
 *   6. The output SSRC is the slot's; every other header bit and byte (PT, padding, X, CSRCs,
 *      extensions) is kept. The header has the same length as the input's.
 * The forwarding unit only maps a source's packets while that source holds the slot: a late
 * packet of a previous source is the caller's to drop (mapping it would be rule 3 again).
 */
#define RTP_SLOT_MAX_MISORDER 100 /* as RFC 3550 A.1 */

typedef struct rtp_slot {
    /* configuration (rtp_slot_init) */
    uint32_t ssrc_out;
    uint16_t init_seq;
    uint32_t init_ts;
    uint32_t min_ts_step;
    /* state: private to rtp_slot.c, kept here so the caller owns the memory */
    bool active;       /* a source has been mapped */
    uint32_t src_ssrc; /* current source */
    uint16_t seq_delta;
    uint32_t ts_delta;
    int64_t first_seq_ext; /* extended in.seq of the source's first packet */
    int64_t max_seq_ext;   /* highest extended in.seq of the source */
    int64_t first_ts_ext;  /* extended out.ts of the source's first packet */
    int64_t max_ts_ext;    /* highest extended out.ts of the source */
    uint16_t max_seq_out;  /* highest out.seq sent on the slot */
    uint32_t max_ts_out;   /* highest out.ts sent on the slot */
    uint32_t max_ts_now;   /* `now` when max_ts_out was sent */
} rtp_slot;

/* init_seq/init_ts: the slot's first numbers (random per RFC 3550; the caller draws them).
 * min_ts_step: the least timestamp advance on a change of source (960 = 20 ms of Opus at 48 kHz).
 */
void rtp_slot_init(rtp_slot *s, uint32_t ssrc_out, uint16_t init_seq, uint32_t init_ts,
                   uint32_t min_ts_step);

/* Maps a parsed packet onto the slot and writes its rewritten header, in->hdr_len bytes, to `out`
 * (which may be in->data itself, cast from const by the caller who owns the buffer: the rewrite is
 * then in place; otherwise the two must not overlap). 0, or -EALREADY with *why =
 * RTP_ERR_SLOT_STALE (rule 4; the slot is unchanged and nothing is written). */
int rtp_slot_map(rtp_slot *s, const rtp_pkt *in, uint32_t now, uint8_t *out, rtp_err *why);

/* ---- writing -------------------------------------------------------------------------------- */

/* The relay's own downstream header: version 2, no padding, no CSRC; with level_id in 1–14, a
 * one-byte extension block (0xBEDE, 1 word) carrying the RFC 6464 audio level (voice, level) —
 * 20 bytes; with level_id 0, no extension — 12 bytes. */
typedef struct rtp_hdr_params {
    uint8_t pt;
    bool marker;
    uint16_t seq;
    uint32_t ts;
    uint32_t ssrc;
    uint8_t level_id; /* 0: no audio-level extension */
    bool voice;
    uint8_t level; /* 0–127 */
} rtp_hdr_params;

#define RTP_HDR_LEVEL_LEN 20

/* Writes the header into buf (capacity cap). Its length (12 or 20), -ENOSPC if cap is short, or
 * -EINVAL (pt > 127, level > 127, level_id > 14). */
int rtp_write_hdr(uint8_t *buf, size_t cap, const rtp_hdr_params *h);

/* ---- room: the forwarding decisions of one room --------------------------------------------
 *
 * Who is heard by whom, and on which slot. A room holds up to `max_participants` participants,
 * each named by an opaque uint32 handle the caller chooses, each with flags (server mute,
 * suppress, deaf) and `n_slots` downstream rtp_slots. Per incoming packet the room updates the
 * speaker's smoothed loudness, the room's speaker selection (the loudest n_slots + 1 active
 * speakers, with hysteresis) and the listeners' slot assignments (sticky), and writes where the
 * packet goes: (listener, slot index, the rtp_slot to map it on). The caller copies the packet,
 * rtp_slot_map()s it on that slot, protects and sends it. Slot assignment changes are queued in a
 * bounded ring for Speaking notices. Rules and constants: the top of rtp/rtp_room.c and
 * docs/media.md "Rooms".
 *
 * Memory: everything is allocated by rtp_room_create(); nothing after (no allocation per
 * packet, join or leave). No clock of its own: every call that needs time takes `now_ms`, the
 * caller's monotonic milliseconds (modulo 2^32). A room is used by one thread at a time (the media
 * worker that owns it); rtp_slot pointers it hands out are borrowed, valid until that listener
 * leaves or the room is destroyed.
 */
typedef struct rtp_room rtp_room;

#define RTP_ROOM_MAX_SLOTS     8
#define RTP_ROOM_DEFAULT_SLOTS 3

typedef struct rtp_room_config {
    uint32_t max_participants; /* 1–65535 */
    uint8_t n_slots;           /* slots per listener, 1–RTP_ROOM_MAX_SLOTS; 0: 3 */
    uint32_t min_ts_step;      /* rtp_slot_init()'s; 0: 960 (20 ms of Opus at 48 kHz) */
    uint32_t change_ring;      /* slot changes kept between drains; 0: 2 × max × n_slots */
} rtp_room_config;

/* 0 with *out set (free with rtp_room_destroy), -EINVAL (a bound out of range), -ENOMEM. */
int rtp_room_create(const rtp_room_config *cfg, rtp_room **out);
void rtp_room_destroy(rtp_room *r); /* NULL is fine */

/* A slot's configuration for rtp_slot_init(): its SSRC and first numbers (drawn by the caller). */
typedef struct rtp_room_slot_cfg {
    uint32_t ssrc;
    uint16_t seq;
    uint32_t ts;
} rtp_room_slot_cfg;

enum {
    RTP_ROOM_MUTED = 1u << 0,      /* server mute: its packets are dropped */
    RTP_ROOM_SUPPRESSED = 1u << 1, /* suppressed: its packets are dropped */
    RTP_ROOM_DEAF = 1u << 2,       /* never a destination (may still speak) */
};

/* Adds participant `id` with `flags` and n_slots slots configured by slots[0, n_slots). 0,
 * -EEXIST (id already in the room), -ENOSPC (room full), -EINVAL (slots NULL, unknown flags). */
int rtp_room_join(rtp_room *r, uint32_t id, unsigned flags, const rtp_room_slot_cfg *slots);
/* Removes `id`: it leaves the selection and every other listener's slot that held it is freed
 * (a change with no speaker); changes still queued for `id` as a listener are dropped. 0 or
 * -ENOENT. */
int rtp_room_leave(rtp_room *r, uint32_t id);
/* Replaces the flags of `id`. Becoming muted or suppressed takes it out of the selection at once
 * and frees the slots holding it; becoming deaf frees its own slots. 0, -ENOENT or -EINVAL. */
int rtp_room_set_flags(rtp_room *r, uint32_t id, unsigned flags);

/* Why a packet goes to nobody (a metric label: rtp_room_drop_name()). */
typedef enum rtp_room_drop {
    RTP_ROOM_FORWARD = 0,       /* forwarded (possibly to 0 listeners: nobody else can hear) */
    RTP_ROOM_DROP_UNKNOWN,      /* no participant with that id */
    RTP_ROOM_DROP_MUTED,        /* server mute */
    RTP_ROOM_DROP_SUPPRESSED,   /* suppressed */
    RTP_ROOM_DROP_NOT_SELECTED, /* not among the room's selected speakers (quiet or silent) */
    RTP_ROOM_DROP_COUNT_
} rtp_room_drop;

const char *rtp_room_drop_name(rtp_room_drop d); /* "muted", … (static strings) */

/* Where a packet goes: the listener, the index of its slot and that slot (borrowed). */
typedef struct rtp_room_dest {
    uint32_t listener;
    uint8_t slot_index;
    rtp_slot *slot;
} rtp_room_dest;

/* One packet from `id` with RFC 6464 audio level (voice, level 0–127; a packet without the
 * extension is passed as voice false, level 127) at `now_ms`. Writes its destinations to
 * dests[0, cap) — cap = the number of participants always suffices — and returns their count
 * (>= 0) with *why (if not NULL) RTP_ROOM_FORWARD, or 0 with *why the drop reason; -ENOSPC if
 * cap was too small (decisions are kept; the first cap destinations are written). */
int rtp_room_packet(rtp_room *r, uint32_t id, bool voice, uint8_t level, uint32_t now_ms,
                    rtp_room_dest *dests, size_t cap, rtp_room_drop *why);

/* A slot assignment change for a Speaking notice: `listener`'s slot `slot_index` now carries
 * `speaker` (has_speaker) or nobody. */
typedef struct rtp_room_change {
    uint32_t listener;
    uint32_t speaker;
    uint8_t slot_index;
    bool has_speaker;
} rtp_room_change;

/* Takes up to cap queued changes, oldest first, into out; returns how many. *resend (if not NULL)
 * tells whether the ring overflowed since the last drain: the queued changes were then discarded
 * and the caller resends every slot's state (rtp_room_slot_speaker()); the flag is cleared. */
size_t rtp_room_drain(rtp_room *r, rtp_room_change *out, size_t cap, bool *resend);

/* Current speaker on listener `id`'s slot `slot_index`: 0 with *speaker set, -ENODATA (free
 * slot), -ENOENT (no such listener) or -EINVAL (index out of range). */
int rtp_room_slot_speaker(const rtp_room *r, uint32_t id, unsigned slot_index, uint32_t *speaker);

/* Where participant `id`'s slot `slot_index` would go on if it moved to another room: its SSRC,
 * the sequence number after the highest sent and a timestamp advanced by the time since (at least
 * min_ts_step), in rtp_slot time units at `now`; a slot that never carried a packet gives its
 * first numbers. So a listener moved between rooms sees each slot continue, never reusing a
 * (SSRC, sequence number) pair under its key. 0, -ENOENT or -EINVAL. */
int rtp_room_slot_continue(const rtp_room *r, uint32_t id, unsigned slot_index, uint32_t now,
                           rtp_room_slot_cfg *out);

/* The room's n_slots and the number of participants in it. */
unsigned rtp_room_n_slots(const rtp_room *r);
unsigned rtp_room_count(const rtp_room *r);

/* ==== worker: one media thread (rtp_worker.c) ================================================
 *
 * Unlike everything above, a worker does I/O: it is one thread running its own libuv loop, owning
 * one UDP socket (bound to the configured address and port), its rooms and the SRTP sessions of
 * their participants (D20). The packet path (recvmmsg → demux → SRTP unprotect → parse → room →
 * slot rewrite → SRTP protect → sendmmsg) runs only on that thread, takes no lock and allocates
 * nothing; buffers are allocated once by rtp_worker_new().
 *
 * Threads: rtp_worker_new/_start/_stop_and_free, the command functions, rtp_worker_events() and
 * rtp_worker_stats() are called by the owner (one thread, typically the signalling loop's).
 * Commands travel through a bounded queue plus uv_async_send to the worker and are applied in
 * order; each one is answered by an RTP_WORKER_EV_DONE event. Events come back through another
 * bounded queue; the worker signals the owner's `event_async` (a uv_async_t on the owner's loop)
 * and the owner drains them with rtp_worker_events(). Needs libsrtp (D21): the module links
 * $(SRTP_LIBS). */

#include <sys/socket.h>

typedef struct rtp_worker rtp_worker;

#define RTP_WORKER_BATCH 32 /* datagrams per recvmmsg */

typedef struct rtp_worker_config {
    const char *address;        /* numeric IPv4 or IPv6 address to bind ("127.0.0.1", "::") */
    uint16_t port;              /* 0: an ephemeral port (rtp_worker_port() tells which) */
    uint32_t max_rooms;         /* 1–65535 */
    uint32_t max_participants;  /* in all its rooms together, 1–65535 */
    uint8_t level_ext_id;       /* RFC 6464 audio-level extension ID (SDP), 1–255; 0: 1 */
    uint32_t silence_ms;        /* an EV_SILENT after this long without an authenticated packet
                                   (RTP or RTCP) from a latched participant; 0: 5,000 */
    uint32_t queue_len;         /* command queue capacity; 0: 1,024. The event queue holds
                                   max(queue_len, 4 × max_participants) (Speaking bursts) */
    struct wrtc_dtls_ctx *dtls; /* the node's DTLS certificate for webrtc participants (shared,
                                   read-only, outlives the worker); NULL: no webrtc */
    void *event_async;          /* uv_async_t * on the owner's loop, signalled when events are
                                   queued; NULL: the owner polls rtp_worker_events(); must
                                   outlive the worker (until rtp_worker_stop_and_free returns) */
} rtp_worker_config;

typedef enum rtp_srtp_profile {
    RTP_SRTP_AES_CM_128_HMAC_SHA1_80 = 1, /* master key 16 + salt 14 bytes */
    RTP_SRTP_AEAD_AES_128_GCM = 2,        /* master key 16 + salt 12 bytes */
} rtp_srtp_profile;

#define RTP_SRTP_KEY_MAX 30 /* master key + salt, the longest of the profiles above */

typedef struct rtp_srtp_key {
    rtp_srtp_profile profile;
    uint8_t key[RTP_SRTP_KEY_MAX]; /* master key then master salt (RFC 4568 inline order) */
} rtp_srtp_key;

/* A participant as the signalling plane describes it. */
typedef enum rtp_transport {
    RTP_TRANSPORT_SRTP = 0, /* keys given (SDES-style over the voice WebSocket) */
    RTP_TRANSPORT_WEBRTC,   /* ICE-lite + DTLS-SRTP: keys from the handshake (webrtc/) */
} rtp_transport;

#define RTP_ICE_UFRAG_LEN 8  /* ours: 8 lowercase hex digits (a uint32 unique on the worker) */
#define RTP_ICE_PWD_LEN   32 /* ours: 32 hex digits */

typedef struct rtp_worker_participant {
    uint32_t room;    /* the caller's room id (rtp_worker_create_room) */
    uint32_t handle;  /* the caller's participant handle, unique within the worker */
    unsigned flags;   /* RTP_ROOM_MUTED, _SUPPRESSED, _DEAF */
    uint32_t ssrc;    /* its upstream SSRC: packets are attributed by it; webrtc: 0 = learnt
                         from its first SRTP packet on the ICE address */
    rtp_srtp_key in;  /* srtp: the client's key: unprotects its SRTP and SRTCP */
    rtp_srtp_key out; /* srtp: the node's key towards it: protects every slot's stream */
    uint8_t n_slots;  /* must equal the room's */
    rtp_room_slot_cfg slots[RTP_ROOM_MAX_SLOTS]; /* slot SSRCs and first seq/ts (drawn by caller) */
    uint8_t transport;                           /* rtp_transport */
    uint8_t level_ext_id;                        /* its audio-level extension id; 0: the worker's */
    uint8_t payload_type; /* the Opus payload type it receives (a forwarded packet's PT is
                             rewritten to it); 0: left as the sender's */
    /* webrtc only */
    char ice_ufrag[RTP_ICE_UFRAG_LEN + 1]; /* ours */
    char ice_pwd[RTP_ICE_PWD_LEN + 1];     /* ours */
    uint8_t remote_fp[32];                 /* sha-256 of its DTLS certificate (its offer) */
} rtp_worker_participant;

/* Initialises libsrtp once per process (srtp_init) and installs rtp's HMAC-SHA1 for
 * SRTP_HMAC_SHA1 (rtp_hmac.c: no allocation per packet, D35). Every libsrtp user in the process
 * calls it, not srtp_init(), before its first session (libsrtp 2.5 refuses a second srtp_init);
 * rtp_worker_new does. 0, or -EIO (libsrtp's self-tests, or srtp_init already called). */
int rtp_srtp_init(void);

/* 0 with *out set, -EINVAL (a bound out of range, an address that is not numeric), -ENOMEM, or a
 * socket error (negative errno: -EADDRINUSE …). The socket is bound here. */
int rtp_worker_new(const rtp_worker_config *cfg, rtp_worker **out);
/* Spawns the worker's thread. 0, -EALREADY, or a negative errno. */
int rtp_worker_start(rtp_worker *w);
/* Stops the thread (if started), joins it, closes every handle, the socket and the SRTP sessions
 * and frees everything. NULL is fine. Returns 0, or -EBUSY if uv_loop_close() failed (a bug). */
int rtp_worker_stop_and_free(rtp_worker *w);
/* The bound UDP port. */
uint16_t rtp_worker_port(const rtp_worker *w);

/* Tests and fuzzers only: runs one datagram `buf[0, len)` through the packet path synchronously,
 * on the calling thread, as if the worker's socket had received it from `from`. Valid only on a
 * worker that was never started (-EBUSY otherwise): the caller then plays the worker's thread.
 * In order: the queued commands are applied (their EV_DONE events queued, so a harness creates
 * rooms and participants with the ordinary command functions), the datagram is copied into the
 * receive buffer (over 1,500 bytes it counts as drop_oversize, as a truncated recvmmsg would)
 * and goes through demux → SRTP unprotect → parse → room → slot rewrite → SRTP protect; what it
 * produces is sent at once with sendmmsg on the worker's socket to the latched destinations, and
 * slot changes become EV_SPEAKING events. The worker's clock (its loop's uv_now) does not move
 * between injections, so a sequence of injections is deterministic. 0, -EBUSY or -EINVAL (NULL
 * from, from_len larger than a sockaddr_storage). */
int rtp_worker_inject(rtp_worker *w, const uint8_t *buf, size_t len, const struct sockaddr *from,
                      socklen_t from_len);

/* Commands: queued for the worker, applied in order. 0 when queued, -EAGAIN when the queue is
 * full, -EINVAL for arguments checked here. Their outcome is an RTP_WORKER_EV_DONE event with the
 * command's kind, its id (room id, or participant handle) and err (0 or a negative errno:
 * -EEXIST, -ENOENT, -ENOSPC, -EINVAL, -EACCES for SRTP keys libsrtp refused). */
int rtp_worker_create_room(rtp_worker *w, uint32_t room, const rtp_room_config *cfg);
int rtp_worker_add_participant(rtp_worker *w, const rtp_worker_participant *p);
int rtp_worker_set_flags(rtp_worker *w, uint32_t handle, unsigned flags);
int rtp_worker_remove_participant(rtp_worker *w, uint32_t handle);
/* Moves a participant to another room of the same worker: p->room (must exist) and p->flags are
 * used; its SRTP sessions, latched address and slots are kept — each slot goes on with the next
 * sequence number and a later timestamp (rtp_room_slot_continue) — so the client notices nothing
 * but the new audience and a new talkspurt. */
int rtp_worker_move_participant(rtp_worker *w, const rtp_worker_participant *p);
/* Destroys an empty room (-EBUSY in its DONE event while participants remain). */
int rtp_worker_destroy_room(rtp_worker *w, uint32_t room);

typedef enum rtp_worker_cmd_kind {
    RTP_WORKER_CMD_CREATE_ROOM = 1,
    RTP_WORKER_CMD_ADD,
    RTP_WORKER_CMD_SET_FLAGS,
    RTP_WORKER_CMD_REMOVE,
    RTP_WORKER_CMD_MOVE,
    RTP_WORKER_CMD_DESTROY_ROOM,
    RTP_WORKER_CMD_STOP_, /* internal */
} rtp_worker_cmd_kind;

typedef enum rtp_worker_event_kind {
    RTP_WORKER_EV_DONE = 1, /* a command was applied: cmd, id, err */
    RTP_WORKER_EV_LATCHED,  /* first authenticated packet from `id`, from `addr` (now its
                               destination) */
    RTP_WORKER_EV_SILENT,   /* nothing authenticated from latched `id` for silent_ms (once per
                               silence; a later packet re-arms it) */
    RTP_WORKER_EV_SPEAKING, /* listener `id`'s slot `slot` now carries `speaker` (has_speaker)
                               or nobody: a Speaking notice */
} rtp_worker_event_kind;

typedef struct rtp_worker_event {
    rtp_worker_event_kind kind;
    rtp_worker_cmd_kind cmd;      /* EV_DONE */
    uint32_t id;                  /* room id (EV_DONE of CREATE_ROOM) or participant handle */
    int err;                      /* EV_DONE */
    uint32_t silent_ms;           /* EV_SILENT */
    uint32_t speaker;             /* EV_SPEAKING */
    uint8_t slot;                 /* EV_SPEAKING */
    bool has_speaker;             /* EV_SPEAKING */
    struct sockaddr_storage addr; /* EV_LATCHED: the source address, now its destination */
    socklen_t addr_len;
} rtp_worker_event;

/* Moves up to cap queued events into out, oldest first; returns how many. */
size_t rtp_worker_events(rtp_worker *w, rtp_worker_event *out, size_t cap);

#define RTP_WORKER_LAT_N 12
#define RTP_WORKER_LAT_BOUNDS_US                                                                   \
    {                                                                                              \
        10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000, 100000                          \
    }

/* Counters, written only by the worker thread. rtp_worker_stats() copies them with plain loads:
 * each uint64_t is aligned and written whole, so on the 64-bit targets we build for a value is
 * never torn, but the copy is not a consistent snapshot across fields (fine for metrics). */
typedef struct rtp_worker_stats {
    uint64_t rx_datagrams, rx_bytes, rx_batches; /* recvmmsg: datagrams, bytes, calls */
    uint64_t drop_not_rtp;                       /* ZRTP, TURN channel data, unknown first byte */
    uint64_t drop_unknown_ssrc;                  /* RTP or RTCP from an SSRC of no participant */
    uint64_t drop_auth;      /* srtp_unprotect refused (auth, replay, anything else) */
    uint64_t drop_rtcp_auth; /* srtp_unprotect_rtcp refused */
    uint64_t drop_too_short; /* RTCP under 8 bytes, RTP under 12 */
    uint64_t drop_oversize;  /* over 1,500 bytes (truncated by recvmmsg) */
    uint64_t drop_parse;     /* rtp_parse refused the unprotected packet */
    uint64_t drop_room[RTP_ROOM_DROP_COUNT_]; /* by rtp_room_drop (index 0 unused) */
    uint64_t rtcp_ok;                         /* authenticated RTCP (liveness), then dropped */
    uint64_t rtp_ok;                          /* authenticated RTP */
    uint64_t drop_dest_unlatched;             /* a destination whose address is not latched yet */
    uint64_t drop_slot;                       /* rtp_slot_map refused (stale) */
    uint64_t drop_protect;                    /* srtp_protect failed */
    uint64_t drop_send;                       /* sendmmsg did not take it (EAGAIN, error) */
    uint64_t tx_datagrams, tx_bytes, tx_batches; /* sendmmsg: datagrams, bytes, calls */
    uint64_t events_dropped;                     /* the event queue was full */
    /* webrtc */
    uint64_t stun_ok;        /* Binding requests answered with a success */
    uint64_t drop_stun;      /* STUN refused (malformed, unknown ufrag, bad integrity, …) */
    uint64_t dtls_connected; /* handshakes completed (keys exported) */
    uint64_t dtls_failed;    /* handshakes failed (fingerprint, profile, timeout, alert) */
    uint64_t drop_dtls;      /* DTLS from an address with no transport, or after failure */
    uint64_t room_grows;     /* a full room replaced by a larger one */
    /* forwarding latency: from the kernel's receipt of a packet (SO_TIMESTAMPNS; the recvmmsg
     * that read it if unstamped) to the sendmmsg that sent a copy, per forwarded datagram, in
     * buckets of RTP_WORKER_LAT_BOUNDS_US (last: above); the relay's whole share of the delay,
     * time queued in its socket included */
    uint64_t fwd_lat[RTP_WORKER_LAT_N + 1];
    uint64_t fwd_lat_sum_ns;
    uint64_t loop_lag_ns;     /* the last lateness of the worker's timer (loop lag) */
    uint64_t loop_lag_max_ns; /* the largest seen */
} rtp_worker_stats;

void rtp_worker_stats_read(const rtp_worker *w, rtp_worker_stats *out);

#endif
