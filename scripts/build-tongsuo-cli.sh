#!/usr/bin/env bash
# Builds Tongsuo's own command-line tool (bin/tongsuo, a link to its `openssl` app) from the very
# source the crate tongsuo-src ships at the version Cargo.lock pins, with NTLS (TLCP) enabled. The
# 国密 interop tests use it as a client we did not write: `tongsuo s_client -enable_ntls -ntls`.
#
# Usage: scripts/build-tongsuo-cli.sh [OUT_DIR]     (default: ${CARGO_TARGET_DIR:-target}/tongsuo-cli)
# Idempotent: does nothing when OUT_DIR already holds a working build of that version (~0.03 s).
# Safe to run concurrently (tests of several processes call it): one builds, the others wait on a
# lock in OUT_DIR and then find the build done.
# Needs a C compiler, perl and make (as the `shangmi` cargo feature does). About 3.5 minutes here (2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."

out="${1:-${CARGO_TARGET_DIR:-target}/tongsuo-cli}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"

# The version the workspace builds with, so that the tool and the library are the same source.
version="$(awk '$0 == "name = \"tongsuo-src\"" { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)"
if [ -z "$version" ]; then
  echo "error: tongsuo-src is not in Cargo.lock" >&2
  exit 1
fi

stamp="$out/.built-tongsuo-src-$version"
built() { [ -f "$stamp" ] && "$out/bin/tongsuo" version >/dev/null 2>&1; }
if built; then
  echo "tongsuo-src $version CLI already built: $out/bin/tongsuo"
  exit 0
fi
# One build at a time per OUT_DIR; whoever waited finds it built.
exec 9>"$out/.lock"
flock 9
if built; then
  echo "tongsuo-src $version CLI already built: $out/bin/tongsuo"
  exit 0
fi

find_src() {
  ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/"tongsuo-src-$version"/tongsuo 2>/dev/null | head -n 1
}
src="$(find_src)"
if [ -z "$src" ]; then
  # The crate's source is unpacked on download; fetching the locked dependencies brings it.
  cargo fetch --locked >/dev/null
  src="$(find_src)"
fi
if [ ! -x "$src/config" ]; then
  echo "error: no Tongsuo source for tongsuo-src $version under the cargo registry" >&2
  exit 1
fi

# Build in a scratch copy: the registry's source stays pristine for cargo.
build="$out/build"
rm -rf "$build" "$out/bin" "$out/lib" "$out/include" "$stamp"
cp -R "$src" "$build"
cd "$build"
echo "building Tongsuo $version CLI in $build" >&2
./config enable-ntls no-shared no-tests --prefix="$out" --openssldir="$out/ssl" --libdir=lib >/dev/null
make -j"$(nproc)" build_programs >/dev/null
make install_sw >/dev/null
cd "$out"
rm -rf "$build"

"$out/bin/tongsuo" version
"$out/bin/tongsuo" s_client -help 2>&1 | grep -q -- '-enable_ntls' || {
  echo "error: the built s_client has no -enable_ntls option" >&2
  exit 1
}
touch "$stamp"
echo "built $out/bin/tongsuo"
