package stress

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/kproxy/kproxy/controller"
	"github.com/kproxy/kproxy/iptables"
	"github.com/kproxy/kproxy/proxier"
	"github.com/kproxy/kproxy/test/envtest"
	"github.com/kproxy/kproxy/test/netns"
)

// The node the agent runs as, and what its Node object says.
const (
	nodeName = "stress-node"
	nodeIP   = "198.18.0.10"
	podCIDR  = "10.244.1.0/24"
)

// clusterCIDR is the local-traffic detector's range, given to the proxier and to the
// reference rendering alike.
var clusterCIDR = netip.MustParsePrefix("10.244.0.0/16")

// agent is kproxy embedded as a library, as cmd/kproxy wires it: controller.Setup on a
// controller-runtime manager with kproxy's cache options, and the real iptables proxier
// programming a fresh network namespace.
type agent struct {
	ns      *netns.NS
	node    *iptables.NodeProxier
	backend iptables.Backend
	render  iptables.RenderOptions
	syncs   *syncCounter
	// builder is the agent's model, read only for PendingChanges.
	builder *proxier.Builder
}

// startAgent creates the node namespace and its Node object, and runs the agent until
// the test ends. minSync is the runner's MinSyncPeriod.
func startAgent(t *testing.T, env *envtest.Env, minSync time.Duration) *agent {
	t.Helper()
	ctx := context.Background()
	ns := netns.NewNS(t, "stress-node")
	createNode(t, env)

	log := stderrLogger()
	ctrl.SetLogger(log)
	render := iptables.RenderOptions{
		Family:        iptables.IPv4,
		LocalDetector: iptables.LocalDetector{Mode: iptables.LocalModeClusterCIDR, CIDRs: []netip.Prefix{clusterCIDR}},
	}
	kernel, err := iptables.NewExecKernel(ctx, iptables.ExecOptions{Netns: ns.Path(), Logger: log})
	if err != nil {
		t.Fatalf("iptables in %s: %v (apt-get install -y --no-install-recommends iptables ipset conntrack)", ns, err)
	}
	feat, err := kernel.Features(ctx, iptables.IPv4)
	if err != nil {
		t.Fatal(err)
	}
	// NewNodeProxier turns RandomFully on from the same features; the reference
	// rendering must do the same.
	render.RandomFully = feat.RandomFully
	node, err := iptables.NewNodeProxier(ctx, iptables.NodeOptions{
		Backend: kernel.Backend(), Netns: ns.Path(), Families: []iptables.Family{iptables.IPv4},
		Render: render, Logger: log,
	})
	if err != nil {
		t.Fatalf("iptables proxier in %s: %v", ns, err)
	}
	a := &agent{ns: ns, node: node, backend: kernel.Backend(), render: render, syncs: &syncCounter{}}

	mgr, err := ctrl.NewManager(env.Config, manager.Options{
		Cache:                  controller.CacheOptions(nodeName),
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Logger:                 log,
		Controller:             config.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		t.Fatal(err)
	}
	ag, err := controller.Setup(mgr, controller.Options{
		NodeName: nodeName, Proxier: a.syncs.wrap(node), WaitForNodeAddresses: true,
		// No periodic full sync during the test: after the first sync every change
		// must reach the kernel through partial syncs alone, so a change they lose or
		// misapply cannot be papered over by a full resync.
		Runner: proxier.RunnerOptions{MinSyncPeriod: minSync, SyncPeriod: time.Hour, Observers: []proxier.SyncObserver{a.syncs}},
		Logger: log,
	})
	if err != nil {
		t.Fatal(err)
	}
	a.builder = ag.Builder
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- mgr.Start(runCtx) }()
	// Cleanups run last-registered first: the manager stops before the rules are
	// removed, and both before the namespace goes.
	t.Cleanup(func() {
		cctx, ccancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer ccancel()
		if err := node.Cleanup(cctx); err != nil {
			t.Errorf("proxier cleanup: %v", err)
		}
		_ = node.Close()
	})
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("manager: %v", err)
		}
	})
	return a
}

