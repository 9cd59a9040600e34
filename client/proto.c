/*
 * client/proto.c — the pure half of client/session.h: encryption mode names, standard base64 and
 * the strict parse of a Session Description (op 4) into a vc_sdesc. No I/O, no allocation beyond
 * jansson's own during unpack.
 */
#include "client/session.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

const char *vc_mode_name(vc_mode m)
{
    switch (m) {
    case VC_MODE_AES_CM:
        return "AES_CM_128_HMAC_SHA1_80";
    case VC_MODE_GCM:
        return "AEAD_AES_128_GCM";
    }
    return NULL;
}

int vc_mode_parse(const char *s, vc_mode *out)
{
    if (!s) return -EINVAL;
    if (!strcmp(s, "aes_cm") || !strcmp(s, "AES_CM_128_HMAC_SHA1_80")) {
        *out = VC_MODE_AES_CM;
        return 0;
    }
    if (!strcmp(s, "gcm") || !strcmp(s, "AEAD_AES_128_GCM")) {
        *out = VC_MODE_GCM;
        return 0;
    }
    return -EINVAL;
}

size_t vc_mode_key_len(vc_mode m)
{
    return m == VC_MODE_AES_CM ? 30 : m == VC_MODE_GCM ? 28 : 0;
}

static int b64_val(char c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

long vc_b64_decode(const char *in, size_t n, uint8_t *out, size_t cap)
{
    if (n % 4) return -EINVAL;
    size_t o = 0;
    for (size_t i = 0; i < n; i += 4) {
        int v[4], pad = 0;
        for (int j = 0; j < 4; j++) {
            char c = in[i + j];
            if (c == '=') {
                /* padding only in the last quantum, only in its last two places, and only '='
                 * after the first one */
                if (i + 4 != n || j < 2) return -EINVAL;
                pad++;
                v[j] = 0;
                continue;
            }
            if (pad) return -EINVAL;
            v[j] = b64_val(c);
            if (v[j] < 0) return -EINVAL;
        }
        uint32_t w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | v[3];
        size_t k = 3 - (size_t)pad;
        /* non-canonical trailing bits are refused */
        if ((pad == 1 && (w & 0xff)) || (pad == 2 && (w & 0xffff))) return -EINVAL;
        if (o + k > cap) return -ENOSPC;
        out[o++] = (uint8_t)(w >> 16);
        if (k > 1) out[o++] = (uint8_t)(w >> 8);
        if (k > 2) out[o++] = (uint8_t)w;
    }
    return (long)o;
}

#define REFUSE(...)                                                                                \
    do {                                                                                           \
        snprintf(err, errlen, __VA_ARGS__);                                                        \
        return -EINVAL;                                                                            \
    } while (0)

static int key_parse(const char *b64, const char *field, size_t want, uint8_t *out, char *err,
                     size_t errlen)
{
    long n = vc_b64_decode(b64, strlen(b64), out, VC_KEY_MAX);
    if (n < 0) REFUSE("%s: not standard base64 of at most %d bytes", field, VC_KEY_MAX);
    if ((size_t)n != want) REFUSE("%s: %ld bytes, the mode needs %zu", field, n, want);
    return 0;
}

int vc_sdesc_parse(const json_t *d, vc_sdesc *out, char *err, size_t errlen)
{
    const char *protocol, *mode, *address, *skey, *rkey;
    json_int_t port, ssrc, pt, ext;
    json_t *slots;
    json_error_t e;
    memset(out, 0, sizeof *out);
    if (!json_is_object(d)) REFUSE("d: not an object");
    if (json_unpack_ex((json_t *)d, &e, JSON_STRICT, "{s:s,s:s,s:s,s:I,s:I,s:I,s:I,s:s,s:s,s:o}",
                       "protocol", &protocol, "mode", &mode, "address", &address, "port", &port,
                       "ssrc", &ssrc, "payload_type", &pt, "audio_level_ext_id", &ext, "send_key",
                       &skey, "recv_key", &rkey, "slots", &slots) < 0)
        REFUSE("d: %s", e.text);
    if (strcmp(protocol, "srtp") != 0) REFUSE("d.protocol: \"%s\", expected \"srtp\"", protocol);
    if (vc_mode_parse(mode, &out->mode) < 0 || !strchr(mode, '_'))
        REFUSE("d.mode: unknown mode \"%s\"", mode);
    if (strlen(address) >= sizeof out->address) REFUSE("d.address: too long");
    strcpy(out->address, address);
    if (port < 1 || port > 65535) REFUSE("d.port: %lld out of 1..65535", (long long)port);
    out->port = (uint16_t)port;
    if (ssrc < 0 || ssrc > UINT32_MAX) REFUSE("d.ssrc: %lld out of range", (long long)ssrc);
    out->ssrc = (uint32_t)ssrc;
    if (pt < 0 || pt > 127) REFUSE("d.payload_type: %lld out of 0..127", (long long)pt);
    out->payload_type = (uint8_t)pt;
    if (ext < 1 || ext > 14) REFUSE("d.audio_level_ext_id: %lld out of 1..14", (long long)ext);
    out->level_ext_id = (uint8_t)ext;
    out->key_len = vc_mode_key_len(out->mode);
    if (key_parse(skey, "d.send_key", out->key_len, out->send_key, err, errlen) < 0) return -EINVAL;
    if (key_parse(rkey, "d.recv_key", out->key_len, out->recv_key, err, errlen) < 0) return -EINVAL;
    if (!json_is_array(slots)) REFUSE("d.slots: not an array");
    size_t ns = json_array_size(slots);
    if (ns < 1 || ns > VC_MAX_SLOTS) REFUSE("d.slots: %zu slots, expected 1..%d", ns, VC_MAX_SLOTS);
    for (size_t i = 0; i < ns; i++) {
        json_int_t slot, sssrc;
        if (json_unpack_ex(json_array_get(slots, i), &e, JSON_STRICT, "{s:I,s:I}", "slot", &slot,
                           "ssrc", &sssrc) < 0)
            REFUSE("d.slots[%zu]: %s", i, e.text);
        if (slot != (json_int_t)i)
            REFUSE("d.slots[%zu].slot: %lld, expected %zu", i, (long long)slot, i);
        if (sssrc < 0 || sssrc > UINT32_MAX) REFUSE("d.slots[%zu].ssrc: out of range", i);
        for (size_t j = 0; j < i; j++)
            if (out->slots[j].ssrc == (uint32_t)sssrc) REFUSE("d.slots[%zu].ssrc: duplicate", i);
        if ((uint32_t)sssrc == out->ssrc) REFUSE("d.slots[%zu].ssrc: equals d.ssrc", i);
        out->slots[i].slot = (unsigned)slot;
        out->slots[i].ssrc = (uint32_t)sssrc;
    }
    out->n_slots = (unsigned)ns;
    return 0;
}
