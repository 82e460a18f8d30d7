package ipvs

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/testr"

	"github.com/kproxy/kproxy/iptables"
	"github.com/kproxy/kproxy/proxier"
	"github.com/kproxy/kproxy/test/netns"
)

// modeSwitch is one node's kernel, shared by an iptables-mode and an IPVS-mode proxier.
type modeSwitch struct {
	ipt  *iptables.Fake
	sets *iptables.FakeIPSets
	k    *Fake
}

func newModeSwitch() *modeSwitch {
	k := &Fake{}
	k.SetHostAddresses(hostAddrs()...)
	return &modeSwitch{ipt: iptables.NewFake(iptables.FakeOptions{}), sets: iptables.NewFakeIPSets(), k: k}
}

// state is one NodePort Service with a local and a remote endpoint.
func (m *modeSwitch) state() *proxier.State {
	return proxier.NewState(testNode(), svcPort("web", 80, "10.96.0.10", nodePort(30080), eps("10.244.1.5:8080@local", "10.244.2.5:8080")))
}

// syncIPTables runs an iptables-mode proxier on the node.
func (m *modeSwitch) syncIPTables(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	p, err := iptables.New(ctx, iptables.Options{Family: iptables.IPv4, Kernel: m.ipt, IPSets: m.sets, Logger: logr.Discard()})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Sync(ctx, m.state(), proxier.FullSync()); err != nil {
		t.Fatalf("iptables-mode sync: %v", err)
	}
}

