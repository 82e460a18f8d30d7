package ipvs

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/kproxy/kproxy/proxier"
)

func TestDesired(t *testing.T) {
	v4 := PlanOptions{HostAddresses: hostAddrs()}
	cases := []struct {
		name  string
		opts  PlanOptions
		ports []*proxier.ServicePort
		want  string
	}{{
		name:  "cluster IP with a local and a remote endpoint",
		opts:  v4,
		ports: []*proxier.ServicePort{svcPort("web", 80, "10.96.0.10", eps("10.244.2.5:8080", "10.244.1.5:8080@local"))},
		want: `
			vs 10.96.0.10:80/tcp rr
			rs 10.244.1.5:8080 w1
			rs 10.244.2.5:8080 w1
			addr 10.96.0.10
			set KUBE-CLUSTER-IP 10.96.0.10,tcp:80
			set KUBE-IPVS-IPS 10.96.0.10
			set KUBE-LOOP-BACK 10.244.1.5,tcp:8080,10.244.1.5`,
	}, {
		name:  "no endpoints still gets a virtual server, which refuses connections",
		opts:  v4,
		ports: []*proxier.ServicePort{svcPort("empty", 80, "10.96.0.10")},
		want: `
			vs 10.96.0.10:80/tcp rr
			addr 10.96.0.10
			set KUBE-CLUSTER-IP 10.96.0.10,tcp:80
			set KUBE-IPVS-IPS 10.96.0.10`,
	}, {
		name: "node port with externalTrafficPolicy Local on every host address",
		opts: v4,
		ports: []*proxier.ServicePort{svcPort("np", 80, "10.96.0.11", nodePort(30080), externalLocal, healthCheckNodePort(32000),
			eps("10.244.1.5:8080@local", "10.244.2.5:8080"))},
		want: `
			vs 10.96.0.11:80/tcp rr
			rs 10.244.1.5:8080 w1
			rs 10.244.2.5:8080 w1
			vs 10.244.1.1:30080/tcp rr
			rs 10.244.1.5:8080 w1
			vs 198.18.0.2:30080/tcp rr
			rs 10.244.1.5:8080 w1
			addr 10.96.0.11
			set KUBE-CLUSTER-IP 10.96.0.11,tcp:80
			set KUBE-HEALTH-CHECK-NODE-PORT 32000
			set KUBE-IPVS-IPS 10.96.0.11
			set KUBE-LOOP-BACK 10.244.1.5,tcp:8080,10.244.1.5
			set KUBE-NODE-PORT-LOCAL-TCP 30080
			set KUBE-NODE-PORT-TCP 30080`,
	}, {
		name:  "nodePortAddresses CIDR",
		opts:  PlanOptions{HostAddresses: hostAddrs(), NodePortAddresses: []string{"198.18.0.0/24", "fd00::/8"}},
		ports: []*proxier.ServicePort{svcPort("np", 80, "10.96.0.11", proto(proxier.ProtocolUDP), nodePort(30053))},
		want: `
			vs 10.96.0.11:80/udp rr
			vs 198.18.0.2:30053/udp rr
			addr 10.96.0.11
			set KUBE-CLUSTER-IP 10.96.0.11,udp:80
			set KUBE-IPVS-IPS 10.96.0.11
			set KUBE-NODE-PORT-UDP 30053`,
	}, {
		name:  "nodePortAddresses primary",
		opts:  PlanOptions{HostAddresses: hostAddrs(), NodePortAddresses: []string{"primary"}},
		ports: []*proxier.ServicePort{svcPort("np", 80, "10.96.0.11", nodePort(30080))},
		want: `
			vs 10.96.0.11:80/tcp rr
			vs 198.18.0.2:30080/tcp rr
			addr 10.96.0.11
			set KUBE-CLUSTER-IP 10.96.0.11,tcp:80
			set KUBE-IPVS-IPS 10.96.0.11
			set KUBE-NODE-PORT-TCP 30080`,
	}, {
		name:  "nodePortAddresses matching nothing: no node port virtual servers",
		opts:  PlanOptions{HostAddresses: hostAddrs(), NodePortAddresses: []string{"192.0.2.0/24"}},
		ports: []*proxier.ServicePort{svcPort("np", 80, "10.96.0.11", nodePort(30080))},
		want: `
			vs 10.96.0.11:80/tcp rr
			addr 10.96.0.11
			set KUBE-CLUSTER-IP 10.96.0.11,tcp:80
			set KUBE-IPVS-IPS 10.96.0.11`,
	}, {
		name:  "SCTP node port is matched by address and port",
		opts:  v4,
		ports: []*proxier.ServicePort{svcPort("sctp", 9000, "10.96.0.13", proto(proxier.ProtocolSCTP), nodePort(30900), externalLocal)},
		want: `
			vs 10.96.0.13:9000/sctp rr
			vs 10.244.1.1:30900/sctp rr
			vs 198.18.0.2:30900/sctp rr
			addr 10.96.0.13
			set KUBE-CLUSTER-IP 10.96.0.13,sctp:9000
			set KUBE-IPVS-IPS 10.96.0.13
			set KUBE-NODE-PORT-LOCAL-SCTP-HASH 10.244.1.1,sctp:30900
			set KUBE-NODE-PORT-LOCAL-SCTP-HASH 198.18.0.2,sctp:30900
			set KUBE-NODE-PORT-SCTP-HASH 10.244.1.1,sctp:30900
			set KUBE-NODE-PORT-SCTP-HASH 198.18.0.2,sctp:30900`,
	}, {
		name:  "external IPs: bound unless a host interface has them",
		opts:  v4,
		ports: []*proxier.ServicePort{svcPort("ext", 80, "10.96.0.12", externalIPs("203.0.113.7", "198.18.0.2", "2001:db8::7"), eps("10.244.2.5:8080"))},
		want: `
			vs 10.96.0.12:80/tcp rr
			rs 10.244.2.5:8080 w1
			vs 198.18.0.2:80/tcp rr
			rs 10.244.2.5:8080 w1
			vs 203.0.113.7:80/tcp rr
			rs 10.244.2.5:8080 w1
			addr 10.96.0.12
			addr 203.0.113.7
			set KUBE-CLUSTER-IP 10.96.0.12,tcp:80
			set KUBE-EXTERNAL-IP 198.18.0.2,tcp:80
			set KUBE-EXTERNAL-IP 203.0.113.7,tcp:80
			set KUBE-IPVS-IPS 10.96.0.12
			set KUBE-IPVS-IPS 203.0.113.7`,
	}, {
		name: "external IP with Local policy and no local endpoint falls back to cluster endpoints",
		opts: v4,
		ports: []*proxier.ServicePort{svcPort("ext", 80, "10.96.0.12", externalIPs("203.0.113.7"), externalLocal,
			eps("10.244.2.5:8080"))},
		want: `
			vs 10.96.0.12:80/tcp rr
			rs 10.244.2.5:8080 w1
			vs 203.0.113.7:80/tcp rr
			rs 10.244.2.5:8080 w1
			addr 10.96.0.12
			addr 203.0.113.7
			set KUBE-CLUSTER-IP 10.96.0.12,tcp:80
			set KUBE-EXTERNAL-IP-LOCAL 203.0.113.7,tcp:80
			set KUBE-IPVS-IPS 10.96.0.12
			set KUBE-IPVS-IPS 203.0.113.7`,
	}, {
		name: "load balancer: VIP programmed, Proxy skipped, source ranges leaving the node out",
		opts: v4,
		ports: []*proxier.ServicePort{svcPort("lb", 443, "10.96.0.14", lbIngress("192.0.2.10", proxier.IPModeVIP),
			lbIngress("192.0.2.11", proxier.IPModeProxy), sourceRanges("203.0.113.0/24", "2001:db8::/32"), eps("10.244.2.5:8443"))},
		want: `
			vs 10.96.0.14:443/tcp rr
			rs 10.244.2.5:8443 w1
			vs 192.0.2.10:443/tcp rr
			rs 10.244.2.5:8443 w1
			addr 10.96.0.14
			addr 192.0.2.10
			set KUBE-CLUSTER-IP 10.96.0.14,tcp:443
			set KUBE-IPVS-IPS 10.96.0.14
			set KUBE-IPVS-IPS 192.0.2.10
			set KUBE-LOAD-BALANCER 192.0.2.10,tcp:443
			set KUBE-LOAD-BALANCER-FW 192.0.2.10,tcp:443
			set KUBE-LOAD-BALANCER-SOURCE-CIDR 192.0.2.10,tcp:443,203.0.113.0/24`,
	}, {
		name: "load balancer: source ranges covering the node, Local policy",
		opts: v4,
		ports: []*proxier.ServicePort{svcPort("lb", 443, "10.96.0.14", lbIngress("192.0.2.10", proxier.IPModeVIP),
			sourceRanges("198.18.0.0/16"), externalLocal, eps("10.244.1.5:8443@local", "10.244.2.5:8443"))},
		want: `
			vs 10.96.0.14:443/tcp rr
			rs 10.244.1.5:8443 w1
			rs 10.244.2.5:8443 w1
			vs 192.0.2.10:443/tcp rr
			rs 10.244.1.5:8443 w1
			addr 10.96.0.14
			addr 192.0.2.10
			set KUBE-CLUSTER-IP 10.96.0.14,tcp:443
			set KUBE-IPVS-IPS 10.96.0.14
			set KUBE-IPVS-IPS 192.0.2.10
			set KUBE-LOAD-BALANCER 192.0.2.10,tcp:443
			set KUBE-LOAD-BALANCER-FW 192.0.2.10,tcp:443
			set KUBE-LOAD-BALANCER-LOCAL 192.0.2.10,tcp:443
			set KUBE-LOAD-BALANCER-SOURCE-CIDR 192.0.2.10,tcp:443,198.18.0.0/16
			set KUBE-LOAD-BALANCER-SOURCE-IP 192.0.2.10,tcp:443,192.0.2.10
			set KUBE-LOOP-BACK 10.244.1.5,tcp:8443,10.244.1.5`,
	}, {
		name:  "session affinity becomes persistence; mh hashes the source port",
		opts:  PlanOptions{HostAddresses: hostAddrs(), Scheduler: "mh"},
		ports: []*proxier.ServicePort{svcPort("sticky", 80, "10.96.0.15", affinity(3*time.Hour), eps("10.244.2.5:8080"))},
		want: `
			vs 10.96.0.15:80/tcp mh persistent 10800 sh-port
			rs 10.244.2.5:8080 w1
			addr 10.96.0.15
			set KUBE-CLUSTER-IP 10.96.0.15,tcp:80
			set KUBE-IPVS-IPS 10.96.0.15`,
	}, {
		name:  "internalTrafficPolicy Local uses only local endpoints",
		opts:  v4,
		ports: []*proxier.ServicePort{svcPort("itp", 80, "10.96.0.16", internalLocal, eps("10.244.1.5:8080@local", "10.244.2.5:8080"))},
		want: `
			vs 10.96.0.16:80/tcp rr
			rs 10.244.1.5:8080 w1
			addr 10.96.0.16
			set KUBE-CLUSTER-IP 10.96.0.16,tcp:80
			set KUBE-IPVS-IPS 10.96.0.16
			set KUBE-LOOP-BACK 10.244.1.5,tcp:8080,10.244.1.5`,
	}, {
		name: "IPv6 family of a dual-stack service",
		opts: PlanOptions{Family: proxier.IPv6, HostAddresses: hostAddrs()},
		ports: []*proxier.ServicePort{svcPort("dual", 80, "10.96.0.17,fd00:96::17", nodePort(30081), affinity(time.Minute),
			eps("10.244.1.5:8080@local", "[fd00:244:1::5]:8080@local"))},
		want: `
			vs [fd00:96::17]:80/tcp rr persistent 60
			rs [fd00:244:1::5]:8080 w1
			vs [fd00:198:18::2]:30081/tcp rr persistent 60
			rs [fd00:244:1::5]:8080 w1
			addr fd00:96::17
			set KUBE-6-CLUSTER-IP fd00:96::17,tcp:80
			set KUBE-6-IPVS-IPS fd00:96::17
			set KUBE-6-LOOP-BACK fd00:244:1::5,tcp:8080,fd00:244:1::5
			set KUBE-6-NODE-PORT-TCP 30081`,
	}, {
		name:  "single-stack IPv4 service is invisible to the IPv6 proxier",
		opts:  PlanOptions{Family: proxier.IPv6, HostAddresses: hostAddrs()},
		ports: []*proxier.ServicePort{svcPort("v4only", 80, "10.96.0.18", externalIPs("2001:db8::7"), eps("10.244.1.5:8080@local"))},
		want:  ``,
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := Desired(proxier.NewState(testNode(), tc.ports...), tc.opts)
			if got, want := dump(s), trimDump(tc.want); got != want {
				t.Errorf("Desired:\n%s\nwant:\n%s", got, want)
			}
			if len(s.Sets) != int(numSets) || s.Glue == nil || !s.Device {
				t.Errorf("desired snapshot must declare every set (%d), the device and the glue", len(s.Sets))
			}
		})
	}
}

