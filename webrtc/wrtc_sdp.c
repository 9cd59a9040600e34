/*
 * webrtc/wrtc_sdp.c — a browser's SDP offer (RFC 8866 syntax, JSEP as Chromium and Firefox write
 * it) and the node's answer: ICE-lite, DTLS passive, Opus only, rtcp-mux, BUNDLE; the main audio
 * m-section carries the browser's upstream (and slot 0), each further bundled Opus audio section
 * one downstream slot; every other m-section is rejected with port 0.
 *
 * How it works: one pass over the lines (LF or CRLF), each "<letter>=<value>". Session-level lines
 * fill a session scratch, m-sections a section scratch that is "finalized" when the next m= line or
 * the end comes: an audio section with a usable port and protocol that offers Opus at 48000/2 is
 * marked with its payload type, audio-level id and direction; the first one is the main one, whose
 * values (media level first, session level as the fallback for ICE credentials, fingerprint and
 * setup — Firefox puts them at session level, Chromium at media level) are copied into the
 * caller's bounded wrtc_sdp_offer. Values are read in place from the caller's text (the scratch
 * holds pointers into it) and copied only into fixed-size fields; a value over its field's bound is
 * an oversize refusal, never a truncation. The refusal is decided at the end in a fixed order
 * (no_audio, no_opus, no_ice, no_fingerprint, bad_setup, no_rtcp_mux), so an offer missing several
 * things always gets the same reason; then the other marked sections stay accepted only if they
 * share the main one's BUNDLE group (one ICE/DTLS transport per participant).
 *
 * Why one slot per m-section: Chromium (Unified Plan) refuses an answer whose one m-section lists
 * several SSRCs with different msids ("more than one track specified with a=ssrc lines"), and with
 * one SSRC signalled it plays further SSRCs only as a single replaceable unsignalled stream (seen
 * with Chromium 156: docs/webrtc.md). A browser that wants N speakers at once adds N recvonly audio
 * transceivers before its offer.
 *
 * The answer is written with one bounded appender: -ENOSPC, never a truncated answer.
 */
#include "webrtc/webrtc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

const char *wrtc_sdp_err_name(wrtc_sdp_err e)
{
    switch (e) {
    case WRTC_SDP_OK:
        return "ok";
    case WRTC_SDP_OVERSIZE:
        return "oversize";
    case WRTC_SDP_MALFORMED:
        return "malformed";
    case WRTC_SDP_NO_AUDIO:
        return "no_audio";
    case WRTC_SDP_NO_OPUS:
        return "no_opus";
    case WRTC_SDP_NO_ICE:
        return "no_ice";
    case WRTC_SDP_NO_FINGERPRINT:
        return "no_fingerprint";
    case WRTC_SDP_BAD_SETUP:
        return "bad_setup";
    case WRTC_SDP_NO_RTCP_MUX:
        return "no_rtcp_mux";
    case WRTC_SDP_ERR_COUNT_:
        break;
    }
    return "unknown";
}

/* ---- small text helpers over (pointer, length) ----------------------------------------------- */

typedef struct str {
    const char *p;
    size_t n;
} str;

static bool eat(str *s, const char *prefix)
{
    size_t l = strlen(prefix);
    if (s->n < l || memcmp(s->p, prefix, l) != 0) return false;
    s->p += l;
    s->n -= l;
    return true;
}

static bool eq(str s, const char *lit)
{
    return s.n == strlen(lit) && memcmp(s.p, lit, s.n) == 0;
}

/* Next space-separated token (skips leading spaces); empty when none is left. */
static str token(str *s)
{
    if (s->n == 0) return (str){s->p, 0}; /* p may be NULL (an absent value): no arithmetic */
    while (s->n && *s->p == ' ')
        s->p++, s->n--;
    str t = {s->p, 0};
    while (t.n < s->n && s->p[t.n] != ' ')
        t.n++;
    s->p += t.n;
    s->n -= t.n;
    return t;
}

/* A decimal number of 1–10 digits that is <= max. */
static bool number(str t, uint32_t max, uint32_t *out)
{
    if (t.n == 0 || t.n > 10) return false;
    uint64_t v = 0;
    for (size_t i = 0; i < t.n; i++) {
        if (t.p[i] < '0' || t.p[i] > '9') return false;
        v = v * 10 + (uint64_t)(t.p[i] - '0');
    }
    if (v > max) return false;
    *out = (uint32_t)v;
    return true;
}

