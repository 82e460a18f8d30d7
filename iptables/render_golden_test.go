package iptables

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kproxy/kproxy/proxier"
)

// goldenText is a ruleset as a reviewer reads it: the bootstrap jumps, the
// iptables-restore payload, and the ipsets in `ipset save` form.
func goldenText(rs *Ruleset) string {
	var b strings.Builder
	b.WriteString("# bootstrap jumps (each prepended, in this order)\n")
	for _, j := range rs.Jumps {
		fmt.Fprintf(&b, "# -t %s -I %s %s\n", j.Table, j.From, jumpText(j))
	}
	b.Write(rs.Payload())
	for _, s := range rs.Sets {
		family := "inet"
		if s.Family == IPv6 {
			family = "inet6"
		}
		fmt.Fprintf(&b, "# ipset\ncreate %s %s family %s\n", s.Name, s.Type, family)
		for _, e := range s.Entries {
			fmt.Fprintf(&b, "add %s %s\n", s.Name, e)
		}
	}
	return b.String()
}

// goldenCases are the canonical states whose full output is kept under
// testdata/golden; run the tests with -update to rewrite them.
func goldenCases() map[string]func() *Ruleset {
	many := func() []*proxier.ServicePort {
		var ports []*proxier.ServicePort
		for i := range 40 {
			ports = append(ports, svc(fmt.Sprintf("ns/s%02d:p", i), fmt.Sprintf("10.96.%d.%d", i/16, 10+i*3),
				nodePort(uint16(30000+i*37)), endpoints(fmt.Sprintf("10.244.2.%d:80", i+1))))
		}
		return ports
	}
	return map[string]func() *Ruleset{
		// kube-proxy's defaults on an IPv4 node: every feature of the scenario.
		"scenario-ipv4": func() *Ruleset {
			return Render(proxier.NewState(nodeA, scenario()...),
				RenderOptions{Family: IPv4, LocalDetector: clusterCIDRs, RandomFully: true})
		},
		// The IPv6 half of the same cluster, detecting local pods by node CIDR.
		"scenario-ipv6": func() *Ruleset {
			return Render(proxier.NewState(nodeA, scenario()...),
				RenderOptions{Family: IPv6, LocalDetector: LocalDetector{Mode: LocalModeNodeCIDR}, RandomFully: true})
		},
		// Non-default options: masquerade all, bridge detection, mark bit 5,
		// NodePorts on the primary address and localhost, liberal conntrack.
		"options-ipv4": func() *Ruleset {
			return Render(proxier.NewState(nodeA, scenario()...), RenderOptions{
				Family: IPv4, MasqueradeAll: true, MasqueradeBit: 5,
				LocalDetector:     LocalDetector{Mode: LocalModeBridgeInterface, Interface: "cni0"},
				NodePortAddresses: []netip.Prefix{prefix("127.0.0.0/8")}, NodePortPrimary: true,
				LocalhostNodePorts: true, ConntrackTCPLiberal: true,
			})
		},
		// Forty services with a leaf size of 4: the dispatch trees of nat
		// KUBE-SERVICES and KUBE-NODEPORTS.
		"dispatch-ipv4": func() *Ruleset {
			return Render(proxier.NewState(nodeA, many()...),
				RenderOptions{Family: IPv4, LocalDetector: clusterCIDRs, DispatchLeafSize: 4})
		},
	}
}

func TestRenderGolden(t *testing.T) {
	for name, render := range goldenCases() {
		t.Run(name, func(t *testing.T) {
			got := goldenText(render())
			path := filepath.Join("testdata", "golden", name+".txt")
			if *updateGolden {
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("%s differs from the rendered ruleset (run with -update to accept):\n%s", path, lineDiffText(string(want), got))
			}
		})
	}
}

// lineDiffText lists lines only in want ("-") or only in got ("+"), in order.
func lineDiffText(want, got string) string {
	count := func(s string) map[string]int {
		m := map[string]int{}
		for _, l := range strings.Split(s, "\n") {
			m[l]++
		}
		return m
	}
	w, g := count(want), count(got)
	var b strings.Builder
	for _, l := range strings.Split(want, "\n") {
		if w[l] > g[l] {
			b.WriteString("- " + l + "\n")
			w[l]--
		}
	}
	w = count(want)
	for _, l := range strings.Split(got, "\n") {
		if g[l] > w[l] {
			b.WriteString("+ " + l + "\n")
			g[l]--
		}
	}
	return b.String()
}
