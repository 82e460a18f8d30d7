package iptables

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kproxy/kproxy/proxier"
)

// renderBenchPorts builds n service ports shaped like a large cluster: cluster IPs drawn
// at random from a /12 service range (as the apiserver allocates them), eps endpoints
// each spread over 100 nodes, every third one a NodePort.
func renderBenchPorts(n, eps int, seed uint64) []*proxier.ServicePort {
	r := rand.New(rand.NewPCG(seed, 1))
	used := map[netip.Addr]bool{}
	ports := make([]*proxier.ServicePort, 0, n)
	for i := range n {
		var ip netip.Addr
		for ip = randomAddrIn(r, prefix("10.96.0.0/12")); used[ip]; ip = randomAddrIn(r, prefix("10.96.0.0/12")) {
		}
		used[ip] = true
		sp := &proxier.ServicePort{
			Name: proxier.ServicePortName{ServiceName: proxier.ServiceName{Namespace: "bench", Name: "svc-" + strconv.Itoa(i)},
				Port: "http", Protocol: proxier.ProtocolTCP},
			ClusterIPs: []netip.Addr{ip},
			Port:       80,
		}
		if i%3 == 0 {
			sp.NodePort = uint16(30000 + i%2768)
		}
		for e := range eps {
			node := "node-" + strconv.Itoa(r.IntN(100))
			k := i*eps + e
			sp.Endpoints = append(sp.Endpoints, proxier.Endpoint{
				Addr: netip.AddrFrom4([4]byte{10, byte(k >> 16), byte(k >> 8), byte(k)}), Port: 8080,
				Ready: true, Serving: true, NodeName: node, Local: node == "node-0",
			})
		}
		ports = append(ports, sp)
	}
	return ports
}

func randomAddrIn(r *rand.Rand, p netip.Prefix) netip.Addr {
	b := p.Addr().As4()
	host := r.Uint32() & (1<<(32-p.Bits()) - 1)
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3]) | host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

var renderBenchOpts = RenderOptions{Family: IPv4, LocalDetector: clusterCIDRs, RandomFully: true}

func BenchmarkRender(b *testing.B) {
	for _, n := range []int{1000, 5000, 10000, 30000} {
		b.Run(fmt.Sprintf("services=%d/endpoints=10", n), func(b *testing.B) {
			state := proxier.NewState(proxier.Node{Name: "node-0", Addresses: []netip.Addr{addr(nodeIP)}}, renderBenchPorts(n, 10, 1)...)
			state.ServicePorts() // sorted once per snapshot, outside the renderer
			rs := Render(state, renderBenchOpts)
			chains, rules := 0, 0
			for _, tr := range rs.Tables {
				chains += len(tr.Chains)
				for _, c := range tr.Chains {
					rules += len(c.Rules)
				}
			}
			b.ReportAllocs()
			for b.Loop() {
				Render(state, renderBenchOpts)
			}
			b.ReportMetric(float64(len(rs.Payload())), "payload-bytes")
			b.ReportMetric(float64(chains), "chains")
			b.ReportMetric(float64(rules), "rules")
		})
	}
}

// BenchmarkRendererOneChange measures the sync path: 10,000 services, one of which
// gets a new endpoint list per render.
func BenchmarkRendererOneChange(b *testing.B) {
	node := proxier.Node{Name: "node-0", Addresses: []netip.Addr{addr(nodeIP)}}
	ports := renderBenchPorts(10000, 10, 1)
	r := NewRenderer(renderBenchOpts)
	r.Render(proxier.NewState(node, ports...), proxier.FullSync())
	// Two versions of one service, alternated.
	target := ports[4321]
	alt := *target
	alt.Endpoints = append(append([]proxier.Endpoint(nil), target.Endpoints[1:]...), proxier.Endpoint{
		Addr: addr("10.250.0.1"), Port: 8080, Ready: true, Serving: true, NodeName: "node-0", Local: true})
	states := [2]*proxier.State{}
	for i, sp := range []*proxier.ServicePort{&alt, target} {
		ports[4321] = sp
		states[i] = proxier.NewState(node, ports...)
	}
	changes := proxier.ChangeSet{Services: map[proxier.ServicePortName]struct{}{target.Name: {}}}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		r.Render(states[i%2], changes)
		i++
	}
}

