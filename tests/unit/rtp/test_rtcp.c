/*
 * Unit tests of rtp/ RTCP compound parsing: a browser's SR+SDES, every truncation of it, the
 * feedback and BYE shapes, and the malformed headers the iterator must refuse (on exact-size heap
 * copies, so an ASan build sees any read past the compound).
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

/* Iterates p[0, n): the number of packets, or the negative errno that ended it (*why set). */
static int walk(const uint8_t *p, size_t n, rtp_rtcp *pkts, int max, rtp_err *why)
{
    rtp_rtcp_iter it;
    rtp_rtcp_begin(&it, p, n);
    int k = 0, rc;
    rtp_rtcp tmp;
    while ((rc = rtp_rtcp_next(&it, k < max ? &pkts[k] : &tmp, why)) == 0)
        k++;
    return rc == -ENODATA ? k : rc;
}

TEST(sr_and_sdes_from_a_browser)
{
    uint8_t *p = dup_bytes(SAMPLE_SR_SDES, sizeof SAMPLE_SR_SDES);
    rtp_rtcp r[4];
    rtp_err why;
    int n = walk(p, sizeof SAMPLE_SR_SDES, r, 4, &why);
    CHECK_EQ_INT(n, 2);
    CHECK_EQ_INT(r[0].pt, RTP_RTCP_SR);
    CHECK_EQ_INT(r[0].count, 0);
    CHECK_EQ_INT(r[0].len, 28);
    CHECK(r[0].data == p);
    CHECK_EQ_INT(r[0].ssrc, 0x11223344);
    CHECK(r[0].ntp == 0xe90f6a5b80000000ull);
    CHECK_EQ_INT(r[0].rtp_ts, 0x00bb8000);
    CHECK_EQ_INT(r[0].packets, 500);
    CHECK_EQ_INT(r[0].octets, 24000);
    CHECK(r[0].blocks == NULL);
    CHECK_EQ_INT(r[1].pt, RTP_RTCP_SDES);
    CHECK_EQ_INT(r[1].count, 1);
    CHECK_EQ_INT(r[1].len, 28);
    CHECK(r[1].data == p + 28);
    CHECK_EQ_INT(r[1].ssrc, 0x11223344);
    CHECK_EQ_INT(r[1].body_len, 24);
    free(p);
}

TEST(every_truncation_is_refused_except_at_a_packet_boundary)
{
    for (size_t n = 0; n < sizeof SAMPLE_SR_SDES; n++) {
        uint8_t *p = dup_bytes(SAMPLE_SR_SDES, n);
        rtp_rtcp r[4];
        rtp_err why = RTP_OK;
        int rc = walk(p, n, r, 4, &why);
        free(p);
        if (n == 0) {
            CHECK_EQ_INT(rc, 0);
        } else if (n == 28) {
            CHECK_EQ_INT(rc, 1); /* the SR alone is a whole (reduced-size) compound */
        } else {
            CHECK_EQ_INT(rc, -EINVAL);
            CHECK_EQ_INT(why, RTP_ERR_TRUNCATED);
        }
    }
}

TEST(sr_and_rr_with_report_blocks)
{
    uint8_t b[4 + 24 + 24 + 4 + 4 + 24] = {0x81, 200, 0, 12, 0, 0, 0, 7};
    size_t sr = 4 + 24 + 24;
    b[sr + 0] = 0x81;
    b[sr + 1] = 201;
    b[sr + 3] = 7;
    b[sr + 7] = 8;
    b[sr + 8] = 0xab; /* first byte of the RR's report block (its source SSRC) */
    rtp_rtcp r[3];
    rtp_err why;
    CHECK_EQ_INT(walk(b, sizeof b, r, 3, &why), 2);
    CHECK(r[0].blocks == b + 28);
    CHECK_EQ_INT(r[0].ssrc, 7);
    CHECK(r[1].blocks == b + sr + 8);
    CHECK_EQ_INT(r[1].blocks[0], 0xab);
    CHECK_EQ_INT(r[1].ssrc, 8);

    /* a report count the length does not cover */
    b[0] = 0x82;
    CHECK_EQ_INT(walk(b, sizeof b, r, 3, &why), -EINVAL);
    CHECK_EQ_INT(why, RTP_ERR_RTCP_BODY);
}

