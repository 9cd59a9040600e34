/*
 * webrtc — the pure building blocks of the webrtc media transport (product spec §6): ICE-lite STUN
 * (RFC 8489/5389, RFC 8445 §7.3, RFC 7675 consent), the SDP offer/answer of a browser's audio
 * session (RFC 8866, JSEP) and the DTLS 1.2 server that keys SRTP (RFC 5764).
 *
 * No sockets, no threads, no clock of its own: byte buffers in, byte buffers out, so the media
 * worker (rtp/rtp_worker.c) drives it from its own loop. STUN and SDP keep no state at all and
 * never allocate (their structs are the caller's, bounded in size); the DTLS part allocates an
 * OpenSSL context once (wrtc_dtls_ctx_new) and one SSL per transport (wrtc_dtls_new), and OpenSSL
 * allocates during the handshake — never on the media path, which DTLS leaves once the keys are
 * exported.
 *
 * Threads: everything here may be called from any thread; a given wrtc_dtls is used by one thread
 * at a time (the worker owning its transport); a wrtc_dtls_ctx is shared read-only by all of them
 * once created. Untrusted input: every parser checks lengths before reading and refuses with a
 * negative errno plus a reason for a metric label (wrtc_stun_err_name, wrtc_sdp_err_name).
 * Behaviour and decisions: docs/webrtc.md.
 */
#ifndef VOXD_WEBRTC_H
#define VOXD_WEBRTC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* SRTP keys as the DTLS exporter gives them. The values and layout are rtp/rtp.h's rtp_srtp_*
 * (the media worker, which depends on this module, converts); this module depends on nothing of
 * ours, so rtp/ may use it. */
typedef enum wrtc_srtp_profile {
    WRTC_SRTP_AES_CM_128_HMAC_SHA1_80 = 1, /* master key 16 + salt 14 bytes */
    WRTC_SRTP_AEAD_AES_128_GCM = 2,        /* master key 16 + salt 12 bytes */
} wrtc_srtp_profile;
#define WRTC_SRTP_KEY_MAX 30
typedef struct wrtc_srtp_key {
    wrtc_srtp_profile profile;
    uint8_t key[WRTC_SRTP_KEY_MAX]; /* master key then master salt */
} wrtc_srtp_key;
#define WRTC_SDP_MAX_SLOTS 8 /* downstream slots an answer can name (rtp's RTP_ROOM_MAX_SLOTS) */

/* ==== STUN for ICE-lite =========================================================================
 *
 * The node answers Binding requests (connectivity and consent checks) and never sends requests of
 * its own. A datagram goes through two steps:
 *   1. wrtc_stun_parse(): structure only — header (first two bits 0, length a multiple of 4 that
 *      matches the datagram, magic cookie), attributes with their padding, FINGERPRINT verified
 *      when present (a wrong one is dropped: the datagram is not STUN). Any class and method.
 *   2. wrtc_stun_check(): the ICE-lite server's rules for a request — Binding, USERNAME equal to
 *      "<our ufrag>:<their ufrag>", MESSAGE-INTEGRITY with our ice-pwd, FINGERPRINT present, no
 *      unknown comprehension-required attribute, the peer not also controlled.
 * A refusal of step 2 may deserve an error response (wrtc_stun_err_code: 400, 401, 420, 487) or
 * silence (0). Then wrtc_stun_write_success() / wrtc_stun_write_error() build the response.
 */

#define WRTC_STUN_HDR         20
#define WRTC_STUN_COOKIE      0x2112A442u
#define WRTC_STUN_MAX_UNKNOWN 4    /* unknown comprehension-required attributes kept for a 420 */
#define WRTC_STUN_RESP_MAX    120  /* enough for any response written here */
#define WRTC_STUN_MAX_LEN     1500 /* a longer datagram is refused (malformed) */

