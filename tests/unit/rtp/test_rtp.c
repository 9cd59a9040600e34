/*
 * Unit tests of rtp/: demultiplexing, RTP parsing with RFC 8285 extensions and the RFC 6464 audio
 * level, and writing the relay's headers. Every parse runs on an exact-size heap copy so that an
 * ASan build (make asan) sees any read past the packet.
 */
#include "rtp/rtp.h"
#include "tests/unit/rtp/rtp_samples.h"
#include "tests/unit/test.h"

#include <errno.h>
#include <stdlib.h>

static uint8_t *dup_bytes(const uint8_t *p, size_t n)
{
    uint8_t *c = malloc(n ? n : 1);
    if (n) memcpy(c, p, n);
    return c;
}

/* ---- demux ---------------------------------------------------------------------------------- */

TEST(demux_first_byte_ranges)
{
    uint8_t b[2] = {0, 0x6f};
    struct {
        int lo, hi;
        rtp_kind k;
    } r[] = {
        {0, 3, RTP_KIND_STUN},    {4, 15, RTP_KIND_UNKNOWN},    {16, 19, RTP_KIND_ZRTP},
        {20, 63, RTP_KIND_DTLS},  {64, 79, RTP_KIND_TURN},      {80, 127, RTP_KIND_UNKNOWN},
        {128, 191, RTP_KIND_RTP}, {192, 255, RTP_KIND_UNKNOWN},
    };
    for (size_t i = 0; i < sizeof r / sizeof r[0]; i++)
        for (int v = r[i].lo; v <= r[i].hi; v++) {
            b[0] = (uint8_t)v;
            CHECK_EQ_INT(rtp_demux(b, 2), r[i].k);
        }
    CHECK_EQ_INT(rtp_demux(b, 0), RTP_KIND_UNKNOWN);
    b[0] = 0x80;
    CHECK_EQ_INT(rtp_demux(b, 1), RTP_KIND_UNKNOWN); /* RTP range needs its second byte */
    b[0] = 0x00;
    CHECK_EQ_INT(rtp_demux(b, 1), RTP_KIND_STUN);
    CHECK_EQ_STR(rtp_kind_name(RTP_KIND_DTLS), "dtls");
}

TEST(demux_rtp_vs_rtcp_by_payload_type)
{
    uint8_t b[2] = {0x80, 0};
    for (int v = 0; v < 256; v++) {
        b[1] = (uint8_t)v;
        rtp_kind want = (v >= 192 && v <= 223) ? RTP_KIND_RTCP : RTP_KIND_RTP;
        CHECK_EQ_INT(rtp_demux(b, 2), want);
    }
    /* Opus PT 111 with the marker is 0xEF: RTP; SR 200 and PSFB 206: RTCP */
    b[1] = 0xef;
    CHECK_EQ_INT(rtp_demux(b, 2), RTP_KIND_RTP);
    b[1] = 200;
    CHECK_EQ_INT(rtp_demux(b, 2), RTP_KIND_RTCP);
    CHECK_EQ_INT(rtp_demux(SAMPLE_OPUS, sizeof SAMPLE_OPUS), RTP_KIND_RTP);
    CHECK_EQ_INT(rtp_demux(SAMPLE_SR_SDES, sizeof SAMPLE_SR_SDES), RTP_KIND_RTCP);
}

/* ---- parse ---------------------------------------------------------------------------------- */

