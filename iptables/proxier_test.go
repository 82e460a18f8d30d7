package iptables

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/go-logr/logr/funcr"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/kproxy/kproxy/proxier"
	"github.com/kproxy/kproxy/proxier/conntrack"
	"github.com/kproxy/kproxy/proxier/metrics"
)

func threeServices() []*proxier.ServicePort {
	return []*proxier.ServicePort{
		testService("default", "web", proxier.ProtocolTCP, "172.30.0.1", 80, 2),
		testService("default", "dns", proxier.ProtocolUDP, "172.30.0.2", 53, 2),
		testService("default", "empty", proxier.ProtocolTCP, "172.30.0.3", 80, 0),
	}
}

func TestSyncFirstWritesEverything(t *testing.T) {
	tp := newTestProxier(t)
	s := proxier.NewState(testNode, threeServices()...)
	st := tp.sync(t, s, proxier.FullSync())

	if !st.Full || st.Restores != 1 {
		t.Fatalf("first sync: full=%v restores=%d, want a full sync with one restore", st.Full, st.Restores)
	}
	if got := tp.kernel.Stats().RestoreCalls; got != 1 {
		t.Errorf("restore calls = %d, want 1", got)
	}
	assertKernelMatches(t, tp.kernel, tp.applied)
	if st.JumpsAdded != len(testJumps()) {
		t.Errorf("jumps added = %d, want %d", st.JumpsAdded, len(testJumps()))
	}
	if st.PayloadBytes != len(tp.kernel.Stats().LastRestore) {
		t.Errorf("payload bytes %d != restored %d", st.PayloadBytes, len(tp.kernel.Stats().LastRestore))
	}
	entries, ok := tp.sets.Set("KUBE-LOOP-BACK")
	if !ok || len(entries) != 4 {
		t.Errorf("ipset entries = %q, want 4", entries)
	}
}

func TestFullSyncWithoutDifferenceWritesNothing(t *testing.T) {
	tp := newTestProxier(t)
	s := proxier.NewState(testNode, threeServices()...)
	tp.sync(t, s, proxier.FullSync())
	tp.kernel.ResetStats()
	before := tp.sets.Stats()

	st := tp.sync(t, s, proxier.FullSync())
	ks := tp.kernel.Stats()
	if st.Restores != 0 || ks.RestoreCalls != 0 {
		t.Errorf("no-op full sync restored %d times (%d bytes)", ks.RestoreCalls, ks.RestoreBytes)
	}
	if n := ks.Calls[OpEnsureJump]; n != 0 {
		t.Errorf("no-op full sync made %d EnsureJump calls, want 0", n)
	}
	if n := ks.Calls[OpSave]; n != 1 {
		t.Errorf("full sync made %d Save calls, want 1", n)
	}
	after := tp.sets.Stats()
	if after.Creates != before.Creates || after.Added != before.Added || after.Deleted != before.Deleted {
		t.Errorf("no-op full sync changed ipsets: %+v -> %+v", before, after)
	}
	// A second, freshly rendered ruleset (new pointers) must not write either.
	tp.r.cache = map[proxier.ServicePortName]*testSvcChains{}
	if st := tp.sync(t, s, proxier.FullSync()); st.Restores != 0 {
		t.Errorf("re-rendered full sync restored")
	}
}

func TestPartialSyncWritesOnlyChangedChains(t *testing.T) {
	tp := newTestProxier(t)
	svcs := threeServices()
	tp.sync(t, proxier.NewState(testNode, svcs...), proxier.FullSync())
	tp.kernel.ResetStats()

	old := svcs[0]
	// Keep the first endpoint, replace the second.
	svcs[0] = withEndpoints(old, old.Endpoints[0].Addr.String(), "10.0.1.9")
	st := tp.sync(t, proxier.NewState(testNode, svcs...), changed(svcs[0]))
	if st.Full {
		t.Fatal("partial change ran a full sync")
	}
	ks := tp.kernel.Stats()
	if ks.Calls[OpSave] != 0 {
		t.Errorf("partial sync read the kernel back")
	}
	payload := string(ks.LastRestore)
	want := fmt.Sprintf("*nat\n:%s - [0:0]\n:%s - [0:0]\n:%s - [0:0]\n",
		sepChain(svcs[0], &svcs[0].Endpoints[1]), svcChain(svcs[0]), sepChain(old, &old.Endpoints[1]))
	if !strings.HasPrefix(payload, want) {
		t.Errorf("payload starts\n%s\nwant\n%s", payload, want)
	}
	if !strings.Contains(payload, "-X "+string(sepChain(old, &old.Endpoints[1]))+"\n") {
		t.Errorf("payload does not delete the removed endpoint's chain:\n%s", payload)
	}
	if strings.Contains(payload, "*filter") || strings.Contains(payload, "KUBE-SERVICES") {
		t.Errorf("payload rewrites unchanged chains:\n%s", payload)
	}
	if st.ChainsWritten != 2 || st.ChainsDeleted != 1 {
		t.Errorf("written %d deleted %d, want 2 and 1", st.ChainsWritten, st.ChainsDeleted)
	}
	if st.PayloadBytes != len(payload) || st.PayloadBytes > 700 {
		t.Errorf("payload %d bytes (stats %d)", len(payload), st.PayloadBytes)
	}
	t.Logf("one-endpoint partial sync payload: %d bytes", st.PayloadBytes)
	assertKernelMatches(t, tp.kernel, tp.applied)

	// Nothing changed: no restore at all.
	tp.kernel.ResetStats()
	if st := tp.sync(t, proxier.NewState(testNode, svcs...), changed(svcs[1])); st.Restores != 0 {
		t.Errorf("partial sync without difference restored:\n%s", tp.kernel.Stats().LastRestore)
	}
}

