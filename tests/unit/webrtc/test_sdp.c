/*
 * tests/unit/webrtc/test_sdp.c — SDP offer/answer: Chromium-shaped offers (tests/unit/webrtc/
 * fixtures/: audio only, and audio + video + data channel) and two real Chromium 156 captures (one
 * of them with 3 recvonly audio transceivers) parse into what the answer needs; the answer is
 * checked line by line (audio accepted with the offer's payload type, extmap id and mid; video and
 * data rejected with port 0; BUNDLE on the audio mid only; one ssrc per slot); a Firefox-shaped
 * offer (credentials at session level, LF line ends) is accepted; and each refusal has its reason
 * (and the line, for syntax).
 */
#include "tests/unit/test.h"
#include "webrtc/webrtc.h"

#include <errno.h>
#include <stdlib.h>

static char *load(const char *name, size_t *len)
{
    char path[256];
    snprintf(path, sizeof path, "tests/unit/webrtc/fixtures/%s", name);
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    static char bufs[4][65536];
    static int next;
    char *b = bufs[next++ % 4];
    *len = fread(b, 1, sizeof bufs[0] - 1, f);
    b[*len] = 0;
    fclose(f);
    return b;
}

/* a copy of s with the first `from` replaced by `to` (static buffer; NULL if `from` is absent) */
static char *edit(const char *s, const char *from, const char *to)
{
    static char out[2][70000];
    static int k;
    char *o = out[k++ % 2];
    const char *at = strstr(s, from);
    if (!at) return NULL;
    size_t pre = (size_t)(at - s);
    memcpy(o, s, pre);
    strcpy(o + pre, to);
    strcat(o + pre, at + strlen(from));
    return o;
}

static const uint32_t slots[3] = {1001, 1002, 1003};
static const char *OUR_FP = "AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:"
                            "11:22:33:44:55:66:77:88:99";

static wrtc_sdp_answer_params params(void)
{
    wrtc_sdp_answer_params a = {
        .ice_ufrag = "Xk3p",
        .ice_pwd = "hN7rQe2mVb9sLw4tYc6zAa",
        .fingerprint = OUR_FP,
        .ip = "127.0.0.1",
        .port = 40000,
        .session_id = 123456789,
        .cname = "voxd",
        .stream_id = "voxd",
        .slot_ssrcs = slots,
        .n_slots = 3,
    };
    return a;
}

static wrtc_sdp_err parse_str(const char *s, wrtc_sdp_offer *o, unsigned *line)
{
    wrtc_sdp_err why = WRTC_SDP_ERR_COUNT_;
    int rc = wrtc_sdp_parse(s, strlen(s), o, &why, line);
    if (rc == 0 && why != WRTC_SDP_OK) return WRTC_SDP_ERR_COUNT_;
    if (rc != 0 && why == WRTC_SDP_OK) return WRTC_SDP_ERR_COUNT_;
    return why;
}

