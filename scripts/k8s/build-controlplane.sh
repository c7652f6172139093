#!/usr/bin/env bash
# Build etcd 3.4.23, kube-apiserver, kube-controller-manager and kubectl v1.20.2 from Debian
# bookworm packages only (the machine reaches apt but not the Go module proxy), into
# $K8S_HOME/bin. Nothing is installed system-wide: a private apt state, download, dpkg-deb -x.
# Skips everything when the cache stamp exists; `--force` rebuilds.
# Adapted from the tested recipe in ../shared/k8s-controlplane/build-controlplane.sh.
set -euo pipefail
source "$(dirname "$0")/env.sh"

if [[ -f $K8S_STAMP && ${1:-} != --force ]]; then
  echo "k8s 1.20 control plane already built in $K8S_BIN"; exit 0
fi
t0=$(date +%s)
W=$K8S_HOME/build
rm -rf "$W" "$K8S_BIN"
mkdir -p "$W"/apt/lists/partial "$W"/apt/cache/archives/partial "$W"/dl "$W"/root "$K8S_BIN"

# The machine's own Debian mirror, with source packages enabled in a private list.
URI=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources)
printf 'deb %s bookworm main\ndeb-src %s bookworm main\n' "$URI" "$URI" >"$W/apt/sources.list"
A=(-o "Dir::Etc::SourceList=$W/apt/sources.list" -o Dir::Etc::SourceParts=/dev/null
   -o "Dir::State::Lists=$W/apt/lists" -o "Dir::Cache=$W/apt/cache")
apt-get "${A[@]}" update -qq
cd "$W/dl"
apt-get "${A[@]}" -qq source --download-only kubernetes=1.20.5+really1.20.2-1.1+deb12u1 2>&1 | grep -v unsandboxed || true
apt-get "${A[@]}" -qq download golang-1.19-go golang-1.19-src golang-github-modern-go-reflect2-dev \
  etcd-server=3.4.23-4+b4 2>&1 | grep -v unsandboxed || true
for d in *.deb; do dpkg-deb -x "$d" "$W/root"; done
cp "$W/root/usr/bin/etcd" "$K8S_BIN/etcd"

# Kubernetes 1.20 builds in GOPATH mode with its vendor/ tree, as its own hack/ scripts do.
SRC=$W/gopath/src/k8s.io/kubernetes
mkdir -p "$W/gopath/src/k8s.io"
tar xzf kubernetes_1.20.5+really1.20.2.orig.tar.gz -C "$W/gopath/src/k8s.io"
mv "$W/gopath/src/k8s.io/kubernetes-1.20.2" "$SRC"
cd "$SRC"
# The vendored reflect2 1.0.1 crashes on Go >= 1.18; Debian's 1.0.2 has the same API.
rm -f vendor/github.com/modern-go/reflect2/*.go vendor/github.com/modern-go/reflect2/*.s
cp "$W"/root/usr/share/gocode/src/github.com/modern-go/reflect2/*.{go,s} vendor/github.com/modern-go/reflect2/
export GOROOT=$W/root/usr/lib/go-1.19 GOPATH=$W/gopath GOCACHE=$W/gocache GO111MODULE=off GOFLAGS= \
  CGO_ENABLED=0 GOMAXPROCS=2 PATH=$W/root/usr/lib/go-1.19/bin:$PATH
V=k8s.io/kubernetes/vendor/k8s.io
LDF="-s -w -X $V/component-base/version.gitVersion=v1.20.2 -X $V/component-base/version.gitMajor=1"
LDF+=" -X $V/component-base/version.gitMinor=20 -X $V/component-base/version.gitTreeState=clean"
LDF+=" -X $V/client-go/pkg/version.gitVersion=v1.20.2 -X $V/client-go/pkg/version.gitMajor=1"
LDF+=" -X $V/client-go/pkg/version.gitMinor=20"

# pkg/generated/openapi is not in the source tarball; upstream `make` generates it.
nice -n 19 go build -p 2 -o "$W/openapi-gen" ./vendor/k8s.io/kube-openapi/cmd/openapi-gen
DIRS=$(find -H . \( -path './_*' -o -path './.*' -o -path ./vendor \) -prune -o -type f -name '*.go' -print \
  | xargs grep -l '^// *+k8s:' | xargs grep -l '+k8s:openapi-gen=' \
  | grep -v -E '^./staging/src/k8s.io/(code-generator|sample-apiserver)/' | xargs -n1 dirname \
  | sed 's|^./staging/src|vendor|; s|^./||' | LC_ALL=C sort -u | sed 's|^|k8s.io/kubernetes/|' | paste -sd,)
nice -n 19 "$W/openapi-gen" --logtostderr -i "$DIRS" -p k8s.io/kubernetes/pkg/generated/openapi \
  -O zz_generated.openapi -h hack/boilerplate/boilerplate.generatego.txt -r "$W/openapi-report.txt" 2>/dev/null
if diff -q "$W/openapi-report.txt" api/api-rules/violation_exceptions.list >/dev/null; then
  echo "openapi report matches upstream"
fi
for c in kube-apiserver kube-controller-manager kubectl; do
  s=$(date +%s)
  nice -n 19 go build -p 2 -ldflags "$LDF" -o "$K8S_BIN/$c" "./cmd/$c"
  echo "built $c in $(( $(date +%s) - s ))s"
done
for b in $K8S_BINARIES; do "$K8S_BIN/$b" --version >/dev/null 2>&1 || [[ $b == kubectl ]]; done
"$K8S_BIN/kubectl" version --client --short
echo "build took $(( $(date +%s) - t0 ))s" | tee "$K8S_STAMP"
ls -la "$K8S_BIN"
# The Go tree and build cache (about 2.4 GB, minutes to delete on a busy disk) are not needed to
# run; keep only the binaries. K8S_KEEP_BUILD=1 keeps them.
[[ ${K8S_KEEP_BUILD:-} ]] || rm -rf "$W"