func TestDesiredPersistenceNetmask(t *testing.T) {
	sp := svcPort("dual", 80, "10.96.0.17,fd00:96::17", affinity(time.Hour))
	for _, tc := range []struct {
		family proxier.IPFamily
		want   uint32
	}{{proxier.IPv4, 0xffffffff}, {proxier.IPv6, 128}} {
		s := Desired(proxier.NewState(testNode(), sp), PlanOptions{Family: tc.family})
		if len(s.Servers) != 1 {
			t.Fatalf("IPv%d: %d virtual servers", tc.family, len(s.Servers))
		}
		for _, vs := range s.Servers {
			if vs.Netmask != tc.want || vs.Flags != FlagPersistent || vs.Timeout != 3600 {
				t.Errorf("IPv%d: %+v, want persistent 3600 netmask %#x", tc.family, vs, tc.want)
			}
		}
	}
}

func TestDesiredSharedKeysAreCounted(t *testing.T) {
	// Two Services list the same external IP on different ports; deleting one must
	// keep the address bound for the other.
	a := svcPort("a", 80, "10.96.0.1", externalIPs("203.0.113.7"))
	b := svcPort("b", 81, "10.96.0.2", externalIPs("203.0.113.7"))
	env := newPlanEnv(PlanOptions{}.withDefaults(), &proxier.Node{Name: testNodeName})
	x := newDesiredIndex(0)
	x.set(a.Name, env.contribute(a), nil)
	x.set(b.Name, env.contribute(b), nil)
	tc := newTouched()
	x.set(a.Name, nil, tc)
	s := x.partial(env, tc)
	if _, ok := s.Addresses[netip.MustParseAddr("203.0.113.7")]; !ok {
		t.Errorf("shared external IP unbound after deleting one of its Services:\n%s", dump(s))
	}
	if _, ok := s.Addresses[netip.MustParseAddr("10.96.0.1")]; ok {
		t.Errorf("deleted Service's cluster IP still desired")
	}
	if _, ok := tc.addrs[netip.MustParseAddr("10.96.0.1")]; !ok {
		t.Errorf("deleted cluster IP not reported as touched")
	}
}

