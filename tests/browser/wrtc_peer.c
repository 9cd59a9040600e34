/*
 * tests/browser/wrtc_peer.c — one webrtc transport built from webrtc/ and libsrtp, for checking the
 * module against a real browser (tests/browser/webrtc_chromium.py) until the media worker drives
 * it. Not the node: one peer, one UDP socket on 127.0.0.1, a poll loop, no rooms.
 *
 *   wrtc_peer [slots] [seconds]  <offer.sdp  >answer.sdp  2>log
 *
 * Reads the browser's offer on stdin, writes the answer on stdout and closes it, then for `seconds`
 * (default 12): answers STUN checks (latching the address of the first authenticated
 * USE-CANDIDATE), runs the DTLS server on that transport, and once connected unprotects the
 * browser's SRTP/SRTCP with the exported `in` key (reading the RFC 6464 level of each RTP packet)
 * and sends 20 ms Opus silence frames on each of the `slots` slot SSRCs (1111, 2222, …; default 3)
 * protected with the `out` key, 200 per slot. Ends with one line on stderr: "summary key=value …".
 */
#include "rtp/rtp.h"
#include "webrtc/webrtc.h"

#include <arpa/inet.h>
#include <poll.h>
#include <srtp2/srtp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define UFRAG "vxdpeer1"
#define PWD   "voxdPeerPasswordForTests24"

typedef struct peer {
    int fd;
    wrtc_sdp_offer offer;
    wrtc_dtls *dtls;
    srtp_t in, out;
    struct sockaddr_storage addr; /* latched */
    socklen_t addr_len;
    int stun_ok, stun_use_candidate, stun_after_dtls, stun_refused;
    int rtp_in, rtp_ok, rtp_voiced, rtcp_ok, sent;
    int level_min, level_max;
    wrtc_srtp_profile profile;
} peer;

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int make_srtp(srtp_t *s, const wrtc_srtp_key *k, srtp_ssrc_type_t type)
{
    srtp_policy_t p;
    memset(&p, 0, sizeof p);
    if (k->profile == WRTC_SRTP_AEAD_AES_128_GCM) {
        srtp_crypto_policy_set_aes_gcm_128_16_auth(&p.rtp);
        srtp_crypto_policy_set_aes_gcm_128_16_auth(&p.rtcp);
    } else {
        srtp_crypto_policy_set_aes_cm_128_hmac_sha1_80(&p.rtp);
        srtp_crypto_policy_set_aes_cm_128_hmac_sha1_80(&p.rtcp);
    }
    p.ssrc.type = type;
    p.key = (unsigned char *)k->key;
    p.window_size = 128;
    return srtp_create(s, &p) == srtp_err_status_ok ? 0 : -1;
}

static void on_stun(peer *pr, const uint8_t *b, size_t n, const struct sockaddr_storage *from,
                    socklen_t fl)
{
    wrtc_stun_msg m;
    wrtc_stun_err why;
    uint8_t out[WRTC_STUN_RESP_MAX];
    int on = 0;
    if (wrtc_stun_parse(b, n, &m, &why) == 0 &&
        wrtc_stun_check(&m, UFRAG, pr->offer.ice_ufrag, PWD, &why) == 0) {
        pr->stun_ok++;
        if (pr->in) pr->stun_after_dtls++;
        if (m.use_candidate) {
            pr->stun_use_candidate++;
            if (!pr->addr_len) memcpy(&pr->addr, from, fl), pr->addr_len = fl;
        }
        on = wrtc_stun_write_success(&m, (const struct sockaddr *)from, PWD, out, sizeof out);
    } else {
        pr->stun_refused++;
        fprintf(stderr, "stun refused: %s\n", wrtc_stun_err_name(why));
        int code = wrtc_stun_err_code(why);
        if (code) on = wrtc_stun_write_error(&m, code, code >= 420 ? PWD : NULL, out, sizeof out);
    }
    if (on > 0) sendto(pr->fd, out, (size_t)on, 0, (const struct sockaddr *)from, fl);
}

