#!/usr/bin/env bash
# Brings up three linked exchanges (issue 18, docs/federation.md) — province, city and county,
# each with its own CA, hub and department nodes as real processes — then sends a document from
# the county's tax bureau to the province's office (主送) and the city's finance bureau (抄送),
# confirms it at office (签收), rejects it at finance (退回), and waits until the county sees
# both receipts. Then keeps everything running for the CLI until Ctrl-C.
#
#   ./scripts/demo-federation.sh [DIR]   (default: a new temporary directory)
#
# Every wait gives up after $TIMEOUT seconds (default 60) with a message naming the step and
# the logs to read.
set -euo pipefail
cd "$(dirname "$0")/.."
TIMEOUT=${TIMEOUT:-60}

echo "== building (first time: a few minutes)"
cargo build -p exchange-certs -p exchange-hub -p exchange-node --bins --locked --quiet
BIN=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')/debug
export PATH="$BIN:$PATH"

if [ $# -ge 1 ]; then
  DIR=$(realpath -m "$1")
  if [ -e "$DIR" ]; then
    if [ -f "$DIR/README.txt" ] && [ -d "$DIR/province/hub" ]; then rm -rf "$DIR"; else
      echo "error: $DIR exists and is not a federation demo; name another folder" >&2; exit 64; fi
  fi
else
  DIR=$(mktemp -d "${TMPDIR:-/tmp}/demo-federation.XXXXXX")
fi
EXCHANGES=(province city county)
declare -A DEPTS=([province]="office health" [city]="finance education" [county]="tax")

echo "== laying out the exchanges in $DIR"
exchange-certs demo-federation --dir "$DIR" \
  --exchanges 'province=office=省政府办公厅,health=省卫生健康委' \
  'city=finance=市财政局,education=市教育局' 'county=tax=县税务局' >/dev/null
mkdir -p "$DIR/logs" "$DIR/samples"

pids=() names=()
cleanup() {
  echo; echo "== stopping"
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fail() { echo "error: $*" >&2; exit 1; }
# Every started process is still running; otherwise name it and show the end of its log.
check_alive() {
  local i
  for i in "${!pids[@]}"; do
    if ! kill -0 "${pids[$i]}" 2>/dev/null; then
      echo "error: ${names[$i]} exited; the end of $DIR/logs/${names[$i]}.log:" >&2
      tail -n 20 "$DIR/logs/${names[$i]}.log" >&2 || true
      exit 1
    fi
  done
}
wait_for() { # wait_for WHAT CMD...: poll until CMD succeeds ($TIMEOUT s)
  local what=$1; shift
  local tries=$((TIMEOUT * 5))
  for _ in $(seq 1 "$tries"); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    check_alive
    sleep 0.2
  done
  fail "timed out after ${TIMEOUT}s waiting for $what; see the logs in $DIR/logs"
}
start() { # start NAME CMD...: run CMD in the background, logging to logs/NAME.log
  local name=$1; shift
  "$@" >"$DIR/logs/$name.log" 2>&1 & pids+=($!) names+=("$name")
}
at() { local path=$1; shift; exchange-node --config "$DIR/$path/node.toml" "$@"; }

for e in "${EXCHANGES[@]}"; do
  exchange-hub --config "$DIR/$e/hub/hub.toml" check-config >/dev/null \
    || fail "exchange-hub refuses $DIR/$e/hub/hub.toml (see above)"
  start "$e-hub" exchange-hub --config "$DIR/$e/hub/hub.toml" serve
done
for e in "${EXCHANGES[@]}"; do
  wait_for "the $e hub" test -s "$DIR/$e/hub/data/hub.addr"
done
for e in "${EXCHANGES[@]}"; do
  for d in ${DEPTS[$e]}; do start "$e-$d" exchange-node --config "$DIR/$e/$d/node.toml" serve; done
done
for e in "${EXCHANGES[@]}"; do
  for d in ${DEPTS[$e]}; do wait_for "node $d@$e" at "$e/$d" directory; done
done
echo "== 3 hubs and 5 nodes are up (logs in $DIR/logs)"

printf '各有关单位：\n请于12月15日前报送年度税收工作总结。\n' > "$DIR/samples/报告.txt"
echo "== tax@county sends a report to office@province (主送) and finance@city (抄送)"
if ! OUT=$(at county/tax send --to office@province --cc finance@city \
  --title '关于报送2026年度税收工作总结的报告' --file "$DIR/samples/报告.txt"); then
  fail "tax@county could not send to office@province and finance@city (is hub-to-hub relaying in this build?); see $DIR/logs"
fi
ID=$(printf '%s\n' "$OUT" | tail -n 1)
echo "document id: $ID"

in_inbox() { at "$1" inbox --json | grep -q "$ID"; }
wait_for "delivery to office@province" in_inbox province/office
wait_for "delivery to finance@city" in_inbox city/finance
echo; echo "== office@province's inbox"; at province/office inbox
echo; echo "== office@province confirms receipt (签收); finance@city sends it back (退回)"
at province/office confirm "$ID" --clerk 李明
at city/finance reject "$ID" --reason '请改由县财政局报送' --clerk 王芳

receipts() {
  local json
  json=$(at county/tax status "$ID" --json) || return 1
  grep -q confirmed <<<"$json" && grep -q rejected <<<"$json"
}
wait_for "both receipts at tax@county" receipts
echo; echo "== tax@county sees each recipient's state"; at county/tax status "$ID"

cat <<MSG

The exchanges keep running (layout and commands: $DIR/README.txt). In another terminal, try:
  export PATH="$BIN:\$PATH"
  exchange-node --config $DIR/province/office/node.toml inbox
  exchange-node --config $DIR/city/finance/node.toml send --to health@province --title 测试 --file $DIR/README.txt
Press Ctrl-C to stop.
MSG
wait
