package ipvs

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/kproxy/kproxy/proxier"
)

// vsOf builds a virtual server "addr:port/proto" with real servers "addr:port/weight"
// or "addr:port/weight/active/inactive".
func vsOf(key string, reals ...string) *VirtualServer {
	k := parseKey(key)
	vs := &VirtualServer{VSKey: k, Scheduler: "rr", Netmask: netmaskFor(k.Family())}
	for _, r := range reals {
		parts := strings.Split(r, "/")
		rs := RealServer{Addr: netip.MustParseAddrPort(parts[0]), Weight: 1}
		if len(parts) > 1 {
			rs.Weight = atoi(parts[1])
		}
		if len(parts) > 3 {
			rs.ActiveConns, rs.InactiveConns = atoi(parts[2]), atoi(parts[3])
		}
		vs.Reals = append(vs.Reals, rs)
	}
	sortReals(vs.Reals)
	return vs
}

func parseKey(s string) VSKey {
	ap, protoName, _ := strings.Cut(s, "/")
	a := netip.MustParseAddrPort(ap)
	p := map[string]proxier.Protocol{"tcp": proxier.ProtocolTCP, "udp": proxier.ProtocolUDP, "sctp": proxier.ProtocolSCTP}[protoName]
	return VSKey{Addr: a.Addr(), Protocol: p, Port: a.Port()}
}

func atoi(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		panic(err)
	}
	return n
}

// snap builds a snapshot of the given virtual servers and addresses, with the device
// and every set present, and a fixed glue.
func snap(servers []*VirtualServer, addrs ...string) *Snapshot {
	s := NewSnapshot(proxier.IPv4)
	s.Device = true
	s.Glue = []byte("glue")
	for _, vs := range servers {
		s.Servers[vs.VSKey] = vs
	}
	for _, a := range addrs {
		s.Addresses[netip.MustParseAddr(a)] = struct{}{}
	}
	for _, spec := range Sets(proxier.IPv4) {
		s.Sets[spec.Name] = &SetState{Spec: spec, Entries: map[SetEntry]struct{}{}}
	}
	return s
}

func opStrings(ops []Op) []string {
	out := make([]string, len(ops))
	for i, o := range ops {
		out[i] = o.String()
	}
	return out
}