static void on_dtls(peer *pr, const uint8_t *b, size_t n, const struct sockaddr_storage *from,
                    socklen_t fl)
{
    if (!pr->addr_len || fl != pr->addr_len || memcmp(from, &pr->addr, fl) != 0) return;
    int rc = wrtc_dtls_feed(pr->dtls, b, n);
    uint8_t out[WRTC_DTLS_MTU];
    int m;
    while ((m = wrtc_dtls_pull(pr->dtls, out, sizeof out)) > 0)
        sendto(pr->fd, out, (size_t)m, 0, (const struct sockaddr *)from, fl);
    if (rc < 0) fprintf(stderr, "dtls: %d %s\n", rc, wrtc_dtls_fail_reason(pr->dtls));
    if (rc == WRTC_DTLS_CONNECTED && !pr->in) {
        wrtc_srtp_key in, outk;
        wrtc_dtls_srtp_keys(pr->dtls, &in, &outk);
        pr->profile = in.profile;
        if (make_srtp(&pr->in, &in, ssrc_any_inbound) ||
            make_srtp(&pr->out, &outk, ssrc_any_outbound))
            fprintf(stderr, "srtp_create failed\n");
    }
}

static void on_media(peer *pr, uint8_t *b, size_t n, rtp_kind k)
{
    int len = (int)n;
    if (k == RTP_KIND_RTCP) {
        if (srtp_unprotect_rtcp(pr->in, b, &len) == srtp_err_status_ok) pr->rtcp_ok++;
        return;
    }
    pr->rtp_in++;
    if (srtp_unprotect(pr->in, b, &len) != srtp_err_status_ok) return;
    pr->rtp_ok++;
    rtp_pkt pk;
    bool voice;
    uint8_t level;
    if (rtp_parse(b, (size_t)len, &pk, NULL) == 0 && pr->offer.level_ext_id &&
        rtp_audio_level(&pk, pr->offer.level_ext_id, &voice, &level) == 0) {
        if (voice) pr->rtp_voiced++;
        if (level < pr->level_min) pr->level_min = level;
        if (level > pr->level_max) pr->level_max = level;
    }
}

static void send_slots(peer *pr, unsigned slots, uint16_t seq, uint32_t ts)
{
    for (unsigned s = 0; s < slots; s++) {
        uint8_t pkt[64 + SRTP_MAX_TRAILER_LEN];
        rtp_hdr_params h = {.pt = pr->offer.opus_pt,
                            .seq = seq,
                            .ts = ts,
                            .ssrc = 1111 * (s + 1),
                            .level_id = pr->offer.level_ext_id <= 14 ? pr->offer.level_ext_id : 0,
                            .voice = true,
                            .level = 30};
        int hl = rtp_write_hdr(pkt, sizeof pkt, &h);
        static const uint8_t opus_silence[3] = {0xf8, 0xff, 0xfe};
        memcpy(pkt + hl, opus_silence, sizeof opus_silence);
        int len = hl + (int)sizeof opus_silence;
        if (srtp_protect(pr->out, pkt, &len) == srtp_err_status_ok &&
            sendto(pr->fd, pkt, (size_t)len, 0, (struct sockaddr *)&pr->addr, pr->addr_len) > 0)
            pr->sent++;
    }
}

