package kernel

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"net/netip"
	"slices"

	"github.com/kproxy/kproxy/proxier"
	"github.com/kproxy/kproxy/test/netns"
)

// churnSpec is one randomly varied service port.
type churnSpec struct {
	n                   int
	udp                 bool
	nodePort, lb, extIP bool
	sourceRanges        bool
	affinity            bool
	etpLocal, itpLocal  bool
	// eps are indexes into the topology's pods; terminating marks them
	// terminating-but-serving.
	eps         []int
	terminating bool
}

// churn is a random walk over a set of services and the node's addresses, in which
// every step changes something kproxy programs.
type churn struct {
	w     *world
	rng   *rand.Rand
	specs map[int]*churnSpec
	ports map[int]*proxier.ServicePort
	node  proxier.Node
	// stable is a service that never changes, probed during the walk.
	stable *proxier.ServicePort
}

// Service indexes the walk uses: cluster IPs 10.96.0.10-29.
const (
	stableService = 3
	churnFirst    = 10
	churnLast     = 29
)

func newChurn(w *world, seed uint64) *churn {
	c := &churn{
		w:      w,
		rng:    rand.New(rand.NewPCG(seed, seed^0x6b70726f7879)),
		specs:  map[int]*churnSpec{},
		ports:  map[int]*proxier.ServicePort{},
		node:   w.node,
		stable: w.servicePort(svc{n: stableService, endpoints: []*netns.Pod{w.local(0), w.remote(0)}, nodePort: true}),
	}
	for n := churnFirst; n < churnFirst+6; n++ {
		c.put(c.randomSpec(n))
	}
	return c
}

// state is the node and every service port of the walk's current step.
func (c *churn) state() (proxier.Node, []*proxier.ServicePort) {
	ports := []*proxier.ServicePort{c.stable}
	for _, n := range slices.Sorted(maps.Keys(c.ports)) {
		ports = append(ports, c.ports[n])
	}
	return c.node, ports
}

// step applies one random change and describes it.
func (c *churn) step() string {
	for {
		switch r := c.rng.IntN(100); {
		case r < 4:
			return c.toggleNodeAddress()
		case r < 20:
			if n, ok := c.free(); ok {
				c.put(c.randomSpec(n))
				return fmt.Sprintf("add service %d", n)
			}
		case r < 32:
			if n, ok := c.pick(); ok && len(c.specs) > 2 {
				delete(c.specs, n)
				delete(c.ports, n)
				return fmt.Sprintf("remove service %d", n)
			}
		case r < 60:
			if n, ok := c.pick(); ok {
				s := *c.specs[n]
				what := c.mutate(&s)
				c.put(&s)
				return fmt.Sprintf("change service %d: %s", n, what)
			}
		default:
			if n, ok := c.pick(); ok {
				s := *c.specs[n]
				old := s.eps
				for slices.Equal(s.eps, old) {
					s.eps = c.randomEndpoints()
				}
				s.terminating = len(s.eps) > 0 && c.rng.IntN(5) == 0
				c.put(&s)
				return fmt.Sprintf("endpoints of service %d: %v -> %v (terminating %v)", n, old, s.eps, s.terminating)
			}
		}
	}
}

// toggleNodeAddress adds or removes a secondary node address, which makes the next
// sync a full one.
func (c *churn) toggleNodeAddress() string {
	second := netip.MustParseAddr("198.18.0.11")
	n := c.node
	if slices.Contains(n.Addresses, second) {
		n.Addresses = []netip.Addr{c.w.topo.Node.IP(netns.V4)}
	} else {
		n.Addresses = []netip.Addr{c.w.topo.Node.IP(netns.V4), second}
	}
	c.node = n
	return fmt.Sprintf("node addresses -> %v", n.Addresses)
}

func (c *churn) free() (int, bool) {
	var free []int
	for n := churnFirst; n <= churnLast; n++ {
		if _, ok := c.specs[n]; !ok {
			free = append(free, n)
		}
	}
	if len(free) == 0 {
		return 0, false
	}
	return free[c.rng.IntN(len(free))], true
}

func (c *churn) pick() (int, bool) {
	if len(c.specs) == 0 {
		return 0, false
	}
	ns := slices.Sorted(maps.Keys(c.specs))
	return ns[c.rng.IntN(len(ns))], true
}

func (c *churn) randomSpec(n int) *churnSpec {
	s := &churnSpec{n: n, udp: c.rng.IntN(4) == 0, eps: c.randomEndpoints()}
	for range c.rng.IntN(4) {
		c.mutate(s)
	}
	return s
}

// randomEndpoints is a random subset of the pods, empty now and then.
func (c *churn) randomEndpoints() []int {
	var eps []int
	for i := range len(c.w.topo.Pods()) {
		if c.rng.IntN(2) == 0 {
			eps = append(eps, i)
		}
	}
	return eps
}

// mutate flips one property of s and names it.
func (c *churn) mutate(s *churnSpec) string {
	flags := []struct {
		name string
		b    *bool
	}{
		{"nodePort", &s.nodePort}, {"loadBalancer", &s.lb}, {"externalIP", &s.extIP}, {"sourceRanges", &s.sourceRanges},
		{"affinity", &s.affinity}, {"externalTrafficPolicy=Local", &s.etpLocal}, {"internalTrafficPolicy=Local", &s.itpLocal},
	}
	f := flags[c.rng.IntN(len(flags))]
	*f.b = !*f.b
	return fmt.Sprintf("%s=%v", f.name, *f.b)
}

// put stores s and a new ServicePort for it (a new pointer is what marks it changed).
func (c *churn) put(s *churnSpec) {
	c.specs[s.n] = s
	sp := &proxier.ServicePort{
		Name: proxier.ServicePortName{
			ServiceName: proxier.ServiceName{Namespace: "churn", Name: fmt.Sprintf("svc-%d", s.n)},
			Port:        "p",
			Protocol:    proxier.ProtocolTCP,
		},
		ClusterIPs: []netip.Addr{clusterIP(s.n)},
		Port:       svcPort,
	}
	if s.udp {
		sp.Name.Protocol = proxier.ProtocolUDP
	}
	if s.nodePort || s.lb {
		sp.NodePort = nodePort(s.n)
	}
	if s.lb {
		sp.LoadBalancerIngress = []proxier.LoadBalancerIngress{{IP: netip.AddrFrom4([4]byte{198, 19, 0, byte(s.n)}), Mode: proxier.IPModeVIP}}
		if s.sourceRanges {
			sp.LoadBalancerSourceRanges = []netip.Prefix{netip.MustParsePrefix("198.18.0.0/24")}
		}
	}
	if s.extIP {
		sp.ExternalIPs = []netip.Addr{netip.AddrFrom4([4]byte{198, 19, 1, byte(s.n)})}
	}
	if s.affinity {
		sp.AffinityTimeout = proxier.DefaultAffinityTimeout
	}
	if s.etpLocal {
		sp.ExternalPolicy = proxier.PolicyLocal
	}
	if s.itpLocal {
		sp.InternalPolicy = proxier.PolicyLocal
	}
	pods := c.w.topo.Pods()
	for _, i := range s.eps {
		ep := c.w.endpoint(pods[i])
		if s.terminating {
			ep.Ready, ep.Terminating = false, true
		}
		sp.Endpoints = append(sp.Endpoints, ep)
	}
	slices.SortFunc(sp.Endpoints, func(a, b proxier.Endpoint) int { return a.Addr.Compare(b.Addr) })
	c.ports[s.n] = sp
}
