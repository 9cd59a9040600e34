#!/usr/bin/env bash
# Builds libsrtp2 with its OpenSSL crypto backend into a local prefix and prints that prefix.
#
# Why: Debian 12's libsrtp2 package is built on NSS, which costs several times more per packet
# than the OpenSSL backend (docs/decisions.md, D21). We build Debian's own source package
# (same upstream version and Debian patches) with `--enable-openssl` instead of `--enable-nss`.
#
# Nothing of libsrtp is kept in this repository: the source package is fetched with apt at set-up
# time, through a private sources list (deb-src copy of the system's debian.sources) and private
# apt state/cache directories, so the system's apt configuration and state are not touched.
#
# Result (static, position-independent, no rpath needed):
#   $PREFIX/include/srtp2/*.h  $PREFIX/lib/libsrtp2.a  $PREFIX/lib/pkgconfig/libsrtp2.pc
# Link with:  -I$PREFIX/include ... $PREFIX/lib/libsrtp2.a $(pkg-config --libs libcrypto)
#
# Idempotent: a stamp in the prefix records what was built; a second run only prints the prefix.
# stdout carries only the prefix (for `$(shell ...)`); progress goes to stderr.
#
# Environment:
#   SRTP_DEPS_DIR     where to cache and build (default: <repo>/build/deps, gitignored)
#   SRTP_PREFIX       where to install (default: $SRTP_DEPS_DIR/libsrtp-openssl)
#   SRTP_DEB_VERSION  Debian source version to fetch (default: the installed libsrtp2-dev's
#                     version, so both backends are the same code; else apt's candidate)
#   SRTP_RUNTEST=1    also build and run libsrtp's own test driver against the built library
#   SRTP_FORCE=1      rebuild even if the stamp matches
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DEPS=${SRTP_DEPS_DIR:-$ROOT/build/deps}
PREFIX=${SRTP_PREFIX:-$DEPS/libsrtp-openssl}
APTDIR=$DEPS/apt
SRCDIR=$DEPS/src
CFLAGS_SRTP="-O2 -g -fPIC -D_REENTRANT"
CONFIGURE_OPTS=(--enable-openssl --disable-pcap --disable-debug-logging)
CONFIG_ID="v1 ${CONFIGURE_OPTS[*]} CFLAGS=$CFLAGS_SRTP openssl=$(pkg-config --modversion libcrypto 2>/dev/null || echo none)"

say() { echo "build-libsrtp: $*" >&2; }
die() { echo "build-libsrtp: error: $*" >&2; exit 1; }

for tool in apt-get tar make cc pkg-config; do
  command -v "$tool" >/dev/null 2>&1 || die "'$tool' not found (run scripts/install-deps.sh)"
done
pkg-config --exists libcrypto || die "OpenSSL development files missing (libssl-dev; run scripts/install-deps.sh)"

want_version=${SRTP_DEB_VERSION:-$(dpkg-query -W -f='${Version}' libsrtp2-dev 2>/dev/null || true)}

# Up to date?
if [ -z "${SRTP_FORCE:-}" ] && [ -f "$PREFIX/.voxd-stamp" ] && [ -f "$PREFIX/lib/libsrtp2.a" ]; then
  read -r built_version built_config <"$PREFIX/.voxd-stamp" || true
  if { [ -z "$want_version" ] || [ "$built_version" = "$want_version" ]; } &&
     [ "$built_config" = "$CONFIG_ID" ]; then
    echo "$PREFIX"
    exit 0
  fi
fi

start=$(date +%s.%N)

# ---- fetch Debian's source package (private apt sources/state/cache) -------------------------
mkdir -p "$APTDIR/parts" "$APTDIR/lists/partial" "$APTDIR/cache/archives/partial" "$SRCDIR"
sys_sources=/etc/apt/sources.list.d/debian.sources
[ -r "$sys_sources" ] || die "$sys_sources not found: cannot derive a deb-src entry (Debian 12 expected)"
sed 's/^Types: deb$/Types: deb-src/' "$sys_sources" >"$APTDIR/parts/src.sources"
grep -q '^Types: deb-src$' "$APTDIR/parts/src.sources" || die "no 'Types: deb' stanza in $sys_sources"
APTOPT=(-o Dir::Etc::SourceList=/dev/null -o "Dir::Etc::SourceParts=$APTDIR/parts"
        -o "Dir::State::Lists=$APTDIR/lists" -o "Dir::Cache=$APTDIR/cache")

