#!/usr/bin/env bash
# libsrtp2 per-packet cost: Debian's package (NSS backend) vs Debian's source built with OpenSSL
# (scripts/build-libsrtp.sh). Run through `make bench-srtp`, which builds both binaries.
#
# 1. Cross-check: packets protected by one build must unprotect in the other, both directions,
#    both profiles, RTP and RTCP; the two builds must produce identical bytes; tampering is refused.
#    A failure here exits non-zero (the builds do not interoperate: no figures are worth reading).
# 2. RUNS (default 3) runs of each binary, alternating so drift on a shared machine hits both,
#    then the median of each cell and the ratio NSS / OpenSSL. Figures, never pass/fail.
#
# Environment: BUILD (default build), RUNS (3), SRTP_BENCH_MS (CPU ms per cell and run, 250).
set -euo pipefail

BUILD=${BUILD:-build}
RUNS=${RUNS:-3}
MS=${SRTP_BENCH_MS:-250}
NSS=$BUILD/tests/bench/srtp_bench
OSSL=$BUILD/tests/bench/srtp_bench_openssl
for b in "$NSS" "$OSSL"; do
  [ -x "$b" ] || { echo "bench-srtp: $b missing (make bench-srtp builds it)" >&2; exit 1; }
done

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "== cross-check (Debian/NSS build <-> OpenSSL build)"
"$NSS" --cross-write "$tmp/nss.bin" >/dev/null
"$OSSL" --cross-read "$tmp/nss.bin"
"$OSSL" --cross-write "$tmp/ossl.bin" >/dev/null
"$NSS" --cross-read "$tmp/ossl.bin"
echo "cross-check: ok"
echo

echo "== $RUNS runs of each, ${MS} ms CPU per cell (machine: $(nproc) cores, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1))"
for i in $(seq 1 "$RUNS"); do
  "$NSS" --ms "$MS" >"$tmp/nss.$i"
  "$OSSL" --ms "$MS" >"$tmp/ossl.$i"
done
head -1 "$tmp/nss.1"
head -1 "$tmp/ossl.1"
echo

# Rows look like: PROFILE SESSIONS PROTECT UNPROTECT CREATE PACKETS
awk -v runs="$RUNS" '
  function median(a, n,   i, j, t) {
    for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j-1] > a[j]; j--) { t = a[j]; a[j] = a[j-1]; a[j-1] = t }
    return n % 2 ? a[(n+1)/2] : (a[n/2] + a[n/2+1]) / 2
  }
  FNR == 1 { which = FILENAME ~ /\/nss\./ ? "nss" : "ossl" }
  $1 ~ /^(AES_CM|AEAD)/ {
    key = $1 " " $2
    if (!(key in seen)) { seen[key] = 1; order[++nk] = key }
    for (c = 3; c <= 5; c++) v[which, key, c, ++cnt[which, key, c]] = $c
  }
  END {
    name[3] = "srtp_protect"; name[4] = "srtp_unprotect"; name[5] = "srtp_create (per srtp_t)"
    printf "%-24s %8s  %-24s %12s %12s %7s\n", "profile", "sessions", "ns per call (median)", "Debian/NSS", "OpenSSL", "ratio"
    for (k = 1; k <= nk; k++) for (c = 3; c <= 5; c++) {
      for (w = 0; w < 2; w++) {
        which = w ? "ossl" : "nss"; n = cnt[which, order[k], c]
        delete a; for (i = 1; i <= n; i++) a[i] = v[which, order[k], c, i] + 0
        m[which] = median(a, n)
      }
      split(order[k], kk, " ")
      printf "%-24s %8s  %-24s %12.0f %12.0f %6.1fx\n", kk[1], kk[2], name[c], m["nss"], m["ossl"], m["nss"] / m["ossl"]
    }
  }' $(for i in $(seq 1 "$RUNS"); do echo "$tmp/nss.$i" "$tmp/ossl.$i"; done)

if [ -n "${SRTP_BENCH_RAW:-}" ]; then
  echo
  for i in $(seq 1 "$RUNS"); do cat "$tmp/nss.$i" "$tmp/ossl.$i"; done
fi