static bool ice_chars(str t)
{
    for (size_t i = 0; i < t.n; i++) {
        char c = t.p[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '+' || c == '/';
        if (!ok) return false;
    }
    return true;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* "AB:CD:…" of exactly 32 bytes */
static bool fp_parse(str t, uint8_t out[WRTC_SDP_FP_LEN])
{
    if (t.n != WRTC_SDP_FP_STR - 1) return false;
    for (size_t i = 0; i < WRTC_SDP_FP_LEN; i++) {
        int h = hexval(t.p[3 * i]), l = hexval(t.p[3 * i + 1]);
        if (h < 0 || l < 0) return false;
        if (i + 1 < WRTC_SDP_FP_LEN && t.p[3 * i + 2] != ':') return false;
        out[i] = (uint8_t)(h << 4 | l);
    }
    return true;
}

/* Copies t into a fixed field of capacity cap (including the NUL); false when it does not fit. */
static bool copy(char *dst, size_t cap, str t)
{
    if (t.n >= cap) return false;
    memcpy(dst, t.p, t.n);
    dst[t.n] = 0;
    return true;
}

/* ---- parse ------------------------------------------------------------------------------------
 */

enum { SETUP_NONE = -1, SETUP_ACTPASS, SETUP_ACTIVE, SETUP_PASSIVE, SETUP_HOLDCONN };

/* What either level may carry. */
typedef struct level {
    str ufrag, pwd;
    bool has_fp;
    uint8_t fp[WRTC_SDP_FP_LEN];
    int setup;
    int dir; /* -1: none */
} level;

typedef struct section {
    level lv;
    bool rtcp_mux;
    int opus_pt; /* -1: none */
    str fmts;    /* the m= line's format list */
    str fmtp[128];
    uint8_t level_id;
    bool has_ssrc;
    uint32_t ssrc;
} section;

typedef struct parser {
    wrtc_sdp_offer *o;
    level sess;
    str bundle; /* the mids after "BUNDLE" */
    section sec;
    bool in_media;
    bool chosen;
    bool saw_usable_audio;
    bool chosen_rtcp_mux;
    level acc; /* the main audio section's level, merged with the session's */
} parser;

/* Line-level refusal codes returned by the per-line functions. */
#define BAD     (-1) /* malformed */
#define TOO_BIG (-2) /* oversize */

static int attr_level(level *lv, str name, str v)
{
    if (eq(name, "ice-ufrag")) {
        if (v.n > WRTC_SDP_UFRAG_MAX) return TOO_BIG;
        if (v.n < 4 || !ice_chars(v)) return BAD;
        lv->ufrag = v;
    } else if (eq(name, "ice-pwd")) {
        if (v.n > WRTC_SDP_UFRAG_MAX) return TOO_BIG;
        if (v.n < 22 || !ice_chars(v)) return BAD;
        lv->pwd = v;
    } else if (eq(name, "fingerprint")) {
        str h = token(&v), fp = token(&v);
        if (h.n == 7 && strncasecmp(h.p, "sha-256", 7) == 0) {
            if (!fp_parse(fp, lv->fp)) return BAD;
            lv->has_fp = true;
        } /* other hash functions: ignored (RFC 8122 allows several lines) */
    } else if (eq(name, "setup")) {
        if (eq(v, "actpass"))
            lv->setup = SETUP_ACTPASS;
        else if (eq(v, "active"))
            lv->setup = SETUP_ACTIVE;
        else if (eq(v, "passive"))
            lv->setup = SETUP_PASSIVE;
        else if (eq(v, "holdconn"))
            lv->setup = SETUP_HOLDCONN;
        else
            return BAD;
    } else if (eq(name, "sendrecv")) {
        lv->dir = WRTC_SDP_SENDRECV;
    } else if (eq(name, "sendonly")) {
        lv->dir = WRTC_SDP_SENDONLY;
    } else if (eq(name, "recvonly")) {
        lv->dir = WRTC_SDP_RECVONLY;
    } else if (eq(name, "inactive")) {
        lv->dir = WRTC_SDP_INACTIVE;
    }
    return 0;
}

/* Whether payload type pt is in an m= line's format list. */
static bool listed(str fmts, uint32_t pt)
{
    uint32_t v;
    for (str t = token(&fmts); t.n; t = token(&fmts))
        if (number(t, 127, &v) && v == pt) return true;
    return false;
}

static int attr_media(parser *ps, str name, str v)
{
    section *s = &ps->sec;
    wrtc_sdp_mline *m = &ps->o->m[ps->o->n_mlines - 1];
    uint32_t n;
    if (eq(name, "mid")) {
        if (v.n > WRTC_SDP_MID_MAX) return TOO_BIG;
        if (v.n == 0) return BAD;
        for (size_t i = 0; i < v.n; i++)
            if ((unsigned char)v.p[i] <= ' ' || (unsigned char)v.p[i] >= 0x7f) return BAD;
        copy(m->mid, sizeof m->mid, v);
    } else if (eq(name, "rtcp-mux")) {
        s->rtcp_mux = true;
    } else if (eq(name, "rtpmap")) {
        str pt = token(&v), enc = token(&v);
        if (!number(pt, 127, &n) || enc.n == 0) return BAD;
        if (enc.n >= 5 && strncasecmp(enc.p, "opus/", 5) == 0) {
            str rest = {enc.p + 5, enc.n - 5};
            if (eq(rest, "48000/2") && s->opus_pt < 0 && listed(s->fmts, n)) s->opus_pt = (int)n;
        }
    } else if (eq(name, "fmtp")) {
        str pt = token(&v);
        if (!number(pt, 127, &n)) return BAD;
        while (v.n && *v.p == ' ')
            v.p++, v.n--;
        if (v.n > WRTC_SDP_FMTP_MAX) return TOO_BIG;
        s->fmtp[n] = v;
    } else if (eq(name, "extmap")) {
        str id = token(&v), uri = token(&v);
        const char *slash = memchr(id.p, '/', id.n);
        if (slash) id.n = (size_t)(slash - id.p);
        if (!number(id, 255, &n) || n == 0 || n == 15 || uri.n == 0) return BAD;
        if (eq(uri, WRTC_SDP_LEVEL_URI) && !s->level_id) s->level_id = (uint8_t)n;
    } else if (eq(name, "ssrc")) {
        str id = token(&v);
        if (!number(id, UINT32_MAX, &n)) return BAD;
        if (!s->has_ssrc) s->has_ssrc = true, s->ssrc = n;
    } else {
        return attr_level(&s->lv, name, v);
    }
    return 0;
}

static bool usable_proto(str p)
{
    return eq(p, "UDP/TLS/RTP/SAVPF") || eq(p, "UDP/TLS/RTP/SAVP");
}

static level merged(const parser *ps);

/* Ends the current m-section: an Opus audio section is marked (the first becomes the main one). */
static void finalize(parser *ps)
{
    if (!ps->in_media) return;
    wrtc_sdp_offer *o = ps->o;
    unsigned idx = o->n_mlines - 1;
    wrtc_sdp_mline *m = &o->m[idx];
    str proto = {m->proto, strlen(m->proto)};
    if (strcmp(m->kind, "audio") != 0 || m->port == 0 || !usable_proto(proto)) return;
    ps->saw_usable_audio = true;
    section *s = &ps->sec;
    if (s->opus_pt < 0) return;
    level lv = merged(ps);
    m->accepted = true;
    m->opus_pt = (uint8_t)s->opus_pt;
    m->level_ext_id = s->level_id;
    m->dir = (uint8_t)(lv.dir < 0 ? WRTC_SDP_SENDRECV : lv.dir);
    if (ps->chosen) return;
    ps->chosen = true;
    ps->chosen_rtcp_mux = s->rtcp_mux;
    ps->acc = lv;
    o->audio = idx;
    o->opus_pt = (uint8_t)s->opus_pt;
    if (s->fmtp[s->opus_pt].p) copy(o->opus_fmtp, sizeof o->opus_fmtp, s->fmtp[s->opus_pt]);
    o->level_ext_id = s->level_id;
    o->has_ssrc = s->has_ssrc;
    o->ssrc = s->ssrc;
}

/* A whole m-section's level merged with the session's (media level wins). */
static level merged(const parser *ps)
{
    level l = ps->sec.lv, s = ps->sess;
    if (!l.ufrag.p) l.ufrag = s.ufrag;
    if (!l.pwd.p) l.pwd = s.pwd;
    if (!l.has_fp && s.has_fp) l.has_fp = true, memcpy(l.fp, s.fp, sizeof l.fp);
    if (l.setup == SETUP_NONE) l.setup = s.setup;
    if (l.dir < 0) l.dir = s.dir;
    return l;
}

static int line_m(parser *ps, str v)
{
    wrtc_sdp_offer *o = ps->o;
    if (o->n_mlines == WRTC_SDP_MAX_MLINES) return TOO_BIG;
    str kind = token(&v), port = token(&v), proto = token(&v), fmt = token(&v);
    if (kind.n == 0 || port.n == 0 || proto.n == 0 || fmt.n == 0) return BAD;
    const char *slash = memchr(port.p, '/', port.n);
    if (slash) port.n = (size_t)(slash - port.p);
    uint32_t pn;
    if (!number(port, 65535, &pn)) return BAD;
    wrtc_sdp_mline *m = &o->m[o->n_mlines];
    memset(m, 0, sizeof *m);
    if (!copy(m->kind, sizeof m->kind, kind) || !copy(m->proto, sizeof m->proto, proto) ||
        !copy(m->fmt, sizeof m->fmt, fmt))
        return TOO_BIG;
    m->port = (uint16_t)pn;
    o->n_mlines++;
    memset(&ps->sec, 0, sizeof ps->sec);
    ps->sec.opus_pt = -1;
    ps->sec.fmts = (str){fmt.p, (size_t)(v.p + v.n - fmt.p)};
    ps->sec.lv.setup = SETUP_NONE;
    ps->sec.lv.dir = -1;
    ps->in_media = true;
    return 0;
}

static int line_a(parser *ps, str v)
{
    str name = v, val = {v.p + v.n, 0};
    const char *colon = memchr(v.p, ':', v.n);
    if (colon) {
        name.n = (size_t)(colon - v.p);
        val.p = colon + 1;
        val.n = v.n - name.n - 1;
    }
    if (name.n == 0) return BAD;
    if (ps->in_media) return attr_media(ps, name, val);
    if (eq(name, "group")) {
        if (eat(&val, "BUNDLE")) ps->bundle = val;
        return 0;
    }
    if (eq(name, "ice-lite")) {
        ps->o->ice_lite_peer = true;
        return 0;
    }
    return attr_level(&ps->sess, name, val);
}

static bool mid_in_bundle(str bundle, const char *mid)
{
    if (!mid[0]) return false;
    for (str t = token(&bundle); t.n; t = token(&bundle))
        if (eq(t, mid)) return true;
    return false;
}

int wrtc_sdp_parse(const char *sdp, size_t len, wrtc_sdp_offer *o, wrtc_sdp_err *why,
                   unsigned *line)
{
    memset(o, 0, sizeof *o);
    if (why) *why = WRTC_SDP_OK;
    if (line) *line = 0;
    wrtc_sdp_err e = WRTC_SDP_OK;
    unsigned lineno = 0;
    if (len > WRTC_SDP_MAX_LEN) {
        e = WRTC_SDP_OVERSIZE;
        goto refuse;
    }
    parser ps;
    memset(&ps, 0, sizeof ps);
    ps.o = o;
    ps.sess.setup = SETUP_NONE;
    ps.sess.dir = -1;

    size_t pos = 0;
    bool first = true;
    while (pos < len) {
        const char *l = sdp + pos;
        const char *nl = memchr(l, '\n', len - pos);
        size_t ll = nl ? (size_t)(nl - l) : len - pos;
        pos += ll + (nl ? 1 : 0);
        lineno++;
        if (ll && l[ll - 1] == '\r') ll--;
        if (ll == 0) continue; /* tolerated: a blank line (e.g. a trailing one) */
        if (ll < 2 || l[1] != '=' || l[0] < 'a' || l[0] > 'z' || memchr(l, 0, ll) ||
            memchr(l, '\r', ll)) {
            e = WRTC_SDP_MALFORMED;
            goto refuse;
        }
        str v = {l + 2, ll - 2};
        if (first) {
            if (l[0] != 'v' || !eq(v, "0")) {
                e = WRTC_SDP_MALFORMED;
                goto refuse;
            }
            first = false;
            continue;
        }
        int rc = 0;
        if (l[0] == 'm') {
            finalize(&ps);
            rc = line_m(&ps, v);
        } else if (l[0] == 'a') {
            rc = line_a(&ps, v);
        }
        if (rc) {
            e = rc == TOO_BIG ? WRTC_SDP_OVERSIZE : WRTC_SDP_MALFORMED;
            goto refuse;
        }
    }
    if (first) {
        e = WRTC_SDP_MALFORMED;
        goto refuse;
    }
    finalize(&ps);
    lineno = 0;
    level acc = ps.acc;
    if (!ps.chosen) {
        e = ps.saw_usable_audio ? WRTC_SDP_NO_OPUS : WRTC_SDP_NO_AUDIO;
        goto refuse;
    }
    if (!acc.ufrag.p || !acc.pwd.p) {
        e = WRTC_SDP_NO_ICE;
        goto refuse;
    }
    if (!acc.has_fp) {
        e = WRTC_SDP_NO_FINGERPRINT;
        goto refuse;
    }
    /* no a=setup: RFC 4145's default, active — which suits a passive answerer */
    if (acc.setup == SETUP_PASSIVE || acc.setup == SETUP_HOLDCONN) {
        e = WRTC_SDP_BAD_SETUP;
        goto refuse;
    }
    copy(o->ice_ufrag, sizeof o->ice_ufrag, acc.ufrag);
    copy(o->ice_pwd, sizeof o->ice_pwd, acc.pwd);
    memcpy(o->fingerprint, acc.fp, sizeof o->fingerprint);
    o->dir = acc.dir < 0 ? WRTC_SDP_SENDRECV : (wrtc_sdp_dir)acc.dir;
    o->bundle = mid_in_bundle(ps.bundle, o->m[o->audio].mid);
    if (!ps.chosen_rtcp_mux) {
        e = WRTC_SDP_NO_RTCP_MUX;
        goto refuse;
    }
    /* other Opus audio sections ride on the main one's transport only if bundled with it */
    for (unsigned i = 0; i < o->n_mlines; i++) {
        wrtc_sdp_mline *m = &o->m[i];
        if (i != o->audio && m->accepted && !(o->bundle && mid_in_bundle(ps.bundle, m->mid)))
            m->accepted = false;
        if (!m->accepted) continue;
        o->n_audio++;
        if (m->dir == WRTC_SDP_SENDRECV || m->dir == WRTC_SDP_RECVONLY) o->n_recv++;
    }
    return 0;

refuse:
    if (why) *why = e;
    if (line) *line = lineno;
    return e == WRTC_SDP_OVERSIZE ? -E2BIG : -EINVAL;
}

/* ---- answer -----------------------------------------------------------------------------------
 */

typedef struct out {
    char *buf;
    size_t cap, len;
    bool full;
} out;

__attribute__((format(printf, 2, 3))) static void put(out *w, const char *fmt, ...)
{
    if (w->full) return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(w->buf + w->len, w->cap - w->len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= w->cap - w->len) {
        w->full = true;
        return;
    }
    w->len += (size_t)n;
}

/* A token we write into the answer: 1–64 characters of [A-Za-z0-9._-]. */
static bool safe_token(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > 64) return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return false;
    }
    return true;
}

