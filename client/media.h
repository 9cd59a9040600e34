/*
 * client/media.h — the media half of a voice client: one UDP socket, SRTP both ways (libsrtp,
 * keys from a Session Description), a sine tone encoded with Opus and paced at 20 ms on a libuv
 * timer, RTCP (SR while talking, RR when silent) every 2 s, and per-slot reception: decode (with
 * concealment on gaps), loss (vc_seq), one-way latency (vc_latency, from the sender's send time in
 * extension element 2) and the dominant frequency of the last second of decoded audio (vc_freq).
 * Packets are also attributed to the user the latest Speaking put on their slot.
 *
 * Outgoing RTP: PT and SSRC from the Session Description, a one-byte extension block (0xBEDE)
 * with the RFC 6464 audio level (its id from the Session Description; V set when the level is
 * above -60 dBov) and element VC_EXT_SEND_TIME: 8 bytes, CLOCK_REALTIME of the send in ns,
 * big-endian.
 *
 * Threads: everything runs on the thread of the loop given to vc_media_new(). Memory: buffers,
 * decoders and rings are allocated by vc_media_new()/vc_media_start() and when Speaking names a
 * new user; nothing is allocated per packet. vc_media_close() frees everything asynchronously
 * (libuv handles) and then calls its `done`.
 */
#ifndef VOXD_VC_MEDIA_H
#define VOXD_VC_MEDIA_H

#include "client/session.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VC_EXT_SEND_TIME 2 /* one-byte extension id of the 8-byte send time */

typedef struct vc_media vc_media;

typedef struct vc_media_config {
    const char *bind_addr; /* numeric local address; NULL: "0.0.0.0" */
    double freq_hz;        /* the tone; 0: 440 */
    double amplitude;      /* of full scale, 0..1; 0: 0.3 */
    bool silent;           /* no RTP, only RTCP */
    int complexity;        /* Opus, 0..10 */
} vc_media_config;

/* Binds the socket. 0 with *out, -EINVAL, -ENOMEM, or a socket error (negative errno). */
int vc_media_new(void *loop, const vc_media_config *cfg, vc_media **out);
/* Keys, SSRCs and target from a Session Description; starts sending (tone and RTCP) and
 * receiving. A later call (a moved connection) re-targets address and port, and follows changed
 * keys or SSRCs too (new SRTP sessions, slot tracking restarted). 0, -EINVAL (address, mode, a
 * different slot count), -EACCES (libsrtp refused the keys). */
int vc_media_start(vc_media *m, const vc_sdesc *sd);
/* Slot `slot` now carries `user_id` (NULL: nobody). 0, -EINVAL. */
int vc_media_set_speaker(vc_media *m, unsigned slot, const char *user_id);
uint16_t vc_media_port(const vc_media *m);
/* Datagrams sent (RTP and RTCP) and received so far (no allocation: for tests and progress). */
void vc_media_counts(const vc_media *m, uint64_t *sent, uint64_t *received);
/* A new object: {"sent","rtcp_sent","rx":{...},"slots":[...],"speakers":{...}} (docs/voxclient.md).
 */
json_t *vc_media_report(const vc_media *m);
/* One short human line: sent, and per slot packets/lost/frequency. */
void vc_media_progress(const vc_media *m, char *buf, size_t n);
/* Stops and frees asynchronously, then done(arg). NULL is fine (done not called). */
void vc_media_close(vc_media *m, void (*done)(void *arg), void *arg);

/* RFC 6464 level of n samples: -dBov of their RMS (0 = full-scale square wave; a full-scale sine
 * is 3), clamped to 0..127 (127 for silence). *voice (if not NULL) is set when level < 60. */
uint8_t vc_audio_level(const int16_t *pcm, size_t n, bool *voice);

/* Writes the RTP header voxclient sends (28 bytes: 12 fixed + extension block of 3 words with the
 * level element and the send-time element) into buf. Returns 28 or -ENOSPC / -EINVAL. */
#define VC_RTP_HDR_LEN 28
int vc_rtp_header(uint8_t *buf, size_t cap, uint8_t pt, bool marker, uint16_t seq, uint32_t ts,
                  uint32_t ssrc, uint8_t level_id, bool voice, uint8_t level, int64_t send_ns);

#endif
