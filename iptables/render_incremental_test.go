package iptables

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"

	"github.com/kproxy/kproxy/proxier"
)

// diffRulesets describes the first difference between two rulesets, or "".
func diffRulesets(got, want *Ruleset) string {
	if got.Family != want.Family {
		return fmt.Sprintf("family %v, want %v", got.Family, want.Family)
	}
	if !reflect.DeepEqual(got.Jumps, want.Jumps) {
		return "jumps differ"
	}
	if len(got.Tables) != len(want.Tables) {
		return fmt.Sprintf("%d tables, want %d", len(got.Tables), len(want.Tables))
	}
	for i, gt := range got.Tables {
		wt := want.Tables[i]
		if gt.Table != wt.Table {
			return fmt.Sprintf("table %d is %s, want %s", i, gt.Table, wt.Table)
		}
		for j := 0; j < max(len(gt.Chains), len(wt.Chains)); j++ {
			switch {
			case j >= len(gt.Chains):
				return fmt.Sprintf("%s: missing chain %s", gt.Table, wt.Chains[j].Name)
			case j >= len(wt.Chains):
				return fmt.Sprintf("%s: extra chain %s", gt.Table, gt.Chains[j].Name)
			case !gt.Chains[j].Equal(wt.Chains[j]):
				return fmt.Sprintf("%s: chain %s differs from %s:\n got %q\nwant %q", gt.Table,
					gt.Chains[j].Name, wt.Chains[j].Name, gt.Chains[j].Rules, wt.Chains[j].Rules)
			}
		}
	}
	if len(got.Sets) != len(want.Sets) {
		return fmt.Sprintf("%d sets, want %d", len(got.Sets), len(want.Sets))
	}
	for i, gs := range got.Sets {
		ws := want.Sets[i]
		if gs.Name != ws.Name || gs.Type != ws.Type || gs.Family != ws.Family || !slices.Equal(gs.Entries, ws.Entries) {
			return fmt.Sprintf("set %s differs:\n got %+v\nwant %+v", gs.Name, gs, ws)
		}
	}
	return ""
}

// checkSharing verifies that every chain of cur equal to its namesake in prev is the
// very same *ChainRules, as the proxier's fast path expects after a partial render.
func checkSharing(t *testing.T, prev, cur *Ruleset) {
	t.Helper()
	for i, tr := range cur.Tables {
		for _, c := range tr.Chains {
			if o := prev.Tables[i].Chain(c.Name); o != nil && o != c && o.Equal(c) {
				t.Errorf("%s chain %s is unchanged but not shared", tr.Table, c.Name)
			}
		}
	}
	for i, s := range cur.Sets {
		if o := prev.Sets[i]; o != s && slices.Equal(o.Entries, s.Entries) {
			t.Errorf("set %s is unchanged but not shared", s.Name)
		}
	}
}

// randomStep mutates the service ports and reports the change set that goes with it.
func randomStep(c chooser, ports map[proxier.ServicePortName]*proxier.ServicePort, next *int) proxier.ChangeSet {
	changes := proxier.ChangeSet{Services: map[proxier.ServicePortName]struct{}{}}
	names := slices.SortedFunc(func(yield func(proxier.ServicePortName) bool) {
		for n := range ports {
			if !yield(n) {
				return
			}
		}
	}, proxier.ServicePortName.Compare)
	for range 1 + c.intn(4) {
		switch op := c.intn(10); {
		case op < 2 || len(names) == 0: // add
			sp := genServicePort(c, *next)
			*next++
			ports[sp.Name] = sp
			changes.Services[sp.Name] = struct{}{}
		case op < 4: // delete
			n := names[c.intn(len(names))]
			delete(ports, n)
			changes.Services[n] = struct{}{}
		case op < 7: // new endpoints, same service
			n := names[c.intn(len(names))]
			if old, ok := ports[n]; ok {
				sp := genServicePort(c, 0)
				cp := *old
				cp.Endpoints = sp.Endpoints
				ports[n] = &cp
				changes.Services[n] = struct{}{}
			}
		case op < 8: // anything else about the service
			n := names[c.intn(len(names))]
			if _, ok := ports[n]; ok {
				sp := genServicePort(c, 0)
				sp.Name = n
				ports[n] = sp
				changes.Services[n] = struct{}{}
			}
		case op < 9: // a copy with the same content
			n := names[c.intn(len(names))]
			if old, ok := ports[n]; ok {
				cp := *old
				ports[n] = &cp
				changes.Services[n] = struct{}{}
			}
		default: // named in the change set, but the pointer is unchanged
			changes.Services[names[c.intn(len(names))]] = struct{}{}
		}
	}
	return changes
}

