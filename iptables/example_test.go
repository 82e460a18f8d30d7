package iptables_test

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/kproxy/kproxy/iptables"
	"github.com/kproxy/kproxy/proxier"
)

// Render is pure: a State built by hand (here one ClusterIP service with two
// endpoints on other nodes) gives the same ruleset every time, and nothing touches the
// kernel. The service's KUBE-SVC- chain masquerades traffic from outside the cluster
// CIDR, then picks an endpoint at random.
func ExampleRender() {
	web := &proxier.ServicePort{
		Name: proxier.ServicePortName{
			ServiceName: proxier.ServiceName{Namespace: "default", Name: "web"},
			Port:        "http",
			Protocol:    proxier.ProtocolTCP,
		},
		ClusterIPs: []netip.Addr{netip.MustParseAddr("10.96.0.10")},
		Port:       80,
		Endpoints: []proxier.Endpoint{
			{Addr: netip.MustParseAddr("10.244.2.5"), Port: 8080, Ready: true, Serving: true, NodeName: "node-b"},
			{Addr: netip.MustParseAddr("10.244.3.6"), Port: 8080, Ready: true, Serving: true, NodeName: "node-c"},
		},
	}
	state := proxier.NewState(proxier.Node{Name: "node-a"}, web)

	rs := iptables.Render(state, iptables.RenderOptions{
		Family: iptables.IPv4,
		LocalDetector: iptables.LocalDetector{
			Mode:  iptables.LocalModeClusterCIDR,
			CIDRs: []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16")},
		},
	})
	for _, c := range rs.Table(iptables.TableNAT).Chains {
		if !strings.HasPrefix(string(c.Name), "KUBE-SVC-") {
			continue
		}
		for _, r := range c.Rules {
			fmt.Printf("-A %s %s\n", c.Name, r)
		}
	}
	// Output:
	// -A KUBE-SVC-CDGGSHYLG3RE2FKL ! -s 10.244.0.0/16 -d 10.96.0.10/32 -p tcp -m comment --comment "default/web:http cluster IP" -m tcp --dport 80 -j KUBE-MARK-MASQ
	// -A KUBE-SVC-CDGGSHYLG3RE2FKL -p tcp -m statistic --mode random --probability 0.50000000000 -j DNAT --to-destination 10.244.2.5:8080
	// -A KUBE-SVC-CDGGSHYLG3RE2FKL -p tcp -j DNAT --to-destination 10.244.3.6:8080
}