TEST(chrome_audio_offer)
{
    size_t n;
    const char *s = load("chrome_audio_offer.sdp", &n);
    CHECK(s);
    static wrtc_sdp_offer o;
    wrtc_sdp_err why;
    unsigned line;
    CHECK_EQ_INT(wrtc_sdp_parse(s, n, &o, &why, &line), 0);
    CHECK_EQ_INT(o.n_mlines, 1);
    CHECK_EQ_INT(o.audio, 0);
    CHECK_EQ_STR(o.m[0].kind, "audio");
    CHECK_EQ_STR(o.m[0].proto, "UDP/TLS/RTP/SAVPF");
    CHECK_EQ_STR(o.m[0].mid, "0");
    CHECK_EQ_INT(o.m[0].port, 9);
    CHECK(o.bundle);
    CHECK_EQ_INT(o.opus_pt, 111);
    CHECK_EQ_STR(o.opus_fmtp, "minptime=10;useinbandfec=1");
    CHECK_EQ_INT(o.level_ext_id, 1);
    CHECK_EQ_STR(o.ice_ufrag, "tW4e");
    CHECK_EQ_STR(o.ice_pwd, "NfX1zrW8Vb0bKq3YgZp2Lc7d");
    CHECK_EQ_INT(o.fingerprint[0], 0x3C);
    CHECK_EQ_INT(o.fingerprint[31], 0x41);
    CHECK(o.has_ssrc);
    CHECK_EQ_INT(o.ssrc, 3735928559u);
    CHECK_EQ_INT(o.dir, WRTC_SDP_SENDRECV);
    CHECK(!o.ice_lite_peer);

    wrtc_sdp_answer_params a = params();
    char ans[4096];
    int len = wrtc_sdp_answer(&o, &a, ans, sizeof ans);
    CHECK(len > 0);
    CHECK_EQ_INT(strlen(ans), len);
    const char *expect =
        "v=0\r\n"
        "o=- 123456789 2 IN IP4 127.0.0.1\r\n"
        "s=-\r\n"
        "t=0 0\r\n"
        "a=group:BUNDLE 0\r\n"
        "a=ice-lite\r\n"
        "m=audio 40000 UDP/TLS/RTP/SAVPF 111\r\n"
        "c=IN IP4 127.0.0.1\r\n"
        "a=ice-ufrag:Xk3p\r\n"
        "a=ice-pwd:hN7rQe2mVb9sLw4tYc6zAa\r\n"
        "a=fingerprint:sha-256 AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:"
        "00:11:22:33:44:55:66:77:88:99\r\n"
        "a=setup:passive\r\n"
        "a=mid:0\r\n"
        "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n"
        "a=sendrecv\r\n"
        "a=rtcp-mux\r\n"
        "a=rtpmap:111 opus/48000/2\r\n"
        "a=fmtp:111 minptime=10;useinbandfec=1\r\n"
        "a=ssrc:1001 cname:voxd\r\n"
        "a=ssrc:1001 msid:voxd slot0\r\n"
        "a=candidate:1 1 udp 2130706431 127.0.0.1 40000 typ host\r\n"
        "a=end-of-candidates\r\n";
    if (strcmp(ans, expect) != 0) fprintf(stderr, "answer:\n%s", ans);
    CHECK(strcmp(ans, expect) == 0);

    /* our answer is well-formed SDP by our own parser: it only fails on being passive */
    static wrtc_sdp_offer back;
    CHECK_EQ_INT(parse_str(ans, &back, NULL), WRTC_SDP_BAD_SETUP);

    /* every smaller buffer: -ENOSPC and an empty string, never a truncated answer */
    for (int cap = 0; cap <= len; cap++) {
        char small[4096];
        memset(small, 'x', sizeof small);
        CHECK_EQ_INT(wrtc_sdp_answer(&o, &a, small, (size_t)cap), -ENOSPC);
        if (cap > 0) CHECK_EQ_INT(small[0], 0);
        CHECK_EQ_INT(small[cap], 'x');
    }
}

TEST(chrome_av_data_offer)
{
    size_t n;
    const char *s = load("chrome_av_data_offer.sdp", &n);
    CHECK(s);
    static wrtc_sdp_offer o;
    CHECK_EQ_INT(wrtc_sdp_parse(s, n, &o, NULL, NULL), 0);
    CHECK_EQ_INT(o.n_mlines, 3);
    CHECK_EQ_INT(o.audio, 0);
    CHECK_EQ_STR(o.m[1].kind, "video");
    CHECK_EQ_STR(o.m[1].fmt, "96");
    CHECK_EQ_STR(o.m[1].mid, "1");
    CHECK_EQ_STR(o.m[2].kind, "application");
    CHECK_EQ_STR(o.m[2].proto, "UDP/DTLS/SCTP");
    CHECK_EQ_STR(o.m[2].fmt, "webrtc-datachannel");
    CHECK(o.bundle);
    CHECK_EQ_INT(o.level_ext_id, 1);
    wrtc_sdp_answer_params a = params();
    a.ip = "2001:db8::7";
    a.n_slots = 1;
    char ans[4096];
    CHECK(wrtc_sdp_answer(&o, &a, ans, sizeof ans) > 0);
    CHECK(strstr(ans, "a=group:BUNDLE 0\r\n"));
    CHECK(strstr(ans, "o=- 123456789 2 IN IP6 2001:db8::7\r\n"));
    CHECK(strstr(ans, "m=audio 40000 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP6 2001:db8::7\r\n"));
    CHECK(strstr(ans, "m=video 0 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP6 ::\r\na=mid:1\r\n"));
    CHECK(strstr(ans, "m=application 0 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP6 ::\r\n"
                      "a=mid:2\r\n"));
    CHECK(strstr(ans, "a=candidate:1 1 udp 2130706431 2001:db8::7 40000 typ host\r\n"));
    CHECK(strstr(ans, "a=ssrc:1001 cname:voxd\r\n"));
    CHECK(!strstr(ans, "a=ssrc:1002"));
    /* m-lines in the offer's order */
    const char *ma = strstr(ans, "m=audio"), *mv = strstr(ans, "m=video"),
               *md = strstr(ans, "m=application");
    CHECK(ma && mv && md && ma < mv && mv < md);
}

