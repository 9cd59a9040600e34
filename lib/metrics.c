/*
 * lib/metrics — see metrics.h. The writer follows the text exposition format 0.0.4: a family is
 * `# HELP`, `# TYPE`, then its samples; label values escape backslash, quote and newline;
 * histograms render cumulative `_bucket{le="..."}` ending with `+Inf`, then `_sum` and `_count`.
 */
#include "lib/metrics.h"
#include "lib/util.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct {
    const char *name, *type, *help;
} families[M__N] = {
#define METRICS_ROW_(id, name, type, help) [id] = {name, type, help},
    METRICS_FAMILIES(METRICS_ROW_)
#undef METRICS_ROW_
};

static const double hist_le[METRICS_HIST_NB] = {
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5};

const char *metrics_name(enum metrics_id id)
{
    return families[id].name;
}

void metrics_buf_free(metrics_buf *b)
{
    free(b->s);
    b->s = NULL;
    b->len = b->cap = 0;
}

static void put(metrics_buf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        b->cap = (b->len + n + 1) * 2 + 1024;
        b->s = xrealloc(b->s, b->cap);
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
}

static void puts_(metrics_buf *b, const char *s)
{
    put(b, s, strlen(s));
}

static void putf(metrics_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void putf(metrics_buf *b, const char *fmt, ...)
{
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    put(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

static void put_escaped(metrics_buf *b, const char *s)
{
    for (; *s; s++) {
        if (*s == '\\')
            puts_(b, "\\\\");
        else if (*s == '"')
            puts_(b, "\\\"");
        else if (*s == '\n')
            puts_(b, "\\n");
        else
            put(b, s, 1);
    }
}

static void put_value(metrics_buf *b, double v)
{
    if (isnan(v))
        puts_(b, "NaN");
    else if (isinf(v))
        puts_(b, v > 0 ? "+Inf" : "-Inf");
    else if (v == floor(v) && fabs(v) < 1e15)
        putf(b, "%.0f", v);
    else
        putf(b, "%.9g", v);
}

void metrics_family(metrics_buf *b, enum metrics_id id)
{
    putf(b, "# HELP %s ", families[id].name);
    puts_(b, families[id].help); /* help texts are ours: no newline or backslash in them */
    putf(b, "\n# TYPE %s %s\n", families[id].name, families[id].type);
}

static void put_labels(metrics_buf *b, const char *const *labels, const char *le)
{
    bool any = (labels && labels[0]) || le;
    if (!any) return;
    puts_(b, "{");
    int n = 0;
    for (size_t i = 0; labels && labels[i] && labels[i + 1]; i += 2, n++) {
        if (n) puts_(b, ",");
        puts_(b, labels[i]);
        puts_(b, "=\"");
        put_escaped(b, labels[i + 1]);
        puts_(b, "\"");
    }
    if (le) {
        if (n) puts_(b, ",");
        putf(b, "le=\"%s\"", le);
    }
    puts_(b, "}");
}

void metrics_sample(metrics_buf *b, enum metrics_id id, double v, const char *const *labels)
{
    puts_(b, families[id].name);
    put_labels(b, labels, NULL);
    puts_(b, " ");
    put_value(b, v);
    puts_(b, "\n");
}

void metrics_hist_observe(metrics_hist *h, double seconds)
{
    if (seconds < 0) seconds = 0;
    for (size_t i = 0; i < METRICS_HIST_NB; i++) {
        if (seconds <= hist_le[i]) {
            h->bucket[i]++;
            break;
        }
    }
    h->count++;
    h->sum += seconds;
}

void metrics_hist_write_bounds(metrics_buf *b, enum metrics_id id, const double *le, size_t n,
                               const uint64_t *bucket, double sum, const char *const *labels)
{
    const char *name = families[id].name;
    uint64_t cum = 0;
    char les[32];
    for (size_t i = 0; i <= n; i++) {
        cum += bucket[i];
        if (i < n)
            snprintf(les, sizeof les, "%g", le[i]);
        else
            snprintf(les, sizeof les, "+Inf");
        putf(b, "%s_bucket", name);
        put_labels(b, labels, les);
        putf(b, " %llu\n", (unsigned long long)cum);
    }
    putf(b, "%s_sum", name);
    put_labels(b, labels, NULL);
    puts_(b, " ");
    put_value(b, sum);
    putf(b, "\n%s_count", name);
    put_labels(b, labels, NULL);
    putf(b, " %llu\n", (unsigned long long)cum);
}

void metrics_hist_write(metrics_buf *b, enum metrics_id id, const metrics_hist *h,
                        const char *const *labels)
{
    uint64_t bucket[METRICS_HIST_NB + 1], in = 0;
    for (size_t i = 0; i < METRICS_HIST_NB; i++)
        in += bucket[i] = h->bucket[i];
    bucket[METRICS_HIST_NB] = h->count - in; /* above the last bound */
    metrics_hist_write_bounds(b, id, hist_le, METRICS_HIST_NB, bucket, h->sum, labels);
}
