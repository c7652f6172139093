#!/usr/bin/env bash
# Stop the processes start-controlplane.sh started, and only those: by PID file, after checking
# that the PID still runs one of our binaries (a PID may have been reused since). SIGTERM, then
# SIGKILL after 10 s.
set -uo pipefail
source "$(dirname "$0")/env.sh"
for name in kcm apiserver etcd; do
  pidfile=$K8S_RUN/$name.pid
  [[ -f $pidfile ]] || continue
  pid=$(cat "$pidfile")
  if [[ $(readlink "/proc/$pid/exe" 2>/dev/null) == "$K8S_BIN"/* ]]; then
    kill "$pid"
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
    echo "stopped $name ($pid)"
  fi
  rm -f "$pidfile"
done
