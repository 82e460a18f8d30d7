package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/kproxy/kproxy/test/netns"
)

// proxy is the running examples/offline process inside the node namespace.
type proxy struct {
	cmd  *netns.Cmd
	mu   sync.Mutex
	out  bytes.Buffer
	done chan struct{}
}

func (sb *sandbox) startProxy(ctx context.Context, root, work, cluster string) (*proxy, error) {
	bin := filepath.Join(work, "kproxy-offline")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./examples/offline")
	build.Dir, build.Stdout, build.Stderr = root, os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		return nil, fmt.Errorf("building examples/offline: %w", err)
	}
	p := &proxy{done: make(chan struct{})}
	// Not tied to ctx: on Ctrl-C the proxy gets SIGTERM from stop(), like a pod would.
	p.cmd = sb.topo.Node.Command(context.Background(), bin, "-f", cluster, "--node", "demo-node",
		"--cluster-cidr", sb.topo.ClusterCIDR.V4.String(), "--cleanup-on-exit")
	p.cmd.Stdout, p.cmd.Stderr = (*lockedWriter)(p), (*lockedWriter)(p)
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting kproxy in the node namespace: %w", err)
	}
	go func() {
		_ = p.cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// stop sends SIGTERM and waits, so the proxy removes its rules before the namespaces go.
func (p *proxy) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

func (p *proxy) logs() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

type lockedWriter proxy

func (w *lockedWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.out.Write(b)
}
