/*
 * rb — what the relay benchmark's programs share (tests/bench/relay_gen.c, ceiling_relay.c,
 * worker_relay.c; docs/media.md "Relay benchmark").
 *
 * The static topology: relays that have no signalling of their own (the ceiling relay, the bare
 * rtp_worker host) and the generator agree on everything from three numbers — participants n,
 * room size r (participant i is in room i / r; the last room may be smaller) and a key seed. The
 * SSRC of participant i is RB_SSRC_BASE + i; its two SRTP master keys (AES_CM_128_HMAC_SHA1_80,
 * key ‖ salt, 30 bytes) are derived from (seed, i, direction) by splitmix64: RB_DIR_UP is the
 * client's key (it protects, the relay unprotects), RB_DIR_DOWN the relay's key towards it.
 * These keys are test material, never secrets. Header-only, no state.
 */
#ifndef VOXD_RB_H
#define VOXD_RB_H

#include <stdint.h>
#include <string.h>

#define RB_SSRC_BASE      0x10000000u
#define RB_SLOT_SSRC_BASE 0x40000000u /* worker_relay: slot s of participant i: base + 8 i + s */
#define RB_KEY_LEN        30          /* AES_CM_128: 16-byte master key + 14-byte salt */
#define RB_MAX_PARTS      60000u
#define RB_MAX_SLOTS      8   /* downstream slots a relay may give a participant */
#define RB_PT             111 /* Opus */
#define RB_EXT_LEVEL      1   /* RFC 6464 audio level, one-byte form */
#define RB_EXT_SENDTIME   2   /* 8 bytes: CLOCK_MONOTONIC ns at send, big-endian */

enum { RB_DIR_UP = 0, RB_DIR_DOWN = 1 };
enum { RB_PROFILE_AES_CM_80 = 0, RB_PROFILE_AES_CM_32 = 1 }; /* both: 16-byte key, 14-byte salt */

static inline uint64_t rb_splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static inline void rb_static_key(uint64_t seed, uint32_t idx, int dir, uint8_t out[RB_KEY_LEN])
{
    uint64_t s = seed ^ ((uint64_t)idx << 1 | (uint64_t)dir) * 0xd1342543de82ef95ull;
    for (int i = 0; i < RB_KEY_LEN; i += 8) {
        uint64_t v = rb_splitmix64(&s);
        memcpy(out + i, &v, RB_KEY_LEN - i < 8 ? (size_t)(RB_KEY_LEN - i) : 8);
    }
}

static inline uint32_t rb_room_of(uint32_t idx, uint32_t room_size)
{
    return idx / room_size;
}

#endif