func TestPlan(t *testing.T) {
	cases := []struct {
		name              string
		desired, observed *Snapshot
		want              []string
	}{{
		name:     "unchanged plans nothing",
		desired:  snap([]*VirtualServer{vsOf("10.96.0.1:80/tcp", "10.244.1.5:80")}, "10.96.0.1"),
		observed: snap([]*VirtualServer{vsOf("10.96.0.1:80/tcp", "10.244.1.5:80/1/3/7")}, "10.96.0.1"),
		want:     nil,
	}, {
		name:     "new service: virtual server, then real servers, then the address",
		desired:  snap([]*VirtualServer{vsOf("10.96.0.1:80/tcp", "10.244.1.6:80", "10.244.1.5:80")}, "10.96.0.1"),
		observed: snap(nil),
		want: []string{
			"add-virtual-server 10.96.0.1:80/tcp rr",
			"add-real-server 10.96.0.1:80/tcp 10.244.1.5:80 w1",
			"add-real-server 10.96.0.1:80/tcp 10.244.1.6:80 w1",
			"bind-address 10.96.0.1",
		},
	}, {
		name:     "deleted service: virtual server first, then the address",
		desired:  snap(nil),
		observed: snap([]*VirtualServer{vsOf("10.96.0.1:80/tcp", "10.244.1.5:80")}, "10.96.0.1"),
		want:     []string{"delete-virtual-server 10.96.0.1:80/tcp", "unbind-address 10.96.0.1"},
	}, {
		name:     "replaced TCP endpoint: the new one is added before the old one drains",
		desired:  snap([]*VirtualServer{vsOf("10.96.0.1:80/tcp", "10.244.1.9:80")}, "10.96.0.1"),
		observed: snap([]*VirtualServer{vsOf("10.96.0.1:80/tcp", "10.244.1.5:80/1/2/0")}, "10.96.0.1"),
		want: []string{
			"add-real-server 10.96.0.1:80/tcp 10.244.1.9:80 w1",
			"drain-real-server 10.96.0.1:80/tcp 10.244.1.5:80 w0",
		},
	}, {
		name:     "replaced UDP endpoint: added, then the old one deleted at once",
		desired:  snap([]*VirtualServer{vsOf("10.96.0.1:53/udp", "10.244.1.9:53")}),
		observed: snap([]*VirtualServer{vsOf("10.96.0.1:53/udp", "10.244.1.5:53/1/0/4")}),
		want: []string{
			"add-real-server 10.96.0.1:53/udp 10.244.1.9:53 w1",
			"delete-real-server 10.96.0.1:53/udp 10.244.1.5:53 w1",
		},
	}, {
		name:    "drained TCP real servers: idle ones deleted, busy ones left, returning ones restored",
		desired: snap([]*VirtualServer{vsOf("10.96.0.1:80/tcp", "10.244.1.7:80")}),
		observed: snap([]*VirtualServer{vsOf("10.96.0.1:80/tcp",
			"10.244.1.5:80/0/0/0", "10.244.1.6:80/0/1/0", "10.244.1.7:80/0/0/2", "10.244.1.8:80/0/-1/-1")}),
		want: []string{
			"update-real-server 10.96.0.1:80/tcp 10.244.1.7:80 w1",
			"delete-real-server 10.96.0.1:80/tcp 10.244.1.5:80 w0",
		},
	}, {
		name:     "scheduler change updates the virtual server in place",
		desired:  snap([]*VirtualServer{func() *VirtualServer { v := vsOf("10.96.0.1:80/tcp"); v.Scheduler = "wlc"; return v }()}),
		observed: snap([]*VirtualServer{vsOf("10.96.0.1:80/tcp")}),
		want:     []string{"update-virtual-server 10.96.0.1:80/tcp wlc"},
	}, {
		name: "set members are added first and deleted last, glue in between",
		desired: func() *Snapshot {
			s := snap([]*VirtualServer{vsOf("10.96.0.2:80/tcp")}, "10.96.0.2")
			s.Sets["KUBE-CLUSTER-IP"].Entries[SetEntry{IP: netip.MustParseAddr("10.96.0.2"), Protocol: proxier.ProtocolTCP, Port: 80}] = struct{}{}
			s.Glue = []byte("glue v2")
			return s
		}(),
		observed: func() *Snapshot {
			s := snap([]*VirtualServer{vsOf("10.96.0.1:80/tcp")}, "10.96.0.1")
			s.Sets["KUBE-CLUSTER-IP"].Entries[SetEntry{IP: netip.MustParseAddr("10.96.0.1"), Protocol: proxier.ProtocolTCP, Port: 80}] = struct{}{}
			return s
		}(),
		want: []string{
			"add-entry KUBE-CLUSTER-IP 10.96.0.2,tcp:80",
			"add-virtual-server 10.96.0.2:80/tcp rr",
			"bind-address 10.96.0.2",
			"restore-glue IPv4 (7 bytes)",
			"delete-virtual-server 10.96.0.1:80/tcp",
			"unbind-address 10.96.0.1",
			"delete-entry KUBE-CLUSTER-IP 10.96.0.1,tcp:80",
		},
	}, {
		name:    "cold kernel: device, sets, glue and jumps",
		desired: snap(nil),
		observed: func() *Snapshot {
			s := NewSnapshot(proxier.IPv4)
			s.Sets["KUBE-CLUSTER-IP"] = &SetState{Spec: Sets(proxier.IPv4)[setClusterIP], Entries: map[SetEntry]struct{}{}}
			return s
		}(),
		want: func() []string {
			out := []string{"ensure-device"}
			for _, spec := range Sets(proxier.IPv4) {
				if spec.Name != "KUBE-CLUSTER-IP" {
					out = append(out, "create-set "+spec.Name+" "+string(spec.Type))
				}
			}
			slices.Sort(out[1:])
			return append(out, "restore-glue IPv4 (4 bytes)", "ensure-jumps IPv4")
		}(),
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := opStrings(Plan(tc.desired, tc.observed))
			if !slices.Equal(got, tc.want) {
				t.Errorf("Plan:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(tc.want, "\n  "))
			}
		})
	}
}

