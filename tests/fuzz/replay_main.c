/*
 * Replays a fuzzer's corpus (tests/fuzz/corpus/<name>/) through its LLVMFuzzerTestOneInput
 * without libFuzzer, so `make check` runs every saved input under the normal (or ASan) build.
 * Prints one test line in the format of tests/unit/test.h.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#ifndef FUZZ_NAME
#error FUZZ_NAME must name the corpus
#endif
#define STR2(x) #x
#define STR(x)  STR2(x)

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : "tests/fuzz/corpus/" STR(FUZZ_NAME);
    DIR *d = opendir(dir);
    if (!d) {
        printf("not ok - fuzz-replay:%s: cannot open %s\n", STR(FUZZ_NAME), dir);
        return 1;
    }
    struct dirent *e;
    int n = 0;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        FILE *f = fopen(path, "rb");
        if (!f) continue;
        static uint8_t buf[1 << 20];
        size_t len = fread(buf, 1, sizeof buf, f);
        fclose(f);
        uint8_t *copy = malloc(len ? len : 1); /* exact size: ASan sees overreads */
        memcpy(copy, buf, len);
        LLVMFuzzerTestOneInput(copy, len);
        free(copy);
        n++;
    }
    closedir(d);
    if (n == 0) {
        printf("not ok - fuzz-replay:%s: empty corpus %s\n", STR(FUZZ_NAME), dir);
        return 1;
    }
    printf("ok - fuzz-replay:%s (%d inputs)\n", STR(FUZZ_NAME), n);
    return 0;
}