typedef enum wrtc_stun_err {
    WRTC_STUN_OK = 0,
    WRTC_STUN_MALFORMED,         /* header, length, cookie, an attribute past the end or of a bad
                                    size, MESSAGE-INTEGRITY/FINGERPRINT out of place */
    WRTC_STUN_BAD_FINGERPRINT,   /* FINGERPRINT present and wrong */
    WRTC_STUN_NOT_REQUEST,       /* an indication or a response: nothing to answer */
    WRTC_STUN_NOT_BINDING,       /* a request of another method */
    WRTC_STUN_NO_FINGERPRINT,    /* ICE requires FINGERPRINT (RFC 8445 §7.2.2) */
    WRTC_STUN_NO_CREDENTIALS,    /* USERNAME or MESSAGE-INTEGRITY missing: 400 */
    WRTC_STUN_UNKNOWN_USERNAME,  /* USERNAME is not "<our ufrag>:<their ufrag>": 401 */
    WRTC_STUN_BAD_INTEGRITY,     /* HMAC-SHA1 with our ice-pwd does not match: 401 */
    WRTC_STUN_UNKNOWN_ATTRIBUTE, /* unknown comprehension-required attribute: 420 */
    WRTC_STUN_ROLE_CONFLICT,     /* ICE-CONTROLLED from the peer: we are lite, always controlled:
                                    487 */
    WRTC_STUN_ERR_COUNT_
} wrtc_stun_err;

const char *wrtc_stun_err_name(wrtc_stun_err e); /* "malformed", "bad_integrity", … */
/* The error response code RFC 8489 §6.3.1/§9.1.3 and RFC 8445 §7.3.1.1 ask for, or 0: drop. */
int wrtc_stun_err_code(wrtc_stun_err e);

/* A parsed message; pointers borrow from the datagram. */
typedef struct wrtc_stun_msg {
    const uint8_t *data;
    size_t len;
    uint16_t method; /* 0x001 Binding */
    uint8_t cls;     /* 0 request, 1 indication, 2 success, 3 error */
    uint8_t txid[12];
    const uint8_t *username; /* USERNAME value, NULL if absent */
    size_t username_len;
    size_t integrity_off; /* offset of the MESSAGE-INTEGRITY attribute header; 0: absent */
    bool has_fingerprint;
    bool has_priority;
    uint32_t priority;
    bool use_candidate;
    bool ice_controlling, ice_controlled;
    uint64_t tiebreaker;
    uint16_t unknown[WRTC_STUN_MAX_UNKNOWN]; /* unknown comprehension-required types (≤ 0x7FFF) */
    uint8_t n_unknown;
} wrtc_stun_msg;

/* Step 1. 0, or -EINVAL with *why (MALFORMED, BAD_FINGERPRINT). */
int wrtc_stun_parse(const uint8_t *p, size_t n, wrtc_stun_msg *m, wrtc_stun_err *why);

/* The local part of USERNAME (before the first ':'), to find the transport by our ufrag. 0 with
 * *ufrag and *len borrowed from the datagram, or -ENOENT (no USERNAME, no ':'). */
int wrtc_stun_local_ufrag(const wrtc_stun_msg *m, const char **ufrag, size_t *len);

/* Verifies MESSAGE-INTEGRITY (HMAC-SHA1 over the message up to the attribute, with the header's
 * length covering it) with `key` (the short-term password). 0, -ENOENT (absent), -EACCES. */
int wrtc_stun_verify_integrity(const wrtc_stun_msg *m, const void *key, size_t key_len);

/* Step 2 for a transport with our ufrag/pwd; remote_ufrag (from the offer) may be NULL to accept
 * any. 0 (answer it with a success), or -EINVAL/-EACCES with *why. */
int wrtc_stun_check(const wrtc_stun_msg *m, const char *local_ufrag, const char *remote_ufrag,
                    const char *local_pwd, wrtc_stun_err *why);

/* Binding success response to `req` (same transaction id): XOR-MAPPED-ADDRESS of `from` (IPv4 or
 * IPv6), MESSAGE-INTEGRITY with `pwd`, FINGERPRINT. Its length, -ENOSPC, or -EAFNOSUPPORT. */
int wrtc_stun_write_success(const wrtc_stun_msg *req, const struct sockaddr *from, const char *pwd,
                            uint8_t *buf, size_t cap);

/* Binding error response with ERROR-CODE `code` (400, 401, 420 with UNKNOWN-ATTRIBUTES from req,
 * 487), MESSAGE-INTEGRITY only when pwd is not NULL (never for 400/401: the request was not
 * authenticated), FINGERPRINT. Its length, -ENOSPC or -EINVAL (another code). */
