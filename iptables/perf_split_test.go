package iptables

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/kproxy/kproxy/proxier"
)

func TestJumpTarget(t *testing.T) {
	for rule, want := range map[string]Chain{
		"-j KUBE-SVC-ABC": "KUBE-SVC-ABC",
		`-d 10.0.0.1/32 -p tcp -m comment --comment "ns/a:p cluster IP" -m tcp --dport 80 -j KUBE-SVC-X`: "KUBE-SVC-X",
		`-m comment --comment "say -j NOPE \" -g NOPE" -g KUBE-DST-Y`:                                    "KUBE-DST-Y",
		"-p tcp -j DNAT --to-destination 10.1.1.1:80":                                                    "DNAT",
		`-m comment --comment "other traffic to ns/a:p will be dropped by KUBE-PROXY-FIREWALL"`:          "",
		"": "",
	} {
		if got := jumpTarget(rule); got != want {
			t.Errorf("jumpTarget(%q) = %q, want %q", rule, got, want)
		}
	}
}

// splitTestRuleset renders n services × 3 endpoints, every third with a node port.
func splitTestRuleset(n int) *Ruleset {
	svcs := syncBenchServices(n, 3)
	for i, sp := range svcs {
		if i%3 == 0 {
			sp.NodePort = uint16(30000 + i)
		}
	}
	return Render(proxier.NewState(nodeA, svcs...), RenderOptions{Family: IPv4, LocalDetector: clusterCIDRs})
}

func TestSplitChainsOrdersByDependency(t *testing.T) {
	chains := splitTestRuleset(300).Table(TableNAT).Chains
	const maxNames = 32
	chunks := splitChains(chains, maxNames)
	if len(chunks) < 10 {
		t.Fatalf("%d chains cut into only %d chunks", len(chains), len(chunks))
	}
	chunkOf := map[Chain]int{}
	for i, chunk := range chunks {
		names := map[Chain]bool{}
		for _, c := range chunk {
			if _, dup := chunkOf[c.Name]; dup {
				t.Fatalf("chain %s in two chunks", c.Name)
			}
			chunkOf[c.Name] = i
			names[c.Name] = true
			for _, r := range c.Rules {
				if tg := jumpTarget(r); tg != "" {
					names[tg] = true
				}
			}
		}
		if len(chunk) > 1 && len(names) > maxNames {
			t.Errorf("chunk %d has %d names", i, len(names))
		}
	}
	if len(chunkOf) != len(chains) {
		t.Fatalf("chunks hold %d chains, want %d", len(chunkOf), len(chains))
	}
	for _, c := range chains {
		for _, r := range c.Rules {
			if j, ok := chunkOf[jumpTarget(r)]; ok && j > chunkOf[c.Name] {
				t.Errorf("%s (chunk %d) jumps to %s, written later (chunk %d)", c.Name, chunkOf[c.Name], jumpTarget(r), j)
			}
		}
	}
}

// recordKernel records restore payloads and can make one fail after some blocks.
type recordKernel struct {
	*Fake
	payloads [][]byte
	// failAfter, when positive, makes the next restore apply only its first
	// failAfter blocks and then fail, as iptables-restore does when a later
	// block is rejected.
	failAfter int
}

func (k *recordKernel) Restore(ctx context.Context, family Family, payload []byte, opts RestoreOptions) error {
	k.payloads = append(k.payloads, bytes.Clone(payload))
	if n := k.failAfter; n > 0 {
		k.failAfter = 0
		end := 0
		for range n {
			end += bytes.Index(payload[end:], []byte("COMMIT\n")) + len("COMMIT\n")
		}
		if err := k.Fake.Restore(ctx, family, payload[:end], opts); err != nil {
			return err
		}
		return errors.New("injected failure after the first blocks")
	}
	return k.Fake.Restore(ctx, family, payload, opts)
}

func (k *recordKernel) last() string { return string(k.payloads[len(k.payloads)-1]) }

func newSplitProxier(t *testing.T, k Kernel, names int) *Proxier {
	t.Helper()
	p, err := New(context.Background(), Options{Family: IPv4, Kernel: k, IPSets: NewFakeIPSets(),
		Render: RenderOptions{Family: IPv4, LocalDetector: clusterCIDRs}})
	if err != nil {
		t.Fatal(err)
	}
	p.splitNames, p.splitMinRules = names, 1
	return p
}