TEST(parse_chrome_opus_with_audio_level)
{
    uint8_t *p = dup_bytes(SAMPLE_OPUS, sizeof SAMPLE_OPUS);
    rtp_pkt k;
    rtp_err why = RTP_ERR_COUNT_;
    CHECK_EQ_INT(rtp_parse(p, sizeof SAMPLE_OPUS, &k, &why), 0);
    CHECK_EQ_INT(why, RTP_OK);
    CHECK_EQ_INT(k.version, 2);
    CHECK(!k.padding && k.extension && k.marker);
    CHECK_EQ_INT(k.cc, 0);
    CHECK_EQ_INT(k.pt, 111);
    CHECK_EQ_INT(k.seq, 0x1234);
    CHECK_EQ_INT(k.ts, 0x00bb8000);
    CHECK_EQ_INT(k.ssrc, 0x11223344);
    CHECK_EQ_INT(k.ext_profile, 0xbede);
    CHECK_EQ_INT(k.ext_len, 12);
    CHECK(k.ext == p + 16);
    CHECK_EQ_INT(k.hdr_len, SAMPLE_OPUS_HDR);
    CHECK(k.payload == p + SAMPLE_OPUS_HDR);
    CHECK_EQ_INT(k.payload_len, SAMPLE_OPUS_PAYLOAD);
    CHECK_EQ_INT(k.pad_len, 0);

    bool voice = false;
    uint8_t level = 0;
    CHECK_EQ_INT(rtp_audio_level(&k, 1, &voice, &level), 0);
    CHECK(voice);
    CHECK_EQ_INT(level, 37);
    const uint8_t *d;
    size_t l;
    CHECK_EQ_INT(rtp_ext_find(&k, 2, &d, &l), 0);
    CHECK_EQ_INT(l, 3);
    CHECK_EQ_INT(d[0], 0x12);
    CHECK_EQ_INT(rtp_ext_find(&k, 3, &d, &l), 0);
    CHECK_EQ_INT(l, 2);
    CHECK_EQ_INT((d[0] << 8) | d[1], 42);
    CHECK_EQ_INT(rtp_ext_find(&k, 4, &d, &l), 0);
    CHECK_EQ_INT(l, 1);
    CHECK_EQ_INT(d[0], '0');
    CHECK_EQ_INT(rtp_ext_find(&k, 5, &d, &l), -ENOENT);
    CHECK_EQ_INT(rtp_ext_find(&k, 0, &d, &l), -ENOENT);
    CHECK_EQ_INT(rtp_ext_find(&k, 15, &d, &l), -ENOENT);
    /* the audio level read from the wrong id: abs-send-time is 3 bytes, not a level */
    CHECK_EQ_INT(rtp_audio_level(&k, 2, &voice, &level), -EINVAL);
    CHECK_EQ_INT(rtp_audio_level(&k, 9, &voice, &level), -ENOENT);
    free(p);
}

TEST(every_truncation_of_the_header_is_refused)
{
    /* inside the header: refused as truncated; from hdr_len on: a shorter payload (no padding) */
    for (size_t n = 0; n < sizeof SAMPLE_OPUS; n++) {
        uint8_t *p = dup_bytes(SAMPLE_OPUS, n);
        rtp_pkt k;
        rtp_err why = RTP_OK;
        int rc = rtp_parse(p, n, &k, &why);
        free(p);
        if (n < SAMPLE_OPUS_HDR) {
            CHECK_EQ_INT(rc, -EINVAL);
            CHECK_EQ_INT(why, RTP_ERR_TRUNCATED);
        } else {
            CHECK_EQ_INT(rc, 0);
            CHECK_EQ_INT(k.payload_len, n - SAMPLE_OPUS_HDR);
        }
    }
}