int wrtc_stun_write_error(const wrtc_stun_msg *req, int code, const char *pwd, uint8_t *buf,
                          size_t cap);

/* CRC-32 (ISO-HDLC, as zlib) of p[0, n); exposed for the tests. */
uint32_t wrtc_crc32(const uint8_t *p, size_t n);

/* ==== SDP: a browser's audio offer, our answer ===================================================
 *
 * wrtc_sdp_parse() reads an offer (CRLF or LF lines) into a bounded struct: every m-section (kind,
 * proto, first format, mid, and for audio sections that offer Opus its payload type, audio-level id
 * and direction). The first such audio section is the main one (the browser's upstream; its ICE
 * credentials and fingerprint are the transport's); further Opus audio sections in the same BUNDLE
 * group are accepted too, so that a browser that adds N recvonly audio transceivers receives each
 * downstream slot on its own m-section (a Unified Plan browser plays one SSRC per m-section).
 * Everything else is answered rejected (port 0). wrtc_sdp_answer() writes the answer. */

#define WRTC_SDP_MAX_LEN    32768 /* a longer offer is refused (oversize) */
#define WRTC_SDP_MAX_MLINES 16
#define WRTC_SDP_MID_MAX    32
#define WRTC_SDP_TOKEN_MAX  32  /* m= kind and proto */
#define WRTC_SDP_FMTS_MAX   128 /* an m-line's format list, as text */
#define WRTC_SDP_UFRAG_MAX  256 /* RFC 8839: ufrag 4–256, pwd 22–256 ice-chars */
#define WRTC_SDP_FMTP_MAX   256
#define WRTC_SDP_FP_LEN     32                    /* sha-256 */
#define WRTC_SDP_FP_STR     (WRTC_SDP_FP_LEN * 3) /* "AB:CD:…" plus NUL */
#define WRTC_SDP_LEVEL_URI  "urn:ietf:params:rtp-hdrext:ssrc-audio-level"

typedef enum wrtc_sdp_err {
    WRTC_SDP_OK = 0,
    WRTC_SDP_OVERSIZE,       /* over WRTC_SDP_MAX_LEN, too many m-lines, a value over its bound */
    WRTC_SDP_MALFORMED,      /* a line not "<letter>=<value>", a bad v=/m=/a= value, NUL bytes */
    WRTC_SDP_NO_AUDIO,       /* no m=audio with a usable port and an RTP/SAVPF-family proto */
    WRTC_SDP_NO_OPUS,        /* audio without opus/48000/2 (listed in its m= line) */
    WRTC_SDP_NO_ICE,         /* ice-ufrag or ice-pwd missing (session or media level) */
    WRTC_SDP_NO_FINGERPRINT, /* no a=fingerprint:sha-256 */
    WRTC_SDP_BAD_SETUP,      /* a=setup:passive (we are passive too) or missing */
    WRTC_SDP_NO_RTCP_MUX,    /* the audio m-section lacks a=rtcp-mux */
    WRTC_SDP_ERR_COUNT_
} wrtc_sdp_err;

const char *wrtc_sdp_err_name(wrtc_sdp_err e); /* "no_audio", … */

typedef enum wrtc_sdp_dir {
    WRTC_SDP_SENDRECV = 0, /* also when the offer names none (RFC 8866 default) */
    WRTC_SDP_SENDONLY,
    WRTC_SDP_RECVONLY,
    WRTC_SDP_INACTIVE,
} wrtc_sdp_dir;

typedef struct wrtc_sdp_mline {
    char kind[WRTC_SDP_TOKEN_MAX + 1];  /* "audio", "video", "application" */
    char proto[WRTC_SDP_TOKEN_MAX + 1]; /* "UDP/TLS/RTP/SAVPF" … */
    char fmt[WRTC_SDP_TOKEN_MAX + 1];   /* the first format offered ("111", "webrtc-datachannel") */
    char mid[WRTC_SDP_MID_MAX + 1];     /* "" if none */
    uint16_t port;
    bool accepted;        /* an Opus audio section we answer (the main one or a bundled one) */
    uint8_t opus_pt;      /* accepted: its Opus payload type */
    uint8_t level_ext_id; /* accepted: its ssrc-audio-level extmap id, 0: not offered */
    uint8_t dir;          /* accepted: the offer's wrtc_sdp_dir for it */
} wrtc_sdp_mline;

