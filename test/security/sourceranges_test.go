package security

import (
	"context"
	"net/netip"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"

	"github.com/kproxy/kproxy/test/netns"
)

// TestLoadBalancerSourceRanges proves loadBalancerSourceRanges is enforced on the
// node: of two clients of the same LoadBalancer IP, the one inside the allowed range
// reaches the Service and the other one's connection is dropped (a timeout, not a
// refusal, so a scanner learns nothing), while the ranges leave the ClusterIP alone.
func TestLoadBalancerSourceRanges(t *testing.T) {
	n := startNode(t)
	allowed, denied := n.topo.Clients[0], n.topo.Clients[1]
	lbIP := netip.MustParseAddr("198.51.100.9")
	svc := n.service(t, "guarded", func(s *v1.Service) {
		s.Spec.Type = v1.ServiceTypeLoadBalancer
		s.Spec.LoadBalancerSourceRanges = []string{netip.PrefixFrom(allowed.V4, 32).String()}
	}, lbIP)
	lb := netip.AddrPortFrom(lbIP, 80)

	n.reachesPod(t, allowed.NS, lb)
	for range 3 {
		_, err := denied.DialTCP(context.Background(), lb, 2*time.Second)
		if o := netns.Classify(err); o != netns.Timeout {
			t.Fatalf("LoadBalancer IP %s from %s (outside %v): %v (%s), want dropped", lb, denied, svc.Spec.LoadBalancerSourceRanges, err, o)
		}
	}
	n.reachesPod(t, allowed.NS, lb)
	// The ranges guard the load balancer's address only; the NodePort stays open,
	// as in kube-proxy.
	n.reachesPod(t, denied.NS, netip.AddrPortFrom(n.topo.Node.V4, uint16(svc.Spec.Ports[0].NodePort)))
}
