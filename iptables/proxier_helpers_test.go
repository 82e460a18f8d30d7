package iptables

import (
	"context"
	"encoding/base32"
	"fmt"
	"hash/fnv"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/kproxy/kproxy/proxier"
	"github.com/kproxy/kproxy/proxier/conntrack"
)

// testRenderer renders a kube-proxy-shaped ruleset from a State with hand-written
// canonical rules, standing in for the real renderer so the sync machinery can be
// tested on its own. Like the real one it reuses a service's chains (by pointer) when
// the service did not change, and emits one ipset listing every endpoint.
type testRenderer struct {
	cache map[proxier.ServicePortName]*testSvcChains
	// noSets drops the ipset from the output.
	noSets bool
	// extraJump adds one more bootstrap jump.
	extraJump *Jump
	renders   int
}

type testSvcChains struct {
	sp     *proxier.ServicePort
	nat    []*ChainRules // KUBE-SVC + KUBE-SEP chains
	natSvc []string      // rules in nat KUBE-SERVICES
	filter []string      // rules in filter KUBE-SERVICES
}

func newTestRenderer() *testRenderer {
	return &testRenderer{cache: map[proxier.ServicePortName]*testSvcChains{}}
}

func chainHash(prefix, s string) Chain {
	h := fnv.New64a()
	h.Write([]byte(s))
	enc := base32.StdEncoding.EncodeToString(h.Sum(nil))
	return Chain(prefix + enc[:16])
}

func svcChain(sp *proxier.ServicePort) Chain { return chainHash("KUBE-SVC-", sp.Name.String()) }

func sepChain(sp *proxier.ServicePort, ep *proxier.Endpoint) Chain {
	return chainHash("KUBE-SEP-", sp.Name.String()+ep.String())
}

func (r *testRenderer) renderService(sp *proxier.ServicePort) *testSvcChains {
	out := &testSvcChains{sp: sp}
	proto := sp.Name.Protocol.String()
	ip := sp.ClusterIPs[0]
	name := sp.Name.String()
	var eps []*proxier.Endpoint
	for i := range sp.Endpoints {
		if sp.Endpoints[i].Ready {
			eps = append(eps, &sp.Endpoints[i])
		}
	}
	if len(eps) == 0 {
		out.filter = append(out.filter, fmt.Sprintf(`-d %s/32 -p %s -m comment --comment "%s has no endpoints" -m %s --dport %d -j REJECT --reject-with icmp-port-unreachable`,
			ip, proto, name, proto, sp.Port))
		return out
	}
	svc := &ChainRules{Name: svcChain(sp)}
	out.natSvc = append(out.natSvc, fmt.Sprintf(`-d %s/32 -p %s -m comment --comment "%s cluster IP" -m %s --dport %d -j %s`,
		ip, proto, name, proto, sp.Port, svc.Name))
	for i, ep := range eps {
		sep := &ChainRules{Name: sepChain(sp, ep)}
		sep.Rules = []string{
			fmt.Sprintf(`-s %s/32 -m comment --comment "%s" -j KUBE-MARK-MASQ`, ep.Addr, name),
			fmt.Sprintf(`-p %s -m comment --comment "%s" -m %s -j DNAT --to-destination %s`, proto, name, proto, ep),
		}
		rule := fmt.Sprintf(`-m comment --comment "%s -> %s" -j %s`, name, ep, sep.Name)
		if n := len(eps) - i; n > 1 {
			rule = fmt.Sprintf(`-m comment --comment "%s -> %s" -m statistic --mode random --probability %.11f -j %s`, name, ep, 1/float64(n), sep.Name)
		}
		svc.Rules = append(svc.Rules, rule)
		out.nat = append(out.nat, sep)
	}
	out.nat = append(out.nat, svc)
	return out
}

func (r *testRenderer) Render(s *proxier.State, c proxier.ChangeSet) *Ruleset {
	r.renders++
	natSvc := &ChainRules{Name: "KUBE-SERVICES"}
	filterSvc := &ChainRules{Name: "KUBE-SERVICES"}
	nat := []*ChainRules{
		{Name: "KUBE-MARK-MASQ", Rules: []string{"-j MARK --set-xmark 0x4000/0x4000"}},
		{Name: "KUBE-POSTROUTING", Rules: []string{
			"-m mark ! --mark 0x4000/0x4000 -j RETURN",
			"-j MARK --set-xmark 0x4000/0x0",
			`-m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE`,
		}},
		{Name: canaryChain},
		natSvc,
	}
	filter := []*ChainRules{{Name: canaryChain}, filterSvc}
	set := &IPSet{Name: "KUBE-LOOP-BACK", Type: "hash:ip,port,ip", Family: IPv4}
	seen := map[proxier.ServicePortName]bool{}
	for _, sp := range s.ServicePorts() {
		seen[sp.Name] = true
		sc := r.cache[sp.Name]
		if sc == nil || sc.sp != sp {
			sc = r.renderService(sp)
			r.cache[sp.Name] = sc
		}
		natSvc.Rules = append(natSvc.Rules, sc.natSvc...)
		filterSvc.Rules = append(filterSvc.Rules, sc.filter...)
		nat = append(nat, sc.nat...)
		for _, ep := range sp.Endpoints {
			set.Entries = append(set.Entries, fmt.Sprintf("%s,%s:%d,%s", ep.Addr, sp.Name.Protocol, ep.Port, ep.Addr))
		}
	}
	for name := range r.cache {
		if !seen[name] {
			delete(r.cache, name)
		}
	}
	sortChains(nat)
	sortChains(filter)
	slices.Sort(set.Entries)
	rs := &Ruleset{
		Family: IPv4,
		Tables: []*TableRules{
			{Table: TableNAT, Chains: nat},
			{Table: TableFilter, Chains: filter},
			{Table: TableMangle, Chains: []*ChainRules{{Name: canaryChain}}},
		},
		Jumps: testJumps(),
	}
	if r.extraJump != nil {
		rs.Jumps = append(rs.Jumps, *r.extraJump)
	}
	if !r.noSets {
		rs.Sets = []*IPSet{set}
	}
	return rs
}