// syncIPVS runs an IPVS-mode proxier on the node.
func (m *modeSwitch) syncIPVS(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	p, err := New(ctx, Options{Kernel: m.k, Glue: m.ipt, Logger: logr.Discard(), DrainCheckInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Sync(ctx, m.state(), proxier.FullSync()); err != nil {
		t.Fatalf("IPVS-mode sync: %v", err)
	}
}

// iptablesModeChains lists the chains only iptables mode has.
func (m *modeSwitch) iptablesModeChains() []string {
	var out []string
	for _, table := range []iptables.Table{iptables.TableNAT, iptables.TableFilter, iptables.TableMangle} {
		for _, c := range m.ipt.Chains(iptables.IPv4, table) {
			if iptables.OwnedChain(table, c) && !glueChain(table, c) {
				out = append(out, string(table)+"/"+string(c))
			}
		}
	}
	return out
}

// jumpsTo lists the rules of a built-in chain that jump to target.
func (m *modeSwitch) jumpsTo(table iptables.Table, from, target iptables.Chain) []string {
	rules, _ := m.ipt.Rules(iptables.IPv4, table, from)
	var out []string
	for _, r := range rules {
		if ruleTarget(r) == target {
			out = append(out, r)
		}
	}
	return out
}

// Starting in IPVS mode on a node that ran iptables mode removes that mode's chains
// and jumps, keeps the chains the glue shares, and the IPVS sync then succeeds.
func TestRemoveIPTablesModeRules(t *testing.T) {
	ctx := context.Background()
	m := newModeSwitch()
	m.syncIPTables(t)
	before := m.iptablesModeChains()
	for _, want := range []string{"filter/KUBE-SERVICES", "filter/KUBE-NODEPORTS", "nat/KUBE-NODEPORTS", "nat/KUBE-PROXY-CANARY"} {
		if !slices.Contains(before, want) {
			t.Fatalf("iptables mode did not create %s: %v", want, before)
		}
	}
	if !slices.ContainsFunc(before, func(c string) bool {
		return strings.HasPrefix(c, "nat/KUBE-SVC-") || strings.HasPrefix(c, "nat/KUBE-DST-")
	}) {
		t.Fatalf("iptables mode created no per-service chains: %v", before)
	}
	// A foreign chain jumping into iptables mode's chains keeps one of them alive.
	i := slices.IndexFunc(before, func(c string) bool { return strings.HasPrefix(c, "nat/KUBE-SVC-") })
	if i < 0 {
		t.Fatalf("no KUBE-SVC- chain: %v", before)
	}
	svcChain := strings.TrimPrefix(before[i], "nat/")
	if rules, _ := m.ipt.Rules(iptables.IPv4, iptables.TableNAT, iptables.Chain(svcChain)); len(rules) == 0 {
		t.Fatalf("%s is empty", svcChain)
	}
	foreign := "*nat\n:FOREIGN - [0:0]\n-A FOREIGN -j " + svcChain + "\nCOMMIT\n"
	if err := m.ipt.Restore(ctx, iptables.IPv4, []byte(foreign), iptables.RestoreOptions{}); err != nil {
		t.Fatal(err)
	}

	removed, err := removeIPTablesModeRules(ctx, m.ipt, proxier.IPv4)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(before)
	slices.Sort(removed)
	if !slices.Equal(removed, before) {
		t.Errorf("removed %v, want %v", removed, before)
	}
	if left := m.iptablesModeChains(); !slices.Equal(left, []string{"nat/" + svcChain}) {
		t.Errorf("left %v, want only the foreign-referenced nat/%s", left, svcChain)
	}
	if rules, _ := m.ipt.Rules(iptables.IPv4, iptables.TableNAT, iptables.Chain(svcChain)); len(rules) != 0 {
		t.Errorf("the kept chain must be empty: %v", rules)
	}
	// Shared chains stay, with their jumps; the ones that led to removed chains are empty.
	for _, c := range []iptables.Chain{"KUBE-SERVICES", "KUBE-POSTROUTING", "KUBE-MARK-MASQ"} {
		if _, ok := m.ipt.Rules(iptables.IPv4, iptables.TableNAT, c); !ok {
			t.Errorf("nat %s was removed; the glue shares it", c)
		}
	}
	if rules, _ := m.ipt.Rules(iptables.IPv4, iptables.TableNAT, "KUBE-SERVICES"); len(rules) != 0 {
		t.Errorf("nat KUBE-SERVICES still holds iptables-mode rules: %v", rules)
	}
	for _, from := range []iptables.Chain{iptables.ChainInput, iptables.ChainForward, iptables.ChainOutput} {
		if j := m.jumpsTo(iptables.TableFilter, from, "KUBE-SERVICES"); len(j) > 0 {
			t.Errorf("filter %s still jumps to iptables mode's KUBE-SERVICES: %v", from, j)
		}
	}

	// The IPVS proxier now owns the node, with its own jumps only, once each; a restart
	// finds nothing to remove.
	m.syncIPVS(t)
	for _, j := range Jumps() {
		if n := len(m.jumpsTo(j.Table, j.From, j.To)); n != 1 {
			t.Errorf("%s %s has %d jumps to %s, want 1", j.Table, j.From, n, j.To)
		}
	}
	m.ipt.ResetStats()
	if removed, err := removeIPTablesModeRules(ctx, m.ipt, proxier.IPv4); err != nil || len(removed) > 0 {
		t.Errorf("restart in IPVS mode: removed %v, %v", removed, err)
	}
	if n := m.ipt.Stats().RestoreCalls; n != 0 {
		t.Errorf("restart in IPVS mode wrote %d times, want 0", n)
	}
}

// A restart in IPVS mode without any iptables-mode leftover writes nothing.
func TestRemoveIPTablesModeRulesNothingToDo(t *testing.T) {
	ctx := context.Background()
	m := newModeSwitch()
	m.syncIPVS(t)
	m.ipt.ResetStats()
	removed, err := removeIPTablesModeRules(ctx, m.ipt, proxier.IPv4)
	if err != nil || len(removed) > 0 {
		t.Fatalf("removed %v, %v", removed, err)
	}
	if n := m.ipt.Stats().RestoreCalls; n != 0 {
		t.Errorf("wrote %d times, want 0", n)
	}
}

// Starting in iptables mode cleans up after IPVS mode, but leaves a node that only ran
// iptables mode (whose chains share names with the glue) alone.
func TestIPVSLeftovers(t *testing.T) {
	ctx := context.Background()
	m := newModeSwitch()
	if reason, err := ipvsLeftovers(ctx, m.k, m.ipt, proxier.IPv4); err != nil || reason != "" {
		t.Fatalf("empty node: %q, %v", reason, err)
	}

	m.syncIPTables(t)
	// iptables mode's hairpin set has the IPVS mode's name.
	if err := m.k.CreateSet(ctx, Sets(proxier.IPv4)[setLoopBack]); err != nil {
		t.Fatal(err)
	}
	if reason, err := ipvsLeftovers(ctx, m.k, m.ipt, proxier.IPv4); err != nil || reason != "" {
		t.Fatalf("iptables-mode node: %q, %v", reason, err)
	}
	if err := m.k.DestroySet(ctx, setName(proxier.IPv4, setLoopBack)); err != nil {
		t.Fatal(err)
	}

	m = newModeSwitch()
	m.syncIPVS(t)
	reason, err := ipvsLeftovers(ctx, m.k, m.ipt, proxier.IPv4)
	if err != nil || reason == "" {
		t.Fatalf("IPVS-mode node: %q, %v", reason, err)
	}
	// Each kind of leftover is found on its own.
	if err := m.k.DeleteDevice(ctx); err != nil {
		t.Fatal(err)
	}
	if reason, _ := ipvsLeftovers(ctx, m.k, m.ipt, proxier.IPv4); !strings.Contains(reason, "ipset KUBE-") {
		t.Errorf("without kube-ipvs0: %q", reason)
	}
	if reason, _ := ipvsLeftovers(ctx, m.k, nil, proxier.IPv6); reason != "" {
		t.Errorf("IPv6 of an IPv4-only IPVS node: %q", reason)
	}

	// Cleaning up removes everything, then iptables mode takes over.
	if err := cleanupFamily(ctx, m.k, m.ipt, PlanOptions{Family: proxier.IPv4}, logr.Discard()); err != nil {
		t.Fatal(err)
	}
	if reason, err := ipvsLeftovers(ctx, m.k, m.ipt, proxier.IPv4); err != nil || reason != "" {
		t.Fatalf("after cleanup: %q, %v", reason, err)
	}
	if n := len(m.k.Snapshot(proxier.IPv4).Servers); n != 0 {
		t.Errorf("%d virtual servers left", n)
	}
	m.syncIPTables(t)
}

// A glue chain alone is a leftover too.
func TestIPVSLeftoversGlueOnly(t *testing.T) {
	ctx := context.Background()
	m := newModeSwitch()
	if err := m.ipt.Restore(ctx, iptables.IPv4, []byte("*filter\n:KUBE-IPVS-FILTER - [0:0]\nCOMMIT\n"), iptables.RestoreOptions{}); err != nil {
		t.Fatal(err)
	}
	reason, err := ipvsLeftovers(ctx, m.k, m.ipt, proxier.IPv4)
	if err != nil || reason != "IPv4 chain filter/KUBE-IPVS-FILTER exists" {
		t.Errorf("%q, %v", reason, err)
	}
}

// On a kernel without IPVS, cleanup removes the device, sets and glue and does not
// fail for the virtual servers it cannot list.
func TestCleanupWithoutIPVS(t *testing.T) {
	ctx := context.Background()
	m := newModeSwitch()
	m.syncIPVS(t)
	k := withoutIPVS{m.k}
	if err := cleanupFamily(ctx, k, m.ipt, PlanOptions{Family: proxier.IPv4}, logr.Discard()); err != nil {
		t.Fatal(err)
	}
	if reason, err := ipvsLeftovers(ctx, k, m.ipt, proxier.IPv4); err != nil || reason != "" {
		t.Errorf("after cleanup: %q, %v", reason, err)
	}
	if err := k.AddVirtualServer(ctx, &VirtualServer{}); !errors.Is(err, ErrUnavailable) {
		t.Errorf("AddVirtualServer without IPVS: %v", err)
	}
	if _, err := k.RealServers(ctx, VSKey{}); !errors.Is(err, ErrNotFound) {
		t.Errorf("RealServers without IPVS: %v", err)
	}
}

func TestUnavailableError(t *testing.T) {
	err := error(&unavailableError{cause: errors.New("no such family")})
	if !errors.Is(err, ErrUnavailable) || err.Error() != "IPVS is not available in this kernel: no such family" {
		t.Errorf("%v", err)
	}
}

func TestRuleTarget(t *testing.T) {
	for rule, want := range map[string]iptables.Chain{
		`-m comment --comment "kubernetes service portals" -j KUBE-SERVICES`: "KUBE-SERVICES",
		`-p tcp -m tcp --dport 80 -g KUBE-DST-ABC`:                           "KUBE-DST-ABC",
		`-j MASQUERADE --random-fully`:                                       "MASQUERADE",
		`-m mark --mark 0x4000/0x4000`:                                       "",
	} {
		if got := ruleTarget(rule); got != want {
			t.Errorf("ruleTarget(%q) = %q, want %q", rule, got, want)
		}
	}
}

// On a kernel without IPVS (the CI host), NewNodeProxier fails clearly and the
// cleanups succeed with nothing to do. In a fresh namespace, so the host is untouched.
func TestNodeWithoutIPVS(t *testing.T) {
	if ipvsInKernel() {
		t.Skip("this kernel has IPVS; the VM tests cover NewNodeProxier")
	}
	netns.RequireRoot(t)
	ctx := context.Background()
	ns := netns.NewNS(t, "no-ipvs")
	opts := NodeOptions{Netns: ns.Path(), Logger: testr.New(t)}
	_, err := NewNodeProxier(ctx, opts)
	if !errors.Is(err, ErrUnavailable) || !strings.HasPrefix(err.Error(), "IPVS is not available in this kernel: ") {
		t.Errorf("NewNodeProxier: %v, want ErrUnavailable", err)
	}
	if err := CleanupNode(ctx, opts); err != nil {
		t.Errorf("CleanupNode: %v", err)
	}
	if cleaned, err := CleanupLeftovers(ctx, opts); cleaned || err != nil {
		t.Errorf("CleanupLeftovers: %v, %v", cleaned, err)
	}
	if ipvsInKernel() {
		t.Error("the cleanups loaded ip_vs")
	}
}

// --cleanup runs the IPVS cleanup first, then iptables mode's: whichever mode ran, the
// node ends up without a KUBE- chain and neither cleanup fails.
func TestCleanupBothModes(t *testing.T) {
	ctx := context.Background()
	for _, mode := range []string{"iptables", "ipvs"} {
		t.Run("after "+mode+" mode", func(t *testing.T) {
			m := newModeSwitch()
			if mode == "ipvs" {
				m.syncIPVS(t)
			} else {
				m.syncIPTables(t)
			}
			if err := cleanupFamily(ctx, m.k, m.ipt, PlanOptions{Family: proxier.IPv4}, logr.Discard()); err != nil {
				t.Fatalf("IPVS cleanup: %v", err)
			}
			p, err := iptables.New(ctx, iptables.Options{Family: iptables.IPv4, Kernel: m.ipt, IPSets: m.sets, Logger: logr.Discard()})
			if err != nil {
				t.Fatal(err)
			}
			if err := p.Cleanup(ctx); err != nil {
				t.Fatalf("iptables cleanup: %v", err)
			}
			for _, table := range []iptables.Table{iptables.TableNAT, iptables.TableFilter, iptables.TableMangle} {
				for _, c := range m.ipt.Chains(iptables.IPv4, table) {
					if strings.HasPrefix(string(c), "KUBE-") {
						t.Errorf("%s/%s left", table, c)
					}
				}
			}
			if reason, err := ipvsLeftovers(ctx, m.k, m.ipt, proxier.IPv4); reason != "" || err != nil {
				t.Errorf("IPVS leftovers: %q, %v", reason, err)
			}
		})
	}
}

// The glue's jumps are removed whatever their matches: kube-proxy and iptables mode
// write some of them differently.
func TestRemoveGlueForeignJumpVariants(t *testing.T) {
	ctx := context.Background()
	m := newModeSwitch()
	m.syncIPVS(t)
	variant := "*filter\n-I INPUT 1 -m conntrack --ctstate NEW -m comment --comment \"kubernetes load balancer firewall\" -j KUBE-PROXY-FIREWALL\nCOMMIT\n"
	if err := m.ipt.Restore(ctx, iptables.IPv4, []byte(variant), iptables.RestoreOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := removeGlue(ctx, m.ipt, proxier.IPv4); err != nil {
		t.Fatal(err)
	}
	for _, table := range []iptables.Table{iptables.TableNAT, iptables.TableFilter} {
		for _, c := range m.ipt.Chains(iptables.IPv4, table) {
			if glueChain(table, c) {
				t.Errorf("%s/%s left", table, c)
			}
		}
	}
	m.ipt.ResetStats()
	if err := removeGlue(ctx, m.ipt, proxier.IPv4); err != nil || m.ipt.Stats().RestoreCalls != 0 {
		t.Errorf("nothing to remove: %v, %d restores", err, m.ipt.Stats().RestoreCalls)
	}
}