func TestDesiredCollidingVirtualServers(t *testing.T) {
	// Two Services claim the same external IP and port: the first by name wins, and
	// the other takes over when it goes away.
	a := svcPort("a", 80, "10.96.0.1", externalIPs("203.0.113.7"), eps("10.244.2.1:80"))
	b := svcPort("b", 80, "10.96.0.2", externalIPs("203.0.113.7"), eps("10.244.2.2:80"))
	key := VSKey{Addr: netip.MustParseAddr("203.0.113.7"), Protocol: proxier.ProtocolTCP, Port: 80}
	s := Desired(proxier.NewState(testNode(), b, a), PlanOptions{})
	if got := s.Servers[key].Reals[0].Addr.Addr().String(); got != "10.244.2.1" {
		t.Errorf("colliding virtual server uses %s, want the first Service's endpoint", got)
	}
	env := newPlanEnv(PlanOptions{}.withDefaults(), &proxier.Node{Name: testNodeName})
	x := newDesiredIndex(0)
	x.set(a.Name, env.contribute(a), nil)
	x.set(b.Name, env.contribute(b), nil)
	x.set(a.Name, nil, newTouched())
	if got := x.server(key).Reals[0].Addr.Addr().String(); got != "10.244.2.2" {
		t.Errorf("after the owner left, virtual server uses %s, want the other Service's endpoint", got)
	}
}

