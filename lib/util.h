/*
 * lib/util — small infrastructure shared by every module: allocation that aborts on OOM (for small
 * internal sizes only; sizes from the network are checked and refused by their parsers),
 * snowflake parsing, base64url, time.
 * Thread-safe: no state.
 */
#ifndef VOXD_UTIL_H
#define VOXD_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
/* printf into a new string */
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* A snowflake is 1–20 decimal digits that fit in a uint64 and is not 0. 0 or -EINVAL. */
int snowflake_parse(const char *s, uint64_t *out);
/* Writes the decimal form (buf >= 21 bytes); returns buf. */
char *snowflake_fmt(uint64_t v, char buf[21]);

/* base64url without padding. Encode writes b64url_len(n)+1 bytes (NUL-terminated). */
size_t b64url_len(size_t n);
void b64url_encode(const void *in, size_t n, char *out);
/* Decodes into out (capacity cap); returns the decoded length or -EINVAL. Rejects padding,
 * characters outside the alphabet and non-canonical trailing bits. */
long b64url_decode(const char *in, size_t n, void *out, size_t cap);

/* Constant-time comparison of two equal-length buffers. */
bool ct_equal(const void *a, const void *b, size_t n);

int64_t time_now_ms(void);  /* CLOCK_REALTIME, ms since the Unix epoch */
int64_t time_mono_ns(void); /* CLOCK_MONOTONIC */
/* ISO 8601 UTC with milliseconds: 2026-11-27T19:24:39.123Z (buf >= 32) */
char *time_iso8601(int64_t ms, char buf[32]);

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#endif