/* A real Chromium 156 offer (captured headless, getUserMedia with the fake device): one sendrecv
 * audio transceiver and 3 recvonly ones, video and a data channel, all in one BUNDLE group. With 3
 * slots the answer puts one slot SSRC on each of mids 0–2, mid 3 is accepted but inactive (no slot
 * left), video and data are rejected; Chromium accepted this answer and played each slot on its own
 * track (docs/webrtc.md). */
TEST(chromium_multi_recv_offer)
{
    size_t n;
    const char *s = load("chromium156_1send_3recv_offer.sdp", &n);
    CHECK(s);
    static wrtc_sdp_offer o;
    CHECK_EQ_INT(wrtc_sdp_parse(s, n, &o, NULL, NULL), 0);
    CHECK_EQ_INT(o.n_mlines, 6);
    CHECK_EQ_INT(o.audio, 0);
    CHECK_EQ_INT(o.n_audio, 4);
    CHECK_EQ_INT(o.n_recv, 4);
    CHECK(o.bundle);
    CHECK_EQ_INT(o.ssrc, 979210638u);
    for (int i = 0; i < 4; i++) {
        CHECK(o.m[i].accepted);
        CHECK_EQ_INT(o.m[i].opus_pt, 111);
        CHECK_EQ_INT(o.m[i].level_ext_id, 1);
        CHECK_EQ_INT(o.m[i].dir, i == 0 ? WRTC_SDP_SENDRECV : WRTC_SDP_RECVONLY);
    }
    CHECK(!o.m[4].accepted && !o.m[5].accepted);
    wrtc_sdp_answer_params a = params();
    static char ans[16384];
    int len = wrtc_sdp_answer(&o, &a, ans, sizeof ans);
    CHECK(len > 0);
    CHECK(strstr(ans, "a=group:BUNDLE 0 1 2 3\r\n"));
    const char *m0 = strstr(ans, "a=mid:0\r\n"), *m1 = strstr(ans, "a=mid:1\r\n"),
               *m2 = strstr(ans, "a=mid:2\r\n"), *m3 = strstr(ans, "a=mid:3\r\n"),
               *m4 = strstr(ans, "a=mid:4\r\n");
    CHECK(m0 && m1 && m2 && m3 && m4 && m0 < m1 && m1 < m2 && m2 < m3 && m3 < m4);
    const char *s0 = strstr(ans, "a=ssrc:1001 msid:voxd slot0"),
               *s1 = strstr(ans, "a=ssrc:1002 msid:voxd slot1"),
               *s2 = strstr(ans, "a=ssrc:1003 msid:voxd slot2");
    CHECK(s0 && s1 && s2 && m0 < s0 && s0 < m1 && m1 < s1 && s1 < m2 && m2 < s2 && s2 < m3);
    CHECK(strstr(m0, "a=sendrecv\r\n") < m1);
    CHECK(strstr(m1, "a=sendonly\r\n") < m2);
    CHECK(strstr(m3, "a=inactive\r\n") < m4);
    CHECK(!strstr(m3, "a=ssrc:"));
    CHECK(strstr(ans, "m=video 0 UDP/TLS/RTP/SAVPF 96\r\n"));
    CHECK(strstr(ans, "m=application 0 UDP/DTLS/SCTP webrtc-datachannel\r\n"));
    /* one candidate, in the BUNDLE tag's section */
    const char *c = strstr(ans, "a=candidate:");
    CHECK(c && c < m1 && !strstr(c + 1, "a=candidate:"));
    /* 5 slots: still one per receiving section, the fourth on mid 3 */
    uint32_t five[5] = {1, 2, 3, 4, 5};
    a.slot_ssrcs = five;
    a.n_slots = 5;
    CHECK(wrtc_sdp_answer(&o, &a, ans, sizeof ans) > 0);
    CHECK(strstr(ans, "a=ssrc:4 msid:voxd slot3\r\n"));
    CHECK(!strstr(ans, "a=ssrc:5 "));
    /* not bundled with the main section: only the main one is accepted */
    CHECK_EQ_INT(parse_str(edit(s, "a=group:BUNDLE 0 1 2 3 4 5", "a=group:BUNDLE 0 4 5"), &o, NULL),
                 WRTC_SDP_OK);
    CHECK_EQ_INT(o.n_audio, 1);
    CHECK(!o.m[1].accepted && !o.m[3].accepted);
    CHECK_EQ_INT(parse_str(edit(s, "a=group:BUNDLE 0 1 2 3 4 5\r\n", ""), &o, NULL), WRTC_SDP_OK);
    CHECK_EQ_INT(o.n_audio, 1);
    CHECK(!o.bundle);
    /* the other real capture: audio + video + data */
    s = load("chromium156_av_data_offer.sdp", &n);
    CHECK(s);
    CHECK_EQ_INT(wrtc_sdp_parse(s, n, &o, NULL, NULL), 0);
    CHECK_EQ_INT(o.n_mlines, 3);
    CHECK_EQ_INT(o.n_audio, 1);
    CHECK_EQ_INT(o.n_recv, 1);
}

