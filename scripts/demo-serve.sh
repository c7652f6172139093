#!/usr/bin/env bash
# Start the model server in the background on a loopback port it picks and reports (--rest-port
# any --port-file: no port picked here that another process could take first), wait until it is
# ready, classify a few held-out images through REST with curl (:classify_image, raw image body),
# print the answers next to the true class, and stop the server (SIGTERM, graceful).
# Usage: scripts/demo-serve.sh BASE_PATH MODEL_NAME HELDOUT_DIR [COUNT]
set -euo pipefail
if [[ $# -lt 3 ]]; then
  echo "usage: $0 BASE_PATH MODEL_NAME HELDOUT_DIR [COUNT]" >&2
  exit 2
fi
BASE_PATH=$1 MODEL=$2 HELDOUT=$3 COUNT=${4:-6}
PY=${PY:-.venv/bin/python}
command -v curl >/dev/null || scripts/ensure-debs.sh curl

LOG=$(mktemp -t demo-serve.XXXXXX.log)
PORTS=${LOG%.log}.ports.json    # beside the log, as unique as its name
TF_CPP_MIN_LOG_LEVEL=2 "$PY" -m serving --model-name "$MODEL" --model-base-path "$BASE_PATH" \
  --host 127.0.0.1 --rest-port any --grpc-port 0 --port-file "$PORTS" >"$LOG" 2>&1 &
SERVER=$!
stop_server() {
  if kill -0 "$SERVER" 2>/dev/null; then
    kill -TERM "$SERVER"
    wait "$SERVER" 2>/dev/null || true
    echo "server stopped"
  fi
  rm -f "$PORTS"
}
trap stop_server EXIT
server_exited() { echo "server exited:" >&2; tail -20 "$LOG" >&2; exit 1; }

for _ in $(seq 1 240); do           # the port file appears once the port is bound
  [[ -s $PORTS ]] && break
  kill -0 "$SERVER" 2>/dev/null || server_exited
  sleep 0.5
done
[[ -s $PORTS ]] || { echo "server bound no port after 120 s" >&2; tail -20 "$LOG" >&2; exit 1; }
REST_PORT=$("$PY" -c 'import json, sys; print(json.load(open(sys.argv[1]))["rest_port"])' "$PORTS")
URL="http://127.0.0.1:$REST_PORT"

echo "serving $MODEL from $BASE_PATH on $URL (log: $LOG)"
for _ in $(seq 1 240); do
  if curl -fsS "$URL/readyz" >/dev/null 2>&1; then break; fi
  kill -0 "$SERVER" 2>/dev/null || server_exited
  sleep 0.5
done
curl -fsS "$URL/readyz" >/dev/null || { echo "server not ready after 120 s" >&2; tail -20 "$LOG" >&2; exit 1; }
echo "model status: $(curl -fsS "$URL/v1/models/$MODEL")"
echo "runtime serving the predictions below: $(curl -fsS "$URL/v1/models/$MODEL" | "$PY" -c '
import json, sys
runtime = json.load(sys.stdin)["model_version_status"][0].get("runtime", {})
print(runtime.get("name"), runtime.get("precision"), runtime.get("note") or "")')"

# one image from each class folder, round robin, until COUNT images
mapfile -t IMAGES < <(for class_dir in "$HELDOUT"/*/; do
    find "$class_dir" -maxdepth 1 -type f \( -iname '*.png' -o -iname '*.jpg' -o -iname '*.jpeg' \
      -o -iname '*.gif' -o -iname '*.bmp' \) | sort | head -1
  done | head -n "$COUNT")
[[ ${#IMAGES[@]} -gt 0 ]] || { echo "no images under $HELDOUT" >&2; exit 1; }
for image in "${IMAGES[@]}"; do
  truth=$(basename "$(dirname "$image")")
  answer=$(curl -sS -X POST --data-binary "@$image" -H "Content-Type: image/${image##*.}" \
    "$URL/v1/models/$MODEL:classify_image?top_k=2")
  echo "true: $truth  <-  curl ... :classify_image $(basename "$image")"
  echo "  $answer"
done
