package ipvs_test

import (
	"context"
	"fmt"
	"net/netip"

	"github.com/kproxy/kproxy/ipvs"
	"github.com/kproxy/kproxy/proxier"
)

// webService is a TCP Service with a cluster IP and the given endpoints on port 8080.
func webService(endpoints ...string) *proxier.ServicePort {
	sp := &proxier.ServicePort{
		Name:       proxier.ServicePortName{ServiceName: proxier.ServiceName{Namespace: "default", Name: "web"}, Protocol: proxier.ProtocolTCP},
		ClusterIPs: []netip.Addr{netip.MustParseAddr("10.96.0.10")},
		Port:       80,
	}
	for _, ep := range endpoints {
		sp.Endpoints = append(sp.Endpoints, proxier.Endpoint{Addr: netip.MustParseAddr(ep), Port: 8080, Ready: true, Serving: true})
	}
	return sp
}

// Plan is pure: given what is wanted and what the kernel has, it says what to do, in
// an order that never leaves the Service without an endpoint.
func ExamplePlan() {
	node := proxier.Node{Name: "node-a"}
	before := ipvs.Desired(proxier.NewState(node, webService("10.244.1.5", "10.244.2.5")), ipvs.PlanOptions{})
	after := ipvs.Desired(proxier.NewState(node, webService("10.244.2.5", "10.244.3.5")), ipvs.PlanOptions{})
	for _, op := range ipvs.Plan(after, before) {
		fmt.Println(op)
	}
	// Output:
	// add-real-server 10.96.0.10:80/tcp 10.244.3.5:8080 w1
	// drain-real-server 10.96.0.10:80/tcp 10.244.1.5:8080 w0
}

// A Proxier programs a Kernel; with a Fake, a test can look at the result.
func ExampleProxier() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	k := &ipvs.Fake{}
	p, err := ipvs.New(ctx, ipvs.Options{Kernel: k})
	if err != nil {
		panic(err)
	}
	state := proxier.NewState(proxier.Node{Name: "node-a"}, webService("10.244.1.5", "10.244.2.5"))
	if err := p.Sync(ctx, state, proxier.FullSync()); err != nil {
		panic(err)
	}
	snap := k.Snapshot(proxier.IPv4)
	for _, vs := range snap.Servers {
		fmt.Println(vs)
		for _, r := range vs.Reals {
			fmt.Println(" ", r)
		}
	}
	for a := range snap.Addresses {
		fmt.Println("bound to", ipvs.DeviceName+":", a)
	}
	// Output:
	// 10.96.0.10:80/tcp rr
	//   10.244.1.5:8080 w1
	//   10.244.2.5:8080 w1
	// bound to kube-ipvs0: 10.96.0.10
}