/* The audio m-section second, after a video one, and an audio one without opus before it. */
TEST(audio_not_first)
{
    size_t n;
    const char *s = load("chrome_av_data_offer.sdp", &n);
    CHECK(s);
    /* move the audio section after the video section: take the text apart */
    const char *mv = strstr(s, "m=video"), *md = strstr(s, "m=application");
    const char *ma = strstr(s, "m=audio");
    CHECK(mv && md && ma);
    static char buf[8192];
    size_t hdr = (size_t)(ma - s), alen = (size_t)(mv - ma), vlen = (size_t)(md - mv);
    memcpy(buf, s, hdr);
    memcpy(buf + hdr, mv, vlen);
    memcpy(buf + hdr + vlen, ma, alen);
    strcpy(buf + hdr + vlen + alen, md);
    static wrtc_sdp_offer o;
    CHECK_EQ_INT(parse_str(buf, &o, NULL), WRTC_SDP_OK);
    CHECK_EQ_INT(o.audio, 1);
    CHECK_EQ_STR(o.m[0].kind, "video");
    CHECK_EQ_STR(o.m[1].mid, "0");
    /* a first audio section without opus is rejected, the second one (with opus) accepted */
    static char two[16384];
    const char *noopus = edit(ma, "a=rtpmap:111 opus/48000/2", "a=rtpmap:111 foo/48000/2");
    CHECK(noopus);
    size_t aonly = (size_t)(strstr(noopus, "m=video") - noopus);
    memcpy(two, s, hdr);
    memcpy(two + hdr, noopus, aonly);
    strcpy(two + hdr + aonly, edit(ma, "a=mid:0", "a=mid:a2"));
    CHECK_EQ_INT(parse_str(two, &o, NULL), WRTC_SDP_OK);
    CHECK_EQ_INT(o.audio, 1);
    CHECK_EQ_STR(o.m[1].mid, "a2");
    CHECK(!o.bundle); /* a2 is not in the BUNDLE group */
}