TEST(feedback_bye_app_and_unknown_types)
{
    uint8_t b[] = {
        0x81, 205, 0, 3, 0, 0, 0, 1, 0,   0,   0,   2,   0x00, 0x05, 0x00, 0x01, /* RTPFB NACK */
        0x81, 206, 0, 2, 0, 0, 0, 1, 0,   0,   0,   3,                           /* PSFB PLI */
        0x81, 203, 0, 2, 0, 0, 0, 9, 3,   'b', 'y', 'e',                         /* BYE + reason */
        0x80, 204, 0, 2, 0, 0, 0, 4, 'v', 'o', 'x', 'd',                         /* APP */
        0x80, 207, 0, 0,                                                         /* XR, empty */
    };
    rtp_rtcp r[6];
    rtp_err why;
    CHECK_EQ_INT(walk(b, sizeof b, r, 6, &why), 5);
    CHECK_EQ_INT(r[0].pt, RTP_RTCP_RTPFB);
    CHECK_EQ_INT(r[0].count, 1);
    CHECK_EQ_INT(r[0].ssrc, 1);
    CHECK_EQ_INT(r[0].media_ssrc, 2);
    CHECK_EQ_INT(r[1].pt, RTP_RTCP_PSFB);
    CHECK_EQ_INT(r[1].media_ssrc, 3);
    CHECK_EQ_INT(r[2].pt, RTP_RTCP_BYE);
    CHECK_EQ_INT(r[2].ssrc, 9);
    CHECK_EQ_INT(r[3].pt, RTP_RTCP_APP);
    CHECK_EQ_INT(r[3].ssrc, 4);
    CHECK_EQ_INT(r[4].pt, 207);
    CHECK_EQ_INT(r[4].ssrc, 0);
    CHECK(r[4].body == NULL);

    /* a BYE reason longer than the packet */
    b[36] = 4;
    CHECK_EQ_INT(walk(b, sizeof b, r, 6, &why), -EINVAL);
    CHECK_EQ_INT(why, RTP_ERR_RTCP_BODY);
    b[36] = 3;
    /* feedback without its media SSRC */
    uint8_t fb[] = {0x81, 206, 0, 1, 0, 0, 0, 1};
    CHECK_EQ_INT(walk(fb, sizeof fb, r, 6, &why), -EINVAL);
    CHECK_EQ_INT(why, RTP_ERR_RTCP_BODY);
}

TEST(malformed_headers)
{
    rtp_rtcp r[4];
    rtp_err why;
    uint8_t v1[] = {0x40, 201, 0, 1, 0, 0, 0, 1};
    CHECK_EQ_INT(walk(v1, sizeof v1, r, 4, &why), -EINVAL);
    CHECK_EQ_INT(why, RTP_ERR_VERSION);
    uint8_t type[] = {0x80, 201, 0, 1, 0, 0, 0, 1, 0x80, 111, 0, 0};
    CHECK_EQ_INT(walk(type, sizeof type, r, 4, &why), -EINVAL);
    CHECK_EQ_INT(why, RTP_ERR_RTCP_TYPE);
    uint8_t len[] = {0x80, 201, 0, 2, 0, 0, 0, 1};
    CHECK_EQ_INT(walk(len, sizeof len, r, 4, &why), -EINVAL);
    CHECK_EQ_INT(why, RTP_ERR_TRUNCATED);
    uint8_t trail[] = {0x80, 201, 0, 1, 0, 0, 0, 1, 0x80, 201};
    CHECK_EQ_INT(walk(trail, sizeof trail, r, 4, &why), -EINVAL);
    CHECK_EQ_INT(why, RTP_ERR_TRUNCATED);
    /* a refusal is sticky */
    rtp_rtcp_iter it;
    rtp_rtcp_begin(&it, v1, sizeof v1);
    CHECK_EQ_INT(rtp_rtcp_next(&it, r, &why), -EINVAL);
    CHECK_EQ_INT(rtp_rtcp_next(&it, r, &why), -EINVAL);
}

