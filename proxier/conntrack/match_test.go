package conntrack

import (
	"context"
	"net/netip"
	"testing"

	"github.com/kproxy/kproxy/proxier"
)

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

func TestMatcher(t *testing.T) {
	m := NewMatcher([]Target{
		{Protocol: proxier.ProtocolUDP, IP: netip.MustParseAddr("172.30.0.10"), Port: 53,
			Endpoints: []netip.AddrPort{ap("10.0.0.1:5353"), ap("10.0.0.2:5353")}},
		{Protocol: proxier.ProtocolUDP, Port: 30053, Endpoints: []netip.AddrPort{ap("10.0.0.1:5353")}},
		{Protocol: proxier.ProtocolUDP, IP: netip.MustParseAddr("172.30.0.11"), Port: 53}, // no endpoints
		{Protocol: proxier.ProtocolSCTP, IP: netip.MustParseAddr("172.30.0.12"), Port: 9, Endpoints: []netip.AddrPort{ap("10.0.0.3:9")}},
		{Protocol: proxier.ProtocolTCP, IP: netip.MustParseAddr("172.30.0.13"), Port: 80}, // ignored
		{Protocol: proxier.ProtocolUDP, IP: netip.MustParseAddr("fd00::10"), Port: 53, Endpoints: []netip.AddrPort{ap("[fd00::1]:5353")}},
	})
	for _, c := range []struct {
		name  string
		flow  Flow
		stale bool
	}{
		{"served by an endpoint", Flow{17, ap("172.30.0.10:53"), ap("10.0.0.1:5353")}, false},
		{"endpoint gone", Flow{17, ap("172.30.0.10:53"), ap("10.0.0.9:5353")}, true},
		{"endpoint moved port", Flow{17, ap("172.30.0.10:53"), ap("10.0.0.1:53")}, true},
		{"never translated", Flow{17, ap("172.30.0.10:53"), ap("172.30.0.10:53")}, true},
		{"other port of the service IP", Flow{17, ap("172.30.0.10:54"), ap("172.30.0.10:54")}, false},
		{"service without endpoints", Flow{17, ap("172.30.0.11:53"), ap("10.0.0.1:5353")}, true},
		{"tcp is never stale", Flow{6, ap("172.30.0.13:80"), ap("10.0.0.9:80")}, false},
		{"node port to a gone endpoint", Flow{17, ap("192.168.0.10:30053"), ap("10.0.0.2:5353")}, true},
		{"node port served", Flow{17, ap("192.168.0.10:30053"), ap("10.0.0.1:5353")}, false},
		{"untranslated traffic on a node port number", Flow{17, ap("198.51.100.7:30053"), ap("198.51.100.7:30053")}, false},
		{"sctp without ports, endpoint kept", Flow{132, netip.AddrPortFrom(netip.MustParseAddr("172.30.0.12"), 0), netip.AddrPortFrom(netip.MustParseAddr("10.0.0.3"), 0)}, false},
		{"sctp without ports, endpoint gone", Flow{132, netip.AddrPortFrom(netip.MustParseAddr("172.30.0.12"), 0), netip.AddrPortFrom(netip.MustParseAddr("10.0.0.4"), 0)}, true},
		{"ipv6", Flow{17, ap("[fd00::10]:53"), ap("[fd00::2]:5353")}, true},
		{"ipv4-mapped reply", Flow{17, ap("172.30.0.10:53"), ap("[::ffff:10.0.0.2]:5353")}, false},
		{"unrelated", Flow{17, ap("8.8.8.8:53"), ap("8.8.8.8:53")}, false},
	} {
		if got := m.Stale(c.flow); got != c.stale {
			t.Errorf("%s: Stale(%+v) = %v, want %v", c.name, c.flow, got, c.stale)
		}
	}
	if NewMatcher([]Target{{Protocol: proxier.ProtocolTCP, IP: netip.MustParseAddr("1.2.3.4"), Port: 1}}).Empty() != true {
		t.Error("a TCP-only matcher should be empty")
	}
}

func TestTargetsFor(t *testing.T) {
	sp := &proxier.ServicePort{
		Name:        proxier.ServicePortName{ServiceName: proxier.ServiceName{Namespace: "ns", Name: "dns"}, Protocol: proxier.ProtocolUDP},
		ClusterIPs:  []netip.Addr{netip.MustParseAddr("172.30.0.10"), netip.MustParseAddr("fd00::10")},
		Port:        53,
		NodePort:    30053,
		ExternalIPs: []netip.Addr{netip.MustParseAddr("203.0.113.1"), netip.MustParseAddr("2001:db8::1")},
		LoadBalancerIngress: []proxier.LoadBalancerIngress{
			{IP: netip.MustParseAddr("203.0.113.2"), Mode: proxier.IPModeVIP},
			{IP: netip.MustParseAddr("203.0.113.3"), Mode: proxier.IPModeProxy},
		},
		Endpoints: []proxier.Endpoint{
			{Addr: netip.MustParseAddr("10.0.0.1"), Port: 5353, Ready: true, Serving: true},
			{Addr: netip.MustParseAddr("10.0.0.2"), Port: 5353, Serving: true, Terminating: true},
			{Addr: netip.MustParseAddr("10.0.0.3"), Port: 5353},
			{Addr: netip.MustParseAddr("fd00::1"), Port: 5353, Ready: true, Serving: true},
		},
	}
	ts := TargetsFor(sp, proxier.IPv4)
	if len(ts) != 4 { // cluster IP, external IP, VIP ingress, node port
		t.Fatalf("targets = %+v", ts)
	}
	for _, tg := range ts {
		if len(tg.Endpoints) != 2 {
			t.Errorf("target %+v: want the two serving IPv4 endpoints", tg)
		}
	}
	if !ts[3].NodePort() || ts[3].Port != 30053 {
		t.Errorf("last target %+v, want the node port", ts[3])
	}
	if len(TargetsFor(sp, proxier.IPv6)) != 3 {
		t.Errorf("IPv6 targets = %+v", TargetsFor(sp, proxier.IPv6))
	}
	for _, tg := range DeletedTargets(sp, proxier.IPv4) {
		if len(tg.Endpoints) != 0 {
			t.Errorf("deleted target has endpoints: %+v", tg)
		}
	}
	tcp := *sp
	tcp.Name.Protocol = proxier.ProtocolTCP
	if TargetsFor(&tcp, proxier.IPv4) != nil {
		t.Error("TCP ports have no targets")
	}
}

func TestFake(t *testing.T) {
	f := NewFake()
	f.Add(proxier.IPv4, Flow{17, ap("172.30.0.10:53"), ap("10.0.0.9:5353")}, Flow{17, ap("172.30.0.10:53"), ap("10.0.0.1:5353")})
	n, err := f.Clean(context.Background(), proxier.IPv4, []Target{{Protocol: proxier.ProtocolUDP, IP: netip.MustParseAddr("172.30.0.10"), Port: 53,
		Endpoints: []netip.AddrPort{ap("10.0.0.1:5353")}}})
	if err != nil || n != 1 || len(f.Flows(proxier.IPv4)) != 1 || len(f.Calls()) != 1 {
		t.Errorf("Clean = %d, %v; flows %v", n, err, f.Flows(proxier.IPv4))
	}
}