/* Firefox: ICE credentials and fingerprint at session level, LF line ends, no a=ssrc mid-level */
TEST(firefox_offer)
{
    const char *s = "v=0\n"
                    "o=mozilla...THIS_IS_SDPARTA-99.0 6131452311234 0 IN IP4 0.0.0.0\n"
                    "s=-\n"
                    "t=0 0\n"
                    "a=fingerprint:sha-256 3C:4A:AA:E3:57:6E:1B:9A:0D:85:3D:0A:8F:F6:B5:30:88:96:"
                    "CE:5B:3E:E2:0C:7F:1A:8A:36:6C:0E:19:22:41\n"
                    "a=group:BUNDLE 0\n"
                    "a=ice-options:trickle\n"
                    "a=msid-semantic:WMS *\n"
                    "m=audio 9 UDP/TLS/RTP/SAVPF 109 9 0 8 101\n"
                    "c=IN IP4 0.0.0.0\n"
                    "a=recvonly\n"
                    "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\n"
                    "a=extmap:3/recvonly urn:ietf:params:rtp-hdrext:csrc-audio-level\n"
                    "a=fmtp:109 maxplaybackrate=48000;stereo=1;useinbandfec=1\n"
                    "a=ice-pwd:4d8c7e2b1a0f9e8d7c6b5a4f3e2d1c0b\n"
                    "a=ice-ufrag:8e1f0a2b\n"
                    "a=mid:0\n"
                    "a=rtcp-mux\n"
                    "a=rtpmap:109 OPUS/48000/2\n"
                    "a=setup:actpass\n";
    static wrtc_sdp_offer o;
    CHECK_EQ_INT(parse_str(s, &o, NULL), WRTC_SDP_OK);
    CHECK_EQ_INT(o.opus_pt, 109);
    CHECK_EQ_STR(o.opus_fmtp, "maxplaybackrate=48000;stereo=1;useinbandfec=1");
    CHECK_EQ_STR(o.ice_ufrag, "8e1f0a2b");
    CHECK_EQ_INT(o.fingerprint[1], 0x4A);
    CHECK_EQ_INT(o.dir, WRTC_SDP_RECVONLY);
    CHECK(!o.has_ssrc);
    wrtc_sdp_answer_params a = params();
    char ans[4096];
    CHECK(wrtc_sdp_answer(&o, &a, ans, sizeof ans) > 0);
    CHECK(strstr(ans, "a=sendonly\r\n"));
    CHECK(strstr(ans, "a=rtpmap:109 opus/48000/2\r\n"));
    CHECK(strstr(ans, "a=ssrc:1001 msid:voxd slot0\r\n"));
    CHECK(!strstr(ans, "a=ssrc:1002")); /* one receiving m-section: one slot */
    /* a send-only client hears nothing: the answer is recvonly and names no ssrc */
    CHECK_EQ_INT(parse_str(edit(s, "a=recvonly", "a=sendonly"), &o, NULL), WRTC_SDP_OK);
    CHECK(wrtc_sdp_answer(&o, &a, ans, sizeof ans) > 0);
    CHECK(strstr(ans, "a=recvonly\r\n"));
    CHECK(!strstr(ans, "a=ssrc:"));
    /* no a=setup at all: RFC 4145's default (active) is fine for a passive answerer */
    CHECK_EQ_INT(parse_str(edit(s, "a=setup:actpass\n", ""), &o, NULL), WRTC_SDP_OK);
    CHECK_EQ_INT(parse_str(edit(s, "a=setup:actpass", "a=setup:active"), &o, NULL), WRTC_SDP_OK);
}

TEST(refusals)
{
    size_t n;
    const char *s = load("chrome_av_data_offer.sdp", &n);
    CHECK(s);
    static wrtc_sdp_offer o;
    unsigned line = 99;
    CHECK_EQ_INT(parse_str(s, &o, &line), WRTC_SDP_OK);
    CHECK_EQ_INT(line, 0);
    CHECK_EQ_INT(parse_str(edit(s, "m=audio 9", "m=audio 0"), &o, &line), WRTC_SDP_NO_AUDIO);
    CHECK_EQ_INT(line, 0);
    CHECK_EQ_INT(parse_str(edit(s, "m=audio", "m=audiox"), &o, NULL), WRTC_SDP_NO_AUDIO);
    CHECK_EQ_INT(parse_str(edit(s, "m=audio 9 UDP/TLS/RTP/SAVPF", "m=audio 9 RTP/AVP"), &o, NULL),
                 WRTC_SDP_NO_AUDIO);
    CHECK_EQ_INT(parse_str(edit(s, "opus/48000/2", "opus/48000/1"), &o, NULL), WRTC_SDP_NO_OPUS);
    CHECK_EQ_INT(parse_str(edit(s, "opus/48000/2", "ISAC/16000"), &o, NULL), WRTC_SDP_NO_OPUS);
    /* an rtpmap for a payload type the m= line does not list */
    CHECK_EQ_INT(parse_str(edit(s, "SAVPF 111 63 9", "SAVPF 63 9"), &o, NULL), WRTC_SDP_NO_OPUS);
    CHECK_EQ_INT(parse_str(edit(s, "a=ice-ufrag:tW4e\r\n", ""), &o, NULL), WRTC_SDP_NO_ICE);
    CHECK_EQ_INT(parse_str(edit(s, "a=ice-pwd:NfX1zrW8Vb0bKq3YgZp2Lc7d\r\n", ""), &o, NULL),
                 WRTC_SDP_NO_ICE);
    CHECK_EQ_INT(parse_str(edit(s, "a=fingerprint:sha-256", "a=fingerprint:sha-512"), &o, NULL),
                 WRTC_SDP_NO_FINGERPRINT);
    CHECK_EQ_INT(parse_str(edit(s, "a=setup:actpass", "a=setup:passive"), &o, NULL),
                 WRTC_SDP_BAD_SETUP);
    CHECK_EQ_INT(parse_str(edit(s, "a=rtcp-mux\r\n", ""), &o, NULL), WRTC_SDP_NO_RTCP_MUX);
    /* video only */
    const char *mv = strstr(s, "m=video"), *ma = strstr(s, "m=audio");
    static char vonly[8192];
    memcpy(vonly, s, (size_t)(ma - s));
    strcpy(vonly + (ma - s), mv);
    CHECK_EQ_INT(parse_str(vonly, &o, NULL), WRTC_SDP_NO_AUDIO);
    CHECK_EQ_STR(wrtc_sdp_err_name(WRTC_SDP_NO_RTCP_MUX), "no_rtcp_mux");
    for (int e = 0; e < WRTC_SDP_ERR_COUNT_; e++)
        CHECK(strcmp(wrtc_sdp_err_name((wrtc_sdp_err)e), "unknown") != 0);
}