TEST(csrcs_and_padding)
{
    /* CC 2, P set: 3 bytes of payload, 4 of padding (count 4) */
    uint8_t b[] = {0xa2, 0x00, 0x00, 0x01, 0, 0, 0, 160, 0, 0, 0, 9, /* fixed */
                   0,    0,    0,    1,    0, 0, 0, 2,               /* CSRCs */
                   0xaa, 0xbb, 0xcc,                                 /* payload */
                   0,    0,    0,    4};                             /* padding */
    uint8_t *p = dup_bytes(b, sizeof b);
    rtp_pkt k;
    rtp_err why;
    int rc = rtp_parse(p, sizeof b, &k, &why);
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_INT(k.cc, 2);
    CHECK(k.csrc == p + 12);
    CHECK_EQ_INT(k.hdr_len, 20);
    CHECK(k.padding);
    CHECK_EQ_INT(k.pad_len, 4);
    CHECK_EQ_INT(k.payload_len, 3);
    CHECK_EQ_INT(k.payload[0], 0xaa);
    free(p);

    /* every truncation: inside the CSRCs truncated, after them bad padding or a valid packet */
    for (size_t n = 0; n < sizeof b; n++) {
        p = dup_bytes(b, n);
        why = RTP_OK;
        rc = rtp_parse(p, n, &k, &why);
        if (rc == 0) CHECK(k.hdr_len + k.payload_len + k.pad_len == n);
        free(p);
        if (n < 20) {
            CHECK_EQ_INT(rc, -EINVAL);
            CHECK_EQ_INT(why, RTP_ERR_TRUNCATED);
        } else {
            CHECK_EQ_INT(rc, -EINVAL); /* last byte 0xaa.. or 0: never a sound pad count here */
            CHECK_EQ_INT(why, RTP_ERR_PADDING);
        }
    }

    /* pad count 0, and past the header */
    b[sizeof b - 1] = 0;
    CHECK_EQ_INT(rtp_parse(b, sizeof b, &k, &why), -EINVAL);
    CHECK_EQ_INT(why, RTP_ERR_PADDING);
    b[sizeof b - 1] = 8; /* = payload + padding + 1: reaches into the CSRCs */
    CHECK_EQ_INT(rtp_parse(b, sizeof b, &k, &why), -EINVAL);
    CHECK_EQ_INT(why, RTP_ERR_PADDING);
    b[sizeof b - 1] = 7; /* payload and padding together: an empty payload */
    CHECK_EQ_INT(rtp_parse(b, sizeof b, &k, &why), 0);
    CHECK_EQ_INT(k.payload_len, 0);
    CHECK(k.payload == NULL);
}

TEST(bad_version)
{
    uint8_t b[12] = {0x40, 111};
    rtp_pkt k;
    rtp_err why;
    for (int v = 0; v < 4; v++) {
        b[0] = (uint8_t)(v << 6);
        CHECK_EQ_INT(rtp_parse(b, sizeof b, &k, &why), v == 2 ? 0 : -EINVAL);
        if (v != 2) CHECK_EQ_INT(why, RTP_ERR_VERSION);
    }
    CHECK_EQ_STR(rtp_err_name(RTP_ERR_VERSION), "bad_version");
    CHECK_EQ_STR(rtp_err_name(RTP_ERR_COUNT_), "unknown");
}

