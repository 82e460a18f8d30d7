package iptables

import (
	"net/netip"
	"testing"

	"github.com/kproxy/kproxy/iptables/iptablestest"
	"github.com/kproxy/kproxy/proxier"
)

// FuzzRender renders small random states and checks that the result is well formed:
// the tracer parses and validates it, packets to every service address and node port
// can be walked through it without errors, and an incremental render from an empty
// Renderer agrees with Render.
func FuzzRender(f *testing.F) {
	f.Add([]byte{0})
	f.Add([]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16})
	f.Add([]byte("kproxy renders services, node ports, load balancers and firewalls"))
	f.Add([]byte{255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255})
	f.Fuzz(func(t *testing.T, data []byte) {
		c := &byteChooser{data: data}
		family := IPv4
		if c.intn(2) == 1 {
			family = IPv6
		}
		opts := genOptions(c, family)
		node := genNode(c)
		var ports []*proxier.ServicePort
		for i := range c.intn(12) {
			ports = append(ports, genServicePort(c, i))
		}
		state := proxier.NewState(node, ports...)
		rs := Render(state, opts)

		inc := NewRenderer(opts)
		inc.Render(proxier.NewState(node), proxier.FullSync())
		changes := proxier.ChangeSet{Services: map[proxier.ServicePortName]struct{}{}}
		for _, sp := range ports {
			changes.Services[sp.Name] = struct{}{}
		}
		if d := diffRulesets(inc.Render(state, changes), rs); d != "" {
			t.Fatalf("incremental render differs: %s", d)
		}

		tr := newTracer(t, rs, node)
		for _, sp := range ports {
			for _, dst := range destinations(sp, family, node) {
				for _, src := range []string{"10.244.1.99", "203.0.113.7", "fd00:244:1::99", "2001:db8::7"} {
					p := pkt{src: src, dst: dst.String(), proto: iptablestest.Protocol(sp.Name.Protocol.String())}
					if addr(src).Is4() != dst.Addr().Is4() {
						continue
					}
					tr.trace(p.packet(), nil)
				}
			}
		}
	})
}

// destinations are the address:port pairs a service port answers on in family.
func destinations(sp *proxier.ServicePort, family Family, node proxier.Node) []netip.AddrPort {
	var out []netip.AddrPort
	add := func(a netip.Addr, port uint16) {
		if proxier.FamilyOf(a) == family && port != 0 {
			out = append(out, netip.AddrPortFrom(a, port))
		}
	}
	for _, a := range sp.ClusterIPs {
		add(a, sp.Port)
	}
	for _, a := range sp.ExternalIPs {
		add(a, sp.Port)
	}
	for _, ing := range sp.LoadBalancerIngress {
		add(ing.IP, sp.Port)
	}
	for _, a := range node.Addresses {
		add(a, sp.NodePort)
		add(a, sp.HealthCheckNodePort)
	}
	return out
}
