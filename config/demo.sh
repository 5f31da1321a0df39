#!/usr/bin/env bash
# Run the example: the demo upstream and sluice. ^C, or `kill` of this script, drains sluice and
# stops both; the script exits with sluice's status.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
python3 "$here/demo_upstream.py" 9001 9002 &
upstream=$!
trap 'kill $upstream 2>/dev/null || true' EXIT
# the installed sluice (run from / so that a source checkout's uncompiled engine/ never shadows it)
(cd / && exec python3 -m engine run -c "$here/example.yaml" "$@") &
sluice=$!
# sluice runs in the background because bash runs a trap only after its foreground command ends:
# a `kill` of this script must reach sluice now, not leave it running without its parent
trap 'kill -TERM $sluice 2>/dev/null || true' TERM INT HUP
status=0
while kill -0 "$sluice" 2>/dev/null; do
  wait "$sluice" && status=0 || status=$?     # a trap interrupts wait: wait again for the drain
done
exit "$status"
