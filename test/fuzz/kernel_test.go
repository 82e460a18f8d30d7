package fuzz

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/kproxy/kproxy/iptables"
	"github.com/kproxy/kproxy/test/netns"
)

// restoreTester runs iptables-restore --test (ip6tables-restore for IPv6) on rendered
// payloads, with both the nft and the legacy variant, inside a network namespace of
// its own: nothing is committed and the host's rules are never touched. The ipsets the
// payload matches exist in the namespace, because the set match looks them up while
// parsing.
type restoreTester struct {
	ns      *netns.NS
	kernels []*iptables.ExecKernel
	sets    *iptables.NetlinkIPSets

	// alternate makes each check use one variant, in turn, instead of all: while
	// fuzzing, an exec of both per sampled input halves the fuzzer's throughput.
	alternate bool

	mu      sync.Mutex
	created map[string]bool
	turn    int
}

func newRestoreTester(tb testing.TB) *restoreTester {
	tb.Helper()
	ns := netns.NewNS(tb, "fuzz")
	ctx := context.Background()
	rt := &restoreTester{ns: ns, created: map[string]bool{}}
	for _, b := range []iptables.Backend{iptables.BackendNFT, iptables.BackendLegacy} {
		k, err := iptables.NewExecKernel(ctx, iptables.ExecOptions{Backend: b, Netns: ns.Path()})
		if err != nil {
			tb.Fatalf("iptables %s: %v (hack/install-deps.sh installs iptables)", b, err)
		}
		rt.kernels = append(rt.kernels, k)
	}
	sets, err := iptables.NewNetlinkIPSets(iptables.NetlinkIPSetOptions{Netns: ns.Path()})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = sets.Close() })
	rt.sets = sets
	return rt
}

// check runs the payload of rs through every variant's --test (one of them when
// alternating).
func (rt *restoreTester) check(ctx context.Context, rs *iptables.Ruleset) error {
	for _, s := range rs.Sets {
		rt.mu.Lock()
		done := rt.created[s.Name]
		rt.mu.Unlock()
		if done {
			continue
		}
		if err := rt.sets.Create(ctx, s); err != nil {
			return fmt.Errorf("creating ipset %s: %w", s.Name, err)
		}
		rt.mu.Lock()
		rt.created[s.Name] = true
		rt.mu.Unlock()
	}
	payload := rs.Payload()
	kernels := rt.kernels
	if rt.alternate {
		rt.mu.Lock()
		kernels = kernels[rt.turn%len(kernels):][:1]
		rt.turn++
		rt.mu.Unlock()
	}
	for _, k := range kernels {
		if err := k.Restore(ctx, rs.Family, payload, iptables.RestoreOptions{Test: true}); err != nil {
			return fmt.Errorf("%s %v restore --test rejects the rendered payload: %w\n%s", k.Backend(), rs.Family, err, payload)
		}
	}
	return nil
}
