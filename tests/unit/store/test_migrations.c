/*
 * tests/unit/store/test_migrations.c — the migrations embedded in the binary
 * (store/store_migrations.c) are byte for byte the .sql files in store/migrations/, numbered 1..N
 * without gaps (regenerate with store/migrations/embed.sh). Runs from the repository root
 * (tests/run-all.sh does).
 */
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>

#include "store/store.h"
#include "tests/unit/test.h"

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    size_t r;
    while (buf && (r = fread(buf + n, 1, cap - n, f)) > 0) {
        n += r;
        if (n == cap) buf = realloc(buf, (cap *= 2) + 1);
    }
    fclose(f);
    if (buf) buf[n] = 0;
    *len = n;
    return buf;
}

TEST(embedded_equal_sql_files)
{
    size_t n = store_migration_count();
    CHECK(n >= 3);
    for (size_t i = 0; i < n; i++) {
        int version;
        const char *name, *sql;
        CHECK_EQ_INT(store_migration(i, &version, &name, &sql), 0);
        CHECK_EQ_INT(version, (long long)i + 1);
        char path[256];
        snprintf(path, sizeof path, "store/migrations/%03d_%s.sql", version, name);
        size_t len;
        char *file = slurp(path, &len);
        if (!file) FAIL_("%s: cannot read (run from the repository root)", path);
        int same = len == strlen(sql) && memcmp(file, sql, len) == 0;
        free(file);
        if (!same)
            FAIL_("%s differs from store/store_migrations.c: run store/migrations/embed.sh", path);
    }
    CHECK_EQ_INT(store_migration(n, NULL, NULL, NULL), -ENOENT);
}

TEST(every_sql_file_embedded)
{
    DIR *d = opendir("store/migrations");
    CHECK(d != NULL);
    size_t nsql = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t l = strlen(e->d_name);
        if (l > 4 && strcmp(e->d_name + l - 4, ".sql") == 0) nsql++;
    }
    closedir(d);
    CHECK_EQ_INT(nsql, store_migration_count());
}

int main(void)
{
    RUN(embedded_equal_sql_files);
    RUN(every_sql_file_embedded);
    return test_summary();
}
