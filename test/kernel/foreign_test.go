package kernel

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kproxy/kproxy/iptables"
	"github.com/kproxy/kproxy/proxier/metrics"
)

// churnSyncs is how many randomly varied syncs TestForeignRulesByteIdentical runs.
const churnSyncs = 100

// TestForeignRulesByteIdentical: Docker's, a CNI plugin's and an administrator's rules
// (in nat, filter, mangle and raw, with jumps from the built-in chains kproxy hooks too)
// and two ipsets kproxy did not create are in the node before kproxy starts. Through 100
// syncs of random changes (services added, removed and changed, endpoints flapping,
// the node's addresses changing) and then kproxy's cleanup (iptables.CleanupNode, what
// `kproxy --cleanup` runs), the foreign part of iptables-save and `ipset save` of the
// foreign sets stay byte for byte what they were, checked after every 10th sync and
// after the cleanup; the cleanup leaves nothing of kproxy's. test/e2e's
// ForeignRulesUntouched checks a smaller rule set after its scenarios' syncs; this test
// adds the long random walk, the ipsets and the raw table.
//
// The walk is random but reproducible: its seed is logged, and KPROXY_KERNEL_SEED
// replays one.
func TestForeignRulesByteIdentical(t *testing.T) {
	t.Parallel()
	seed := churnSeed(t)
	for _, b := range backends {
		t.Run(string(b), func(t *testing.T) {
			t.Parallel()
			w := newWorld(t, b)
			want := w.installForeign(t)
			t.Logf("foreign rules and sets before kproxy started:\n%s%s", want.rules, want.sets)

			logs := &logBook{}
			np := w.nodeProxier(t, metrics.New(), logs)
			c := newChurn(w, seed)
			src := newSource(w.node)
			full := 0
			sync := func(i int, what string) {
				t.Helper()
				node, ports := c.state()
				src.Set(node, ports...)
				state, cs := src.Snapshot()
				ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
				defer cancel()
				if err := np.Sync(ctx, state, cs); err != nil {
					t.Fatalf("sync %d (%s): %v", i, what, err)
				}
				if np.Families[iptables.IPv4].LastSync().Full {
					full++
				}
			}
			sync(0, "initial state")
			from, stable := w.local(1).NS, clusterAddr(stableService)
			servedOnlyBy(t, from, stable, 2, w.local(0), w.remote(0))
			for i := 1; i <= churnSyncs; i++ {
				what := c.step()
				if i == churnSyncs/2 {
					// At least one node change, whatever the seed.
					what += "; " + c.toggleNodeAddress()
				}
				t.Logf("sync %d: %s", i, what)
				sync(i, what)
				if i%10 == 0 {
					w.requireForeign(t, want, fmt.Sprintf("after sync %d", i))
					servedOnlyBy(t, from, stable, 2, w.local(0), w.remote(0))
				}
			}
			owned := ownedPart(w.save(t), w.foreignChains())
			t.Logf("%d syncs after the initial one, %d of them full; kproxy holds %d lines", churnSyncs, full-1, len(owned))
			if len(owned) == 0 {
				t.Fatal("kproxy programmed nothing; the test shows nothing")
			}

			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			err := iptables.CleanupNode(ctx, iptables.NodeOptions{
				Backend:  b,
				Netns:    w.topo.Node.Path(),
				Families: []iptables.Family{iptables.IPv4},
				Logger:   logs.logger(t).WithName("cleanup"),
			})
			if err != nil {
				t.Fatalf("cleanup: %v", err)
			}
			w.requireForeign(t, want, "after the cleanup")
			if left := ownedPart(w.save(t), w.foreignChains()); len(left) > 0 {
				t.Errorf("the cleanup left %d lines of kproxy's behind:\n%s", len(left), strings.Join(left, "\n"))
			}
			var foreign []string
			for _, s := range foreignSets {
				foreign = append(foreign, s.name)
			}
			if got := w.ipsetNames(t); !slices.Equal(slices.Sorted(slices.Values(got)), foreign) {
				t.Errorf("ipsets after the cleanup: %v, want only the foreign %v", got, foreign)
			}
		})
	}
}

// requireForeign fails the test when the node's foreign rules or sets differ from want.
func (w *world) requireForeign(t *testing.T, want foreignState, when string) {
	t.Helper()
	got := w.foreignState(t)
	if got.rules != want.rules {
		t.Fatalf("foreign rules changed %s:\n%s", when, lineDiff(want.rules, got.rules))
	}
	if got.sets != want.sets {
		t.Fatalf("foreign ipsets changed %s:\n%s", when, lineDiff(want.sets, got.sets))
	}
	t.Logf("foreign rules and ipsets byte-identical %s", when)
}

// churnSeed is KPROXY_KERNEL_SEED, or a fresh seed; either way it is logged so a
// failing walk can be replayed.
func churnSeed(t *testing.T) uint64 {
	t.Helper()
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("KPROXY_KERNEL_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("KPROXY_KERNEL_SEED=%q: %v", s, err)
		}
		seed = v
	}
	t.Logf("random walk seed %d (replay with KPROXY_KERNEL_SEED=%d)", seed, seed)
	return seed
}
