package netns_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/kproxy/kproxy/test/netns"
)

// A proxier e2e test builds a topology, starts echo servers in the pods, programs the
// proxier inside the node namespace and probes a service from a pod and from a client.
func ExampleNew() {
	var t *testing.T // the test's *testing.T
	topo := netns.New(t, netns.DefaultSpec())
	for _, p := range topo.Pods() {
		if _, err := p.ServeTCP(8080); err != nil {
			t.Fatal(err)
		}
	}
	// ... start the proxier under test with topo.Node.Do or topo.Node.Command ...

	pod, client := topo.Node.Pods[0], topo.Clients[0]
	for _, f := range netns.Families {
		rep, err := client.DialTCP(t.Context(), pod.AddrPort(f, 8080), 2*time.Second)
		if err != nil {
			t.Fatalf("%s: %v (%s)", f, err, netns.Classify(err))
		}
		fmt.Println(rep.Server, rep.ClientIP == client.IP(f))
	}
}

// Refused and dropped traffic are told apart by Classify, which is what REJECT-vs-DROP
// assertions need.
func ExampleClassify() {
	var t *testing.T
	topo := netns.New(t, netns.Spec{LocalPods: 1, Clients: 1})
	_, err := topo.Clients[0].DialTCP(context.Background(), topo.Node.Pods[0].AddrPort(netns.V4, 9), time.Second)
	switch netns.Classify(err) {
	case netns.Refused: // a REJECT, or nothing listening
	case netns.Timeout: // a DROP
	}
}

// Do runs code inside a namespace; a process started there inherits it.
func ExampleNS_Do() {
	var t *testing.T
	n := netns.NewNS(t, "scratch")
	err := n.Do(func() error {
		// Sockets and processes created here belong to n.
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	out, err := n.Exec(context.Background(), "ip", "-br", "link")
	fmt.Println(string(out), err)
}
