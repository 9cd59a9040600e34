/*
 * lib/metrics — every metric voxd exports, declared once (METRICS_FAMILIES below), and the
 * Prometheus text format 0.0.4 writer that renders them.
 *
 * The module holds no values: the node gathers its numbers when /metrics is scraped and writes
 * them family by family through metrics_family() + metrics_sample()/metrics_hist_write(), in one
 * place (voice/), so a family's HELP/TYPE come out exactly once with all its samples together.
 * Histograms (metrics_hist) are plain structs owned by whoever observes into them.
 * Not thread-safe: one owner thread.
 */
#ifndef VOXD_METRICS_H
#define VOXD_METRICS_H

#include <stddef.h>
#include <stdint.h>

/* X(id, name, type, help) — counters end in _total, units are base units. */
#define METRICS_FAMILIES(X)                                                                        \
    X(M_RPC_REQUESTS, "voxd_rpc_requests_total", "counter",                                        \
      "RPC requests by method and HTTP status code")                                               \
    X(M_RPC_DURATION, "voxd_rpc_request_duration_seconds", "histogram",                            \
      "RPC request latency from the end of the body to the reply, by method")                      \
    X(M_VOICE_CONNS, "voxd_voice_connections", "gauge", "Voice connections by state")              \
    X(M_CALLS, "voxd_calls", "gauge", "DM and group DM calls by state")                            \
    X(M_RING_OUTCOMES, "voxd_ring_outcomes_total", "counter", "Rings by outcome")                  \
    X(M_GRANTS_ISSUED, "voxd_grants_issued_total", "counter", "Voice server grants issued")        \
    X(M_GRANTS_REFUSED, "voxd_grants_refused_total", "counter", "Voice server grants refused")     \
    X(M_TOKEN_FAILURES, "voxd_token_failures_total", "counter",                                    \
      "Voice tokens refused at Identify, by reason")                                               \
    X(M_GHOST_REAPS, "voxd_ghost_reaps_total", "counter",                                          \
      "Voice connections removed because their client never showed up or went away")               \
    X(M_EVENTS_EMITTED, "voxd_events_emitted_total", "counter",                                    \
      "Events published on the event stream")                                                      \
    X(M_EVENTS_ACKED, "voxd_events_acked", "gauge",                                                \
      "Highest event seq acked by every known consumer")                                           \
    X(M_EVENTS_RETAINED, "voxd_events_retained", "gauge", "Events retained for the stream")        \
    X(M_EVENT_CLIENTS, "voxd_event_stream_clients", "gauge", "Connected /events clients")          \
    X(M_STORE_WRITES, "voxd_store_writes_total", "counter",                                        \
      "State writes produced by the core (committed to the database when one is configured)")      \
    X(M_STORE_UP, "voxd_store_up", "gauge",                                                        \
      "1 when the database is reachable and the state is loaded (1 without a database)")           \
    X(M_STORE_QUEUE, "voxd_store_queue_depth", "gauge",                                            \
      "Writes waiting for a commit, and requests parked while the database is unreachable")        \
    X(M_STORE_COMMITS, "voxd_store_commits_total", "counter", "Database commits by result")        \
    X(M_STORE_COMMIT_DURATION, "voxd_store_commit_duration_seconds", "histogram",                  \
      "Time from sending a group commit to its COMMIT's success")                                  \
    X(M_MEDIA_SESSIONS, "voxd_media_sessions", "gauge",                                            \
      "Voice connections with a media session (after Select Protocol)")                            \
    X(M_MEDIA_PACKETS, "voxd_media_packets_total", "counter",                                      \
      "UDP datagrams received and sent by the media workers")                                      \
    X(M_MEDIA_BYTES, "voxd_media_bytes_total", "counter",                                          \
      "UDP payload bytes received and sent by the media workers")                                  \
    X(M_MEDIA_DROPS, "voxd_media_drops_total", "counter",                                          \
      "Media datagrams dropped by the relay, by reason")                                           \
    X(M_MEDIA_SESSION_EVENTS, "voxd_media_session_events_total", "counter",                        \
      "Media sessions opened, resumed, moved, first authenticated (latched), left with 1000")      \
    X(M_MEDIA_WORKER_ERRORS, "voxd_media_worker_errors_total", "counter",                          \
      "Commands a media worker refused or whose queue was full")                                   \
    X(M_MEDIA_LOOP_LAG, "voxd_media_loop_lag_seconds", "gauge",                                    \
      "How late each media worker's periodic timer fired last")                                    \
    X(M_MEDIA_FORWARD_LATENCY, "voxd_media_forward_latency_seconds", "histogram",                  \
      "Time from receiving a packet to sending its copies, per sent datagram")                     \
    X(M_WEBRTC_OFFERS_REFUSED, "voxd_webrtc_offers_refused_total", "counter",                      \
      "WebRTC offers refused at Select Protocol, by reason")                                       \
    X(M_WEBRTC_STUN, "voxd_webrtc_stun_requests_total", "counter",                                 \
      "STUN Binding requests on the media workers, by result")                                     \
    X(M_WEBRTC_DTLS, "voxd_webrtc_dtls_handshakes_total", "counter",                               \
      "DTLS handshakes of webrtc transports, by result")                                           \
    X(M_LOOP_LAG, "voxd_loop_lag_seconds", "gauge",                                                \
      "How late the signalling loop's periodic timer fired last")                                  \
    X(M_BUILD_INFO, "voxd_build_info", "gauge", "Build information (always 1)")                    \
    X(M_START_TIME, "process_start_time_seconds", "gauge",                                         \
      "Start time of the process since the Unix epoch in seconds")

enum metrics_id {
#define METRICS_ENUM_(id, name, type, help) id,
    METRICS_FAMILIES(METRICS_ENUM_)
#undef METRICS_ENUM_
        M__N
};

const char *metrics_name(enum metrics_id id);

/* A growing text buffer. */
typedef struct metrics_buf {
    char *s;
    size_t len, cap;
} metrics_buf;
void metrics_buf_free(metrics_buf *b);

/* Writes # HELP and # TYPE of a family; call once per family, before its samples. */
void metrics_family(metrics_buf *b, enum metrics_id id);
/* One sample. `labels` is NULL or pairs of name, value terminated by NULL; values are escaped. */
void metrics_sample(metrics_buf *b, enum metrics_id id, double v, const char *const *labels);

/* A latency histogram in seconds with fixed buckets. */
#define METRICS_HIST_NB 15
typedef struct metrics_hist {
    uint64_t bucket[METRICS_HIST_NB]; /* not cumulative; rendered cumulative */
    uint64_t count;
    double sum;
} metrics_hist;
void metrics_hist_observe(metrics_hist *h, double seconds);
/* _bucket{le}, _sum, _count, with the extra labels (pairs, NULL-terminated, may be NULL). */
/* A histogram with the caller's bounds: le[0, n) ascending, bucket[0, n] not cumulative (the last
 * is above le[n-1]), their sum. */
void metrics_hist_write_bounds(metrics_buf *b, enum metrics_id id, const double *le, size_t n,
                               const uint64_t *bucket, double sum, const char *const *labels);
void metrics_hist_write(metrics_buf *b, enum metrics_id id, const metrics_hist *h,
                        const char *const *labels);

#endif
