package iptables

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/kproxy/kproxy/proxier"
)

// listingKernel is a Fake that can also list chosen chains, like ExecKernel.
type listingKernel struct {
	*Fake
	listed int // chains listed so far
}

func (k *listingKernel) saveChains(ctx context.Context, family Family, chains []tableChains) ([]byte, error) {
	var b strings.Builder
	for _, tc := range chains {
		if len(tc.chains) == 0 {
			continue
		}
		text, err := k.Save(ctx, family, tc.table)
		if err != nil {
			return nil, err
		}
		var decls, rules []string
		for _, line := range strings.Split(string(text), "\n") {
			switch {
			case strings.HasPrefix(line, ":"):
				name, _, _ := strings.Cut(line[1:], " ")
				if slices.Contains(tc.chains, Chain(name)) {
					decls = append(decls, line)
				}
			case strings.HasPrefix(line, "-A "):
				name, _, _ := strings.Cut(line[3:], " ")
				if slices.Contains(tc.chains, Chain(name)) {
					rules = append(rules, line)
				}
			}
		}
		if len(decls) != len(tc.chains) {
			return nil, fmt.Errorf("%s: a chain of %v does not exist", tc.table, tc.chains)
		}
		k.listed += len(tc.chains)
		fmt.Fprintf(&b, "*%s\n%s\n%s\nCOMMIT\n", tc.table, strings.Join(decls, "\n"), strings.Join(rules, "\n"))
	}
	return []byte(b.String()), nil
}

func newVerifyProxier(t *testing.T, every int) (*Proxier, *listingKernel) {
	t.Helper()
	k := &listingKernel{Fake: NewFake(FakeOptions{})}
	p, err := New(context.Background(), Options{Family: IPv4, Kernel: k, IPSets: NewFakeIPSets(),
		Render: RenderOptions{Family: IPv4, LocalDetector: clusterCIDRs}, FullReadBackEvery: every})
	if err != nil {
		t.Fatal(err)
	}
	if p.saver == nil {
		t.Fatal("the proxier does not use the kernel's chain listing")
	}
	return p, k
}

func mustSync(t *testing.T, p *Proxier, s *proxier.State, c proxier.ChangeSet) SyncStats {
	t.Helper()
	if err := p.Sync(context.Background(), s, c); err != nil {
		t.Fatal(err)
	}
	return p.LastSync()
}

func TestPeriodicSyncVerifiesASample(t *testing.T) {
	ctx := context.Background()
	p, k := newVerifyProxier(t, 3)
	svcs := syncBenchServices(20, 3)
	s := proxier.NewState(nodeA, svcs...)
	if st := mustSync(t, p, s, proxier.FullSync()); st.Sampled != 0 {
		t.Fatalf("first sync sampled: %+v", st)
	}
	// Every third periodic sync reads everything back, the others list a sample
	// (here every chain: there are fewer than sampleWindow) and write nothing.
	for i, want := range []bool{true, true, false, true, true, false} {
		listed := k.listed
		st := mustSync(t, p, s, proxier.FullSync())
		if (st.Sampled > 0) != want || (k.listed > listed) != want || !st.Full || st.Restores != 0 {
			t.Errorf("periodic sync %d: sampled %d, listed %d, restores %d; want sampled %v", i, st.Sampled, k.listed-listed, st.Restores, want)
		}
	}

	// A change made between periodic syncs is written by the sampled one.
	svcs[4] = withEndpoints(svcs[4], "10.200.0.1")
	s = proxier.NewState(nodeA, svcs...)
	if st := mustSync(t, p, s, proxier.FullSync()); st.Sampled == 0 || st.ChainsWritten != 1 {
		t.Errorf("sampled sync with a change: %+v", st)
	}
	assertKernelMatches(t, k.Fake, p.applied)

	// Tampering with an entry chain, a service chain, a bootstrap jump or the
	// canary is noticed and repaired by the next periodic sync.
	svc := svcChainFor(t, p.applied, "bench/svc-00007:p cluster IP")
	for name, tamper := range map[string]func() error{
		"entry chain":   func() error { return k.FlushChain(ctx, IPv4, TableNAT, topServices) },
		"service chain": func() error { return k.FlushChain(ctx, IPv4, TableNAT, svc) },
		"jump":          func() error { return k.DeleteJump(ctx, IPv4, p.applied.Jumps[len(p.applied.Jumps)-2]) },
		"canary": func() error {
			return k.Restore(ctx, IPv4, []byte("*mangle\n:KUBE-PROXY-CANARY - [0:0]\n-X KUBE-PROXY-CANARY\nCOMMIT\n"), RestoreOptions{})
		},
		"flush": func() error {
			return k.Restore(ctx, IPv4, []byte("*nat\nCOMMIT\n*mangle\nCOMMIT\n"), RestoreOptions{Flush: true})
		},
	} {
		p.sampledRuns = 0 // the next periodic sync is due to check a sample
		if err := tamper(); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		st := mustSync(t, p, s, proxier.FullSync())
		if st.Sampled != 0 || st.Restores != 1 {
			t.Errorf("%s: not repaired by a read-back: %+v", name, st)
		}
		assertKernelMatches(t, k.Fake, p.applied)
	}
}

