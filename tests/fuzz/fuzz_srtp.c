/*
 * Fuzzer of the media worker's receive path (rtp_worker_inject, no thread): one worker bound to
 * 127.0.0.1 port 0, one room, three participants with fixed keys (1: AES_CM both ways, 2: GCM both
 * ways, 3: AES_CM from the client, GCM to it), each latched to a UDP socket of ours on 127.0.0.1
 * by an authenticated RTCP packet, so whatever the worker sends stays on loopback and comes back
 * to us. State is rebuilt for every input (participants removed, room recreated, SRTP sessions
 * fresh on both sides, latched again): an input replays the same way in any order.
 *
 * An input is a sequence of up to 16 records: one byte b, a 16-bit big-endian length, then that
 * many bytes (or what is left). Participant (b >> 2) % 3 is the sender; b & 3 is the mode:
 *   0  raw: the bytes as a datagram from the participant's address (demux, SSRC lookup, failing
 *      authentication, anything);
 *   1, 3  RTP: the bytes as a plaintext RTP packet (version forced to 2, a payload type in the
 *      RTCP range 64–95 moved out of it, the participant's SSRC patched in), srtp_protect'ed with
 * its client key (skipped if libsrtp refuses), injected: unprotect → rtp_parse → audio level → room
 * → slot rewrite → protect → sendmmsg, for any header, CSRC list, extension and padding; 2  RTCP:
 * the same with an RTCP header (type forced into 192–223) and srtp_protect_rtcp. Invariants (abort
 * on violation): what we protected authenticates (rtp_ok / rtcp_ok move by one); RTCP forwards
 * nothing; an RTP packet goes at most to the two others, never back to its sender; every datagram
 * the worker sent arrives, unprotects with the listener's key, carries one of the listener's slot
 * SSRCs and, for an RTP record, exactly the sender's bytes after the (same-length) header.
 * -DFUZZ_SRTP_DEBUG prints the worker's counters at exit (what a corpus reaches).
 */
#include "rtp/rtp.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <srtp2/srtp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK_(c)                                                                                  \
    do {                                                                                           \
        if (!(c)) abort();                                                                         \
    } while (0)

#define NP       3
#define ROOM     7
#define N_SLOTS  3
#define MTU      1500
#define RECORDS  16
#define MAX_EVS  64
#define WAIT_MS  2000
#define BUF_SIZE (MTU + SRTP_MAX_TRAILER_LEN + 64)

typedef struct peer {
    rtp_worker_participant p;
    int fd; /* our UDP socket the participant is latched to */
    struct sockaddr_in addr;
    srtp_t tx; /* the client's side: protects with p.in */
    srtp_t rx; /* unprotects what the worker sends it, with p.out */
} peer;

static rtp_worker *w;
static peer peers[NP];
static bool ready;

static void fill_key(rtp_srtp_key *k, rtp_srtp_profile prof, uint8_t seed)
{
    k->profile = prof;
    for (unsigned i = 0; i < RTP_SRTP_KEY_MAX; i++)
        k->key[i] = (uint8_t)(seed + 7 * i);
}

static void policy(srtp_policy_t *pol, const rtp_srtp_key *k)
{
    memset(pol, 0, sizeof *pol);
    if (k->profile == RTP_SRTP_AEAD_AES_128_GCM) {
        srtp_crypto_policy_set_aes_gcm_128_16_auth(&pol->rtp);
        srtp_crypto_policy_set_aes_gcm_128_16_auth(&pol->rtcp);
    } else {
        srtp_crypto_policy_set_aes_cm_128_hmac_sha1_80(&pol->rtp);
        srtp_crypto_policy_set_aes_cm_128_hmac_sha1_80(&pol->rtcp);
    }
    pol->key = (unsigned char *)k->key;
    pol->window_size = 128;
}

static void wr32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static void cleanup(void)
{
#ifdef FUZZ_SRTP_DEBUG
    rtp_worker_stats st;
    rtp_worker_stats_read(w, &st);
    fprintf(
        stderr,
        "rx %lu rtp_ok %lu rtcp_ok %lu tx %lu auth %lu rtcp_auth %lu unknown %lu parse %lu slot "
        "%lu protect %lu unlatched %lu notrtp %lu oversize %lu short %lu room %lu/%lu/%lu/%lu\n",
        st.rx_datagrams, st.rtp_ok, st.rtcp_ok, st.tx_datagrams, st.drop_auth, st.drop_rtcp_auth,
        st.drop_unknown_ssrc, st.drop_parse, st.drop_slot, st.drop_protect, st.drop_dest_unlatched,
        st.drop_not_rtp, st.drop_oversize, st.drop_too_short, st.drop_room[1], st.drop_room[2],
        st.drop_room[3], st.drop_room[4]);
#endif
    for (int i = 0; i < NP; i++) {
        if (peers[i].tx) srtp_dealloc(peers[i].tx);
        if (peers[i].rx) srtp_dealloc(peers[i].rx);
        if (peers[i].fd >= 0) close(peers[i].fd);
    }
    rtp_worker_stop_and_free(w);
}

