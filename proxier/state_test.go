package proxier

import (
	"maps"
	"slices"
	"testing"
	"time"
)

func spn(ns, name, port string, proto Protocol) ServicePortName {
	return ServicePortName{ServiceName: ServiceName{Namespace: ns, Name: name}, Port: port, Protocol: proto}
}

func nameSet(names ...ServicePortName) map[ServicePortName]struct{} {
	m := make(map[ServicePortName]struct{}, len(names))
	for _, n := range names {
		m[n] = struct{}{}
	}
	return m
}

func TestServicePortNameCompare(t *testing.T) {
	tests := []struct {
		name string
		a, b ServicePortName
		want int // sign only
	}{
		{"equal", spn("ns", "a", "http", ProtocolTCP), spn("ns", "a", "http", ProtocolTCP), 0},
		{"namespace first", spn("a", "z", "z", ProtocolSCTP), spn("b", "a", "a", ProtocolTCP), -1},
		{"then name", spn("ns", "b", "a", ProtocolTCP), spn("ns", "a", "z", ProtocolTCP), 1},
		{"then port name", spn("ns", "a", "dns", ProtocolUDP), spn("ns", "a", "http", ProtocolTCP), -1},
		{"unnamed port sorts first", spn("ns", "a", "", ProtocolUDP), spn("ns", "a", "a", ProtocolTCP), -1},
		{"then protocol, TCP < UDP", spn("ns", "a", "dns", ProtocolTCP), spn("ns", "a", "dns", ProtocolUDP), -1},
		{"then protocol, SCTP > UDP", spn("ns", "a", "p", ProtocolSCTP), spn("ns", "a", "p", ProtocolUDP), 1},
	}
	sign := func(i int) int { return min(max(i, -1), 1) }
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := sign(tc.a.Compare(tc.b)); got != tc.want {
				t.Errorf("%v.Compare(%v) sign = %d, want %d", tc.a, tc.b, got, tc.want)
			}
			if got := sign(tc.b.Compare(tc.a)); got != -tc.want {
				t.Errorf("%v.Compare(%v) sign = %d, want %d (antisymmetry)", tc.b, tc.a, got, -tc.want)
			}
		})
	}
}

func TestServicePortNameString(t *testing.T) {
	tests := []struct {
		in   ServicePortName
		want string
	}{
		{spn("default", "kubernetes", "https", ProtocolTCP), "default/kubernetes:https/tcp"},
		{spn("kube-system", "kube-dns", "dns", ProtocolUDP), "kube-system/kube-dns:dns/udp"},
		{spn("ns", "svc", "", ProtocolSCTP), "ns/svc:/sctp"},
	}
	for _, tc := range tests {
		if got := tc.in.String(); got != tc.want {
			t.Errorf("String() = %q, want %q", got, tc.want)
		}
	}
}

func TestNewState(t *testing.T) {
	node := Node{Name: "node-a"}
	b := &ServicePort{Name: spn("ns", "b", "", ProtocolTCP), Port: 80}
	aUDP := &ServicePort{Name: spn("ns", "a", "dns", ProtocolUDP), Port: 53}
	aTCP := &ServicePort{Name: spn("ns", "a", "dns", ProtocolTCP), Port: 53}
	other := &ServicePort{Name: spn("default", "z", "", ProtocolTCP), Port: 443}
	bReplacement := &ServicePort{Name: spn("ns", "b", "", ProtocolTCP), Port: 8080}

	s := NewState(node, b, aUDP, aTCP, other, bReplacement)

	t.Run("node and generation", func(t *testing.T) {
		if s.Node.Name != "node-a" {
			t.Errorf("Node.Name = %q", s.Node.Name)
		}
		if s.Generation != 0 {
			t.Errorf("Generation = %d, want 0 for a hand-made state", s.Generation)
		}
	})
	t.Run("a later port with the same name replaces an earlier one", func(t *testing.T) {
		if s.Len() != 4 {
			t.Errorf("Len() = %d, want 4", s.Len())
		}
		got, ok := s.Lookup(b.Name)
		if !ok || got != bReplacement {
			t.Errorf("Lookup(%v) = %v, %v; want the replacement", b.Name, got, ok)
		}
	})
	t.Run("lookup of a missing name", func(t *testing.T) {
		if sp, ok := s.Lookup(spn("ns", "missing", "", ProtocolTCP)); ok || sp != nil {
			t.Errorf("Lookup(missing) = %v, %v", sp, ok)
		}
	})
	t.Run("ServicePorts sorted by namespace, name, port, protocol", func(t *testing.T) {
		want := []*ServicePort{other, aTCP, aUDP, bReplacement}
		got := s.ServicePorts()
		if !slices.Equal(got, want) {
			t.Errorf("ServicePorts() = %v, want %v", names(got), names(want))
		}
		// Sorting happens once: callers share the slice.
		if again := s.ServicePorts(); len(again) > 0 && &again[0] != &got[0] {
			t.Errorf("ServicePorts() returned a new slice on the second call")
		}
	})
	t.Run("empty state", func(t *testing.T) {
		e := NewState(node)
		if e.Len() != 0 || len(e.ServicePorts()) != 0 {
			t.Errorf("empty state has %d ports", e.Len())
		}
	})
}

func names(sps []*ServicePort) []string {
	out := make([]string, 0, len(sps))
	for _, sp := range sps {
		out = append(out, sp.Name.String())
	}
	return out
}

