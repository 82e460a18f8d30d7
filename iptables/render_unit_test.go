package iptables

import (
	"slices"
	"strings"
	"testing"

	"github.com/kproxy/kproxy/proxier"
)

// TestRenderNamesMatchKubeProxy checks chain and affinity-list names against ones
// kube-proxy generates (taken from kube-proxy's own test expectations), so a node
// switched from kube-proxy rewrites the same chains.
func TestRenderNamesMatchKubeProxy(t *testing.T) {
	name := func(ns, svc, port string) string {
		return upstreamPortName(proxier.ServicePortName{ServiceName: proxier.ServiceName{Namespace: ns, Name: svc}, Port: port})
	}
	tcp := proxier.ProtocolTCP
	for _, c := range []struct{ got, want string }{
		{string(chainsFor(name("ns1", "svc1", "p80"), tcp).cluster), "KUBE-SVC-XPGD46QRK7WJZT7O"},
		{string(chainsFor(name("ns1", "svc1", "p80"), tcp).external), "KUBE-EXT-XPGD46QRK7WJZT7O"},
		{string(chainsFor(name("ns1", "svc1", "p80"), tcp).local), "KUBE-SVL-XPGD46QRK7WJZT7O"},
		{string(chainsFor(name("ns1", "svc1", "p80"), tcp).firewall), "KUBE-FW-XPGD46QRK7WJZT7O"},
		{string(chainsFor(name("ns2", "svc2", "p80"), tcp).cluster), "KUBE-SVC-GNZBNJ2PO5MGZ6GT"},
		{string(chainsFor(name("ns3", "svc3", "p80"), tcp).cluster), "KUBE-SVC-X27LE4BHSL4DOUIK"},
		{string(chainsFor(name("ns5", "svc5", "p80"), tcp).firewall), "KUBE-FW-NUKIZ6OKUXPJNT4C"},
		{affinityListName(name("ns1", "svc1", "p80"), tcp, "10.180.0.1:80"), "KUBE-SEP-SXIVWICOYRO3J4NJ"},
		{affinityListName(name("ns2", "svc2", "p80"), tcp, "10.180.0.2:80"), "KUBE-SEP-RS4RBKLTHTF2IUXJ"},
		{affinityListName(name("ns3", "svc3", "p80"), tcp, "10.180.0.3:80"), "KUBE-SEP-OYPFS5VJICHGATKP"},
		{affinityListName(name("ns4", "svc4", "p80"), tcp, "10.180.0.5:80"), "KUBE-SEP-C6EBXVWJJZMIWKLZ"},
		{name("ns", "svc", ""), "ns/svc"},
	} {
		if c.got != c.want {
			t.Errorf("got %s, want %s", c.got, c.want)
		}
	}
	if n := dispatchChainName(TableNAT, topServices, "10.96.0.0/16"); len(n) > 28 || !strings.HasPrefix(string(n), dispatchChainPrefix) {
		t.Errorf("dispatch chain name %q", n)
	}
}

// TestRenderProbabilityText pins the saved form of kube-proxy's probabilities
// (verified against iptables-save by TestRenderCanonicalInKernel).
func TestRenderProbabilityText(t *testing.T) {
	for n, want := range map[int]string{2: "0.50000000000", 3: "0.33333333349", 7: "0.14285714272", 10: "0.10000000009", 1000: "0.00100000016"} {
		if got := probabilityText(n); got != want {
			t.Errorf("probability 1/%d = %s, want %s", n, got, want)
		}
	}
	var c probabilityCache
	if c.get(5) != probabilityText(5) || c.get(3) != probabilityText(3) {
		t.Error("cache disagrees with probabilityText")
	}
}