func TestColdSyncIsSplitAndEquivalent(t *testing.T) {
	ctx := context.Background()
	svcs := syncBenchServices(200, 3)
	state := proxier.NewState(nodeA, svcs...)

	single := &recordKernel{Fake: NewFake(FakeOptions{})}
	if err := newSplitProxier(t, single, 0).Sync(ctx, state, proxier.FullSync()); err != nil {
		t.Fatal(err)
	}
	split := &recordKernel{Fake: NewFake(FakeOptions{})}
	p := newSplitProxier(t, split, 32)
	if err := p.Sync(ctx, state, proxier.FullSync()); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(single.last(), "*nat\n"); n != 1 {
		t.Errorf("unsplit payload has %d nat blocks", n)
	}
	blocks := strings.Count(split.last(), "*nat\n")
	if blocks < 5 {
		t.Errorf("split payload has %d nat blocks", blocks)
	}
	// The jumps into the owned chains come in the last nat block only.
	lastNat := split.last()[strings.LastIndex(split.last(), "*nat\n"):]
	if strings.Count(split.last(), "-I PREROUTING") != 1 || !strings.Contains(lastNat, "-I PREROUTING") {
		t.Errorf("bootstrap jump not in the last nat block")
	}
	if a, b := mustSave(t, single.Fake, IPv4), mustSave(t, split.Fake, IPv4); a != b {
		t.Errorf("split and unsplit restores differ:\n%s\n---\n%s", a, b)
	}
	assertKernelMatches(t, split.Fake, p.applied)

	// A live table (the jumps are in place) is written in one atomic block, even
	// when much of it changes.
	for _, sp := range svcs[:150] {
		sp.Endpoints = sp.Endpoints[:2]
	}
	if err := p.Sync(ctx, proxier.NewState(nodeA, svcs...), proxier.FullSync()); err != nil {
		t.Fatal(err)
	}
	if st := p.LastSync(); st.ChainsWritten < 150 || strings.Count(split.last(), "*nat\n") != 1 {
		t.Errorf("live full sync: %d chains in %d nat blocks", st.ChainsWritten, strings.Count(split.last(), "*nat\n"))
	}
	assertKernelMatches(t, split.Fake, p.applied)
}

func TestSplitColdSyncFailingHalfwayIsRepaired(t *testing.T) {
	ctx := context.Background()
	k := &recordKernel{Fake: NewFake(FakeOptions{}), failAfter: 3}
	p := newSplitProxier(t, k, 32)
	state := proxier.NewState(nodeA, syncBenchServices(200, 3)...)
	if err := p.Sync(ctx, state, proxier.FullSync()); err == nil {
		t.Fatal("injected failure not reported")
	}
	// Three blocks of chains were committed, unreachable: no jump leads to them.
	saved, err := ParseSaved([]byte(mustSave(t, k.Fake, IPv4)))
	if err != nil {
		t.Fatal(err)
	}
	if nat := saved.Table(TableNAT); len(nat.Chains) == 0 || len(nat.BuiltinJumps) != 0 {
		t.Fatalf("after the failure: %d owned chains, %d jumps", len(nat.Chains), len(nat.BuiltinJumps))
	}
	if err := p.Sync(ctx, state, proxier.FullSync()); err != nil {
		t.Fatal(err)
	}
	if st := p.LastSync(); !st.Full || st.Sampled != 0 {
		t.Errorf("retry was not a full read-back: %+v", st)
	}
	assertKernelMatches(t, k.Fake, p.applied)
}

func TestSplitAfterExternalFlush(t *testing.T) {
	ctx := context.Background()
	k := &recordKernel{Fake: NewFake(FakeOptions{})}
	p := newSplitProxier(t, k, 32)
	state := proxier.NewState(nodeA, syncBenchServices(200, 3)...)
	if err := p.Sync(ctx, state, proxier.FullSync()); err != nil {
		t.Fatal(err)
	}
	// "iptables -t nat -F; iptables -t nat -X": everything gone, the table is cold.
	if err := k.Fake.Restore(ctx, IPv4, []byte("*nat\nCOMMIT\n"), RestoreOptions{Flush: true}); err != nil {
		t.Fatal(err)
	}
	if err := p.Sync(ctx, state, proxier.FullSync()); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(k.last(), "*nat\n"); n < 5 {
		t.Errorf("repair of a flushed nat table in %d blocks", n)
	}
	assertKernelMatches(t, k.Fake, p.applied)
}

// TestColdSplitKernel restores a cold start in many blocks on iptables-nft and checks
// that the kernel holds exactly the ruleset, and that a live table is not split.
func TestColdSplitKernel(t *testing.T) {
	requireBackend(t, BackendNFT)
	ctx := context.Background()
	ns := newTestNetns(t)
	k := newTestExec(t, BackendNFT, ns, 5)
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
	p.splitNames, p.splitMinRules = 32, 1
	svcs := syncBenchServices(300, 3)
	for i, sp := range svcs {
		if i%3 == 0 {
			sp.NodePort = uint16(30000 + i)
		}
	}
	if err := p.Sync(ctx, proxier.NewState(nodeA, svcs...), proxier.FullSync()); err != nil {
		t.Fatal(err)
	}
	t.Logf("cold sync: %d chains in %d bytes, restore %v", p.LastSync().ChainsWritten, p.LastSync().PayloadBytes, p.LastSync().Restore)
	if err := p.Sync(ctx, proxier.NewState(nodeA, svcs...), proxier.FullSync()); err != nil {
		t.Fatal(err)
	}
	if st := p.LastSync(); st.Restores != 0 || st.Sampled != 0 {
		t.Errorf("full read-back after the split cold sync: %+v", st)
	}
}