// createNode creates the agent's Node with its address and pod CIDR: the runner waits
// for the address before the first sync.
func createNode(t *testing.T, env *envtest.Env) {
	t.Helper()
	ctx := context.Background()
	n := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: nodeName}, Spec: v1.NodeSpec{PodCIDR: podCIDR, PodCIDRs: []string{podCIDR}}}
	if err := env.Client.Create(ctx, n); err != nil {
		t.Fatal(err)
	}
	n.Status.Addresses = []v1.NodeAddress{{Type: v1.NodeInternalIP, Address: nodeIP}}
	if err := env.Client.Status().Update(ctx, n); err != nil {
		t.Fatal(err)
	}
}

// stderrLogger logs errors and warnings of the agent to stderr; testr would panic when
// client-go logs after the test ended.
func stderrLogger() logr.Logger {
	return funcr.New(func(prefix, args string) { fmt.Fprintln(os.Stderr, prefix, args) }, funcr.Options{Verbosity: 0})
}

// syncCounter observes the runner: how many syncs ran, how many failed, and when the
// last one ended.
type syncCounter struct {
	mu       sync.Mutex
	s        syncStats
	inflight int
}

// wrap returns p instrumented to tell when a sync is in progress: the runner's
// observers only hear of a sync once it ended.
func (c *syncCounter) wrap(p proxier.Proxier) proxier.Proxier {
	return proxier.ProxierFunc(func(ctx context.Context, s *proxier.State, cs proxier.ChangeSet) error {
		c.mu.Lock()
		c.inflight++
		c.s.lastStart = time.Now()
		c.mu.Unlock()
		defer func() {
			c.mu.Lock()
			c.inflight--
			c.mu.Unlock()
		}()
		return p.Sync(ctx, s, cs)
	})
}

// syncStats is a copy of the counters.
type syncStats struct {
	queued, total, full, failed     int
	lastStart, lastDone, lastQueued time.Time
	busy                            bool
	lastErr                         error
	maxDuration, sumDuration        time.Duration
}

// SyncQueued implements proxier.SyncObserver.
func (c *syncCounter) SyncQueued(at time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.s.queued++
	c.s.lastQueued = at
}

// SyncDone implements proxier.SyncObserver.
func (c *syncCounter) SyncDone(r proxier.SyncResult) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.s.total++
	if r.Changes.Full {
		c.s.full++
	}
	if r.Err != nil {
		c.s.failed++
	}
	c.s.lastErr = r.Err
	c.s.lastDone = r.Start.Add(r.Duration)
	c.s.maxDuration = max(c.s.maxDuration, r.Duration)
	c.s.sumDuration += r.Duration
}

// snapshot returns the counters.
func (c *syncCounter) snapshot() syncStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.s
	s.busy = c.inflight > 0
	return s
}

func (s syncStats) String() string {
	mean := time.Duration(0)
	if s.total > 0 {
		mean = s.sumDuration / time.Duration(s.total)
	}
	return fmt.Sprintf("%d syncs (%d full, %d failed), mean %v, max %v", s.total, s.full, s.failed,
		mean.Round(time.Millisecond), s.maxDuration.Round(time.Millisecond))
}

// waitIdle waits until the runner has nothing left to do: at least one sync ran, none
// is running, no change is pending in the model, the last sync succeeded, and nothing
// happened for quiet, so late watch events have arrived. It returns false on timeout.
func (a *agent) waitIdle(quiet, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		s := a.syncs.snapshot()
		recent := func(at time.Time) bool { return time.Since(at) < quiet }
		if s.total > 0 && !s.busy && a.builder.PendingChanges() == 0 && s.lastErr == nil &&
			!recent(s.lastStart) && !recent(s.lastDone) && !recent(s.lastQueued) {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}