TEST(one_byte_extension_rules)
{
    rtp_pkt k;
    rtp_err why;
    const uint8_t *d;
    size_t l;
    /* an element that runs past its block: bad extension */
    uint8_t over[] = {0x90, 111, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0xbe, 0xde, 0, 1, 0x13, 1, 2, 3};
    over[16] = 0x14; /* id 1, 5 bytes in a 4-byte block */
    CHECK_EQ_INT(rtp_parse(over, sizeof over, &k, &why), -EINVAL);
    CHECK_EQ_INT(why, RTP_ERR_EXTENSION);
    over[16] = 0x12; /* id 1, 3 bytes: exactly fills the block */
    CHECK_EQ_INT(rtp_parse(over, sizeof over, &k, &why), 0);
    CHECK_EQ_INT(rtp_ext_find(&k, 1, &d, &l), 0);
    CHECK_EQ_INT(l, 3);

    /* ID 15 ends the walk: what follows is ignored, even if it would be malformed */
    uint8_t stop[] = {0x90, 111, 0,    1,    0, 0, 0,    0,    0,    0,
                      0,    1,   0xbe, 0xde, 0, 1, 0x10, 0x05, 0xff, 0x30};
    CHECK_EQ_INT(rtp_parse(stop, sizeof stop, &k, &why), 0);
    CHECK_EQ_INT(rtp_ext_find(&k, 1, &d, &l), 0);
    CHECK_EQ_INT(d[0], 0x05);
    CHECK_EQ_INT(rtp_ext_find(&k, 3, &d, &l), -ENOENT);

    /* padding bytes between elements; an ID 0 with a length ends the walk (as libwebrtc) */
    uint8_t pad[] = {0x90, 111,  0, 1, 0,    0,    0,    0,    0,    0,    0,    1,
                     0xbe, 0xde, 0, 2, 0x00, 0x00, 0x10, 0x7f, 0x01, 0x20, 0x01, 0x00};
    CHECK_EQ_INT(rtp_parse(pad, sizeof pad, &k, &why), 0);
    bool voice = true;
    uint8_t level = 0;
    CHECK_EQ_INT(rtp_audio_level(&k, 1, &voice, &level), 0);
    CHECK(!voice);
    CHECK_EQ_INT(level, 127);
    CHECK_EQ_INT(rtp_ext_find(&k, 2, &d, &l), -ENOENT);

    /* an empty extension block (length 0) and an opaque profile */
    uint8_t empty[] = {0x90, 111, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0xbe, 0xde, 0, 0, 0x55};
    CHECK_EQ_INT(rtp_parse(empty, sizeof empty, &k, &why), 0);
    CHECK_EQ_INT(k.ext_len, 0);
    CHECK(k.ext == NULL);
    CHECK_EQ_INT(k.hdr_len, 16);
    CHECK_EQ_INT(rtp_ext_find(&k, 1, &d, &l), -ENOENT);
    uint8_t opaque[] = {0x90, 111, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0x12, 0x34, 0, 1, 0x14, 9, 9, 9};
    CHECK_EQ_INT(rtp_parse(opaque, sizeof opaque, &k, &why), 0); /* not walked */
    CHECK_EQ_INT(k.ext_profile, 0x1234);
    CHECK_EQ_INT(rtp_ext_find(&k, 1, &d, &l), -ENOENT);

    /* the extension length field larger than the packet */
    uint8_t big[] = {0x90, 111, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0xbe, 0xde, 0xff, 0xff, 0x10, 0};
    CHECK_EQ_INT(rtp_parse(big, sizeof big, &k, &why), -EINVAL);
    CHECK_EQ_INT(why, RTP_ERR_TRUNCATED);

    /* no extension at all */
    uint8_t none[] = {0x80, 111, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0xf8};
    CHECK_EQ_INT(rtp_parse(none, sizeof none, &k, &why), 0);
    CHECK_EQ_INT(rtp_audio_level(&k, 1, &voice, &level), -ENOENT);
}

TEST(two_byte_extension_rules)
{
    rtp_pkt k;
    rtp_err why;
    const uint8_t *d;
    size_t l;
    /* 0x1000: id 1 len 1 (level), padding, id 200 len 0, id 16 len 2 */
    uint8_t b[] = {0x90, 111, 0, 1, 0,    0, 0,   0, 0,  0, 0,    1,    0x10, 0x00,
                   0,    3,   1, 1, 0x85, 0, 200, 0, 16, 2, 0xab, 0xcd, 0,    0};
    CHECK_EQ_INT(rtp_parse(b, sizeof b, &k, &why), 0);
    bool voice = false;
    uint8_t level = 0;
    CHECK_EQ_INT(rtp_audio_level(&k, 1, &voice, &level), 0);
    CHECK(voice);
    CHECK_EQ_INT(level, 5);
    CHECK_EQ_INT(rtp_ext_find(&k, 200, &d, &l), 0);
    CHECK_EQ_INT(l, 0);
    CHECK(d == NULL);
    CHECK_EQ_INT(rtp_ext_find(&k, 16, &d, &l), 0);
    CHECK_EQ_INT(l, 2);
    CHECK_EQ_INT(d[1], 0xcd);
    CHECK_EQ_INT(rtp_ext_find(&k, 17, &d, &l), -ENOENT);
    /* appbits in the profile's low nibble are still the two-byte form */
    b[13] = 0x07;
    CHECK_EQ_INT(rtp_parse(b, sizeof b, &k, &why), 0);
    CHECK_EQ_INT(rtp_ext_find(&k, 16, &d, &l), 0);
    /* a length that runs past the block; an id with no room for its length byte */
    b[23] = 5;
    CHECK_EQ_INT(rtp_parse(b, sizeof b, &k, &why), -EINVAL);
    CHECK_EQ_INT(why, RTP_ERR_EXTENSION);
    uint8_t tail[] = {0x90, 111, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0x10, 0x00, 0, 1, 0, 0, 0, 7};
    CHECK_EQ_INT(rtp_parse(tail, sizeof tail, &k, &why), -EINVAL);
    CHECK_EQ_INT(why, RTP_ERR_EXTENSION);
}

