#!/usr/bin/env bash
# Brings up a local exchange — one hub and three department nodes as real processes, with a
# fresh PKI, mutual TLS and redb stores under one folder — sends a document round trip with a
# visible 签收 (confirmation), then keeps everything running for the CLI until Ctrl-C.
#
#   ./scripts/demo.sh [DIR]        (default DIR: ./demo-exchange, recreated on each run)
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=$(realpath -m "${1:-demo-exchange}")

echo "== building (first time: a few minutes)"
cargo build --workspace --bins --locked --quiet
BIN=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')/debug
export PATH="$BIN:$PATH"

if [ -e "$DIR" ]; then
  if [ -f "$DIR/README.txt" ] && [ -d "$DIR/hub" ]; then rm -rf "$DIR"; else
    echo "error: $DIR exists and is not a demo exchange; name another folder" >&2; exit 64; fi
fi
echo "== laying out the exchange in $DIR"
exchange-certs demo-setup --dir "$DIR" --departments 'office=市政府办公室,finance=市财政局,education=市教育局' >/dev/null
mkdir -p "$DIR/logs" "$DIR/samples"

pids=()
cleanup() {
  echo; echo "== stopping"
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

exchange-hub --config "$DIR/hub/hub.toml" serve >"$DIR/logs/hub.log" 2>&1 & pids+=($!)
for d in office finance education; do
  exchange-node --config "$DIR/$d/node.toml" serve >"$DIR/logs/$d.log" 2>&1 & pids+=($!)
done
at() { local d=$1; shift; exchange-node --config "$DIR/$d/node.toml" "$@"; }
wait_for() { # wait_for WHAT CMD...: poll until CMD succeeds (30 s)
  local what=$1; shift
  for _ in $(seq 1 300); do if "$@" >/dev/null 2>&1; then return 0; fi; sleep 0.1; done
  echo "error: timed out waiting for $what; see $DIR/logs" >&2; exit 1
}
for d in office finance education; do wait_for "node $d" at "$d" directory; done
echo "== hub and nodes are up (logs in $DIR/logs)"

printf '各有关单位：\n请于12月15日前报送年度工作总结。\n' > "$DIR/samples/通知.txt"
echo "== office sends a notice to finance (主送) and education (抄送)"
ID=$(at office send --to finance --cc education --title '关于报送2026年度工作总结的通知' \
  --file "$DIR/samples/通知.txt" --urgency urgent --number '市府办〔2026〕7号' | tail -n 1)
echo "document id: $ID"

wait_for "delivery to finance" sh -c "exchange-node --config '$DIR/finance/node.toml' inbox --json | grep -q '$ID'"
echo; echo "== finance's inbox"; at finance inbox
echo; echo "== finance opens it"; at finance show "$ID"
echo; echo "== finance confirms receipt (签收); education sends it back (退回)"
at finance confirm "$ID" --clerk 王芳
at education reject "$ID" --reason '请改由市教育局办公室主送'
wait_for "the receipts" sh -c "exchange-node --config '$DIR/office/node.toml' status '$ID' --json | grep -q rejected && exchange-node --config '$DIR/office/node.toml' status '$ID' --json | grep -q confirmed"
echo; echo "== office sees each recipient's state"; at office status "$ID"

cat <<MSG

The exchange keeps running. In another terminal, try:
  export PATH="$BIN:\$PATH"
  exchange-node --config $DIR/finance/node.toml inbox
  exchange-node --config $DIR/office/node.toml send --to finance,education --title 测试 --file README.md
  exchange-node --config $DIR/office/node.toml status <ID>
Press Ctrl-C to stop.
MSG
wait
