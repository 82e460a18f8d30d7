package scale

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/kproxy/kproxy/test/envtest"
)

// Proxy names.
const (
	KProxy   = "kproxy"
	Upstream = "kube-proxy"
)

// BuildKProxy builds cmd/kproxy into dir and returns it as a Proxy.
func BuildKProxy(ctx context.Context, dir string) (Proxy, error) {
	root, err := envtest.RepoRoot()
	if err != nil {
		return Proxy{}, fmt.Errorf("finding the repository: %w", err)
	}
	bin := filepath.Join(dir, "kproxy")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/kproxy")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return Proxy{}, fmt.Errorf("building kproxy: %w\n%s", err, out)
	}
	return NewProxy(ctx, KProxy, bin)
}

// UpstreamKubeProxy returns upstream kube-proxy, built once into the envtest cache.
func UpstreamKubeProxy(ctx context.Context) (Proxy, error) {
	bin, err := envtest.KubeProxyBinary()
	if err != nil {
		return Proxy{}, err
	}
	return NewProxy(ctx, Upstream, bin)
}

// NewProxy describes the binary at path, asking it for its version.
func NewProxy(ctx context.Context, name, path string) (Proxy, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, "--version").Output()
	if err != nil {
		return Proxy{}, fmt.Errorf("%s --version: %w", path, err)
	}
	v := strings.TrimSpace(string(out))
	if i := strings.IndexByte(v, '\n'); i >= 0 {
		v = v[:i]
	}
	return Proxy{Name: name, Binary: path, Version: v}, nil
}