typedef struct wrtc_sdp_offer {
    unsigned n_mlines;
    wrtc_sdp_mline m[WRTC_SDP_MAX_MLINES];
    unsigned audio;   /* index of the main audio m-section */
    bool bundle;      /* a=group:BUNDLE names the main audio mid */
    unsigned n_audio; /* accepted audio sections (the main one and the bundled ones) */
    unsigned n_recv;  /* of them, those the browser receives on (sendrecv, recvonly): the most
                         downstream slots the answer can carry, one per section */
    /* of the main audio m-section (media level, else session level) */
    char ice_ufrag[WRTC_SDP_UFRAG_MAX + 1];
    char ice_pwd[WRTC_SDP_UFRAG_MAX + 1];
    uint8_t fingerprint[WRTC_SDP_FP_LEN]; /* the peer's DTLS certificate, sha-256 */
    uint8_t opus_pt;
    char opus_fmtp[WRTC_SDP_FMTP_MAX + 1]; /* the offer's a=fmtp for opus, "" if none */
    uint8_t level_ext_id;                  /* ssrc-audio-level extmap id, 0: not offered */
    uint32_t ssrc;                         /* first a=ssrc of the audio section, 0: none */
    bool has_ssrc;
    bool ice_lite_peer; /* a=ice-lite in the offer (noted, not refused) */
    wrtc_sdp_dir dir;   /* the offer's direction for the audio section */
} wrtc_sdp_offer;

/* 0, or -EINVAL (-E2BIG for oversize) with *why. `line` (if not NULL) gets the 1-based number of
 * the offending line for malformed/oversize refusals, else 0. */
int wrtc_sdp_parse(const char *sdp, size_t len, wrtc_sdp_offer *o, wrtc_sdp_err *why,
                   unsigned *line);

/* The answer: every accepted section with our ICE credentials, fingerprint, a=setup:passive, Opus
 * with its payload type, rtcp-mux; the sections the browser receives on get the slot SSRCs in
 * order, one each (a=ssrc cname and msid "<stream_id> slot<i>"), as many as there are of both:
 * min(n_slots, n_recv) slots are usable, the others have no m-section; the host candidate goes in
 * the first (the BUNDLE tag). */
typedef struct wrtc_sdp_answer_params {
    const char *ice_ufrag, *ice_pwd; /* ours: ufrag 4–256, pwd 22–256 ice-chars */
    const char *fingerprint;         /* ours, "AB:CD:…" (wrtc_dtls_ctx_fingerprint) */
    const char *ip;                  /* numeric IPv4 or IPv6 of the worker's socket */
    uint16_t port;
    uint64_t session_id;        /* o= line; the caller's (random, < 2^63) */
    const char *cname;          /* for the a=ssrc cname lines, e.g. "voxd" */
    const char *stream_id;      /* msid stream id, e.g. "voxd" */
    const uint32_t *slot_ssrcs; /* the listener's N downstream slot SSRCs */
    unsigned n_slots;           /* 1–WRTC_SDP_MAX_SLOTS */
} wrtc_sdp_answer_params;

/* Writes the answer to `o` into buf (capacity cap, NUL-terminated). Its length, -ENOSPC or
 * -EINVAL (bad params). */
int wrtc_sdp_answer(const wrtc_sdp_offer *o, const wrtc_sdp_answer_params *a, char *buf,
                    size_t cap);

/* ==== DTLS 1.2 server keying SRTP (RFC 5764, RFC 8842 a=setup:passive) ==========================
 *
 * A context holds the node's certificate (ECDSA P-256, self-signed, generated at start or loaded
 * from PEM) and its sha-256 fingerprint for the SDP. A transport (wrtc_dtls) is fed the datagrams
 * of the peer (wrtc_dtls_feed) and hands back the datagrams to send (wrtc_dtls_pull), whole records
 * packed up to the MTU. The peer's certificate must have the fingerprint of its offer; the
 * use_srtp extension must agree on SRTP_AEAD_AES_128_GCM or SRTP_AES128_CM_SHA1_80. Retransmission
 * is the caller's timer: wrtc_dtls_timeout_ms() then wrtc_dtls_on_timeout(). */

