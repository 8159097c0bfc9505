#!/usr/bin/env bash
# Builds the four Debian packages and checks what is in them:
#   exchange-hub, exchange-node                  the international build (rustls + ring, no C)
#   exchange-hub-shangmi, exchange-node-shangmi  built with the cargo feature `shangmi` (Tongsuo,
#                                                linked in statically; docs/shangmi.md)
# Each -shangmi package has the same files as its international twin and conflicts with,
# replaces and provides it (`[package.metadata.deb.variants.shangmi]` in exchange-hub/Cargo.toml
# and exchange-node/Cargo.toml), so a server has exactly one of the two.
#
# Usage: scripts/build-debs.sh [OUT_DIR]     (default: ${CARGO_TARGET_DIR:-target}/debian)
# Needs cargo-deb (`cargo install cargo-deb --locked`), dpkg-deb, and for the shangmi packages a C
# compiler, perl and make (the feature compiles Tongsuo's C source).
#
# One release build per profile for both daemons (plus exchange-certs, which the check below
# uses), then cargo-deb packages what was built (--no-build). Then each package is checked: its
# name and relations, the binary, the systemd unit, the maintainer scripts, and what the binary
# does with a shangmi config: the shangmi build passes `check-config`, the international one
# refuses it with exit 64 (no 国密 support).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo-deb >/dev/null 2>&1; then
  echo "error: cargo-deb is not installed: cargo install cargo-deb --locked" >&2
  exit 1
fi
for tool in dpkg-deb; do
  command -v "$tool" >/dev/null 2>&1 || { echo "error: $tool is not installed" >&2; exit 1; }
done

target="${CARGO_TARGET_DIR:-target}"
out="${1:-$target/debian}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
release="$target/release"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# The workspace's version (every crate has it), as cargo-deb puts it in the file names.
version="$(awk -F'"' '/^\[workspace.package\]/ { w = 1 } w && /^version = / { print $2; exit }' Cargo.toml)"
arch="$(dpkg --print-architecture)"

# Packages `pkg` (optionally the variant) from the binary just built; prints the .deb's path.
package() {
  local pkg="$1" variant="${2:-}"
  local args=(deb --no-build -p "$pkg" --output "$out")
  [ -n "$variant" ] && args+=(--variant "$variant")
  cargo "${args[@]}" >&2
}

# Checks one .deb: control fields, contents, maintainer scripts; extracts it and runs its binary.
#   check DEB PACKAGE BINARY UNIT CONFLICTS PROFILE_SUPPORTED(yes|no)
check() {
  local deb="$1" name="$2" bin="$3" unit="$4" conflicts="$5" shangmi="$6"
  echo "-- $deb"
  [ "$(dpkg-deb -f "$deb" Package)" = "$name" ] || { echo "error: $deb: Package is not $name" >&2; exit 1; }
  [ "$(dpkg-deb -f "$deb" Conflicts)" = "$conflicts" ] \
    || { echo "error: $deb: Conflicts is '$(dpkg-deb -f "$deb" Conflicts)', not '$conflicts'" >&2; exit 1; }
  local contents
  contents="$(dpkg-deb -c "$deb")"
  for path in "./usr/bin/$bin" "./lib/systemd/system/$unit" "./usr/share/doc/$name/copyright" \
    "./usr/share/doc/$name/operations.md"; do
    grep -qF " $path" <<<"$contents" || { echo "error: $deb has no $path" >&2; exit 1; }
  done
  grep -qE '^-rwxr-xr-x .* \./usr/bin/'"$bin"'$' <<<"$contents" \
    || { echo "error: $deb: /usr/bin/$bin is not mode 0755" >&2; exit 1; }
  local info
  info="$(dpkg-deb -I "$deb")"
  for script in postinst prerm postrm; do
    grep -qE "^ +[0-9]+ bytes, +[0-9]+ lines +\* +$script " <<<"$info" \
      || { echo "error: $deb has no executable $script" >&2; exit 1; }
  done
  local root="$work/root-$name"
  dpkg-deb -x "$deb" "$root"
  "$root/usr/bin/$bin" --version
  local config="$work/demo/hub/hub.toml"
  [ "$bin" = exchange-node ] && config="$work/demo/a/node.toml"
  local rc=0 said
  said="$("$root/usr/bin/$bin" --config "$config" check-config 2>&1)" || rc=$?
  if [ "$shangmi" = yes ]; then
    [ "$rc" = 0 ] || { echo "error: $bin of $deb refused a shangmi config (exit $rc): $said" >&2; exit 1; }
    echo "   $bin check-config (shangmi config): $said"
  else
    [ "$rc" = 64 ] && grep -q "国密" <<<"$said" \
      || { echo "error: $bin of $deb: a shangmi config should be refused with exit 64, got $rc: $said" >&2; exit 1; }
    echo "   $bin check-config (shangmi config) refused, exit 64: $said"
  fi
}

echo "== international: exchange-hub, exchange-node"
cargo build --release --locked -p exchange-hub -p exchange-node
package exchange-hub
package exchange-node

echo "== shangmi: exchange-hub-shangmi, exchange-node-shangmi"
cargo build --release --locked -p exchange-hub -p exchange-node -p exchange-certs \
  --features exchange-hub/shangmi,exchange-node/shangmi,exchange-certs/shangmi
package exchange-hub shangmi
package exchange-node shangmi

echo "== checking the packages"
# A shangmi exchange (SM2 CA, TLCP double certificates, configs) to run check-config against.
"$release/exchange-certs" demo-setup --profile shangmi --dir "$work/demo" --departments a,b >/dev/null
# check-config resolves data_dir and friends against the config; an unpacked package has no
# /var/lib/exchange, which check-config does not need.
check "$out/exchange-hub_${version}-1_${arch}.deb" exchange-hub exchange-hub exchange-hub.service \
  exchange-hub-shangmi no
check "$out/exchange-node_${version}-1_${arch}.deb" exchange-node exchange-node \
  exchange-node@.service exchange-node-shangmi no
check "$out/exchange-hub-shangmi_${version}-1_${arch}.deb" exchange-hub-shangmi exchange-hub \
  exchange-hub.service exchange-hub yes
check "$out/exchange-node-shangmi_${version}-1_${arch}.deb" exchange-node-shangmi exchange-node \
  exchange-node@.service exchange-node yes

echo "== built"
ls -1 "$out"/exchange-{hub,node}{,-shangmi}_"${version}"-1_"${arch}".deb