func testJumps() []Jump {
	return []Jump{
		{Table: TableNAT, From: ChainPrerouting, To: "KUBE-SERVICES", Comment: "kubernetes service portals"},
		{Table: TableNAT, From: ChainOutput, To: "KUBE-SERVICES", Comment: "kubernetes service portals"},
		{Table: TableNAT, From: ChainPostrouting, To: "KUBE-POSTROUTING", Comment: "kubernetes postrouting rules"},
		{Table: TableFilter, From: ChainOutput, To: "KUBE-SERVICES", Comment: "kubernetes service portals",
			Match: []string{"-m", "conntrack", "--ctstate", "NEW"}},
	}
}

func sortChains(cs []*ChainRules) {
	slices.SortFunc(cs, func(a, b *ChainRules) int { return strings.Compare(string(a.Name), string(b.Name)) })
}

// testService returns a service port with n ready endpoints.
func testService(ns, name string, proto proxier.Protocol, ip string, port uint16, n int) *proxier.ServicePort {
	sp := &proxier.ServicePort{
		Name:       proxier.ServicePortName{ServiceName: proxier.ServiceName{Namespace: ns, Name: name}, Protocol: proto},
		ClusterIPs: []netip.Addr{netip.MustParseAddr(ip)},
		Port:       port,
	}
	base := netip.MustParseAddr(ip).As4()
	for i := 0; i < n; i++ {
		addr := netip.AddrFrom4([4]byte{10, base[2], base[3], byte(i + 1)})
		sp.Endpoints = append(sp.Endpoints, proxier.Endpoint{Addr: addr, Port: 8080, Ready: true, Serving: true, NodeName: "node-a"})
	}
	return sp
}

// withEndpoints returns a copy of sp with the given endpoint addresses (port 8080).
func withEndpoints(sp *proxier.ServicePort, addrs ...string) *proxier.ServicePort {
	c := *sp
	c.Endpoints = nil
	for _, a := range addrs {
		c.Endpoints = append(c.Endpoints, proxier.Endpoint{Addr: netip.MustParseAddr(a), Port: 8080, Ready: true, Serving: true})
	}
	return &c
}

// testNode is the node every test state uses.
var testNode = proxier.Node{Name: "node-a", Addresses: []netip.Addr{netip.MustParseAddr("192.168.0.10")}}

// changed returns a partial change set naming services.
func changed(sps ...*proxier.ServicePort) proxier.ChangeSet {
	c := proxier.ChangeSet{Services: map[proxier.ServicePortName]struct{}{}}
	for _, sp := range sps {
		c.Services[sp.Name] = struct{}{}
	}
	return c
}

// testProxier wires a Proxier to a Fake kernel, fake ipsets and a fake cleaner.
type testProxier struct {
	*Proxier
	kernel *Fake
	sets   *FakeIPSets
	ct     *conntrack.Fake
	r      *testRenderer
}

func newTestProxier(t testing.TB) *testProxier {
	t.Helper()
	tp := &testProxier{kernel: NewFake(FakeOptions{}), sets: NewFakeIPSets(), ct: conntrack.NewFake(), r: newTestRenderer()}
	p, err := newProxier(Options{Family: IPv4, Kernel: tp.kernel, IPSets: tp.sets, Conntrack: tp.ct}, tp.r)
	if err != nil {
		t.Fatal(err)
	}
	tp.Proxier = p
	return tp
}

func (tp *testProxier) sync(t testing.TB, s *proxier.State, c proxier.ChangeSet) SyncStats {
	t.Helper()
	if err := tp.Sync(context.Background(), s, c); err != nil {
		t.Fatalf("sync: %v", err)
	}
	return tp.LastSync()
}

// assertKernelMatches checks that every desired chain is in the fake kernel with
// exactly its rules and no other owned chain exists.
func assertKernelMatches(t testing.TB, k *Fake, rs *Ruleset) {
	t.Helper()
	text, err := k.Save(context.Background(), IPv4, syncTables...)
	if err != nil {
		t.Fatal(err)
	}
	saved, err := ParseSaved(text)
	if err != nil {
		t.Fatal(err)
	}
	pl := planFull(rs, saved)
	if pl.needsRestore() {
		var b strings.Builder
		for _, tp := range pl.tables {
			fmt.Fprintf(&b, "%s: write %d remove %v flush %v unjump %d insert %d; ", tp.table, len(tp.write), tp.remove, tp.flushOnly, len(tp.unjump), len(tp.insert))
		}
		t.Fatalf("kernel differs from the ruleset: %s", b.String())
	}
}