func TestDeletedServiceChainsAreRemoved(t *testing.T) {
	tp := newTestProxier(t)
	svcs := threeServices()
	tp.sync(t, proxier.NewState(testNode, svcs...), proxier.FullSync())
	gone := svcs[0]
	st := tp.sync(t, proxier.NewState(testNode, svcs[1:]...), changed(gone))
	if st.ChainsDeleted != 3 { // KUBE-SVC and two KUBE-SEP
		t.Errorf("deleted %d chains, want 3", st.ChainsDeleted)
	}
	payload := string(tp.kernel.Stats().LastRestore)
	for _, c := range []Chain{svcChain(gone), sepChain(gone, &gone.Endpoints[0]), sepChain(gone, &gone.Endpoints[1])} {
		if !strings.Contains(payload, "-X "+string(c)+"\n") {
			t.Errorf("payload lacks -X %s:\n%s", c, payload)
		}
		if _, ok := tp.kernel.Rules(IPv4, TableNAT, c); ok {
			t.Errorf("chain %s still exists", c)
		}
	}
	assertKernelMatches(t, tp.kernel, tp.applied)
	// A full sync finds nothing left to do.
	if st := tp.sync(t, proxier.NewState(testNode, svcs[1:]...), proxier.FullSync()); st.Restores != 0 {
		t.Errorf("full sync after deletion restored:\n%s", tp.kernel.Stats().LastRestore)
	}
}

// foreignRules is what other software put into the kernel before kproxy started.
const foreignRules = `*nat
:DOCKER - [0:0]
:CNI-abc123 - [0:0]
-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER
-A POSTROUTING -s 10.88.0.0/16 -j CNI-abc123
-A CNI-abc123 -d 10.88.0.0/16 -j ACCEPT
-A CNI-abc123 ! -d 224.0.0.0/4 -j MASQUERADE
-A DOCKER -i docker0 -j RETURN
COMMIT
*filter
:DOCKER - [0:0]
:KUBE-FIREWALL - [0:0]
-A INPUT -s 203.0.113.0/24 -p tcp -m tcp --dport 22 -j ACCEPT
-A INPUT -j KUBE-FIREWALL
-A FORWARD -o docker0 -j DOCKER
-A KUBE-FIREWALL ! -s 127.0.0.0/8 -d 127.0.0.0/8 -m comment --comment "block incoming localnet connections" -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP
COMMIT
*mangle
:KUBE-KUBELET-CANARY - [0:0]
:KUBE-IPTABLES-HINT - [0:0]
COMMIT
`

// foreignOnly removes owned chains and jumps to them from a dump.
func foreignOnly(dump string) string {
	var out []string
	table := Table("")
	for _, line := range strings.Split(dump, "\n") {
		switch {
		case strings.HasPrefix(line, "*"):
			table = Table(line[1:])
		case strings.HasPrefix(line, ":"):
			name, _, _ := strings.Cut(line[1:], " ")
			if OwnedChain(table, Chain(name)) {
				continue
			}
		case strings.HasPrefix(line, "-A "):
			name, spec, _ := strings.Cut(line[3:], " ")
			if OwnedChain(table, Chain(name)) || OwnedChain(table, Chain(ruleTarget(spec))) {
				continue
			}
		}
		out = append(out, line)
	}
	return strings.Join(out, "\n")
}