typedef struct wrtc_dtls_ctx wrtc_dtls_ctx;
typedef struct wrtc_dtls wrtc_dtls;

#define WRTC_DTLS_MTU 1200 /* datagrams handed out are at most this long */

/* cert_pem and key_pem both NULL: a fresh self-signed certificate (valid 30 days before and after
 * now). 0 with *out, -ENOENT/-EINVAL for PEM files that cannot be read or do not match, -ENOMEM,
 * -EIO (OpenSSL refused). */
int wrtc_dtls_ctx_new(const char *cert_pem, const char *key_pem, wrtc_dtls_ctx **out);
void wrtc_dtls_ctx_free(wrtc_dtls_ctx *c); /* NULL is fine; after every wrtc_dtls of it */
/* "AB:CD:…" (95 characters), for a=fingerprint:sha-256. Borrowed, lives as long as c. */
const char *wrtc_dtls_ctx_fingerprint(const wrtc_dtls_ctx *c);

typedef enum wrtc_dtls_state {
    WRTC_DTLS_HANDSHAKING = 0,
    WRTC_DTLS_CONNECTED, /* keys available */
    WRTC_DTLS_FAILED,    /* fatal: bad fingerprint, no SRTP profile, alert, garbage mid-stream */
    WRTC_DTLS_CLOSED,    /* the peer sent close_notify */
} wrtc_dtls_state;

/* A server transport for a peer whose certificate must hash to peer_fp (sha-256, from its offer).
 * 0, -ENOMEM or -EIO. */
int wrtc_dtls_new(wrtc_dtls_ctx *c, const uint8_t peer_fp[WRTC_SDP_FP_LEN], wrtc_dtls **out);
void wrtc_dtls_free(wrtc_dtls *d); /* NULL is fine */

/* One datagram from the peer. Returns the state after it (>= 0), or a negative errno when this
 * datagram made the transport fail: -EACCES (certificate fingerprint mismatch or no certificate),
 * -EPROTO (handshake failure, no common SRTP profile), -EINVAL (not DTLS: the transport is
 * unchanged and keeps going; a datagram that is merely not a valid record is dropped by OpenSSL
 * quietly). After FAILED every call returns -EPROTO. Outgoing datagrams may be pending after any
 * call: drain them with wrtc_dtls_pull(). */
int wrtc_dtls_feed(wrtc_dtls *d, const uint8_t *p, size_t n);
/* Next datagram to send into buf (cap >= WRTC_DTLS_MTU is always enough): its length, 0 if none. */
int wrtc_dtls_pull(wrtc_dtls *d, uint8_t *buf, size_t cap);
/* Milliseconds until wrtc_dtls_on_timeout() is due (0: now), or -1: no timer running. */
long wrtc_dtls_timeout_ms(wrtc_dtls *d);
/* Retransmits the last flight if its timer expired (then pull). Returns the state, or -EPROTO when
 * OpenSSL gave up (too many retransmissions). */
int wrtc_dtls_on_timeout(wrtc_dtls *d);
wrtc_dtls_state wrtc_dtls_get_state(const wrtc_dtls *d);
/* Why a FAILED transport failed, a metric label: "fingerprint_mismatch", "no_certificate",
 * "no_srtp_profile", "timeout", "handshake" (anything else OpenSSL refused); "" otherwise. */
const char *wrtc_dtls_fail_reason(const wrtc_dtls *d);
/* The negotiated SRTP profile once CONNECTED, else 0. */
wrtc_srtp_profile wrtc_dtls_profile(const wrtc_dtls *d);
const char *wrtc_dtls_state_name(wrtc_dtls_state s);
/* Once CONNECTED: the negotiated profile's keys, split per RFC 5764 §4.2, each master key then
 * salt as wrtc_srtp_key wants them: `in` = the client's write key (unprotects what the browser
 * sends), `out` = the server's write key (protects what we send). 0, or -EAGAIN (not connected). */
int wrtc_dtls_srtp_keys(const wrtc_dtls *d, wrtc_srtp_key *in, wrtc_srtp_key *out);

#endif