// TestPlanOrderInvariants checks the ordering rules on a plan that has every action.
func TestPlanOrderInvariants(t *testing.T) {
	env := func(ports ...*proxier.ServicePort) *Snapshot {
		return Desired(proxier.NewState(testNode(), ports...), PlanOptions{HostAddresses: hostAddrs()})
	}
	before := env(
		svcPort("a", 80, "10.96.0.1", eps("10.244.2.1:80", "10.244.2.2:80"), externalIPs("203.0.113.1")),
		svcPort("b", 80, "10.96.0.2", eps("10.244.2.3:80"), nodePort(30002)),
	)
	after := env(
		svcPort("a", 80, "10.96.0.1", eps("10.244.2.2:80", "10.244.2.9:80")),
		svcPort("c", 80, "10.96.0.3", eps("10.244.1.3:80@local"), externalIPs("203.0.113.3")),
	)
	ops := Plan(after, before)
	pos := func(pred func(Op) bool) (first, last int) {
		first, last = -1, -1
		for i, o := range ops {
			if pred(o) {
				if first < 0 {
					first = i
				}
				last = i
			}
		}
		return first, last
	}
	is := func(a Action) func(Op) bool { return func(o Op) bool { return o.Action == a } }
	adds := func(o Op) bool { return o.Action <= BindAddress }
	removals := func(o Op) bool { return o.Action >= DrainRealServer }
	_, lastAdd := pos(adds)
	firstRemoval, _ := pos(removals)
	if lastAdd < 0 || firstRemoval < 0 || lastAdd > firstRemoval {
		t.Errorf("additions must all precede removals:\n%s", strings.Join(opStrings(ops), "\n"))
	}
	for j, o := range ops {
		if o.Action == BindAddress {
			i := slices.IndexFunc(ops, func(x Op) bool { return x.Action == AddVirtualServer && x.Key.Addr == o.Addr })
			if i < 0 || i > j {
				t.Errorf("address %s bound before its virtual server was created", o.Addr)
			}
		}
		if o.Action == UnbindAddress {
			i := slices.IndexFunc(ops, func(x Op) bool { return x.Action == DeleteVirtualServer && x.Key.Addr == o.Addr })
			if i < 0 || i > j {
				t.Errorf("address %s unbound before its virtual server was deleted", o.Addr)
			}
		}
	}
	_, lastEntryAdd := pos(is(AddEntry))
	glue, _ := pos(is(RestoreGlue))
	firstEntryDel, _ := pos(is(DeleteEntry))
	if glue < 0 || lastEntryAdd > glue || firstEntryDel < glue {
		t.Errorf("set members must be added before and deleted after the glue restore:\n%s", strings.Join(opStrings(ops), "\n"))
	}
	if got := Plan(after, after); got != nil {
		t.Errorf("unchanged state planned %d operations", len(got))
	}
}

// compareOps is the order Plan's operations come in: by action (see Action), then
// deterministically within an action: by virtual server and real server, by address,
// or by set and member. The plan tests check Plan against it.
func compareOps(a, b Op) int {
	if a.Action != b.Action {
		return int(a.Action) - int(b.Action)
	}
	if c := a.Key.Compare(b.Key); c != 0 {
		return c
	}
	if c := a.Real.Addr.Compare(b.Real.Addr); c != 0 {
		return c
	}
	if c := a.Addr.Compare(b.Addr); c != 0 {
		return c
	}
	if a.Set != nil && b.Set != nil {
		if c := strings.Compare(a.Set.Name, b.Set.Name); c != 0 {
			return c
		}
	}
	return a.Entry.Compare(b.Entry)
}

// TestPlanSortedWithoutSorting checks that Plan's bucketed emission gives the order
// of compareOps, deterministically, on random pairs of snapshots with every kind of
// difference.
func TestPlanSortedWithoutSorting(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	random := func() *Snapshot {
		s := NewSnapshot(proxier.IPv4)
		s.Device = rng.IntN(2) == 0
		for range rng.IntN(40) {
			vs := vsOf(fmt.Sprintf("10.96.0.%d:%d/%s", rng.IntN(20), 80+rng.IntN(2), []string{"tcp", "udp"}[rng.IntN(2)]))
			vs.Scheduler = []string{"rr", "wrr"}[rng.IntN(2)]
			for range rng.IntN(6) {
				vs.Reals = append(vs.Reals, RealServer{Addr: netip.MustParseAddrPort(fmt.Sprintf("10.244.0.%d:8080", rng.IntN(10))),
					Weight: rng.IntN(2), ActiveConns: rng.IntN(2)})
			}
			vs.Reals = slices.CompactFunc(sortedRealsCopy(vs.Reals), func(a, b RealServer) bool { return a.Addr == b.Addr })
			s.Servers[vs.VSKey] = vs
			s.Addresses[vs.Addr] = struct{}{}
		}
		for _, spec := range Sets(proxier.IPv4)[:3] {
			if rng.IntN(3) == 0 {
				continue
			}
			set := &SetState{Spec: spec, Entries: map[SetEntry]struct{}{}}
			for range rng.IntN(10) {
				set.Entries[SetEntry{IP: netip.MustParseAddr(fmt.Sprintf("10.96.0.%d", rng.IntN(10)))}] = struct{}{}
			}
			s.Sets[spec.Name] = set
		}
		return s
	}
	for i := range 200 {
		desired, observed := random(), random()
		ops := Plan(desired, observed)
		if !slices.IsSortedFunc(ops, compareOps) {
			t.Fatalf("case %d: plan not in compareOps order:\n%s", i, strings.Join(opStrings(ops), "\n"))
		}
		if again := Plan(desired, observed); !slices.Equal(opStrings(again), opStrings(ops)) {
			t.Fatalf("case %d: planning twice gave different plans", i)
		}
	}
}

func sortedRealsCopy(rs []RealServer) []RealServer {
	rs = slices.Clone(rs)
	sortReals(rs)
	return rs
}