TEST(malformed_and_oversize)
{
    size_t n;
    const char *s = load("chrome_audio_offer.sdp", &n);
    CHECK(s);
    static wrtc_sdp_offer o;
    unsigned line = 0;
    wrtc_sdp_err why;
    CHECK_EQ_INT(parse_str("", &o, &line), WRTC_SDP_MALFORMED);
    CHECK_EQ_INT(parse_str(edit(s, "v=0", "v=1"), &o, &line), WRTC_SDP_MALFORMED);
    CHECK_EQ_INT(line, 1);
    CHECK_EQ_INT(parse_str(edit(s, "s=-", "s"), &o, &line), WRTC_SDP_MALFORMED);
    CHECK_EQ_INT(line, 3);
    CHECK_EQ_INT(parse_str(edit(s, "s=-", "S=-"), &o, &line), WRTC_SDP_MALFORMED);
    CHECK_EQ_INT(parse_str(edit(s, "m=audio 9", "m=audio 65536"), &o, &line), WRTC_SDP_MALFORMED);
    CHECK_EQ_INT(line, 8);
    CHECK_EQ_INT(
        parse_str(edit(s, "m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126", "m=audio 9"), &o,
                  NULL),
        WRTC_SDP_MALFORMED);
    CHECK_EQ_INT(parse_str(edit(s, "sha-256 3C:4A", "sha-256 3C-4A"), &o, NULL),
                 WRTC_SDP_MALFORMED);
    CHECK_EQ_INT(parse_str(edit(s, "a=ice-ufrag:tW4e", "a=ice-ufrag:tW4"), &o, NULL),
                 WRTC_SDP_MALFORMED);
    CHECK_EQ_INT(parse_str(edit(s, "a=ice-ufrag:tW4e", "a=ice-ufrag:tW4e;"), &o, NULL),
                 WRTC_SDP_MALFORMED);
    CHECK_EQ_INT(parse_str(edit(s, "a=setup:actpass", "a=setup:maybe"), &o, NULL),
                 WRTC_SDP_MALFORMED);
    CHECK_EQ_INT(parse_str(edit(s, "a=extmap:1 ", "a=extmap:15 "), &o, NULL), WRTC_SDP_MALFORMED);
    CHECK_EQ_INT(parse_str(edit(s, "a=rtpmap:111 opus", "a=rtpmap:128 opus"), &o, NULL),
                 WRTC_SDP_MALFORMED);
    CHECK_EQ_INT(parse_str(edit(s, "a=ssrc:3735928559 cname", "a=ssrc:4294967296 cname"), &o, NULL),
                 WRTC_SDP_MALFORMED);
    /* a NUL byte inside a line */
    char nul[4096];
    memcpy(nul, s, n);
    nul[20] = 0;
    CHECK_EQ_INT(wrtc_sdp_parse(nul, n, &o, &why, &line), -EINVAL);
    CHECK_EQ_INT(why, WRTC_SDP_MALFORMED);
    CHECK_EQ_INT(line, 2);
    /* oversize: the whole text, a mid, a ufrag, an fmtp, a token, too many m-lines */
    static char big[WRTC_SDP_MAX_LEN + 2];
    memset(big, 'a', sizeof big);
    CHECK_EQ_INT(wrtc_sdp_parse(big, sizeof big, &o, &why, &line), -E2BIG);
    CHECK_EQ_INT(why, WRTC_SDP_OVERSIZE);
    char mid[64];
    memset(mid, 'm', 33), mid[33] = 0;
    char rep[80];
    snprintf(rep, sizeof rep, "a=mid:%s", mid);
    CHECK_EQ_INT(parse_str(edit(s, "a=mid:0", rep), &o, &line), WRTC_SDP_OVERSIZE);
    CHECK_EQ_INT(line, 16);
    mid[32] = 0;
    snprintf(rep, sizeof rep, "a=mid:%s", mid);
    CHECK_EQ_INT(parse_str(edit(s, "a=mid:0", rep), &o, &line), WRTC_SDP_OK); /* 32 fits */
    char uf[300];
    memset(uf, 'u', 257), uf[257] = 0;
    char ufl[320];
    snprintf(ufl, sizeof ufl, "a=ice-ufrag:%s", uf);
    CHECK_EQ_INT(parse_str(edit(s, "a=ice-ufrag:tW4e", ufl), &o, NULL), WRTC_SDP_OVERSIZE);
    uf[256] = 0;
    snprintf(ufl, sizeof ufl, "a=ice-ufrag:%s", uf);
    CHECK_EQ_INT(parse_str(edit(s, "a=ice-ufrag:tW4e", ufl), &o, NULL), WRTC_SDP_OK);
    CHECK_EQ_INT(strlen(o.ice_ufrag), 256);
    static char many[16384];
    strcpy(many, "v=0\r\n");
    for (int i = 0; i < 17; i++)
        strcat(many, "m=video 9 UDP/TLS/RTP/SAVPF 96\r\n");
    CHECK_EQ_INT(parse_str(many, &o, &line), WRTC_SDP_OVERSIZE);
    CHECK_EQ_INT(line, 18);
}