// TestRendererOneChangeIsCheap guards the sync-path budget loosely (the benchmark
// measures it): one changed service among 10,000 re-renders in well under 50 ms
// even under -race.
func TestRendererOneChangeIsCheap(t *testing.T) {
	if testing.Short() {
		t.Skip("builds 10,000 services")
	}
	res := testing.Benchmark(BenchmarkRendererOneChange)
	if per := res.NsPerOp(); per > 50e6 {
		t.Errorf("one-change render took %v per op", time.Duration(per))
	}
	t.Logf("one change at 10k services: %s %s", res.String(), res.MemString())
}

// traversal counts the nat KUBE-SERVICES rules (dispatch chains included) the first
// packet of a connection to dst:port is compared against before it is sent to a
// service chain, or before it falls through the chain. It relies on the simple shape
// of dispatch rules (-d, -p, --dport, -j).
func traversal(tr *TableRules, chain Chain, dst netip.Addr, port uint16) (n int, done bool) {
	c := tr.Chain(chain)
	for _, rule := range c.Rules {
		n++
		f := strings.Fields(rule)
		match, target := true, ""
		for i := 0; i < len(f)-1; i++ {
			switch f[i] {
			case "-d":
				neg := i > 0 && f[i-1] == "!"
				match = match && prefix(f[i+1]).Contains(dst) != neg
			case "--dport":
				match = match && f[i+1] == strconv.Itoa(int(port))
			case "-j":
				target = f[i+1]
			case "--dst-type":
				match = false // node addresses are not part of this measurement
			}
		}
		if !match {
			continue
		}
		if strings.HasPrefix(target, dispatchChainPrefix) {
			m, ok := traversal(tr, Chain(target), dst, port)
			n += m
			if ok {
				return n, true
			}
			continue
		}
		return n, true
	}
	return n, false
}

// TestDispatchTraversal measures the worst and mean number of nat KUBE-SERVICES
// rules a first packet walks, at several cluster sizes, for packets to every service
// and to random addresses in and out of the service range. kube-proxy's flat chain
// costs one rule per service address.
func TestDispatchTraversal(t *testing.T) {
	sizes := []int{100, 1000, 10000, 30000}
	if testing.Short() {
		sizes = sizes[:2]
	}
	r := rand.New(rand.NewPCG(7, 7))
	var firstMean float64
	for _, n := range sizes {
		ports := renderBenchPorts(n, 1, 1)
		rs := Render(proxier.NewState(proxier.Node{Name: "node-0"}, ports...), renderBenchOpts)
		nat := rs.Table(TableNAT)
		worst, total, count := 0, 0, 0
		measure := func(dst netip.Addr, port uint16) {
			k, _ := traversal(nat, topServices, dst, port)
			worst, total, count = max(worst, k), total+k, count+1
		}
		for _, sp := range ports {
			measure(sp.ClusterIPs[0], sp.Port)
		}
		for range 2000 {
			measure(randomAddrIn(r, prefix("10.96.0.0/12")), 80)
			measure(randomAddrIn(r, prefix("0.0.0.0/0")), 443)
		}
		mean := float64(total) / float64(count)
		t.Logf("%6d services: worst %3d rules, mean %5.1f (kube-proxy: up to %d)", n, worst, mean, n+1)
		if firstMean == 0 {
			firstMean = mean
		}
		// At most two leaves' worth of rules per level, three levels deep at 30k.
		if worst > 6*DefaultDispatchLeafSize+4 || mean > 1.25*firstMean {
			t.Errorf("%d services: a packet walks up to %d rules, %.1f on average", n, worst, mean)
		}
	}
}
