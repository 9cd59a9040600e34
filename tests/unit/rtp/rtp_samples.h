/*
 * tests/unit/rtp/rtp_samples.h — real-shaped packets shared by the rtp tests.
 */
#ifndef VOXD_RTP_SAMPLES_H
#define VOXD_RTP_SAMPLES_H

#include <stdint.h>

/* Opus from Chrome: PT 111, marker, seq 0x1234, ts 0x00BB8000, SSRC 0x11223344, a one-byte
 * extension block (3 words) with ssrc-audio-level (id 1: V=1, level 37), abs-send-time (id 2,
 * 3 bytes), transport-wide-cc (id 3, 2 bytes), sdes:mid (id 4, "0") and one padding byte; then a
 * 12-byte Opus payload (TOC 0x78: SILK-only... whatever the encoder chose). */
static const uint8_t SAMPLE_OPUS[] = {
    0x90, 0xef, 0x12, 0x34, 0x00, 0xbb, 0x80, 0x00, 0x11, 0x22, 0x33, 0x44, /* fixed header */
    0xbe, 0xde, 0x00, 0x03,                                                 /* one-byte, 3 words */
    0x10, 0xa5,                                                             /* id 1 audio level */
    0x22, 0x12, 0x34, 0x56,                                                 /* id 2 abs-send-time */
    0x31, 0x00, 0x2a,                                                       /* id 3 twcc seq 42 */
    0x40, 0x30,                                                             /* id 4 mid "0" */
    0x00,                                                                   /* padding */
    0x78, 0x0b, 0xe4, 0xc1, 0x36, 0xec, 0xc5, 0x80, 0x3a, 0x5e, 0x91, 0x07, /* Opus */
};
#define SAMPLE_OPUS_HDR     28
#define SAMPLE_OPUS_PAYLOAD 12

/* Compound RTCP as Chrome sends it: SR (no report blocks) + SDES with a 16-byte CNAME. */
static const uint8_t SAMPLE_SR_SDES[] = {
    0x80, 0xc8, 0x00, 0x06,                         /* SR, RC 0, 7 words */
    0x11, 0x22, 0x33, 0x44,                         /* sender SSRC */
    0xe9, 0x0f, 0x6a, 0x5b, 0x80, 0x00, 0x00, 0x00, /* NTP 0xE90F6A5B.80000000 */
    0x00, 0xbb, 0x80, 0x00,                         /* RTP ts */
    0x00, 0x00, 0x01, 0xf4,                         /* 500 packets */
    0x00, 0x00, 0x5d, 0xc0,                         /* 24000 octets */
    0x81, 0xca, 0x00, 0x06,                         /* SDES, SC 1, 7 words */
    0x11, 0x22, 0x33, 0x44,                         /* chunk SSRC */
    0x01, 0x10, 'a',  'b',  'c',  'd',  'e',  'f',  'g',  'h', 'i',
    'j',  'k',  'l',  'm',  'n',  'o',  'p',  0x00, 0x00, /* end of items + padding to 32 bits */
};

#endif
