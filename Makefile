# voxd — one non-recursive Makefile.
#
#   make            build voxd and the test/bench tools into build/
#   make check      install missing packages, build, run every test; ends with "N passed, N failed"
#   make asan       the same suite under AddressSanitizer + UndefinedBehaviorSanitizer (build-asan/)
#   make bench      benchmarks (figures printed, never pass/fail)
#   make browser    checks against a real headless Chromium (tests/browser/; needs chromium)
#   make run        run a development node (installs what is missing first)
#   make format     clang-format every C file
#
# A folder is a module; dependencies point one way:  lib <- store, rtp <- webrtc <- signalling <- voice.
# voice/ holds the node itself (main, HTTP/WS edge) and links everything.

# no built-in rules: they would try to "remake" the included .d files (e.g. link replay_x.d from
# a replay_x.d.o made by the replay_%.o rule)
MAKEFLAGS += --no-builtin-rules
.SUFFIXES:

BUILD   ?= build
CC      ?= cc
WERROR  ?=
PKGS    := libuv libwebsockets jansson libpq openssl
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

WARN := -std=c11 -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wformat=2 \
        -Wpointer-arith -Wwrite-strings -Werror=implicit-function-declaration \
        -Wno-unused-parameter
ifneq ($(WERROR),)
WARN += -Werror
endif

OPT     ?= -O2 -g
CFLAGS  += $(OPT) $(WARN) -D_GNU_SOURCE -I. $(PKG_CFLAGS) -MMD -MP
LDLIBS  += $(PKG_LIBS) -lpthread -lm

ifeq ($(SAN),1)
CFLAGS  += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDFLAGS += -fsanitize=address,undefined
endif

# ---- libsrtp built with OpenSSL (D21) ----------------------------------------------------------
# rtp/ (the media worker) and its tests use libsrtp from build/deps/libsrtp-openssl, built by
# `make deps-srtp` from Debian's source package; every binary that links libvoxcore.a links it
# statically. Its headers come before every other -I so <srtp2/srtp.h> is ours even with
# libsrtp2-dev installed. One prefix for every build dir (build, build-asan, build-fuzz): the
# library is plain C built without sanitizers. Debian's libsrtp2 (NSS) is only for srtp_bench.
SRTP_PREFIX ?= build/deps/libsrtp-openssl
SRTP_LIB     = $(SRTP_PREFIX)/lib/libsrtp2.a
SRTP_CFLAGS  = -I$(SRTP_PREFIX)/include
SRTP_LIBS    = $(SRTP_LIB) $(shell pkg-config --libs libcrypto)