static void setup_once(void)
{
    rtp_worker_config cfg = {.address = "127.0.0.1", .max_rooms = 1, .max_participants = NP};
    CHECK_(rtp_worker_new(&cfg, &w) == 0); /* also srtp_init() */
    static const rtp_srtp_profile in[NP] = {RTP_SRTP_AES_CM_128_HMAC_SHA1_80,
                                            RTP_SRTP_AEAD_AES_128_GCM,
                                            RTP_SRTP_AES_CM_128_HMAC_SHA1_80};
    static const rtp_srtp_profile out[NP] = {RTP_SRTP_AES_CM_128_HMAC_SHA1_80,
                                             RTP_SRTP_AEAD_AES_128_GCM, RTP_SRTP_AEAD_AES_128_GCM};
    for (int i = 0; i < NP; i++) {
        peer *pe = &peers[i];
        rtp_worker_participant *p = &pe->p;
        memset(pe, 0, sizeof *pe);
        p->room = ROOM;
        p->handle = (uint32_t)i + 1;
        p->ssrc = 0x11111111u * (uint32_t)(i + 1);
        fill_key(&p->in, in[i], (uint8_t)(0x10 * (i + 1)));
        fill_key(&p->out, out[i], (uint8_t)(0x80 + 0x10 * i));
        p->n_slots = N_SLOTS;
        for (int s = 0; s < N_SLOTS; s++)
            p->slots[s] = (rtp_room_slot_cfg){.ssrc = 0xA0000000u + 16u * (uint32_t)i + (uint32_t)s,
                                              .seq = (uint16_t)(1000 * (i + 1) + s),
                                              .ts = 100000u * (uint32_t)(i + 1)};
        pe->fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        CHECK_(pe->fd >= 0);
        pe->addr.sin_family = AF_INET;
        pe->addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t sl = sizeof pe->addr;
        CHECK_(bind(pe->fd, (struct sockaddr *)&pe->addr, sl) == 0);
        CHECK_(getsockname(pe->fd, (struct sockaddr *)&pe->addr, &sl) == 0);
    }
    atexit(cleanup);
    ready = true;
}

static size_t drain_events(size_t *latched)
{
    rtp_worker_event ev[MAX_EVS];
    size_t n, total = 0;
    while ((n = rtp_worker_events(w, ev, MAX_EVS)) > 0) {
        for (size_t i = 0; i < n && latched; i++)
            if (ev[i].kind == RTP_WORKER_EV_LATCHED) (*latched)++;
        total += n;
    }
    return total;
}

static void inject(int from, const uint8_t *buf, size_t len)
{
    CHECK_(rtp_worker_inject(w, buf, len, (const struct sockaddr *)&peers[from].addr,
                             sizeof peers[from].addr) == 0);
}

/* Fresh room, participants and SRTP sessions; every participant latched to its socket. */
static void reset(void)
{
    for (int i = 0; i < NP; i++)
        rtp_worker_remove_participant(w, peers[i].p.handle); /* -ENOENT the first time */
    rtp_worker_destroy_room(w, ROOM);
    rtp_room_config rc = {.max_participants = NP, .n_slots = N_SLOTS};
    CHECK_(rtp_worker_create_room(w, ROOM, &rc) == 0);
    for (int i = 0; i < NP; i++) {
        peer *pe = &peers[i];
        CHECK_(rtp_worker_add_participant(w, &pe->p) == 0);
        if (pe->tx) srtp_dealloc(pe->tx);
        if (pe->rx) srtp_dealloc(pe->rx);
        srtp_policy_t pt, pr;
        policy(&pt, &pe->p.in);
        pt.ssrc.type = ssrc_specific;
        pt.ssrc.value = pe->p.ssrc;
        policy(&pr, &pe->p.out);
        pr.ssrc.type = ssrc_any_inbound;
        CHECK_(srtp_create(&pe->tx, &pt) == srtp_err_status_ok);
        CHECK_(srtp_create(&pe->rx, &pr) == srtp_err_status_ok);
    }
    size_t latched = 0;
    for (int i = 0; i < NP; i++) {
        uint8_t rr[8 + SRTP_MAX_TRAILER_LEN] = {0x80, RTP_RTCP_RR, 0, 1};
        wr32(rr + 4, peers[i].p.ssrc);
        int len = 8;
        CHECK_(srtp_protect_rtcp(peers[i].tx, rr, &len) == srtp_err_status_ok);
        inject(i, rr, (size_t)len); /* the first one applies the commands */
    }
    drain_events(&latched);
    CHECK_(latched == NP);
}

/* Receives the `want` datagrams the worker sent for one record and checks each. `plain` is the
 * RTP record's plaintext (NULL otherwise). */
