/*
 * lib/log — see log.h. The message is escaped (quotes, backslashes, control characters) so a
 * record stays one parseable line whatever a peer sent us.
 */
#include "lib/log.h"
#include "lib/util.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

enum log_level log_min_level = LOG_INFO;

static const char *const names[] = {"debug", "info", "warn", "error", "off"};

int log_level_parse(const char *s)
{
    for (int i = 0; i <= LOG_OFF; i++)
        if (strcmp(s, names[i]) == 0) return i;
    return -EINVAL;
}

void log_emit(enum log_level lvl, const char *ctx, const char *fmt, ...)
{
    char msg[1024], line[2400], ts[32];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    int n = snprintf(line, sizeof line, "%s level=%s%s%s msg=\"", time_iso8601(time_now_ms(), ts),
                     names[lvl], ctx ? " ctx=" : "", ctx ? ctx : "");
    size_t o = (size_t)n;
    for (const char *p = msg; *p && o < sizeof line - 8; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '"' || c == '\\') {
            line[o++] = '\\';
            line[o++] = (char)c;
        } else if (c < 0x20) {
            o += (size_t)snprintf(line + o, 5, "\\x%02x", c);
        } else {
            line[o++] = (char)c;
        }
    }
    line[o++] = '"';
    line[o++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, o);
    (void)w;
}
