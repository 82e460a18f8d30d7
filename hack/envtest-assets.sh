#!/usr/bin/env bash
# Builds the binaries the real-cluster test tiers need from Go modules, once, into a cache
# outside the clone: kube-apiserver and etcd for controller-runtime's envtest, and upstream
# kube-proxy for the side-by-side scale harness. Prints the assets folder
# (KUBEBUILDER_ASSETS) on its last line. Rebuilds only what is missing.
set -euo pipefail

K8S_VERSION=${K8S_VERSION:-v1.36.3}
STAGING_VERSION=${STAGING_VERSION:-v0.36.3}
ETCD_VERSION=${ETCD_VERSION:-v3.6.5}
cache=${KPROXY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kproxy}
bin="$cache/envtest/$K8S_VERSION"
src="$cache/envtest-src"
mkdir -p "$bin" "$src"

log() { echo "envtest-assets: $*" >&2; }

# kubernetes' own go.mod points every k8s.io/<staging> module at ./staging; a module that
# depends on k8s.io/kubernetes must map each of them to its published version instead.
staging_replaces() {
  local gomod
  gomod=$(GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  sed -n 's#^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => ./staging/.*#\1#p' "$gomod" | sort -u |
    while read -r m; do echo "replace $m => $m $STAGING_VERSION"; done
}

build_k8s() {
  local dir="$src/kubernetes-$K8S_VERSION"
  mkdir -p "$dir"
  if [ ! -f "$dir/go.sum" ]; then
    log "preparing kubernetes $K8S_VERSION tools module"
    {
      echo "module kproxy.local/envtest-kubernetes"
      echo
      echo "go 1.26"
      echo
      echo "require k8s.io/kubernetes $K8S_VERSION"
      echo
      staging_replaces
    } > "$dir/go.mod"
    cat > "$dir/tools.go" <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
)
GO
    (cd "$dir" && go mod tidy >&2)
  fi
  for cmd in "$@"; do
    if [ ! -x "$bin/$cmd" ]; then
      log "building $cmd $K8S_VERSION (several minutes the first time)"
      (cd "$dir" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION" -o "$bin/$cmd.tmp" "k8s.io/kubernetes/cmd/$cmd" && mv "$bin/$cmd.tmp" "$bin/$cmd")
    fi
  done
}

build_etcd() {
  [ -x "$bin/etcd" ] && return 0
  local dir="$src/etcd-$ETCD_VERSION"
  mkdir -p "$dir"
  log "building etcd $ETCD_VERSION"
  cat > "$dir/main.go" <<'GO'
// Command etcd is the etcd server, built from its Go module for envtest.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
  if [ ! -f "$dir/go.sum" ]; then
    printf 'module kproxy.local/envtest-etcd\n\ngo 1.26\n\nrequire go.etcd.io/etcd/server/v3 %s\n' "$ETCD_VERSION" > "$dir/go.mod"
    (cd "$dir" && go mod tidy >&2)
  fi
  (cd "$dir" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$bin/etcd.tmp" . && mv "$bin/etcd.tmp" "$bin/etcd")
}

what=${1:-envtest}
case "$what" in
  envtest) build_etcd; build_k8s kube-apiserver ;;
  kube-proxy) build_k8s kube-proxy ;;
  all) build_etcd; build_k8s kube-apiserver kube-proxy ;;
  *) echo "usage: $0 [envtest|kube-proxy|all]" >&2; exit 2 ;;
esac
echo "$bin"