func TestForeignRulesAreUntouched(t *testing.T) {
	tp := newTestProxier(t)
	ctx := context.Background()
	if err := tp.kernel.Restore(ctx, IPv4, []byte(foreignRules), RestoreOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, s := range []*IPSet{
		{Name: "cali-foreign", Type: "hash:net", Family: IPv4},
		{Name: "KUBE-6-LOOP-BACK", Type: "hash:ip,port,ip", Family: IPv6},
	} {
		if err := tp.sets.Create(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	initial := tp.kernel.Dump()
	if !strings.Contains(initial, "DOCKER") {
		t.Fatalf("setup failed:\n%s", initial)
	}

	svcs := threeServices()
	tp.sync(t, proxier.NewState(testNode, svcs...), proxier.FullSync())
	svcs[1] = withEndpoints(svcs[1], "10.0.0.7")
	tp.sync(t, proxier.NewState(testNode, svcs...), changed(svcs[1]))
	tp.sync(t, proxier.NewState(testNode, svcs[:2]...), changed(svcs[2]))
	tp.sync(t, proxier.NewState(testNode, svcs[:2]...), proxier.FullSync())
	if got := foreignOnly(tp.kernel.Dump()); got != foreignOnly(initial) || got != initial {
		t.Errorf("foreign rules changed by syncs:\n%s\nwant\n%s", got, initial)
	}

	if err := tp.Cleanup(ctx); err != nil {
		t.Fatal(err)
	}
	if got := tp.kernel.Dump(); got != initial {
		t.Errorf("after Cleanup:\n%s\nwant exactly\n%s", got, initial)
	}
	if names := tp.sets.Names(); !slices.Equal(names, []string{"KUBE-6-LOOP-BACK", "cali-foreign"}) {
		t.Errorf("ipsets after Cleanup: %v", names)
	}
	// Idempotent.
	tp.kernel.ResetStats()
	if err := tp.Cleanup(ctx); err != nil {
		t.Fatal(err)
	}
	if n := tp.kernel.Stats().RestoreCalls; n != 0 {
		t.Errorf("second Cleanup restored %d times", n)
	}
}

func TestCleanupOnEmptyKernel(t *testing.T) {
	tp := newTestProxier(t)
	if err := tp.Cleanup(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := tp.kernel.Stats().RestoreCalls; n != 0 {
		t.Errorf("Cleanup of nothing restored %d times", n)
	}
}

func TestRestoreFailureKeepsRulesAndNextFullSyncRepairs(t *testing.T) {
	tp := newTestProxier(t)
	m := metrics.New()
	tp.metrics = m
	svcs := threeServices()
	tp.sync(t, proxier.NewState(testNode, svcs...), proxier.FullSync())
	before := tp.kernel.Dump()

	// 1. The restore fails outright: nothing changes.
	boom := errors.New("injected restore failure")
	tp.kernel.FailNext(OpRestore, boom)
	svcs[0] = withEndpoints(svcs[0], "10.0.0.5")
	err := tp.Sync(context.Background(), proxier.NewState(testNode, svcs...), changed(svcs[0]))
	if !errors.Is(err, boom) {
		t.Fatalf("sync error = %v, want the injected one", err)
	}
	if got := tp.kernel.Dump(); got != before {
		t.Errorf("failed restore changed the kernel")
	}
	if testutil.ToFloat64(m.RestoreFailures) != 1 || testutil.ToFloat64(m.PartialRestoreFailures) != 1 {
		t.Errorf("failure metrics = %v/%v, want 1/1", testutil.ToFloat64(m.RestoreFailures), testutil.ToFloat64(m.PartialRestoreFailures))
	}

	// 2. The next sync, even if asked to be partial, reads the kernel back.
	st := tp.sync(t, proxier.NewState(testNode, svcs...), changed(svcs[0]))
	if !st.Full {
		t.Errorf("sync after a failure was not full")
	}
	assertKernelMatches(t, tp.kernel, tp.applied)
}

func TestFailureInSecondTableForcesFullSync(t *testing.T) {
	tp := newTestProxier(t)
	svcs := threeServices()
	tp.sync(t, proxier.NewState(testNode, svcs...), proxier.FullSync())

	// The filter block is rejected (jump to a missing chain) after the nat block
	// committed: nat is new, filter is old, each consistent on its own.
	tp.kernel.Hook = func(op string, _ Family, payload []byte) error { return nil }
	bad := &badRenderer{inner: tp.r}
	tp.renderer = bad
	// The change touches both tables: web's endpoints (nat) and the deletion of the
	// service without endpoints (its REJECT rule in filter).
	svcs[0] = withEndpoints(svcs[0], "10.0.0.5")
	gone := svcs[2]
	svcs = svcs[:2]
	err := tp.Sync(context.Background(), proxier.NewState(testNode, svcs...), changed(svcs[0], gone))
	if !errors.Is(err, ErrInvalidRuleset) {
		t.Fatalf("sync error = %v, want ErrInvalidRuleset", err)
	}
	if tp.applied != nil {
		t.Fatal("failed sync recorded an applied ruleset")
	}
	if _, ok := tp.kernel.Rules(IPv4, TableNAT, sepChain(svcs[0], &svcs[0].Endpoints[0])); !ok {
		t.Errorf("nat block was expected to commit before filter failed")
	}

	bad.broken = false
	st := tp.sync(t, proxier.NewState(testNode, svcs...), changed(svcs[0]))
	if !st.Full {
		t.Fatal("sync after a failure was not full")
	}
	if !strings.HasPrefix(string(tp.kernel.Stats().LastRestore), "*filter\n:KUBE-SERVICES - [0:0]\nCOMMIT\n") {
		t.Errorf("repair should rewrite only filter, payload:\n%s", tp.kernel.Stats().LastRestore)
	}
	assertKernelMatches(t, tp.kernel, tp.applied)
}

// badRenderer adds a rule the kernel rejects to filter KUBE-SERVICES while broken.
type badRenderer struct {
	inner  *testRenderer
	broken bool
	init   bool
}

func (b *badRenderer) Render(s *proxier.State, c proxier.ChangeSet) *Ruleset {
	if !b.init {
		b.broken, b.init = true, true
	}
	rs := b.inner.Render(s, c)
	if !b.broken {
		return rs
	}
	ft := rs.Table(TableFilter)
	for i, ch := range ft.Chains {
		if ch.Name == "KUBE-SERVICES" {
			ft.Chains[i] = &ChainRules{Name: ch.Name, Rules: append(slices.Clone(ch.Rules), "-j KUBE-DOES-NOT-EXIST")}
		}
	}
	return rs
}

func TestExternalFlushIsRepaired(t *testing.T) {
	tp := newTestProxier(t)
	var logs bytes.Buffer
	tp.log = funcr.New(func(prefix, args string) { logs.WriteString(args + "\n") }, funcr.Options{})
	svcs := threeServices()
	s := proxier.NewState(testNode, svcs...)
	tp.sync(t, s, proxier.FullSync())

	// Somebody runs "iptables -t nat -F; iptables -t nat -X" and flushes mangle.
	for _, table := range []string{"nat", "mangle"} {
		if err := tp.kernel.Restore(context.Background(), IPv4, []byte("*"+table+"\nCOMMIT\n"), RestoreOptions{Flush: true}); err != nil {
			t.Fatal(err)
		}
	}
	// A partial sync trusts its memory and does not notice...
	if st := tp.sync(t, s, changed(svcs[1])); st.Restores != 0 {
		t.Fatal("partial sync without changes restored")
	}
	// ...the periodic full sync does, and repairs chains and jumps.
	st := tp.sync(t, s, proxier.FullSync())
	if st.Restores != 1 || st.JumpsAdded != 3 {
		t.Errorf("repair: restores %d, jumps added %d, want 1 and 3", st.Restores, st.JumpsAdded)
	}
	assertKernelMatches(t, tp.kernel, tp.applied)
	if !strings.Contains(logs.String(), "flushed externally") {
		t.Errorf("canary loss not logged; logs:\n%s", logs.String())
	}
}

// kubeProxyRules is a ruleset as kube-proxy v1.36 leaves it, for a service
// (default/old) kproxy will not render and one (default/web) it will.
const kubeProxyRules = `*nat
:KUBE-SERVICES - [0:0]
:KUBE-NODEPORTS - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-MARK-MASQ - [0:0]
:KUBE-PROXY-CANARY - [0:0]
:KUBE-SVC-OLDOLDOLDOLDOLDOL - [0:0]
:KUBE-SEP-OLDOLDOLDOLDOLDOL - [0:0]
:KUBE-EXT-OLDOLDOLDOLDOLDOL - [0:0]
-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING
-A KUBE-SERVICES -d 172.30.9.9/32 -p tcp -m comment --comment "default/old cluster IP" -m tcp --dport 80 -j KUBE-SVC-OLDOLDOLDOLDOLDOL
-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS
-A KUBE-NODEPORTS -p tcp -m comment --comment "default/old" -m tcp --dport 30080 -j KUBE-EXT-OLDOLDOLDOLDOLDOL
-A KUBE-EXT-OLDOLDOLDOLDOLDOL -m comment --comment "masquerade traffic for default/old external destinations" -j KUBE-MARK-MASQ
-A KUBE-EXT-OLDOLDOLDOLDOLDOL -j KUBE-SVC-OLDOLDOLDOLDOLDOL
-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000
-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0
-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully
-A KUBE-SVC-OLDOLDOLDOLDOLDOL -m comment --comment "default/old -> 10.9.9.9:80" -j KUBE-SEP-OLDOLDOLDOLDOLDOL
-A KUBE-SEP-OLDOLDOLDOLDOLDOL -s 10.9.9.9/32 -m comment --comment default/old -j KUBE-MARK-MASQ
-A KUBE-SEP-OLDOLDOLDOLDOLDOL -p tcp -m comment --comment default/old -m tcp -j DNAT --to-destination 10.9.9.9:80
COMMIT
*filter
:KUBE-SERVICES - [0:0]
:KUBE-EXTERNAL-SERVICES - [0:0]
:KUBE-FORWARD - [0:0]
:KUBE-NODEPORTS - [0:0]
:KUBE-PROXY-FIREWALL - [0:0]
:KUBE-PROXY-CANARY - [0:0]
:KUBE-FIREWALL - [0:0]
-A INPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes load balancer firewall" -j KUBE-PROXY-FIREWALL
-A INPUT -m comment --comment "kubernetes health check service ports" -j KUBE-NODEPORTS
-A INPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes externally-visible service portals" -j KUBE-EXTERNAL-SERVICES
-A INPUT -j KUBE-FIREWALL
-A FORWARD -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD
-A OUTPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A KUBE-FORWARD -m conntrack --ctstate INVALID -m nfacct --nfacct-name ct_state_invalid_dropped_pkts -j DROP
-A KUBE-FIREWALL ! -s 127.0.0.0/8 -d 127.0.0.0/8 -m comment --comment "block incoming localnet connections" -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP
COMMIT
*mangle
:KUBE-PROXY-CANARY - [0:0]
:KUBE-KUBELET-CANARY - [0:0]
COMMIT
`

func TestTakeoverFromKubeProxy(t *testing.T) {
	tp := newTestProxier(t)
	ctx := context.Background()
	if err := tp.kernel.Restore(ctx, IPv4, []byte(kubeProxyRules), RestoreOptions{}); err != nil {
		t.Fatal(err)
	}
	st := tp.sync(t, proxier.NewState(testNode, threeServices()...), proxier.FullSync())
	assertKernelMatches(t, tp.kernel, tp.applied)
	for _, c := range []Chain{"KUBE-SVC-OLDOLDOLDOLDOLDOL", "KUBE-SEP-OLDOLDOLDOLDOLDOL", "KUBE-EXT-OLDOLDOLDOLDOLDOL", "KUBE-NODEPORTS"} {
		if _, ok := tp.kernel.Rules(IPv4, TableNAT, c); ok {
			t.Errorf("stale nat chain %s survived the takeover", c)
		}
	}
	for _, c := range []Chain{"KUBE-EXTERNAL-SERVICES", "KUBE-FORWARD", "KUBE-NODEPORTS", "KUBE-PROXY-FIREWALL"} {
		if _, ok := tp.kernel.Rules(IPv4, TableFilter, c); ok {
			t.Errorf("stale filter chain %s survived the takeover", c)
		}
	}
	// kubelet's chains and rules stay.
	if rules, ok := tp.kernel.Rules(IPv4, TableFilter, "KUBE-FIREWALL"); !ok || len(rules) != 1 {
		t.Errorf("kubelet's KUBE-FIREWALL was touched: %q", rules)
	}
	if rules, _ := tp.kernel.Rules(IPv4, TableFilter, ChainInput); !slices.Equal(rules, []string{"-j KUBE-FIREWALL"}) {
		t.Errorf("filter INPUT = %q, want only kubelet's jump", rules)
	}
	if _, ok := tp.kernel.Rules(IPv4, TableMangle, "KUBE-KUBELET-CANARY"); !ok {
		t.Error("kubelet's canary was removed")
	}
	// The identical jumps were recognised and kept; only filter OUTPUT's differs
	// from ours... it does not: it has the same match, so nothing is added.
	if st.JumpsAdded != 0 {
		t.Errorf("takeover added %d jumps, want 0 (kube-proxy's are identical)", st.JumpsAdded)
	}
	if st := tp.sync(t, proxier.NewState(testNode, threeServices()...), proxier.FullSync()); st.Restores != 0 {
		t.Errorf("second full sync after takeover restored:\n%s", tp.kernel.Stats().LastRestore)
	}
}

func TestStaleChainReferencedByForeignRuleIsFlushedNotDeleted(t *testing.T) {
	tp := newTestProxier(t)
	ctx := context.Background()
	payload := "*nat\n:KUBE-SVC-STALESTALESTALE - [0:0]\n:KUBE-SEP-STALESTALESTALE - [0:0]\n:MY-CHAIN - [0:0]\n" +
		"-A MY-CHAIN -j KUBE-SVC-STALESTALESTALE\n-A KUBE-SVC-STALESTALESTALE -j KUBE-SEP-STALESTALESTALE\nCOMMIT\n"
	if err := tp.kernel.Restore(ctx, IPv4, []byte(payload), RestoreOptions{}); err != nil {
		t.Fatal(err)
	}
	tp.sync(t, proxier.NewState(testNode, threeServices()...), proxier.FullSync())
	rules, ok := tp.kernel.Rules(IPv4, TableNAT, "KUBE-SVC-STALESTALESTALE")
	if !ok || len(rules) != 0 {
		t.Errorf("referenced stale chain: exists=%v rules=%q, want kept and empty", ok, rules)
	}
	if _, ok := tp.kernel.Rules(IPv4, TableNAT, "KUBE-SEP-STALESTALESTALE"); ok {
		t.Error("unreferenced stale chain survived")
	}
	if rules, _ := tp.kernel.Rules(IPv4, TableNAT, "MY-CHAIN"); len(rules) != 1 {
		t.Errorf("foreign chain changed: %q", rules)
	}
	// Steady state: the kept empty chain causes no further writes.
	if st := tp.sync(t, proxier.NewState(testNode, threeServices()...), proxier.FullSync()); st.Restores != 0 {
		t.Errorf("full sync rewrote the kept chain again:\n%s", tp.kernel.Stats().LastRestore)
	}
	if err := tp.Cleanup(ctx); err == nil || !strings.Contains(err.Error(), "KUBE-SVC-STALESTALESTALE") {
		t.Errorf("Cleanup error = %v, want the kept chain reported", err)
	}
}

func TestIPSetDiffs(t *testing.T) {
	tp := newTestProxier(t)
	ctx := context.Background()
	// The IPv6 proxier's set and a kube-router-style set are not ours.
	for _, s := range []*IPSet{
		{Name: "KUBE-6-LOOP-BACK", Type: "hash:ip,port,ip", Family: IPv6},
		{Name: "KUBE-SRC-ROUTERPOLICY", Type: "hash:ip", Family: IPv4},
	} {
		if err := tp.sets.Create(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	// A stale entry left by a previous run.
	if err := tp.sets.Create(ctx, &IPSet{Name: "KUBE-LOOP-BACK", Type: "hash:ip,port,ip", Family: IPv4}); err != nil {
		t.Fatal(err)
	}
	if err := tp.sets.Add(ctx, &IPSet{Name: "KUBE-LOOP-BACK", Type: "hash:ip,port,ip"}, []string{"10.9.9.9,tcp:1,10.9.9.9"}); err != nil {
		t.Fatal(err)
	}
	svcs := threeServices()
	tp.sync(t, proxier.NewState(testNode, svcs...), proxier.FullSync())
	foreign := []string{"KUBE-6-LOOP-BACK", "KUBE-SRC-ROUTERPOLICY"}
	if names := tp.sets.Names(); !slices.Equal(names, []string{"KUBE-6-LOOP-BACK", "KUBE-LOOP-BACK", "KUBE-SRC-ROUTERPOLICY"}) {
		t.Errorf("sets after first sync: %v", names)
	}
	if entries, _ := tp.sets.Set("KUBE-LOOP-BACK"); len(entries) != 4 || slices.Contains(entries, "10.9.9.9,tcp:1,10.9.9.9") {
		t.Errorf("first sync did not replace the stale content: %q", entries)
	}

	// Partial: one endpoint replaced -> exactly one add and one delete.
	before := tp.sets.Stats()
	svcs[1] = withEndpoints(svcs[1], svcs[1].Endpoints[0].Addr.String(), "10.0.0.99")
	tp.sync(t, proxier.NewState(testNode, svcs...), changed(svcs[1]))
	after := tp.sets.Stats()
	if after.Added-before.Added != 1 || after.Deleted-before.Deleted != 1 || after.Lists != before.Lists {
		t.Errorf("partial ipset diff: %+v -> %+v, want one add, one delete, no list", before, after)
	}

	// Full: an entry deleted and a bogus one added behind our back are repaired
	// with one add and one delete.
	set := &IPSet{Name: "KUBE-LOOP-BACK", Type: "hash:ip,port,ip"}
	entries, _ := tp.sets.Set(set.Name)
	if err := tp.sets.Del(ctx, set, entries[:1]); err != nil {
		t.Fatal(err)
	}
	if err := tp.sets.Add(ctx, set, []string{"192.0.2.1,tcp:1,192.0.2.1"}); err != nil {
		t.Fatal(err)
	}
	before = tp.sets.Stats()
	tp.sync(t, proxier.NewState(testNode, svcs...), proxier.FullSync())
	after = tp.sets.Stats()
	if after.Added-before.Added != 1 || after.Deleted-before.Deleted != 1 {
		t.Errorf("full ipset repair: %+v -> %+v", before, after)
	}
	if got, _ := tp.sets.Set(set.Name); !slices.Equal(got, entries) {
		t.Errorf("set after repair %q, want %q", got, entries)
	}

	// No set rendered any more: destroyed after the restore.
	tp.r.noSets = true
	tp.sync(t, proxier.NewState(testNode, svcs...), proxier.FullSync())
	if names := tp.sets.Names(); !slices.Equal(names, foreign) {
		t.Errorf("sets left: %v", names)
	}
}

func TestUnusedSetThatCannotBeDestroyedDoesNotFailSync(t *testing.T) {
	tp := newTestProxier(t)
	s := proxier.NewState(testNode, threeServices()...)
	tp.sync(t, s, proxier.FullSync())
	tp.sets.Reference("KUBE-LOOP-BACK", true)
	tp.r.noSets = true
	tp.sync(t, s, proxier.FullSync())
	tp.sets.Reference("KUBE-LOOP-BACK", false)
	tp.sync(t, s, proxier.FullSync())
	if names := tp.sets.Names(); len(names) != 0 {
		t.Errorf("sets left after the retry: %v", names)
	}
}

func TestIPSetFailureFailsSync(t *testing.T) {
	tp := newTestProxier(t)
	tp.sets.FailNext("add", errors.New("netlink: no buffer space"))
	err := tp.Sync(context.Background(), proxier.NewState(testNode, threeServices()...), proxier.FullSync())
	if err == nil || tp.kernel.Stats().RestoreCalls != 0 {
		t.Fatalf("err=%v restores=%d; want an error before any restore", err, tp.kernel.Stats().RestoreCalls)
	}
	tp.sync(t, proxier.NewState(testNode, threeServices()...), proxier.FullSync())
	assertKernelMatches(t, tp.kernel, tp.applied)
}

func udpFlow(dst, reply string) conntrack.Flow {
	return conntrack.Flow{Protocol: 17, OrigDst: netip.MustParseAddrPort(dst), ReplySrc: netip.MustParseAddrPort(reply)}
}

func TestConntrackCleanupOnUDPEndpointRemoval(t *testing.T) {
	tp := newTestProxier(t)
	m := metrics.New()
	tp.metrics = m
	svcs := threeServices() // dns: 172.30.0.2:53 -> 10.0.0.1:8080, 10.0.0.2:8080 (UDP)
	dns := svcs[1]
	ep1, ep2 := dns.Endpoints[0].AddrPort().String(), dns.Endpoints[1].AddrPort().String()
	tp.sync(t, proxier.NewState(testNode, svcs...), proxier.FullSync())
	tp.ct.Add(proxier.IPv4,
		udpFlow("172.30.0.2:53", ep1),
		udpFlow("172.30.0.2:53", ep2),
		udpFlow("172.30.0.2:54", "172.30.0.2:54"), // not a service port
		udpFlow("198.51.100.1:53", "198.51.100.1:53"),
	)
	calls := len(tp.ct.Calls())

	// A TCP change never triggers a conntrack dump.
	svcs[0] = withEndpoints(svcs[0], "10.0.0.1")
	tp.sync(t, proxier.NewState(testNode, svcs...), changed(svcs[0]))
	// Adding an endpoint to a UDP port that had some cannot leave stale flows.
	svcs[1] = withEndpoints(dns, dns.Endpoints[0].Addr.String(), dns.Endpoints[1].Addr.String(), "10.0.0.3")
	tp.sync(t, proxier.NewState(testNode, svcs...), changed(svcs[1]))
	if n := len(tp.ct.Calls()); n != calls {
		t.Fatalf("%d conntrack cleanups for changes that cannot leave stale flows", n-calls)
	}

	svcs[1] = withEndpoints(dns, dns.Endpoints[0].Addr.String())
	st := tp.sync(t, proxier.NewState(testNode, svcs...), changed(svcs[1]))
	if st.ConntrackCleared != 1 {
		t.Errorf("cleared %d flows, want 1", st.ConntrackCleared)
	}
	left := tp.ct.Flows(proxier.IPv4)
	if slices.Contains(left, udpFlow("172.30.0.2:53", ep2)) || !slices.Contains(left, udpFlow("172.30.0.2:53", ep1)) || len(left) != 3 {
		t.Errorf("flows left: %v", left)
	}
	if got := testutil.ToFloat64(m.ConntrackEntriesCleared); got != 1 {
		t.Errorf("ConntrackEntriesCleared = %v", got)
	}
}

func TestConntrackCleanupWhenEndpointsAppear(t *testing.T) {
	tp := newTestProxier(t)
	dns := testService("default", "dns", proxier.ProtocolUDP, "172.30.0.2", 53, 0)
	tp.sync(t, proxier.NewState(testNode, dns), proxier.FullSync())
	// A flow created while the service rejected traffic: never translated.
	tp.ct.Add(proxier.IPv4, udpFlow("172.30.0.2:53", "172.30.0.2:53"))
	dns2 := withEndpoints(dns, "10.0.0.1")
	if st := tp.sync(t, proxier.NewState(testNode, dns2), changed(dns2)); st.ConntrackCleared != 1 {
		t.Errorf("cleared %d, want the cached untranslated flow", st.ConntrackCleared)
	}
	// Deleting the service clears flows to its old endpoint.
	tp.ct.Add(proxier.IPv4, udpFlow("172.30.0.2:53", "10.0.0.1:8080"))
	if st := tp.sync(t, proxier.NewState(testNode), changed(dns2)); st.ConntrackCleared != 1 {
		t.Errorf("cleared %d after deleting the service, want 1", st.ConntrackCleared)
	}
}

func TestConntrackFailureDoesNotFailSync(t *testing.T) {
	tp := newTestProxier(t)
	m := metrics.New()
	tp.metrics = m
	tp.ct.FailNext(errors.New("netlink dump interrupted"))
	tp.sync(t, proxier.NewState(testNode, threeServices()...), proxier.FullSync())
	if testutil.ToFloat64(m.ConntrackCleanupFailures) != 1 {
		t.Error("conntrack failure not counted")
	}
}

func TestMetrics(t *testing.T) {
	tp := newTestProxier(t)
	m := metrics.New()
	tp.metrics = m
	local := testService("default", "local", proxier.ProtocolTCP, "172.30.0.4", 80, 2) // endpoints on node-a
	remoteOnly := testService("default", "remote", proxier.ProtocolTCP, "172.30.0.5", 80, 1)
	remoteOnly.Endpoints[0].NodeName = "node-b"
	remoteOnly.InternalPolicy = proxier.PolicyLocal
	remoteOnly.NodePort = 30005
	remoteOnly.ExternalPolicy = proxier.PolicyLocal
	tp.sync(t, proxier.NewState(testNode, local, remoteOnly), proxier.FullSync())
	if got := testutil.ToFloat64(m.NoLocalEndpoints.WithLabelValues("internal")); got != 1 {
		t.Errorf("no local endpoints internal = %v, want 1", got)
	}
	if got := testutil.ToFloat64(m.NoLocalEndpoints.WithLabelValues("external")); got != 1 {
		t.Errorf("no local endpoints external = %v, want 1", got)
	}
	total := 0
	for _, c := range tp.applied.Table(TableNAT).Chains {
		total += len(c.Rules)
	}
	if got := testutil.ToFloat64(m.RulesTotal.WithLabelValues("nat")); got != float64(total) {
		t.Errorf("nat rules total = %v, want %d", got, total)
	}
	if got := testutil.ToFloat64(m.RulesLast.WithLabelValues("nat")); got != float64(total) {
		t.Errorf("nat rules written = %v, want %d on the first sync", got, total)
	}
	if got := testutil.ToFloat64(m.RulesWrittenBytes); got != float64(tp.LastSync().PayloadBytes) {
		t.Errorf("bytes written = %v", got)
	}
	// The endpoint becomes local: the gauge drops on a partial sync.
	fixed := *remoteOnly
	fixed.Endpoints = []proxier.Endpoint{remoteOnly.Endpoints[0]}
	fixed.Endpoints[0].Local = true
	tp.sync(t, proxier.NewState(testNode, local, &fixed), changed(&fixed))
	if got := testutil.ToFloat64(m.NoLocalEndpoints.WithLabelValues("internal")); got != 0 {
		t.Errorf("no local endpoints internal = %v after the fix, want 0", got)
	}
	if got := testutil.ToFloat64(m.RulesLast.WithLabelValues("filter")); got != 0 {
		t.Errorf("filter rules written by the partial sync = %v, want 0", got)
	}
}