static bool valid_params(const wrtc_sdp_answer_params *a, bool *v6)
{
    if (!a->ice_ufrag || !a->ice_pwd || !a->fingerprint || !a->ip || !a->slot_ssrcs) return false;
    str uf = {a->ice_ufrag, strlen(a->ice_ufrag)}, pw = {a->ice_pwd, strlen(a->ice_pwd)};
    if (uf.n < 4 || uf.n > WRTC_SDP_UFRAG_MAX || !ice_chars(uf)) return false;
    if (pw.n < 22 || pw.n > WRTC_SDP_UFRAG_MAX || !ice_chars(pw)) return false;
    uint8_t fp[WRTC_SDP_FP_LEN];
    if (!fp_parse((str){a->fingerprint, strlen(a->fingerprint)}, fp)) return false;
    uint8_t addr[16];
    if (inet_pton(AF_INET, a->ip, addr) == 1)
        *v6 = false;
    else if (inet_pton(AF_INET6, a->ip, addr) == 1)
        *v6 = true;
    else
        return false;
    if (a->port == 0 || a->n_slots == 0 || a->n_slots > WRTC_SDP_MAX_SLOTS) return false;
    if (a->session_id >= (1ull << 63)) return false;
    return safe_token(a->cname) && safe_token(a->stream_id);
}

