/*
 * tests/unit/client/test_proto.c — the pure half of client/session.h: a Session Description as
 * docs/protocol.md shows it parses into the numbers a client uses (keys decoded from base64, slot
 * SSRCs in order), and every way one can be wrong is refused naming its field.
 */
#include <errno.h>
#include <stdlib.h>

#include "client/session.h"
#include "tests/unit/test.h"

/* 30 bytes 0x00..0x1d and 30 bytes 0x80..0x9d, standard base64 */
#define SK30 "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwd"
#define RK30 "gIGCg4SFhoeIiYqLjI2Oj5CRkpOUlZaXmJmam5yd"
/* 28 bytes 0x00..0x1b */
#define SK28 "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGw=="

static const char *doc_example =
    "{\"protocol\":\"srtp\",\"mode\":\"AES_CM_128_HMAC_SHA1_80\",\"address\":\"127.0.0.1\","
    "\"port\":50000,\"ssrc\":3735928559,\"payload_type\":111,\"audio_level_ext_id\":1,"
    "\"send_key\":\"" SK30 "\",\"recv_key\":\"" RK30 "\","
    "\"slots\":[{\"slot\":0,\"ssrc\":1111},{\"slot\":1,\"ssrc\":2222},{\"slot\":2,\"ssrc\":3333}]}";

static int parse(const char *txt, vc_sdesc *sd, char *err, size_t n)
{
    json_t *j = json_loads(txt, 0, NULL);
    if (!j) return -999;
    int rc = vc_sdesc_parse(j, sd, err, n);
    json_decref(j);
    return rc;
}

TEST(sdesc_example_of_the_protocol_doc)
{
    vc_sdesc sd;
    char err[160] = "";
    CHECK_EQ_INT(parse(doc_example, &sd, err, sizeof err), 0);
    CHECK_EQ_INT(sd.mode, VC_MODE_AES_CM);
    CHECK_EQ_STR(sd.address, "127.0.0.1");
    CHECK_EQ_INT(sd.port, 50000);
    CHECK_EQ_INT(sd.ssrc, 3735928559u);
    CHECK_EQ_INT(sd.payload_type, 111);
    CHECK_EQ_INT(sd.level_ext_id, 1);
    CHECK_EQ_INT(sd.key_len, 30);
    for (int i = 0; i < 30; i++) {
        CHECK_EQ_INT(sd.send_key[i], i);
        CHECK_EQ_INT(sd.recv_key[i], 0x80 + i);
    }
    CHECK_EQ_INT(sd.n_slots, 3);
    CHECK_EQ_INT(sd.slots[0].ssrc, 1111);
    CHECK_EQ_INT(sd.slots[2].slot, 2);
    CHECK_EQ_INT(sd.slots[2].ssrc, 3333);
}

TEST(sdesc_gcm_needs_28_byte_keys)
{
    char buf[1024], err[160] = "";
    vc_sdesc sd;
    snprintf(buf, sizeof buf,
             "{\"protocol\":\"srtp\",\"mode\":\"AEAD_AES_128_GCM\",\"address\":\"::1\",\"port\":1,"
             "\"ssrc\":1,\"payload_type\":111,\"audio_level_ext_id\":3,\"send_key\":\"%s\","
             "\"recv_key\":\"%s\",\"slots\":[{\"slot\":0,\"ssrc\":2}]}",
             SK28, SK28);
    CHECK_EQ_INT(parse(buf, &sd, err, sizeof err), 0);
    CHECK_EQ_INT(sd.mode, VC_MODE_GCM);
    CHECK_EQ_INT(sd.key_len, 28);
    CHECK_EQ_INT(sd.send_key[27], 27);
    /* a 30-byte key with GCM is refused, naming the field */
    snprintf(buf, sizeof buf,
             "{\"protocol\":\"srtp\",\"mode\":\"AEAD_AES_128_GCM\",\"address\":\"::1\",\"port\":1,"
             "\"ssrc\":1,\"payload_type\":111,\"audio_level_ext_id\":3,\"send_key\":\"%s\","
             "\"recv_key\":\"%s\",\"slots\":[{\"slot\":0,\"ssrc\":2}]}",
             SK30, SK28);
    CHECK_EQ_INT(parse(buf, &sd, err, sizeof err), -EINVAL);
    CHECK(strstr(err, "d.send_key") != NULL);
}

/* Replaces the first occurrence of `from` in the doc example with `to` and expects a refusal
 * whose message contains `field`. */
static int refused(const char *from, const char *to, const char *field)
{
    char buf[1024], err[160] = "";
    const char *p = strstr(doc_example, from);
    if (!p) return 0;
    snprintf(buf, sizeof buf, "%.*s%s%s", (int)(p - doc_example), doc_example, to,
             p + strlen(from));
    vc_sdesc sd;
    int rc = parse(buf, &sd, err, sizeof err);
    if (rc != -EINVAL || !strstr(err, field)) {
        printf("# %s -> %s: rc %d err \"%s\"\n", from, to, rc, err);
        return 0;
    }
    return 1;
}

