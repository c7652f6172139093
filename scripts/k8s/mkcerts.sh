#!/usr/bin/env bash
# Fresh credentials for one run of the local control plane, in $K8S_PKI: a CA, the apiserver's
# serving certificate (127.0.0.1/localhost), the ServiceAccount token signing key pair, a static
# admin token and an admin kubeconfig. Recreated on every start, so nothing outlives a run.
set -euo pipefail
source "$(dirname "$0")/env.sh"
rm -rf "$K8S_PKI"; mkdir -p "$K8S_PKI"; chmod 700 "$K8S_PKI"; cd "$K8S_PKI"
openssl req -x509 -newkey rsa:2048 -nodes -days 30 -keyout ca.key -out ca.crt -subj /CN=transfer-serving-test-ca 2>/dev/null
cat >san.cnf <<'EOT'
[req]
distinguished_name=dn
[dn]
[ext]
subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc
extendedKeyUsage=serverAuth
keyUsage=digitalSignature,keyEncipherment
EOT
openssl req -newkey rsa:2048 -nodes -keyout apiserver.key -out apiserver.csr -subj /CN=kube-apiserver 2>/dev/null
openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 30 -out apiserver.crt \
  -extfile san.cnf -extensions ext 2>/dev/null
openssl genrsa -out sa.key 2048 2>/dev/null
openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
ADMIN_TOKEN=$(openssl rand -hex 16)
echo "$ADMIN_TOKEN,admin,admin-uid,system:masters" >tokens.csv
cat >admin.kubeconfig <<EOT
apiVersion: v1
kind: Config
clusters:
- name: local
  cluster: {server: "$K8S_SERVER", certificate-authority: "$K8S_PKI/ca.crt"}
users:
- name: admin
  user: {token: "$ADMIN_TOKEN"}
contexts:
- name: local
  context: {cluster: local, user: admin}
current-context: local
EOT