static const char *answer_dir(wrtc_sdp_dir offer)
{
    switch (offer) {
    case WRTC_SDP_SENDONLY:
        return "recvonly";
    case WRTC_SDP_RECVONLY:
        return "sendonly";
    case WRTC_SDP_INACTIVE:
        return "inactive";
    default:
        return "sendrecv";
    }
}

int wrtc_sdp_answer(const wrtc_sdp_offer *o, const wrtc_sdp_answer_params *a, char *buf, size_t cap)
{
    bool v6;
    if (!valid_params(a, &v6) || o->n_mlines == 0 || o->audio >= o->n_mlines) return -EINVAL;
    if (cap == 0) return -ENOSPC;
    out w = {buf, cap, 0, false};
    const char *af = v6 ? "IP6" : "IP4";
    put(&w, "v=0\r\no=- %llu 2 IN %s %s\r\ns=-\r\nt=0 0\r\n", (unsigned long long)a->session_id, af,
        a->ip);
    if (o->bundle) {
        put(&w, "a=group:BUNDLE");
        for (unsigned i = 0; i < o->n_mlines; i++)
            if (o->m[i].accepted) put(&w, " %s", o->m[i].mid);
        put(&w, "\r\n");
    }
    put(&w, "a=ice-lite\r\n");
    unsigned slot = 0;
    bool first = true;
    for (unsigned i = 0; i < o->n_mlines; i++) {
        const wrtc_sdp_mline *m = &o->m[i];
        if (!m->accepted) { /* rejected: port 0, the offer's proto and first format, its mid */
            put(&w, "m=%s 0 %s %s\r\nc=IN %s %s\r\n", m->kind, m->proto, m->fmt, af,
                v6 ? "::" : "0.0.0.0");
            if (m->mid[0]) put(&w, "a=mid:%s\r\n", m->mid);
            put(&w, "a=inactive\r\n");
            continue;
        }
        put(&w, "m=audio %u %s %u\r\nc=IN %s %s\r\n", a->port, m->proto, m->opus_pt, af, a->ip);
        put(&w, "a=ice-ufrag:%s\r\na=ice-pwd:%s\r\n", a->ice_ufrag, a->ice_pwd);
        put(&w, "a=fingerprint:sha-256 %s\r\na=setup:passive\r\n", a->fingerprint);
        if (m->mid[0]) put(&w, "a=mid:%s\r\n", m->mid);
        if (m->level_ext_id) put(&w, "a=extmap:%u %s\r\n", m->level_ext_id, WRTC_SDP_LEVEL_URI);
        /* the main section: the browser's upstream, and slot 0 if it receives; another section:
         * one slot downstream (sendonly), or nothing left for it (inactive) */
        bool recv = m->dir == WRTC_SDP_SENDRECV || m->dir == WRTC_SDP_RECVONLY;
        bool has_slot = recv && slot < a->n_slots;
        const char *dir = i == o->audio ? answer_dir((wrtc_sdp_dir)m->dir)
                          : has_slot    ? "sendonly"
                                        : "inactive";
        put(&w, "a=%s\r\na=rtcp-mux\r\n", dir);
        put(&w, "a=rtpmap:%u opus/48000/2\r\na=fmtp:%u minptime=10;useinbandfec=1\r\n", m->opus_pt,
            m->opus_pt);
        if (has_slot) {
            uint32_t ssrc = a->slot_ssrcs[slot];
            put(&w, "a=ssrc:%u cname:%s\r\na=ssrc:%u msid:%s slot%u\r\n", ssrc, a->cname, ssrc,
                a->stream_id, slot);
            slot++;
        }
        if (first)
            put(&w, "a=candidate:1 1 udp 2130706431 %s %u typ host\r\na=end-of-candidates\r\n",
                a->ip, a->port);
        first = false;
    }
    if (w.full) {
        buf[0] = 0;
        return -ENOSPC;
    }
    return (int)w.len;
}