# ---- modules ---------------------------------------------------------------------------------
CORE_MODS := lib store rtp webrtc signalling
CORE_SRC  := $(foreach m,$(CORE_MODS),$(wildcard $(m)/*.c))
NODE_SRC  := $(filter-out voice/main.c,$(wildcard voice/*.c))
CORE_OBJ  := $(CORE_SRC:%.c=$(BUILD)/%.o)
NODE_OBJ  := $(NODE_SRC:%.c=$(BUILD)/%.o)

VOXD := $(BUILD)/voxd

# client/: the audio core of voxclient (libopus). Its own library; opus stays out of voxd's link.
CLIENT_OBJ   := $(patsubst %.c,$(BUILD)/%.o,$(filter-out client/voxclient.c,$(wildcard client/*.c)))
VOXCLIENT    := $(BUILD)/voxclient
OPUS_CFLAGS  := $(shell pkg-config --cflags opus 2>/dev/null)
OPUS_LIBS    := $(shell pkg-config --libs opus 2>/dev/null)

# unit tests: tests/unit/<module>/test_*.c, each its own binary, linked with the core objects
UNIT_SRC  := $(wildcard tests/unit/*/test_*.c)
UNIT_BIN  := $(UNIT_SRC:%.c=$(BUILD)/%)
UNIT_HELP := $(wildcard tests/unit/*.c)
UNIT_HOBJ := $(UNIT_HELP:%.c=$(BUILD)/%.o)

# fuzzers: tests/fuzz/fuzz_<name>.c. `make fuzz` runs them with libFuzzer (clang); `make check`
# replays their corpora (tests/fuzz/corpus/<name>/) through the same code as unit tests.
FUZZ_SRC  := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_NAMES := $(FUZZ_SRC:tests/fuzz/fuzz_%.c=%)
REPLAY_BIN := $(FUZZ_NAMES:%=$(BUILD)/tests/unit/fuzz/test_fuzz_%)
FUZZ_SECONDS ?= 60

# browser checks: tests/browser/*.c are their helpers (wrtc_peer: one webrtc transport for a real
# Chromium); `make browser` runs tests/browser/*.py, never part of `make check` (needs chromium)
BROWSER_SRC := $(wildcard tests/browser/*.c)
BROWSER_BIN := $(BROWSER_SRC:%.c=$(BUILD)/%)

# benchmark tools: tests/bench/*.c, each its own binary
BENCH_SRC := $(wildcard tests/bench/*.c)
BENCH_BIN := $(BENCH_SRC:%.c=$(BUILD)/%)

.PHONY: all check asan bench run format deps clean fuzz browser
.SECONDARY:
all: $(SRTP_LIB) $(VOXD) $(VOXCLIENT) $(UNIT_BIN) $(BENCH_BIN) $(REPLAY_BIN) $(BROWSER_BIN)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

# objects that include <srtp2/srtp.h>: our headers first, and the library built before them
SRTP_OBJ := $(BUILD)/rtp/rtp_worker.o $(BUILD)/rtp/rtp_hmac.o $(BUILD)/tests/unit/rtp/test_worker.o \
            $(BUILD)/tests/unit/rtp/test_hmac.o \
            $(BUILD)/tests/fuzz/fuzz_srtp.o $(BUILD)/client/media.o $(BROWSER_SRC:%.c=$(BUILD)/%.o) \
            $(BUILD)/tests/bench/wrtc_fwd_bench.o
$(SRTP_OBJ): private CFLAGS := $(SRTP_CFLAGS) $(CFLAGS)
$(SRTP_OBJ): | $(SRTP_LIB)

$(BUILD)/libvoxcore.a: $(CORE_OBJ)
	@mkdir -p $(dir $@)
	$(AR) rcs $@ $^

$(VOXD): $(BUILD)/voice/main.o $(NODE_OBJ) $(BUILD)/libvoxcore.a
	$(CC) $(LDFLAGS) -o $@ $^ $(SRTP_LIBS) $(LDLIBS)

$(BUILD)/tests/unit/%: $(BUILD)/tests/unit/%.o $(UNIT_HOBJ) $(BUILD)/libvoxcore.a
	$(CC) $(LDFLAGS) -o $@ $^ $(SRTP_LIBS) $(LDLIBS)

$(CLIENT_OBJ): private CFLAGS += $(OPUS_CFLAGS)

$(BUILD)/libvoxclient.a: $(CLIENT_OBJ)
	@mkdir -p $(dir $@)
	$(AR) rcs $@ $^

$(BUILD)/tests/unit/client/%: $(BUILD)/tests/unit/client/%.o $(UNIT_HOBJ) $(BUILD)/libvoxclient.a $(BUILD)/libvoxcore.a
	$(CC) $(LDFLAGS) -o $@ $^ $(SRTP_LIBS) $(LDLIBS) $(OPUS_LIBS)

# voxclient: the native voice client (client/voxclient.c; docs/voxclient.md)
$(VOXCLIENT): $(BUILD)/client/voxclient.o $(BUILD)/libvoxclient.a $(BUILD)/libvoxcore.a
	$(CC) $(LDFLAGS) -o $@ $^ $(SRTP_LIBS) $(LDLIBS) $(OPUS_LIBS)

$(BUILD)/tests/fuzz/replay_%.o: tests/fuzz/replay_main.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -DFUZZ_NAME=$* -c -o $@ $<

$(BUILD)/tests/unit/fuzz/test_fuzz_%: $(BUILD)/tests/fuzz/fuzz_%.o $(BUILD)/tests/fuzz/replay_%.o $(BUILD)/libvoxcore.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(SRTP_LIBS) $(LDLIBS)

fuzz: deps deps-srtp
	@$(MAKE) --no-print-directory BUILD=build-fuzz CC=clang SAN=1 OPT="-O1 -g -fsanitize=fuzzer-no-link" build-fuzz/libvoxcore.a $(FUZZ_SRC:%.c=build-fuzz/%.o)
	@set -e; for n in $(FUZZ_NAMES); do \
	  clang -fsanitize=fuzzer,address,undefined -o build-fuzz/fuzz_$$n build-fuzz/tests/fuzz/fuzz_$$n.o build-fuzz/libvoxcore.a $(SRTP_LIBS) $(LDLIBS); \
	  mkdir -p build-fuzz/corpus/$$n; \
	  echo "fuzz_$$n: $(FUZZ_SECONDS) s"; \
	  build-fuzz/fuzz_$$n -max_total_time=$(FUZZ_SECONDS) -max_len=8192 build-fuzz/corpus/$$n tests/fuzz/corpus/$$n >build-fuzz/fuzz_$$n.log 2>&1 || { tail -40 build-fuzz/fuzz_$$n.log; exit 1; }; \
	  tail -1 build-fuzz/fuzz_$$n.log; \
	done

$(BUILD)/tests/bench/%: $(BUILD)/tests/bench/%.o $(BUILD)/libvoxcore.a
	$(CC) $(LDFLAGS) -o $@ $^ $(SRTP_LIBS) $(LDLIBS)

# relay benchmark (docs/media.md "Relay benchmark"): relay_gen is relay_gen.c plus its setup
# modules in tests/bench/relay/ (a subfolder, so they are not bench binaries of their own) and
# links libvoxclient (Opus); it and ceiling_relay include <srtp2/srtp.h> (our OpenSSL build).
RB_OBJ     := $(patsubst %.c,$(BUILD)/%.o,$(wildcard tests/bench/relay/*.c))
RB_SRTP_OBJ := $(BUILD)/tests/bench/relay_gen.o $(BUILD)/tests/bench/ceiling_relay.o $(RB_OBJ)
$(RB_SRTP_OBJ): private CFLAGS := $(SRTP_CFLAGS) $(CFLAGS)
$(RB_SRTP_OBJ): | $(SRTP_LIB)

$(BUILD)/tests/bench/relay_gen: $(BUILD)/tests/bench/relay_gen.o $(RB_OBJ) $(BUILD)/libvoxclient.a $(BUILD)/libvoxcore.a
	$(CC) $(LDFLAGS) -o $@ $^ $(SRTP_LIBS) $(LDLIBS) $(OPUS_LIBS)

$(BUILD)/tests/bench/ceiling_relay: $(BUILD)/tests/bench/ceiling_relay.o $(BUILD)/libvoxcore.a
	$(CC) $(LDFLAGS) -o $@ $^ $(SRTP_LIBS) $(LDLIBS)

$(BUILD)/tests/browser/%: $(BUILD)/tests/browser/%.o $(BUILD)/libvoxcore.a
	$(CC) $(LDFLAGS) -o $@ $^ $(SRTP_LIBS) $(LDLIBS)

browser: deps
	@$(MAKE) --no-print-directory $(BROWSER_BIN)
	@set -e; for t in tests/browser/*.py; do BUILD=$(BUILD) /usr/bin/python3 $$t; done

# srtp_bench measures Debian's libsrtp2 (NSS): it links neither libvoxcore.a nor our libsrtp
$(BUILD)/tests/bench/srtp_bench: $(BUILD)/tests/bench/srtp_bench.o
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) $(shell pkg-config --libs libsrtp2 2>/dev/null)

deps:
	@./scripts/install-deps.sh

check: deps
	@$(MAKE) --no-print-directory all
	@BUILD=$(BUILD) ./tests/run-all.sh

asan: deps
	@$(MAKE) --no-print-directory BUILD=build-asan SAN=1 OPT="-O1 -g" all
	@BUILD=build-asan ASAN=1 ./tests/run-all.sh

bench: deps
	@$(MAKE) --no-print-directory all
	@BUILD=$(BUILD) ./scripts/bench.sh

run: deps
	@$(MAKE) --no-print-directory $(VOXD)
	@BUILD=$(BUILD) ./scripts/run-dev.sh

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf build build-asan build-fuzz

# ---- libsrtp: Debian's package (NSS) vs the same source built with OpenSSL (D21) -------------
# build/tests/bench/srtp_bench (part of `all`) links Debian's libsrtp2 through pkg-config.
# `make deps-srtp` fetches Debian's libsrtp2 source package with apt and builds it with
# --enable-openssl into SRTP_PREFIX (static, PIC; variables at the top); `all` builds it first
# when it is missing. `make bench-srtp` builds srtp_bench_openssl against it, cross-checks both
# builds and prints medians of 3 runs of each.
.PHONY: deps-srtp bench-srtp

deps-srtp:
	@SRTP_PREFIX=$(abspath $(SRTP_PREFIX)) ./scripts/build-libsrtp.sh >/dev/null

$(BUILD)/tests/bench/srtp_bench_openssl: tests/bench/srtp_bench.c $(SRTP_PREFIX)/lib/libsrtp2.a
	@mkdir -p $(dir $@)
	$(CC) $(SRTP_CFLAGS) $(CFLAGS) '-DSRTP_BENCH_BACKEND="openssl (build-libsrtp.sh)"' \
	  $(LDFLAGS) -o $@ $< $(SRTP_LIBS) -lpthread

$(SRTP_PREFIX)/lib/libsrtp2.a:
	@$(MAKE) --no-print-directory deps-srtp

bench-srtp: deps deps-srtp
	@$(MAKE) --no-print-directory $(BUILD)/tests/bench/srtp_bench $(BUILD)/tests/bench/srtp_bench_openssl
	@BUILD=$(BUILD) ./scripts/bench-srtp.sh

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