func svcChainFor(t *testing.T, rs *Ruleset, comment string) Chain {
	t.Helper()
	for _, c := range rs.Table(TableNAT).Chains {
		if strings.HasPrefix(string(c.Name), "KUBE-SVC-") && len(c.Rules) > 0 && strings.Contains(c.Rules[0], comment) {
			return c.Name
		}
	}
	t.Fatalf("no service chain with %q", comment)
	return ""
}

func TestSampleWindowRotates(t *testing.T) {
	p, _ := newVerifyProxier(t, 0)
	rs := splitTestRuleset(1000)
	var hashed []Chain
	for _, tr := range rs.Tables {
		for _, c := range tr.Chains {
			if hashedChain(c.Name) {
				hashed = append(hashed, c.Name)
			}
		}
	}
	seen := map[Chain]int{}
	rounds := (len(hashed) + sampleWindow - 1) / sampleWindow
	for range rounds {
		n := 0
		for _, tc := range p.sampleChains(rs) {
			for _, c := range tc.chains {
				if hashedChain(c) {
					seen[c]++
					n++
				}
			}
		}
		if n != sampleWindow {
			t.Errorf("a round listed %d hash-named chains, want %d", n, sampleWindow)
		}
	}
	if len(seen) != len(hashed) {
		t.Errorf("%d rounds listed %d of %d hash-named chains", rounds, len(seen), len(hashed))
	}
	fixed := p.sampleChains(rs)
	for _, want := range []struct {
		t Table
		c Chain
	}{{TableNAT, ChainPrerouting}, {TableNAT, topServices}, {TableNAT, topPostrouting}, {TableFilter, ChainForward},
		{TableFilter, topForward}, {TableMangle, canaryChain}} {
		if !slices.ContainsFunc(fixed, func(tc tableChains) bool { return tc.table == want.t && slices.Contains(tc.chains, want.c) }) {
			t.Errorf("sample lacks %s %s", want.t, want.c)
		}
	}
}

// TestSaveChainsKernel checks the "-S" listing against iptables-save on both
// backends: same chains, same rules, same jumps, and a missing chain is an error.
func TestSaveChainsKernel(t *testing.T) {
	for _, b := range []Backend{BackendNFT, BackendLegacy} {
		t.Run(string(b), func(t *testing.T) {
			requireBackend(t, b)
			ctx := context.Background()
			ns := newTestNetns(t)
			k := newTestExec(t, b, ns, 5)
			if err := k.Restore(ctx, IPv4, []byte(kernelForeign), RestoreOptions{}); err != nil {
				t.Fatal(err)
			}
			sets, err := NewNetlinkIPSets(NetlinkIPSetOptions{Netns: ns})
			if err != nil {
				t.Fatal(err)
			}
			defer sets.Close()
			p, err := New(ctx, Options{Family: IPv4, Kernel: k, IPSets: sets, FullReadBackEvery: 1,
				Render: RenderOptions{Family: IPv4, LocalDetector: clusterCIDRs}})
			if err != nil {
				t.Fatal(err)
			}
			if err := p.Sync(ctx, proxier.NewState(nodeA, renderedServices()...), proxier.FullSync()); err != nil {
				t.Fatal(err)
			}
			chains := p.sampleChains(p.applied)
			text, err := k.saveChains(ctx, IPv4, chains)
			if err != nil {
				t.Fatal(err)
			}
			listed, err := ParseSaved(text)
			if err != nil {
				t.Fatal(err)
			}
			all, err := k.Save(ctx, IPv4, syncTables...)
			if err != nil {
				t.Fatal(err)
			}
			saved, err := ParseSaved(all)
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			for _, tc := range chains {
				lt, st := listed.Table(tc.table), saved.Table(tc.table)
				for _, c := range tc.chains {
					if builtinChain(c) {
						continue
					}
					n++
					if got, want := lt.Chains[c], st.Chains[c]; !slices.Equal(got, want) {
						t.Errorf("%s %s listed as\n%q\nsaved as\n%q", tc.table, c, got, want)
					}
				}
				byChain := func(a, b SavedRule) int { return strings.Compare(string(a.Chain), string(b.Chain)) }
				slices.SortStableFunc(lt.BuiltinJumps, byChain)
				slices.SortStableFunc(st.BuiltinJumps, byChain)
				if !slices.Equal(lt.BuiltinJumps, st.BuiltinJumps) {
					t.Errorf("%s jumps listed as %q, saved as %q", tc.table, lt.BuiltinJumps, st.BuiltinJumps)
				}
			}
			if n < 10 {
				t.Errorf("only %d owned chains listed", n)
			}
			_, err = k.saveChains(ctx, IPv4, []tableChains{{TableNAT, []Chain{topServices, "KUBE-SVC-NOSUCHCHAIN"}}})
			if err == nil {
				t.Error("listing a missing chain succeeded")
			}
		})
	}
}