say "fetching Debian source package libsrtp2${want_version:+=$want_version} (apt, private lists in $APTDIR)"
apt-get "${APTOPT[@]}" update -qq >&2 || die "apt-get update for deb-src failed (network? mirror?)"
dl=$(mktemp -d "$SRCDIR/dl.XXXXXX")
trap 'rm -rf "$dl"' EXIT
# apt downloads as the unprivileged _apt user when it can write the target directory.
if [ "$(id -u)" -eq 0 ] && id _apt >/dev/null 2>&1; then chown _apt "$dl"; fi
spec=libsrtp2${want_version:+=$want_version}
if ! (cd "$dl" && apt-get "${APTOPT[@]}" source --download-only -qq "$spec" >&2); then
  if [ -n "${SRTP_DEB_VERSION:-}" ] || [ -z "$want_version" ]; then
    die "could not fetch source package '$spec'"
  fi
  say "version $want_version not in the archive any more; taking apt's candidate instead"
  (cd "$dl" && apt-get "${APTOPT[@]}" source --download-only -qq libsrtp2 >&2) ||
    die "could not fetch source package libsrtp2"
fi
dsc=$(ls "$dl"/libsrtp2_*.dsc 2>/dev/null | head -1)
[ -n "$dsc" ] || die "no .dsc downloaded"
version=$(sed -n 's/^Version: //p' "$dsc")
say "got libsrtp2 $version"

# ---- unpack with Debian's patches -------------------------------------------------------------
tree=$SRCDIR/libsrtp2-$version
rm -rf "$tree"
if command -v dpkg-source >/dev/null 2>&1; then
  (cd "$dl" && dpkg-source -x "$(basename "$dsc")" "$tree" >&2)
else
  # The same by hand: orig tarball + debian/ tarball + quilt series applied in order.
  mkdir -p "$tree"
  tar -xf "$dl"/libsrtp2_*.orig.tar.* -C "$tree" --strip-components=1
  tar -xf "$dl"/libsrtp2_*.debian.tar.* -C "$tree"
  if [ -f "$tree/debian/patches/series" ]; then
    while read -r p _; do
      case "$p" in ''|'#'*) continue ;; esac
      patch -d "$tree" -p1 -s <"$tree/debian/patches/$p" >&2
    done <"$tree/debian/patches/series"
  fi
fi
[ -x "$tree/configure" ] || die "unpacked tree has no configure script"
# Debian's package is built with --enable-nss; we keep everything else upstream/Debian as is.
grep -q -- '--enable-nss' "$tree/debian/rules" 2>/dev/null ||
  say "note: debian/rules no longer says --enable-nss; check that the comparison still holds"

# ---- build a static, PIC library with the OpenSSL backend --------------------------------------
say "configuring: ${CONFIGURE_OPTS[*]} CFLAGS='$CFLAGS_SRTP'"
rm -rf "$PREFIX"
(cd "$tree" && CFLAGS="$CFLAGS_SRTP" ./configure --prefix="$PREFIX" "${CONFIGURE_OPTS[@]}" \
   >"$tree/voxd-configure.log" 2>&1) || { tail -30 "$tree/voxd-configure.log" >&2; die "configure failed"; }
grep -q '^#define OPENSSL 1' "$tree/crypto/include/config.h" ||
  die "configure did not select the OpenSSL backend (see $tree/voxd-configure.log)"
jobs=$(nproc 2>/dev/null || echo 2)
(cd "$tree" && make -j"$jobs" libsrtp2.a >"$tree/voxd-build.log" 2>&1) ||
  { tail -30 "$tree/voxd-build.log" >&2; die "build failed"; }
if [ -n "${SRTP_RUNTEST:-}" ]; then
  say "running libsrtp's own test driver"
  (cd "$tree" && make -j"$jobs" test >>"$tree/voxd-build.log" 2>&1 && ./test/srtp_driver -v >&2 &&
   ./crypto/test/cipher_driver -v >/dev/null && ./test/rdbx_driver -v >/dev/null) ||
    die "libsrtp's tests failed (see $tree/voxd-build.log)"
fi
(cd "$tree" && make install >>"$tree/voxd-build.log" 2>&1) || die "install failed"
rm -f "$PREFIX"/lib/libsrtp2.so*   # never built; make sure nothing needs an rpath
echo "$version $CONFIG_ID" >"$PREFIX/.voxd-stamp"

end=$(date +%s.%N)
say "built $PREFIX/lib/libsrtp2.a (libsrtp2 $version, OpenSSL backend) in $(awk -v a="$start" -v b="$end" 'BEGIN{printf "%.1f", b-a}') s"
echo "$PREFIX"
