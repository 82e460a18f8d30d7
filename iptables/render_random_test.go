package iptables

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"time"

	"github.com/kproxy/kproxy/proxier"
)

// chooser makes the random choices of the state generator, from a PRNG (randomized
// tests) or from fuzz bytes (FuzzRender).
type chooser interface {
	// intn returns a number in [0, n).
	intn(n int) int
}

type randChooser struct{ r *rand.Rand }

func (c randChooser) intn(n int) int { return c.r.IntN(n) }

// byteChooser consumes fuzz input; once it is exhausted every choice is 0.
type byteChooser struct{ data []byte }

func (c *byteChooser) intn(n int) int {
	if len(c.data) == 0 || n <= 1 {
		return 0
	}
	v := int(c.data[0])
	if n > 256 && len(c.data) > 1 {
		v = v<<8 | int(c.data[1])
		c.data = c.data[1:]
	}
	c.data = c.data[1:]
	return v % n
}

func chance(c chooser, percent int) bool { return c.intn(100) < percent }

// The generator draws addresses and ports from small pools, so that services
// collide on IPs, node ports and endpoints as real clusters sometimes do.
var (
	genProtocols = []proxier.Protocol{proxier.ProtocolTCP, proxier.ProtocolTCP, proxier.ProtocolUDP, proxier.ProtocolSCTP}
	genNodes     = []string{"node-a", "node-b", "node-c", ""}
)

func genAddr(c chooser, v6 bool, pool byte, n int) netip.Addr {
	i := c.intn(n)
	if v6 {
		return netip.AddrFrom16([16]byte{0xfd, 0, pool, 0, 14: byte(i >> 8), 15: byte(i)})
	}
	return netip.AddrFrom4([4]byte{10, pool, byte(i >> 8), byte(i)})
}

// genIPs draws one address per chosen family.
func genIPs(c chooser, pool byte, n int) []netip.Addr {
	switch c.intn(4) {
	case 0:
		return []netip.Addr{genAddr(c, true, pool, n)}
	case 1:
		return []netip.Addr{genAddr(c, false, pool, n), genAddr(c, true, pool, n)}
	}
	return []netip.Addr{genAddr(c, false, pool, n)}
}

// genServicePort draws a service port named ns/s<i>.
func genServicePort(c chooser, i int) *proxier.ServicePort {
	sp := &proxier.ServicePort{
		Name: proxier.ServicePortName{
			ServiceName: proxier.ServiceName{Namespace: "ns", Name: fmt.Sprintf("s%d", i)},
			Port:        []string{"", "http", "dns"}[c.intn(3)],
			Protocol:    genProtocols[c.intn(len(genProtocols))],
		},
		ClusterIPs: genIPs(c, 96, 64),
		Port:       uint16(80 + c.intn(3)),
	}
	if chance(c, 40) {
		sp.NodePort = uint16(30000 + c.intn(40))
	}
	if chance(c, 15) {
		sp.ExternalIPs = genIPs(c, 99, 8)
	}
	if chance(c, 25) {
		for _, ip := range genIPs(c, 100, 8) {
			sp.LoadBalancerIngress = append(sp.LoadBalancerIngress, proxier.LoadBalancerIngress{IP: ip, Mode: proxier.IPMode(c.intn(4) / 3)})
		}
		if chance(c, 40) {
			sp.LoadBalancerSourceRanges = append(sp.LoadBalancerSourceRanges,
				[]netip.Prefix{prefix("203.0.113.0/24"), prefix("192.168.0.0/16"), prefix("2001:db8::/32"), prefix("0.0.0.0/0")}[c.intn(4)])
		}
	}
	if chance(c, 20) {
		sp.AffinityTimeout = time.Duration(1+c.intn(10800)) * time.Second
	}
	if chance(c, 25) {
		sp.ExternalPolicy = proxier.PolicyLocal
		if chance(c, 50) {
			sp.HealthCheckNodePort = uint16(32000 + c.intn(8))
		}
	}
	if chance(c, 15) {
		sp.InternalPolicy = proxier.PolicyLocal
	}
	for range c.intn(6) {
		node := genNodes[c.intn(len(genNodes))]
		ep := proxier.Endpoint{
			Addr: genIPs(c, 244, 32)[0], Port: uint16(8080 + c.intn(2)),
			Ready: chance(c, 80), Serving: true, NodeName: node, Local: node == "node-a",
		}
		if !ep.Ready {
			ep.Terminating = chance(c, 70)
			ep.Serving = chance(c, 70)
		}
		if chance(c, 10) {
			ep.ZoneHints = []string{[]string{"zone-a", "zone-b"}[c.intn(2)]}
		}
		sp.Endpoints = append(sp.Endpoints, ep)
	}
	// The model keeps endpoints de-duplicated and sorted.
	slices.SortFunc(sp.Endpoints, func(a, b proxier.Endpoint) int { return a.AddrPort().Compare(b.AddrPort()) })
	sp.Endpoints = slices.CompactFunc(sp.Endpoints, func(a, b proxier.Endpoint) bool { return a.AddrPort() == b.AddrPort() })
	return sp
}

// genOptions draws render options for a family.
func genOptions(c chooser, family Family) RenderOptions {
	o := RenderOptions{
		Family:             family,
		MasqueradeBit:      []int{0, 14, 3, 31}[c.intn(4)],
		MasqueradeAll:      chance(c, 20),
		RandomFully:        chance(c, 50),
		LocalhostNodePorts: chance(c, 50),
		NodePortPrimary:    chance(c, 20),
		DispatchLeafSize:   1 + c.intn(4),
	}
	switch c.intn(5) {
	case 0:
		o.LocalDetector = clusterCIDRs
	case 1:
		o.LocalDetector = LocalDetector{Mode: LocalModeNodeCIDR}
	case 2:
		o.LocalDetector = LocalDetector{Mode: LocalModeBridgeInterface, Interface: "cni0"}
	case 3:
		o.LocalDetector = LocalDetector{Mode: LocalModeInterfaceNamePrefix, Interface: "veth"}
	}
	if chance(c, 30) {
		o.NodePortAddresses = []netip.Prefix{[]netip.Prefix{prefix("192.168.0.0/24"), prefix("127.0.0.0/8"), prefix("fd00:192::/64"), prefix("0.0.0.0/0")}[c.intn(4)]}
	}
	return o
}

// genNode draws a variant of node-a.
func genNode(c chooser) proxier.Node {
	n := nodeA
	n.Zone = []string{"zone-a", "zone-b", ""}[c.intn(3)]
	if chance(c, 30) {
		n.Addresses = n.Addresses[1:]
	}
	return n
}