TEST(padding_only_on_the_last_packet)
{
    /* RR with 4 bytes of padding, last in the compound: fine */
    uint8_t last[] = {0x80, 201, 0, 1, 0, 0, 0, 1, 0xa0, 201, 0, 2, 0, 0, 0, 2, 0, 0, 0, 4};
    rtp_rtcp r[4];
    rtp_err why;
    CHECK_EQ_INT(walk(last, sizeof last, r, 4, &why), 2);
    CHECK(r[1].padding);
    CHECK_EQ_INT(r[1].body_len, 4);
    CHECK_EQ_INT(r[1].len, 12);
    /* padding that eats into the RR's SSRC: too short for its type */
    last[sizeof last - 1] = 8;
    CHECK_EQ_INT(walk(last, sizeof last, r, 4, &why), -EINVAL);
    CHECK_EQ_INT(why, RTP_ERR_RTCP_BODY);
    last[sizeof last - 1] = 9;
    CHECK_EQ_INT(walk(last, sizeof last, r, 4, &why), -EINVAL);
    CHECK_EQ_INT(why, RTP_ERR_PADDING);
    last[sizeof last - 1] = 0;
    CHECK_EQ_INT(walk(last, sizeof last, r, 4, &why), -EINVAL);
    CHECK_EQ_INT(why, RTP_ERR_PADDING);
    /* padding on the first of two packets */
    uint8_t first[] = {0xa0, 201, 0, 1, 0, 0, 0, 1, 0x80, 201, 0, 1, 0, 0, 0, 2};
    CHECK_EQ_INT(walk(first, sizeof first, r, 4, &why), -EINVAL);
    CHECK_EQ_INT(why, RTP_ERR_PADDING);
}

TEST(sdes_chunks)
{
    rtp_rtcp r[2];
    rtp_err why;
    /* two chunks: CNAME "ab" (4+4+1 -> 12 with padding), then a chunk with no items (8) */
    uint8_t two[] = {0x82, 202, 0, 5, 0, 0, 0, 1, 1, 2, 'a', 'b',
                     0,    0,   0, 0, 0, 0, 0, 2, 0, 0, 0,   0};
    CHECK_EQ_INT(walk(two, sizeof two, r, 2, &why), 1);
    CHECK_EQ_INT(r[0].ssrc, 1);
    /* an item length past the packet */
    two[9] = 20;
    CHECK_EQ_INT(walk(two, sizeof two, r, 2, &why), -EINVAL);
    CHECK_EQ_INT(why, RTP_ERR_RTCP_BODY);
    two[9] = 2;
    /* more chunks announced than present */
    two[0] = 0x83;
    CHECK_EQ_INT(walk(two, sizeof two, r, 2, &why), -EINVAL);
    CHECK_EQ_INT(why, RTP_ERR_RTCP_BODY);
    /* no terminating null item */
    uint8_t unterminated[] = {0x81, 202, 0, 2, 0, 0, 0, 1, 1, 2, 'a', 'b'};
    CHECK_EQ_INT(walk(unterminated, sizeof unterminated, r, 2, &why), -EINVAL);
    CHECK_EQ_INT(why, RTP_ERR_RTCP_BODY);
}

int main(void)
{
    RUN(sr_and_sdes_from_a_browser);
    RUN(every_truncation_is_refused_except_at_a_packet_boundary);
    RUN(sr_and_rr_with_report_blocks);
    RUN(feedback_bye_app_and_unknown_types);
    RUN(malformed_headers);
    RUN(padding_only_on_the_last_packet);
    RUN(sdes_chunks);
    return test_summary();
}