func TestChangeSetHasAndEmpty(t *testing.T) {
	a := spn("ns", "a", "", ProtocolTCP)
	b := spn("ns", "b", "", ProtocolTCP)
	tests := []struct {
		name       string
		cs         ChangeSet
		wantEmpty  bool
		wantHasA   bool
		wantHasB   bool
		wantIsFull bool
	}{
		{name: "zero value is empty", cs: ChangeSet{}, wantEmpty: true},
		{name: "empty services map is empty", cs: ChangeSet{Services: nameSet()}, wantEmpty: true},
		{
			name:      "trigger times alone are nothing to do",
			cs:        ChangeSet{TriggerTimes: map[ServiceName]time.Time{a.ServiceName: time.Unix(1, 0)}},
			wantEmpty: true,
		},
		{name: "one service", cs: ChangeSet{Services: nameSet(a)}, wantHasA: true},
		{name: "full sync has everything", cs: FullSync(), wantHasA: true, wantHasB: true, wantIsFull: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.cs.Empty(); got != tc.wantEmpty {
				t.Errorf("Empty() = %v, want %v", got, tc.wantEmpty)
			}
			if got := tc.cs.Has(a); got != tc.wantHasA {
				t.Errorf("Has(a) = %v, want %v", got, tc.wantHasA)
			}
			if got := tc.cs.Has(b); got != tc.wantHasB {
				t.Errorf("Has(b) = %v, want %v", got, tc.wantHasB)
			}
			if tc.cs.Full != tc.wantIsFull {
				t.Errorf("Full = %v", tc.cs.Full)
			}
		})
	}
}

func TestChangeSetMerge(t *testing.T) {
	a := spn("ns", "a", "", ProtocolTCP)
	b := spn("ns", "b", "", ProtocolTCP)
	t1, t2, t3 := time.Unix(100, 0), time.Unix(200, 0), time.Unix(300, 0)
	svcA, svcB := a.ServiceName, b.ServiceName

	tests := []struct {
		name         string
		x, y         ChangeSet
		wantFull     bool
		wantServices []ServicePortName
		wantTriggers map[ServiceName]time.Time
	}{
		{name: "two empty change sets", wantServices: nil},
		{
			name:         "union of services",
			x:            ChangeSet{Services: nameSet(a)},
			y:            ChangeSet{Services: nameSet(b, a)},
			wantServices: []ServicePortName{a, b},
		},
		{
			name:     "full absorbs services",
			x:        ChangeSet{Services: nameSet(a)},
			y:        FullSync(),
			wantFull: true,
		},
		{
			name:     "full on the left absorbs services too",
			x:        FullSync(),
			y:        ChangeSet{Services: nameSet(b)},
			wantFull: true,
		},
		{
			name:         "earliest trigger time per service is kept",
			x:            ChangeSet{Services: nameSet(a), TriggerTimes: map[ServiceName]time.Time{svcA: t2, svcB: t1}},
			y:            ChangeSet{Services: nameSet(b), TriggerTimes: map[ServiceName]time.Time{svcA: t1, svcB: t3}},
			wantServices: []ServicePortName{a, b},
			wantTriggers: map[ServiceName]time.Time{svcA: t1, svcB: t1},
		},
		{
			name:         "trigger times survive a full merge",
			x:            ChangeSet{TriggerTimes: map[ServiceName]time.Time{svcA: t2}},
			y:            ChangeSet{Full: true, TriggerTimes: map[ServiceName]time.Time{svcB: t3}},
			wantFull:     true,
			wantTriggers: map[ServiceName]time.Time{svcA: t2, svcB: t3},
		},
		{
			name:         "trigger times only on the right",
			y:            ChangeSet{TriggerTimes: map[ServiceName]time.Time{svcB: t3}},
			wantTriggers: map[ServiceName]time.Time{svcB: t3},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			xServices, yServices := maps.Clone(tc.x.Services), maps.Clone(tc.y.Services)
			xTriggers, yTriggers := maps.Clone(tc.x.TriggerTimes), maps.Clone(tc.y.TriggerTimes)

			got := tc.x.Merge(tc.y)

			if got.Full != tc.wantFull {
				t.Errorf("Full = %v, want %v", got.Full, tc.wantFull)
			}
			if tc.wantFull && got.Services != nil {
				t.Errorf("full merge kept Services %v", got.Services)
			}
			if !maps.Equal(got.Services, nameSet(tc.wantServices...)) {
				t.Errorf("Services = %v, want %v", got.Services, tc.wantServices)
			}
			if !maps.EqualFunc(got.TriggerTimes, tc.wantTriggers, time.Time.Equal) {
				t.Errorf("TriggerTimes = %v, want %v", got.TriggerTimes, tc.wantTriggers)
			}
			// Merge must not write into its inputs: the Runner merges a carried
			// change set into each new one.
			if !maps.Equal(tc.x.Services, xServices) || !maps.Equal(tc.y.Services, yServices) ||
				!maps.Equal(tc.x.TriggerTimes, xTriggers) || !maps.Equal(tc.y.TriggerTimes, yTriggers) {
				t.Errorf("Merge modified its inputs")
			}
			if got.TriggerTimes != nil {
				got.TriggerTimes[ServiceName{Name: "poke"}] = time.Time{}
				if _, leaked := tc.x.TriggerTimes[ServiceName{Name: "poke"}]; leaked {
					t.Errorf("merged TriggerTimes shares the left input's map")
				}
			}
		})
	}
}
