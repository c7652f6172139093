# Shared settings for the local Kubernetes 1.20 control plane (sourced, not run).
# The build is cached outside the repository so that every worktree and CI run reuses it;
# the run state (certs, etcd data, logs, PIDs) sits next to it and is recreated on each start.
# Ports are off the usual ones so that a stray cluster on this machine is never hit.
K8S_HOME=${K8S_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/transfer-serving/k8s-1.20}
K8S_BIN=${K8S_BIN:-$K8S_HOME/bin}
K8S_RUN=${K8S_RUN:-$K8S_HOME/run}
K8S_PKI=$K8S_RUN/pki
K8S_API_PORT=${K8S_API_PORT:-16443}
K8S_ETCD_PORT=${K8S_ETCD_PORT:-23790}
K8S_ETCD_PEER_PORT=${K8S_ETCD_PEER_PORT:-23800}
K8S_KCM_PORT=${K8S_KCM_PORT:-20257}
K8S_SERVER=https://127.0.0.1:$K8S_API_PORT
K8S_KUBECONFIG=$K8S_PKI/admin.kubeconfig
# The four binaries a usable build must contain; the build stamp is written after all of them.
K8S_BINARIES="etcd kube-apiserver kube-controller-manager kubectl"
K8S_STAMP=$K8S_BIN/.complete
export K8S_HOME K8S_BIN K8S_RUN K8S_PKI K8S_API_PORT K8S_ETCD_PORT K8S_ETCD_PEER_PORT \
  K8S_KCM_PORT K8S_SERVER K8S_KUBECONFIG K8S_BINARIES K8S_STAMP
