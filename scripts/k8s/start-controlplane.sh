#!/usr/bin/env bash
# Start etcd, kube-apiserver and kube-controller-manager v1.20.2 on 127.0.0.1 only, with fresh
# certificates and an empty etcd. Waits until each is healthy. PIDs go to $K8S_RUN/*.pid so that
# stop-controlplane.sh ends exactly these processes. Prints KUBECONFIG=... on its last line.
# There is no kubelet and no scheduler: tests bind and move Pods themselves (a fake kubelet).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
source "$HERE/env.sh"
[[ -f $K8S_STAMP ]] || { echo "no control plane build in $K8S_BIN: run $HERE/build-controlplane.sh" >&2; exit 2; }
"$HERE/stop-controlplane.sh" >/dev/null
t0=$(date +%s%N)
elapsed() { local ms=$(( ($(date +%s%N) - t0) / 1000000 )); printf '%d.%01ds' $((ms / 1000)) $((ms % 1000 / 100)); }
for port in $K8S_API_PORT $K8S_ETCD_PORT $K8S_ETCD_PEER_PORT $K8S_KCM_PORT; do
  if (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null; then
    echo "port $port on 127.0.0.1 is taken; set K8S_*_PORT in the environment" >&2; exit 2
  fi
done
mkdir -p "$K8S_RUN"; rm -rf "$K8S_RUN/etcd-data"
"$HERE/mkcerts.sh"

# start NAME COMMAND...: run in its own session (a Ctrl-C of the caller does not orphan half of
# it), log to NAME.log, remember the PID.
start() {
  local name=$1; shift
  setsid nice -n 10 "$@" >"$K8S_RUN/$name.log" 2>&1 </dev/null &
  echo $! >"$K8S_RUN/$name.pid"
}
# wait_for NAME SECONDS COMMAND...: poll until COMMAND succeeds; fail with the log's tail.
wait_for() {
  local name=$1 limit=$2; shift 2
  local deadline=$(( $(date +%s) + limit ))
  until "$@" >/dev/null 2>&1; do
    if ! kill -0 "$(cat "$K8S_RUN/$name.pid")" 2>/dev/null || (( $(date +%s) > deadline )); then
      echo "$name did not become healthy; last log lines:" >&2; tail -20 "$K8S_RUN/$name.log" >&2
      "$HERE/stop-controlplane.sh" >&2; exit 1
    fi
    sleep 0.2
  done
  echo "$name healthy at $(elapsed)"
}

start etcd "$K8S_BIN/etcd" --name local --data-dir "$K8S_RUN/etcd-data" \
  --listen-client-urls "http://127.0.0.1:$K8S_ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$K8S_ETCD_PORT" \
  --listen-peer-urls "http://127.0.0.1:$K8S_ETCD_PEER_PORT" \
  --initial-advertise-peer-urls "http://127.0.0.1:$K8S_ETCD_PEER_PORT" \
  --initial-cluster "local=http://127.0.0.1:$K8S_ETCD_PEER_PORT" \
  --unsafe-no-fsync=true
wait_for etcd 30 curl -sf "http://127.0.0.1:$K8S_ETCD_PORT/health"

# --endpoint-reconciler-type=none: the reconciler refuses a loopback IP in the `kubernetes`
# Endpoints and would log that in a loop.
start apiserver "$K8S_BIN/kube-apiserver" --etcd-servers="http://127.0.0.1:$K8S_ETCD_PORT" \
  --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$K8S_API_PORT" --insecure-port=0 \
  --tls-cert-file="$K8S_PKI/apiserver.crt" --tls-private-key-file="$K8S_PKI/apiserver.key" \
  --client-ca-file="$K8S_PKI/ca.crt" --token-auth-file="$K8S_PKI/tokens.csv" --authorization-mode=RBAC \
  --service-account-issuer=https://kubernetes.default.svc.cluster.local \
  --service-account-key-file="$K8S_PKI/sa.pub" --service-account-signing-key-file="$K8S_PKI/sa.key" \
  --api-audiences=https://kubernetes.default.svc.cluster.local --service-cluster-ip-range=10.96.0.0/24 \
  --enable-priority-and-fairness=false --profiling=false --endpoint-reconciler-type=none
wait_for apiserver 60 curl -sf --cacert "$K8S_PKI/ca.crt" "$K8S_SERVER/readyz"   # public to anyone

# The Job, garbage-collector and ServiceAccount controllers are what the tests need; the node,
# volume and CSR controllers have nothing to work on without a kubelet.
start kcm "$K8S_BIN/kube-controller-manager" --kubeconfig="$K8S_KUBECONFIG" \
  --authentication-kubeconfig="$K8S_KUBECONFIG" --authorization-kubeconfig="$K8S_KUBECONFIG" \
  --bind-address=127.0.0.1 --secure-port="$K8S_KCM_PORT" --port=0 \
  --service-account-private-key-file="$K8S_PKI/sa.key" --root-ca-file="$K8S_PKI/ca.crt" \
  --use-service-account-credentials=true --leader-elect=false \
  --controllers='*,-nodeipam,-nodelifecycle,-cloud-node-lifecycle,-route,-service,-persistentvolume-binder,-attachdetach,-pvc-protection,-pv-protection,-ttl,-csrsigning,-csrapproving,-csrcleaner,-bootstrapsigner,-tokencleaner'
wait_for kcm 60 curl -sfk "https://127.0.0.1:$K8S_KCM_PORT/healthz"
echo "control plane up in $(elapsed) (logs in $K8S_RUN)"
echo "KUBECONFIG=$K8S_KUBECONFIG"