TEST(sdesc_refusals_name_the_field)
{
    CHECK(refused("\"srtp\"", "\"webrtc\"", "d.protocol"));
    CHECK(refused("\"AES_CM_128_HMAC_SHA1_80\"", "\"NULL_CIPHER\"", "d.mode"));
    CHECK(refused("\"AES_CM_128_HMAC_SHA1_80\"", "\"gcm\"", "d.mode")); /* short names: CLI only */
    CHECK(refused("50000", "0", "d.port"));
    CHECK(refused("50000", "65536", "d.port"));
    CHECK(refused("3735928559", "4294967296", "d.ssrc"));
    CHECK(refused("111", "128", "d.payload_type"));
    CHECK(refused("\"audio_level_ext_id\":1", "\"audio_level_ext_id\":15", "audio_level_ext_id"));
    CHECK(refused(SK30, "AAEC", "d.send_key"));         /* 3 bytes */
    CHECK(refused(RK30, "not base64!!", "d.recv_key")); /* alphabet */
    CHECK(refused("{\"slot\":1,", "{\"slot\":5,", "d.slots[1].slot"));
    CHECK(refused("\"ssrc\":2222", "\"ssrc\":1111", "d.slots[1].ssrc")); /* duplicate */
    CHECK(refused("\"ssrc\":1111", "\"ssrc\":3735928559", "d.slots[0].ssrc"));
    CHECK(refused("\"slots\":[{\"slot\":0,\"ssrc\":1111},", "\"slots\":[", "d.slots[0].slot"));
    CHECK(refused("\"port\":50000,", "\"port\":50000,\"extra\":1,", "extra"));
    CHECK(refused("\"address\":\"127.0.0.1\",", "", "address"));
    CHECK(
        refused("{\"slot\":2,\"ssrc\":3333}", "{\"slot\":2,\"ssrc\":3333,\"x\":1}", "d.slots[2]"));
}

TEST(base64_standard_with_padding)
{
    uint8_t out[8];
    CHECK_EQ_INT(vc_b64_decode("", 0, out, sizeof out), 0);
    CHECK_EQ_INT(vc_b64_decode("Zg==", 4, out, sizeof out), 1);
    CHECK_EQ_INT(out[0], 'f');
    CHECK_EQ_INT(vc_b64_decode("Zm8=", 4, out, sizeof out), 2);
    CHECK_EQ_INT(vc_b64_decode("Zm9v", 4, out, sizeof out), 3);
    CHECK_EQ_INT(vc_b64_decode("+/+/", 4, out, sizeof out), 3);
    CHECK_EQ_INT(out[0], 0xfb);
    CHECK_EQ_INT(vc_b64_decode("-_-_", 4, out, sizeof out), -EINVAL); /* base64url: not here */
    CHECK_EQ_INT(vc_b64_decode("Zg", 2, out, sizeof out), -EINVAL);   /* padding required */
    CHECK_EQ_INT(vc_b64_decode("Zh==", 4, out, sizeof out), -EINVAL); /* non-canonical bits */
    CHECK_EQ_INT(vc_b64_decode("Z===", 4, out, sizeof out), -EINVAL);
    CHECK_EQ_INT(vc_b64_decode("Zg==Zg==", 8, out, sizeof out), -EINVAL); /* padding inside */
    CHECK_EQ_INT(vc_b64_decode("Zm9vYmFy", 8, out, 5), -ENOSPC);
}

TEST(mode_names)
{
    vc_mode m;
    CHECK_EQ_INT(vc_mode_parse("gcm", &m), 0);
    CHECK_EQ_INT(m, VC_MODE_GCM);
    CHECK_EQ_INT(vc_mode_parse("aes_cm", &m), 0);
    CHECK_EQ_INT(m, VC_MODE_AES_CM);
    CHECK_EQ_INT(vc_mode_parse("AEAD_AES_128_GCM", &m), 0);
    CHECK_EQ_INT(m, VC_MODE_GCM);
    CHECK_EQ_INT(vc_mode_parse("aes", &m), -EINVAL);
    CHECK_EQ_STR(vc_mode_name(VC_MODE_AES_CM), "AES_CM_128_HMAC_SHA1_80");
    CHECK_EQ_INT(vc_mode_key_len(VC_MODE_GCM), 28);
}

int main(void)
{
    RUN(sdesc_example_of_the_protocol_doc);
    RUN(sdesc_gcm_needs_28_byte_keys);
    RUN(sdesc_refusals_name_the_field);
    RUN(base64_standard_with_padding);
    RUN(mode_names);
    return test_summary();
}