TEST(answer_params)
{
    size_t n;
    const char *s = load("chrome_audio_offer.sdp", &n);
    CHECK(s);
    static wrtc_sdp_offer o;
    CHECK_EQ_INT(wrtc_sdp_parse(s, n, &o, NULL, NULL), 0);
    char ans[4096];
    wrtc_sdp_answer_params a = params();
    CHECK(wrtc_sdp_answer(&o, &a, ans, sizeof ans) > 0);
    a = params(), a.n_slots = 0;
    CHECK_EQ_INT(wrtc_sdp_answer(&o, &a, ans, sizeof ans), -EINVAL);
    a = params(), a.n_slots = WRTC_SDP_MAX_SLOTS + 1;
    CHECK_EQ_INT(wrtc_sdp_answer(&o, &a, ans, sizeof ans), -EINVAL);
    a = params(), a.ip = "localhost";
    CHECK_EQ_INT(wrtc_sdp_answer(&o, &a, ans, sizeof ans), -EINVAL);
    a = params(), a.ice_pwd = "short";
    CHECK_EQ_INT(wrtc_sdp_answer(&o, &a, ans, sizeof ans), -EINVAL);
    a = params(), a.cname = "vo xd";
    CHECK_EQ_INT(wrtc_sdp_answer(&o, &a, ans, sizeof ans), -EINVAL);
    a = params(), a.fingerprint = "AA:BB";
    CHECK_EQ_INT(wrtc_sdp_answer(&o, &a, ans, sizeof ans), -EINVAL);
    a = params(), a.port = 0;
    CHECK_EQ_INT(wrtc_sdp_answer(&o, &a, ans, sizeof ans), -EINVAL);
}

int main(void)
{
    RUN(chrome_audio_offer);
    RUN(chrome_av_data_offer);
    RUN(chromium_multi_recv_offer);
    RUN(audio_not_first);
    RUN(firefox_offer);
    RUN(refusals);
    RUN(malformed_and_oversize);
    RUN(answer_params);
    return test_summary();
}