func stateOf(node proxier.Node, ports map[proxier.ServicePortName]*proxier.ServicePort) *proxier.State {
	list := make([]*proxier.ServicePort, 0, len(ports))
	for _, sp := range ports {
		list = append(list, sp)
	}
	return proxier.NewState(node, list...)
}

// TestRendererMatchesRender drives Renderers through random sequences of states and
// change sets and checks each result against a from-scratch Render.
func TestRendererMatchesRender(t *testing.T) {
	runs := 60
	if testing.Short() {
		runs = 10
	}
	for run := range runs {
		t.Run(fmt.Sprint(run), func(t *testing.T) {
			c := randChooser{rand.New(rand.NewPCG(uint64(run), 42))}
			family := IPv4
			if run%3 == 2 {
				family = IPv6
			}
			opts := genOptions(c, family)
			node := genNode(c)
			ports := map[proxier.ServicePortName]*proxier.ServicePort{}
			next := 0
			for range c.intn(80) {
				sp := genServicePort(c, next)
				next++
				ports[sp.Name] = sp
			}
			r := NewRenderer(opts)
			prev := r.Render(stateOf(node, ports), proxier.FullSync())
			if d := diffRulesets(prev, Render(stateOf(node, ports), opts)); d != "" {
				t.Fatalf("initial render: %s", d)
			}
			for step := range 40 {
				changes := randomStep(c, ports, &next)
				partial := true
				switch c.intn(20) {
				case 0:
					changes.Full, partial = true, false
				case 1:
					node, partial = genNode(c), false
				}
				state := stateOf(node, ports)
				got := r.Render(state, changes)
				if d := diffRulesets(got, Render(state, opts)); d != "" {
					t.Fatalf("step %d (%d changes, full=%v): %s", step, len(changes.Services), changes.Full, d)
				}
				if partial {
					checkSharing(t, prev, got)
				}
				prev = got
			}
		})
	}
}

// TestDispatchTreeLocality checks that adding one service rewrites only the dispatch
// chains on the path to its address, and that the tree is the same whether it was
// built at once or grown.
func TestDispatchTreeLocality(t *testing.T) {
	opts := RenderOptions{LocalDetector: clusterCIDRs, DispatchLeafSize: 4}
	var ports []*proxier.ServicePort
	for i := range 2000 {
		ports = append(ports, svc(fmt.Sprintf("ns/s%d:p", i), fmt.Sprintf("10.96.%d.%d", i/200, i%200+1),
			endpoints("10.244.2.1:80")))
	}
	r := NewRenderer(opts)
	before := r.Render(proxier.NewState(nodeA, ports...), proxier.FullSync())
	added := svc("ns/new:p", "10.96.3.250", endpoints("10.244.2.2:80"))
	state := proxier.NewState(nodeA, append(ports, added)...)
	after := r.Render(state, proxier.ChangeSet{Services: map[proxier.ServicePortName]struct{}{added.Name: {}}})
	if d := diffRulesets(after, Render(state, opts)); d != "" {
		t.Fatal(d)
	}
	var changed []Chain
	for _, c := range after.Tables[0].Chains {
		if o := before.Tables[0].Chain(c.Name); o != c {
			changed = append(changed, c.Name)
		}
	}
	// The new KUBE-SVC- chain, and at most one chain per tree level (the root
	// included) on the way to 10.96.3.250: /16 -> 10.96.0.0/20 -> 10.96.3.0/24 ->
	// 10.96.3.240/28.
	var dst int
	for _, n := range changed {
		if len(n) > len(dispatchChainPrefix) && string(n[:len(dispatchChainPrefix)]) == dispatchChainPrefix {
			dst++
		}
	}
	if dst > 3 || len(changed) > 5 {
		t.Errorf("adding one service changed %d nat chains (%d dispatch): %v", len(changed), dst, changed)
	}
	if !slices.Contains(changed, topServices) && dst == 0 {
		t.Errorf("no dispatch chain changed: %v", changed)
	}
}