static void receive(int sender, size_t want, const uint8_t *plain, size_t plain_len)
{
    rtp_pkt in;
    bool in_ok = plain && rtp_parse(plain, plain_len, &in, NULL) == 0;
    struct pollfd pfd[NP];
    for (int i = 0; i < NP; i++)
        pfd[i] = (struct pollfd){.fd = peers[i].fd, .events = POLLIN};
    size_t got = 0;
    while (got < want) {
        int n = poll(pfd, NP, WAIT_MS);
        CHECK_(n > 0); /* a sent datagram never arrived on loopback */
        for (int i = 0; i < NP; i++) {
            if (!(pfd[i].revents & POLLIN)) continue;
            static uint8_t buf[BUF_SIZE];
            ssize_t r;
            while ((r = recv(peers[i].fd, buf, sizeof buf, 0)) > 0) {
                got++;
                CHECK_(got <= want);
                /* a raw record that parses as a STUN request gets the ICE-lite error response
                 * (400/401) back, never anything else of STUN's */
                if (r >= 20 && buf[0] < 4) {
                    CHECK_(i == sender && buf[0] == 0x01 && (buf[1] == 0x11 || buf[1] == 0x01));
                    continue;
                }
                CHECK_(i != sender);
                int len = (int)r;
                CHECK_(srtp_unprotect(peers[i].rx, buf, &len) == srtp_err_status_ok);
                rtp_pkt o;
                CHECK_(rtp_parse(buf, (size_t)len, &o, NULL) == 0);
                bool slot = false;
                for (int s = 0; s < N_SLOTS; s++)
                    slot |= o.ssrc == peers[i].p.slots[s].ssrc;
                CHECK_(slot);
                if (in_ok) {
                    CHECK_((size_t)len == plain_len && o.hdr_len == in.hdr_len);
                    CHECK_(memcmp(buf + o.hdr_len, plain + in.hdr_len, plain_len - in.hdr_len) ==
                           0);
                }
            }
        }
    }
}

static void record(unsigned b, const uint8_t *p, size_t n)
{
    int from = (int)((b >> 2) % NP);
    unsigned mode = b & 3;
    static uint8_t buf[BUF_SIZE];
    static uint8_t plain[MTU];
    rtp_worker_stats before, after;
    rtp_worker_stats_read(w, &before);
    size_t plain_len = 0;
    int len;
    if (mode == 0) {
        if (n > sizeof buf) n = sizeof buf;
        memcpy(buf, p, n);
        len = (int)n;
    } else {
        /* what we protect must reach the worker's unprotect: libsrtp guesses the rollover counter
         * from the packets each side has seen, so one the worker never gets (over the MTU,
         * demultiplexed as RTCP) would make the sides disagree on the next */
        if (n > MTU - SRTP_MAX_TRAILER_LEN) n = MTU - SRTP_MAX_TRAILER_LEN;
        if (n < (mode == 2 ? 8u : (size_t)RTP_HDR_MIN)) return;
        memcpy(buf, p, n);
        buf[0] = (uint8_t)((buf[0] & 0x3f) | 0x80);
        len = (int)n;
        srtp_err_status_t st;
        if (mode == 2) {
            buf[1] = (uint8_t)(192 + (buf[1] & 31));
            wr32(buf + 4, peers[from].p.ssrc);
            st = srtp_protect_rtcp(peers[from].tx, buf, &len);
        } else {
            if ((buf[1] & 0x7f) >= 64 && (buf[1] & 0x7f) < 96) buf[1] ^= 0x40; /* RFC 5761 */
            wr32(buf + 8, peers[from].p.ssrc);
            memcpy(plain, buf, n);
            plain_len = n;
            st = srtp_protect(peers[from].tx, buf, &len);
        }
        if (st != srtp_err_status_ok) return;
    }
    rtp_kind kind = rtp_demux(buf, (size_t)len);
    inject(from, buf, (size_t)len);
    rtp_worker_stats_read(w, &after);
    drain_events(NULL);
    size_t sent = after.tx_datagrams - before.tx_datagrams;
    CHECK_(after.drop_send == before.drop_send && sent <= NP - 1);
    if (mode == 2) CHECK_(kind == RTP_KIND_RTCP && after.rtcp_ok == before.rtcp_ok + 1);
    if (mode == 1 || mode == 3) CHECK_(kind == RTP_KIND_RTP && after.rtp_ok == before.rtp_ok + 1);
    if (kind == RTP_KIND_RTCP) CHECK_(sent == 0);
    receive(from, sent, plain_len && kind == RTP_KIND_RTP ? plain : NULL, plain_len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!ready) setup_once();
    reset();
    size_t off = 0;
    for (int r = 0; r < RECORDS && off + 3 <= size; r++) {
        unsigned b = data[off];
        size_t n = (size_t)data[off + 1] << 8 | data[off + 2];
        off += 3;
        if (n > size - off) n = size - off;
        record(b, data + off, n);
        off += n;
    }
    return 0;
}