/* ---- write ---------------------------------------------------------------------------------- */

TEST(write_header_with_audio_level_parses_back)
{
    uint8_t buf[RTP_HDR_LEVEL_LEN + 4];
    rtp_hdr_params h = {.pt = 111,
                        .marker = true,
                        .seq = 65535,
                        .ts = 0xfffffc40u,
                        .ssrc = 0xcafe0001u,
                        .level_id = 1,
                        .voice = true,
                        .level = 30};
    CHECK_EQ_INT(rtp_write_hdr(buf, RTP_HDR_LEVEL_LEN - 1, &h), -ENOSPC);
    CHECK_EQ_INT(rtp_write_hdr(buf, sizeof buf, &h), RTP_HDR_LEVEL_LEN);
    static const uint8_t want[] = {0x90, 0xef, 0xff, 0xff, 0xff, 0xff, 0xfc, 0x40, 0xca, 0xfe,
                                   0x00, 0x01, 0xbe, 0xde, 0x00, 0x01, 0x10, 0x9e, 0x00, 0x00};
    CHECK(memcmp(buf, want, sizeof want) == 0);
    memcpy(buf + RTP_HDR_LEVEL_LEN, "\x78\x01\x02\x03", 4);
    rtp_pkt k;
    rtp_err why;
    CHECK_EQ_INT(rtp_parse(buf, sizeof buf, &k, &why), 0);
    CHECK_EQ_INT(k.hdr_len, RTP_HDR_LEVEL_LEN);
    CHECK_EQ_INT(k.payload_len, 4);
    bool voice = false;
    uint8_t level = 0;
    CHECK_EQ_INT(rtp_audio_level(&k, 1, &voice, &level), 0);
    CHECK(voice);
    CHECK_EQ_INT(level, 30);

    h.level_id = 0;
    CHECK_EQ_INT(rtp_write_hdr(buf, RTP_HDR_MIN, &h), RTP_HDR_MIN);
    CHECK_EQ_INT(buf[0], 0x80);
    h.level_id = 15;
    CHECK_EQ_INT(rtp_write_hdr(buf, sizeof buf, &h), -EINVAL);
    h.level_id = 14;
    h.level = 128;
    CHECK_EQ_INT(rtp_write_hdr(buf, sizeof buf, &h), -EINVAL);
    h.level = 127;
    h.pt = 128;
    CHECK_EQ_INT(rtp_write_hdr(buf, sizeof buf, &h), -EINVAL);
}

int main(void)
{
    RUN(demux_first_byte_ranges);
    RUN(demux_rtp_vs_rtcp_by_payload_type);
    RUN(parse_chrome_opus_with_audio_level);
    RUN(every_truncation_of_the_header_is_refused);
    RUN(csrcs_and_padding);
    RUN(bad_version);
    RUN(one_byte_extension_rules);
    RUN(two_byte_extension_rules);
    RUN(write_header_with_audio_level_parses_back);
    return test_summary();
}
