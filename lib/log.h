/*
 * lib/log — structured, levelled logs on stderr: one line per record,
 *   2026-11-27T19:24:39.123Z level=info ctx=rpc msg="..."
 * The level is checked before formatting, so a disabled LOG() costs one comparison.
 * Thread-safe (each record is one write(2)).
 */
#ifndef VOXD_LOG_H
#define VOXD_LOG_H

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR, LOG_OFF };

extern enum log_level log_min_level;

/* "debug", "info", "warn", "error", "off" -> level; -EINVAL otherwise */
int log_level_parse(const char *s);
void log_emit(enum log_level lvl, const char *ctx, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define LOGC(lvl, ctx, ...)                                                                        \
    do {                                                                                           \
        if ((lvl) >= log_min_level) log_emit((lvl), (ctx), __VA_ARGS__);                           \
    } while (0)
#define LOG(lvl, ...) LOGC(lvl, NULL, __VA_ARGS__)

#endif