func TestGlue(t *testing.T) {
	sp := svcPort("lb", 443, "10.96.0.14", lbIngress("192.0.2.10", proxier.IPModeVIP), sourceRanges("203.0.113.0/24"),
		nodePort(30443), eps("10.244.1.5:8443@local"))
	cases := []struct {
		name       string
		opts       PlanOptions
		want, deny []string
	}{{
		name: "defaults",
		opts: PlanOptions{HostAddresses: hostAddrs()},
		want: []string{
			`-A KUBE-SERVICES -s 127.0.0.0/8 -j RETURN`,
			`-A KUBE-SERVICES -m comment --comment "Kubernetes service cluster ip + port for masquerade purpose" -m set --match-set KUBE-CLUSTER-IP src,dst -j KUBE-MARK-MASQ`,
			`-A KUBE-NODE-PORT -p tcp -m comment --comment "Kubernetes nodeport TCP port for masquerade purpose" -m set --match-set KUBE-NODE-PORT-TCP dst -j KUBE-MARK-MASQ`,
			`-A KUBE-POSTROUTING -m comment --comment "Kubernetes endpoints dst ip:port, source ip for solving hairpin purpose" -m set --match-set KUBE-LOOP-BACK dst,dst,src -j MASQUERADE`,
			`-A KUBE-IPVS-OUT-FILTER -s 192.0.2.10/32 -m ipvs --vaddr 192.0.2.10/32 --vproto tcp --vport 443 -j DROP`,
			`-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000`,
			`-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE`,
			`-A KUBE-IPVS-FILTER -m conntrack --ctstate NEW -m set --match-set KUBE-IPVS-IPS dst -j REJECT`,
		},
		deny: []string{"KUBE-EXTERNAL-IP dst,dst -j KUBE-MARK-MASQ", "--random-fully", "KUBE-NODE-PORT-LOCAL-TCP"},
	}, {
		name: "masquerade all, bit 10, random-fully",
		opts: PlanOptions{HostAddresses: hostAddrs(), MasqueradeAll: true, MasqueradeBit: 10, RandomFully: true},
		want: []string{
			`-m set --match-set KUBE-CLUSTER-IP dst,dst -j KUBE-MARK-MASQ`,
			`-A KUBE-MARK-MASQ -j MARK --or-mark 0x400`,
			`-j MASQUERADE --random-fully`,
		},
	}, {
		name: "cluster CIDR local detection",
		opts: PlanOptions{HostAddresses: hostAddrs(), LocalDetector: LocalDetector{CIDRs: []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16"), netip.MustParsePrefix("fd00:244::/48")}}},
		want: []string{`-m set --match-set KUBE-CLUSTER-IP dst,dst ! -s 10.244.0.0/16 -j KUBE-MARK-MASQ`},
	}, {
		name: "IPv6 uses KUBE-6- sets and ::1",
		opts: PlanOptions{Family: proxier.IPv6, LocalDetector: LocalDetector{Interface: "veth+"}},
		want: []string{`-A KUBE-SERVICES -s ::1/128 -j RETURN`, `--match-set KUBE-6-IPVS-IPS dst -j REJECT`},
		deny: []string{"--match-set KUBE-CLUSTER-IP"},
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			glue := string(Desired(proxier.NewState(testNode(), svcPort("dual", 80, "10.96.0.17,fd00:96::17"), sp), tc.opts).Glue)
			for _, w := range tc.want {
				if !strings.Contains(glue, w) {
					t.Errorf("glue lacks %q:\n%s", w, glue)
				}
			}
			for _, d := range tc.deny {
				if strings.Contains(glue, d) {
					t.Errorf("glue has %q:\n%s", d, glue)
				}
			}
		})
	}
}

func TestPlanOptionsValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts PlanOptions
		ok   bool
	}{
		{"defaults", PlanOptions{}, true},
		{"every scheduler", PlanOptions{Scheduler: "lblcr"}, true},
		{"unknown scheduler", PlanOptions{Scheduler: "fancy"}, false},
		{"family", PlanOptions{Family: 5}, false},
		{"masquerade bit", PlanOptions{MasqueradeBit: 32}, false},
		{"primary alone", PlanOptions{NodePortAddresses: []string{"primary"}}, true},
		{"primary mixed", PlanOptions{NodePortAddresses: []string{"primary", "10.0.0.0/8"}}, false},
		{"bad CIDR", PlanOptions{NodePortAddresses: []string{"10.0.0.1"}}, false},
		{"negative timeout", PlanOptions{GracefulTimeout: -time.Second}, false},
	} {
		err := tc.opts.withDefaults().validate()
		if (err == nil) != tc.ok {
			t.Errorf("%s: validate() = %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}
