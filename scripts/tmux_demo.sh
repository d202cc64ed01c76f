#!/usr/bin/env bash
# Drives the real TUI in tmux, the way a person would use it over SSH:
#   1. starts `aplot` on an empty temp store in a detached tmux session;
#   2. launches a run from another shell with `aplot run --preset demo-rm --detach`;
#   3. checks (tmux capture-pane) that the run appears on the runs screen within 2 s;
#   4. opens it and checks that its loss panel grows as training writes metrics;
#   5. quits the TUI and checks that training is still running, then stops it with `aplot stop`.
# Exit status 0 only if every check passed. Needs tmux. Usage: scripts/tmux_demo.sh
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
APLOT=${APLOT:-$ROOT/.venv/bin/aplot}
PY=${PY:-$ROOT/.venv/bin/python}
STORE=$(mktemp -d)
SESSION="aplot-demo-$$"
RUN_ID=""

cleanup() {
  tmux kill-session -t "$SESSION" 2>/dev/null || true
  if [[ -n "$RUN_ID" ]]; then "$APLOT" stop "$RUN_ID" --runs-dir "$STORE" >/dev/null 2>&1 || true; fi
  rm -rf "$STORE" "$STORE.launch.log"
}
trap cleanup EXIT

pane() { tmux capture-pane -p -t "$SESSION"; }
fail() { echo "FAIL: $*" >&2; echo "--- screen ---" >&2; pane >&2; exit 1; }

# wait_for SECONDS DESCRIPTION COMMAND...: poll COMMAND every 0.1 s until it succeeds
wait_for() {
  local limit=$1 what=$2; shift 2
  local deadline=$(( $(date +%s%N) + limit * 1000000000 ))
  until "$@"; do
    (( $(date +%s%N) < deadline )) || fail "$what (not within ${limit}s)"
    sleep 0.1
  done
}

# braille dots drawn in the loss panel: the top-left third of the screen, under the header
loss_dots() {
  pane | "$PY" -c '
import sys
rows = sys.stdin.read().splitlines()[3:20]
print(sum(0x2800 < ord(ch) <= 0x28FF for row in rows for ch in row[: len(row) // 3]))'
}

screen_has() { pane | grep -q -- "$1"; }
dots_above() { (( $(loss_dots) > $1 )); }
gone() { ! tmux has-session -t "$SESSION" 2>/dev/null; }

tmux new-session -d -s "$SESSION" -x 160 -y 48 "APLOT_RUNS_DIR=$STORE $APLOT"
wait_for 30 "the TUI shows its empty runs screen" screen_has "No runs yet"
echo "ok: aplot is up on an empty store ($STORE)"

"$APLOT" run --preset demo-rm --runs-dir "$STORE" --detach >"$STORE.launch.log" 2>&1 \
  || { cat "$STORE.launch.log" >&2; fail "aplot run --detach"; }
RUN_ID=$(ls "$STORE" | grep -E '^[0-9]{8}-' | head -1)
[[ -n "$RUN_ID" ]] || fail "aplot run created no run folder"
wait_for 2 "the new run appears on the runs screen" screen_has "$RUN_ID"
echo "ok: $RUN_ID appeared within 2 s"

tmux send-keys -t "$SESSION" Enter
wait_for 10 "the run screen opens" screen_has "train.log"
wait_for 180 "the loss panel draws its first points" dots_above 0
first=$(loss_dots)
wait_for 60 "the loss panel grows" dots_above "$first"
echo "ok: the loss panel grows ($first dots, then $(loss_dots))"

tmux send-keys -t "$SESSION" q
tmux send-keys -t "$SESSION" q
wait_for 10 "the TUI exits" gone
status=$("$APLOT" ls --runs-dir "$STORE" --json | "$PY" -c '
import json, sys
rows = json.loads(sys.stdin.read())
print((rows[0] if isinstance(rows, list) else rows)["status"])')
[[ "$status" == "running" ]] || fail "training should outlive the TUI, but its status is $status"
echo "ok: quitting the TUI left the run $status"
"$APLOT" stop "$RUN_ID" --runs-dir "$STORE" >/dev/null
RUN_ID=""
echo "ok: stopped; all checks passed"