int main(int argc, char **argv)
{
    unsigned slots = argc > 1 ? (unsigned)atoi(argv[1]) : 3;
    double secs = argc > 2 ? atof(argv[2]) : 12;
    if (slots < 1 || slots > WRTC_SDP_MAX_SLOTS) return 2;
    static peer pr;
    pr.level_min = 128;
    static char text[WRTC_SDP_MAX_LEN + 1];
    size_t n = fread(text, 1, sizeof text, stdin);
    wrtc_sdp_err why;
    unsigned line;
    if (wrtc_sdp_parse(text, n, &pr.offer, &why, &line) != 0) {
        fprintf(stderr, "summary offer=%s line=%u\n", wrtc_sdp_err_name(why), line);
        return 1;
    }
    wrtc_dtls_ctx *ctx;
    if (wrtc_dtls_ctx_new(NULL, NULL, &ctx) != 0 || srtp_init() != srtp_err_status_ok) return 1;
    pr.fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    if (bind(pr.fd, (struct sockaddr *)&a, sizeof a) ||
        getsockname(pr.fd, (struct sockaddr *)&a, &al))
        return 1;
    uint32_t ssrcs[WRTC_SDP_MAX_SLOTS];
    for (unsigned i = 0; i < slots; i++)
        ssrcs[i] = 1111 * (i + 1);
    wrtc_sdp_answer_params ap = {.ice_ufrag = UFRAG,
                                 .ice_pwd = PWD,
                                 .fingerprint = wrtc_dtls_ctx_fingerprint(ctx),
                                 .ip = "127.0.0.1",
                                 .port = ntohs(a.sin_port),
                                 .session_id = 1,
                                 .cname = "voxd",
                                 .stream_id = "voxd",
                                 .slot_ssrcs = ssrcs,
                                 .n_slots = slots};
    static char ans[16384];
    int an = wrtc_sdp_answer(&pr.offer, &ap, ans, sizeof ans);
    if (an < 0) return 1;
    fwrite(ans, 1, (size_t)an, stdout);
    fclose(stdout);
    if (wrtc_dtls_new(ctx, pr.offer.fingerprint, &pr.dtls) != 0) return 1;

    double end = now_s() + secs, next_send = 0;
    uint16_t seq = 1000;
    uint32_t ts = 48000;
    unsigned per_slot = 0;
    while (now_s() < end) {
        long to = wrtc_dtls_timeout_ms(pr.dtls);
        if (to < 0 || to > 5) to = 5;
        struct pollfd pf = {pr.fd, POLLIN, 0};
        if (poll(&pf, 1, (int)to) > 0) {
            uint8_t b[2048];
            struct sockaddr_storage from;
            socklen_t fl = sizeof from;
            ssize_t r = recvfrom(pr.fd, b, sizeof b, 0, (struct sockaddr *)&from, &fl);
            if (r > 0) {
                rtp_kind k = rtp_demux(b, (size_t)r);
                if (k == RTP_KIND_STUN)
                    on_stun(&pr, b, (size_t)r, &from, fl);
                else if (k == RTP_KIND_DTLS)
                    on_dtls(&pr, b, (size_t)r, &from, fl);
                else if ((k == RTP_KIND_RTP || k == RTP_KIND_RTCP) && pr.in)
                    on_media(&pr, b, (size_t)r, k);
            }
        }
        if (wrtc_dtls_timeout_ms(pr.dtls) == 0) {
            wrtc_dtls_on_timeout(pr.dtls);
            uint8_t out[WRTC_DTLS_MTU];
            int m;
            while ((m = wrtc_dtls_pull(pr.dtls, out, sizeof out)) > 0)
                sendto(pr.fd, out, (size_t)m, 0, (struct sockaddr *)&pr.addr, pr.addr_len);
        }
        if (pr.out && per_slot < 200 && now_s() >= next_send) {
            next_send = now_s() + 0.02;
            send_slots(&pr, slots, seq++, ts);
            ts += 960;
            per_slot++;
        }
    }
    fprintf(stderr,
            "summary offer=ok stun_ok=%d use_candidate=%d stun_after_dtls=%d stun_refused=%d "
            "dtls=%s fail=%s profile=%s rtp_in=%d rtp_ok=%d voiced=%d level_min=%d level_max=%d "
            "rtcp_ok=%d sent=%d\n",
            pr.stun_ok, pr.stun_use_candidate, pr.stun_after_dtls, pr.stun_refused,
            wrtc_dtls_state_name(wrtc_dtls_get_state(pr.dtls)),
            wrtc_dtls_fail_reason(pr.dtls)[0] ? wrtc_dtls_fail_reason(pr.dtls) : "-",
            pr.profile == WRTC_SRTP_AEAD_AES_128_GCM          ? "AEAD_AES_128_GCM"
            : pr.profile == WRTC_SRTP_AES_CM_128_HMAC_SHA1_80 ? "AES_CM_128_HMAC_SHA1_80"
                                                              : "-",
            pr.rtp_in, pr.rtp_ok, pr.rtp_voiced, pr.level_min, pr.level_max, pr.rtcp_ok, pr.sent);
    if (pr.in) srtp_dealloc(pr.in);
    if (pr.out) srtp_dealloc(pr.out);
    wrtc_dtls_free(pr.dtls);
    wrtc_dtls_ctx_free(ctx);
    return 0;
}
