package security

import (
	"context"
	"net/netip"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"

	"github.com/kproxy/kproxy/test/netns"
)

const routeLocalnet = "net.ipv4.conf.all.route_localnet"

// TestLocalhostNodePorts proves --iptables-localhost-nodeports decides whether a
// NodePort answers on 127.0.0.1, and whether kproxy turns route_localnet on (which
// lets packets to 127.0.0.0/8 be routed off the host, so it must stay off unless
// needed): by default (true) both happen, as in kube-proxy; with false neither.
func TestLocalhostNodePorts(t *testing.T) {
	for _, tc := range []struct {
		flag      string
		reachable bool
	}{
		{"", true},
		{"--iptables-localhost-nodeports=false", false},
	} {
		name := "default"
		if tc.flag != "" {
			name = tc.flag[2:]
		}
		t.Run(name, func(t *testing.T) {
			var extra []string
			if tc.flag != "" {
				extra = append(extra, tc.flag)
			}
			n := startNode(t, extra...)
			node := n.topo.Node
			svc := n.service(t, "np", func(s *v1.Service) { s.Spec.Type = v1.ServiceTypeNodePort })
			nodePort := uint16(svc.Spec.Ports[0].NodePort)
			// The NodePort is programmed once the node's address answers.
			n.reachesPod(t, n.topo.Clients[0].NS, netip.AddrPortFrom(node.V4, nodePort))

			got, err := node.ReadSysctl(routeLocalnet)
			if err != nil {
				t.Fatal(err)
			}
			want := map[bool]string{true: "1", false: "0"}[tc.reachable]
			if got != want {
				t.Errorf("%s = %s, want %s", routeLocalnet, got, want)
			}
			loopback := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), nodePort)
			if tc.reachable {
				n.reachesPod(t, node.NS, loopback)
				return
			}
			rep, err := node.DialTCP(context.Background(), loopback, 2*time.Second)
			if err == nil {
				t.Fatalf("%s answered by %s, want no NodePort on loopback", loopback, rep.Server)
			}
			if o := netns.Classify(err); o != netns.Refused {
				t.Errorf("%s: %v (%s), want refused (nothing listens there)", loopback, err, o)
			}
		})
	}
}