func TestRenderSaveStringQuoting(t *testing.T) {
	for in, want := range map[string]string{
		"x":            "x",
		"a_b-9":        "a_b-9",
		"":             `""`,
		"ns/svc:p80":   `"ns/svc:p80"`,
		`a"b\c'd`:      `"a\"b\\c\'d"`,
		"two words ok": `"two words ok"`,
	} {
		if got := string(appendSaveString(nil, in)); got != want {
			t.Errorf("quote(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestDispatchKeys(t *testing.T) {
	k := addrKey(addr("10.96.3.250"))
	if got := keyIPv4.describe(k, 6); got != "10.96.0.0/24" && got != "10.96.3.0/24" {
		t.Errorf("describe /24 = %s", got)
	}
	if got := keyIPv4.describe(k, 7); got != "10.96.3.240/28" {
		t.Errorf("describe /28 = %s", got)
	}
	if keyIPv4.addr(k) != addr("10.96.3.250") {
		t.Errorf("address round trip: %s", keyIPv4.addr(k))
	}
	k6 := addrKey(addr("fd00:96::abcd"))
	if keyIPv6.addr(k6) != addr("fd00:96::abcd") || k6.nibble(31) != 0xd || k6.nibble(0) != 0xf {
		t.Errorf("IPv6 key %x", k6)
	}
	if got := keyIPv6.describe(k6, 20); got != "fd00:96::/80" {
		t.Errorf("describe IPv6 = %s", got)
	}
	pk := portKey(proxier.ProtocolUDP, 30080)
	if p, lo, hi := portRange(pk, 3); p != proxier.ProtocolUDP || lo != 29952 || hi != 30207 {
		t.Errorf("portRange = %v %d %d", p, lo, hi)
	}
	var b ruleBuilder
	if got := keyPort.branchRule(&b, pk, 1, "X"); got != "-p udp -j X" {
		t.Errorf("protocol branch = %q", got)
	}
	if got := keyPort.branchRule(&b, pk, 4, "X"); got != "-p udp -m udp --dport 30080:30095 -j X" {
		t.Errorf("port branch = %q", got)
	}
	if a, b := addrKey(addr("10.0.0.1")), addrKey(addr("10.0.0.2")); a.compare(b) >= 0 || commonNibbles(a, b, 8) != 7 {
		t.Error("key order")
	}
}

func TestRenderMergeChains(t *testing.T) {
	mk := func(names ...string) []*ChainRules {
		var out []*ChainRules
		for _, n := range names {
			out = append(out, &ChainRules{Name: Chain(n)})
		}
		return out
	}
	prev := mk("A", "C", "E", "G")
	up := mk("B", "E", "H")
	got := mergeChains(prev, up, []Chain{"C", "E", "Z"})
	var names []string
	for _, c := range got {
		names = append(names, string(c.Name))
	}
	if !slices.Equal(names, []string{"A", "B", "E", "G", "H"}) || got[2] != up[1] {
		t.Errorf("merge = %v", names)
	}
	if prev[1].Name != "C" {
		t.Error("merge modified its input")
	}
}

func TestRenderOptionsValidate(t *testing.T) {
	ok := []RenderOptions{
		{},
		{Family: IPv6, MasqueradeBit: 31, LocalDetector: LocalDetector{Mode: LocalModeNodeCIDR}},
		{LocalDetector: clusterCIDRs},
		{LocalDetector: LocalDetector{Mode: LocalModeInterfaceNamePrefix, Interface: "veth"}},
	}
	for _, o := range ok {
		if err := o.Validate(); err != nil {
			t.Errorf("%+v: %v", o, err)
		}
	}
	bad := []RenderOptions{
		{Family: 7},
		{MasqueradeBit: 32},
		{DispatchLeafSize: -1},
		{LocalDetector: LocalDetector{Mode: "Magic"}},
		{LocalDetector: LocalDetector{Mode: LocalModeClusterCIDR}},
		{Family: IPv6, LocalDetector: LocalDetector{Mode: LocalModeClusterCIDR, CIDRs: clusterCIDRs.CIDRs[:1]}},
		{LocalDetector: LocalDetector{Mode: LocalModeBridgeInterface}},
		{LocalDetector: LocalDetector{Mode: LocalModeInterfaceNamePrefix, Interface: "a-very-long-nam"}},
	}
	for _, o := range bad {
		if err := o.Validate(); err == nil {
			t.Errorf("%+v: no error", o)
		}
	}
	// Rendering never fails: invalid values fall back to defaults.
	rs := Render(proxier.NewState(nodeA), RenderOptions{MasqueradeBit: 99, LocalDetector: LocalDetector{Mode: "Magic"}})
	if got := rs.Table(TableNAT).Chain(topMarkMasq).Rules[0]; got != "-j MARK --set-xmark 0x4000/0x4000" {
		t.Errorf("mark rule with an invalid bit: %s", got)
	}
}

// TestRenderDeterministic renders the same state twice, and from a state built in
// another order.
func TestRenderDeterministic(t *testing.T) {
	ports := scenario()
	a := Render(proxier.NewState(nodeA, ports...), RenderOptions{LocalDetector: clusterCIDRs, DispatchLeafSize: 2})
	slices.Reverse(ports)
	b := Render(proxier.NewState(nodeA, ports...), RenderOptions{LocalDetector: clusterCIDRs, DispatchLeafSize: 2})
	if d := diffRulesets(a, b); d != "" {
		t.Error(d)
	}
	if string(a.Payload()) != string(b.Payload()) {
		t.Error("payloads differ")
	}
}
