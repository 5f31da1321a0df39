#!/usr/bin/env bash
# Run the example: the demo upstream in the background, sluice in the foreground (^C stops both).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
python3 "$here/demo_upstream.py" 9001 9002 &
upstream=$!
trap 'kill $upstream 2>/dev/null' EXIT
# the installed sluice (run from / so that a source checkout's uncompiled engine/ never shadows it)
cd / && python3 -m engine run -c "$here/example.yaml" "$@"
