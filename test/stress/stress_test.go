package stress

import (
	"context"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kproxy/kproxy/test/envtest"
	"github.com/kproxy/kproxy/test/netns"
)

// The size of the storm.
const (
	totalChanges = 10000
	writers      = 8
	poolSize     = 200
)

// TestRandomChangesConverge runs kproxy (controllers and the real iptables proxier in a
// node namespace, syncing as often as every few milliseconds) while eight writers
// apply 10,000 random changes to 200 Services and their EndpointSlices through a real
// apiserver: creations, deletions, type, port and traffic-policy changes, load-balancer
// ingress updates, endpoints flipping between ready, terminating and not ready,
// scaling up and down. Once kproxy is idle, the kernel must hold exactly the rules a
// fresh model of the final API state renders to: no change lost, none applied twice
// or out of order, no stale chain or ipset entry left behind.
func TestRandomChangesConverge(t *testing.T) {
	netns.RequireRoot(t)
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("KPROXY_STRESS_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("KPROXY_STRESS_SEED: %v", err)
		}
	}
	rng := rand.New(rand.NewPCG(seed, 0))
	minSync := time.Duration(rng.IntN(100)) * time.Millisecond
	t.Logf("seed %d (replay with KPROXY_STRESS_SEED=%d), MinSyncPeriod %v", seed, seed, minSync)

	env := envtest.Start(t, envtest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	const namespace = "stress"
	if err := env.Client.Create(ctx, &v1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}); err != nil {
		t.Fatal(err)
	}
	a := startAgent(t, env, minSync)
	if !a.waitIdle(200*time.Millisecond, 60*time.Second) || a.syncs.snapshot().total == 0 {
		t.Fatalf("kproxy did not sync the empty cluster: %v", a.syncs.snapshot())
	}

	start := time.Now()
	counts := &opCounts{}
	var wg sync.WaitGroup
	var errMu sync.Mutex
	var errs []string
	for k := range writers {
		w := &writer{c: env.Client, rng: rand.New(rand.NewPCG(seed, uint64(k)+1)), namespace: namespace, nodeName: nodeName,
			svcs: map[int]*v1.Service{}, slices: map[string]*discovery.EndpointSlice{}, counts: counts}
		var owned []int
		for i := k; i < poolSize; i += writers {
			owned = append(owned, i)
		}
		wg.Go(func() {
			for range totalChanges / writers {
				if err := w.step(ctx, owned[w.rng.IntN(len(owned))]); err != nil {
					errMu.Lock()
					errs = append(errs, err.Error())
					errMu.Unlock()
					if ctx.Err() != nil {
						return
					}
				}
			}
		})
	}
	wg.Wait()
	writing := time.Since(start)
	during := a.syncs.snapshot()
	t.Logf("%d changes in %v (%.0f writes/s) by %d writers: %v", totalChanges, writing.Round(time.Millisecond),
		float64(totalChanges)/writing.Seconds(), writers, counts)
	t.Logf("kproxy meanwhile: %v", during)
	if len(errs) > 0 {
		t.Errorf("%d writes failed; the first: %s", len(errs), strings.Join(errs[:min(3, len(errs))], "; "))
	}

	// Converged: idle, and the kernel equals the reference. A watch event may still be
	// in flight when the runner first looks idle, so a mismatch is retried until the
	// deadline; a lost or misapplied change never converges and fails.
	deadline := time.Now().Add(45 * time.Second)
	var diffs []string
	for {
		if !a.waitIdle(time.Second, time.Until(deadline)) {
			if len(diffs) > 0 {
				// The deadline passed while retrying a mismatch: that mismatch is the failure.
				t.Fatalf("the kernel does not match the final API state (%d differences):\n  %s", len(diffs), strings.Join(diffs[:min(10, len(diffs))], "\n  "))
			}
			t.Fatalf("kproxy never became idle: %v (pending changes %d)", a.syncs.snapshot(), a.builder.PendingChanges())
		}
		rs, state, err := expectedRuleset(ctx, env.Client, a.render)
		if err != nil {
			t.Fatal(err)
		}
		if diffs, err = kernelDiff(ctx, a.ns, a.backend, rs); err != nil {
			t.Fatal(err)
		}
		if len(diffs) == 0 {
			rules := 0
			for _, tr := range rs.Tables {
				for _, c := range tr.Chains {
					rules += len(c.Rules)
				}
			}
			t.Logf("converged %v after the last write: %d service ports, %d chains' worth of %d rules equal in the kernel",
				time.Since(start.Add(writing)).Round(time.Millisecond), state.Len(), len(rs.Tables[0].Chains)+len(rs.Tables[1].Chains), rules)
			if state.Len() < poolSize/4 {
				t.Errorf("only %d service ports at the end: the workload did not build a meaningful cluster", state.Len())
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the kernel does not match the final API state (%d differences):\n  %s", len(diffs), strings.Join(diffs[:min(10, len(diffs))], "\n  "))
		}
		time.Sleep(500 * time.Millisecond)
	}
	final := a.syncs.snapshot()
	t.Logf("kproxy in total: %v", final)
	if final.failed > 0 {
		t.Errorf("%d syncs failed (the last error: %v)", final.failed, final.lastErr)
	}
	if during.total < 20 {
		t.Errorf("only %d syncs during the storm: the runner was not syncing continuously", during.total)
	}
}
