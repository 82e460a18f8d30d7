package ipvs

import (
	"bytes"
	"fmt"
	"maps"
	"net/netip"
	"slices"

	"github.com/kproxy/kproxy/proxier"
)

// Action is what one Op does. Actions are declared in the order Plan emits them, and
// that order is what keeps traffic flowing while a plan is applied one operation at a
// time:
//
//   - sets and their new members come first, so the glue that matches them, and a
//     crash-restarted proxier deciding which virtual servers are its own, already see
//     them;
//   - virtual servers are created, and get their new real servers, before their
//     address is bound to kube-ipvs0: until then the address is not local and traffic
//     to it is not diverted to a half-built service;
//   - every addition happens before any removal, so a virtual server whose endpoints
//     are replaced never goes through a moment with none (and an operation failing
//     half-way never leaves one emptier than before);
//   - the glue is rewritten after the additions it may start matching and before the
//     removals it may stop matching;
//   - virtual servers are deleted before their address is unbound, and set members
//     last.
type Action uint8

// The actions, in plan order.
const (
	EnsureDevice Action = iota + 1
	CreateSet
	AddEntry
	AddVirtualServer
	UpdateVirtualServer
	AddRealServer
	UpdateRealServer
	BindAddress
	RestoreGlue
	EnsureJumps
	DrainRealServer
	DeleteRealServer
	DeleteVirtualServer
	UnbindAddress
	DeleteEntry
)

var actionNames = [...]string{
	EnsureDevice:        "ensure-device",
	CreateSet:           "create-set",
	AddEntry:            "add-entry",
	AddVirtualServer:    "add-virtual-server",
	UpdateVirtualServer: "update-virtual-server",
	AddRealServer:       "add-real-server",
	UpdateRealServer:    "update-real-server",
	BindAddress:         "bind-address",
	RestoreGlue:         "restore-glue",
	EnsureJumps:         "ensure-jumps",
	DrainRealServer:     "drain-real-server",
	DeleteRealServer:    "delete-real-server",
	DeleteVirtualServer: "delete-virtual-server",
	UnbindAddress:       "unbind-address",
	DeleteEntry:         "delete-entry",
}

// String returns the action's name, e.g. "add-real-server".
func (a Action) String() string {
	if int(a) < len(actionNames) && actionNames[a] != "" {
		return actionNames[a]
	}
	return fmt.Sprintf("Action(%d)", uint8(a))
}

// Op is one step of a plan. Which fields are set depends on Action.
type Op struct {
	Action Action
	// Server is the virtual server for AddVirtualServer and UpdateVirtualServer, and
	// the one whose real server changes for the real server actions; only its key
	// and attributes matter (its Reals are not what the op changes).
	Server *VirtualServer
	// Key is the virtual server an op concerns (also set for DeleteVirtualServer).
	Key VSKey
	// Real is the real server of AddRealServer, UpdateRealServer, DrainRealServer
	// (with weight 0) and DeleteRealServer.
	Real RealServer
	// Addr is the address of BindAddress and UnbindAddress.
	Addr netip.Addr
	// Set is the set of CreateSet, AddEntry and DeleteEntry, Entry the member.
	Set   *SetSpec
	Entry SetEntry
	// Family and Glue are the family and payload of RestoreGlue and EnsureJumps.
	Family proxier.IPFamily
	Glue   []byte
}

// String describes the op for logs, e.g. "add-real-server 10.96.0.1:80/tcp 10.244.1.5:8080 w1".
func (o Op) String() string {
	switch o.Action {
	case AddVirtualServer, UpdateVirtualServer:
		return o.Action.String() + " " + o.Server.String()
	case AddRealServer, UpdateRealServer, DrainRealServer, DeleteRealServer:
		return o.Action.String() + " " + o.Key.String() + " " + o.Real.String()
	case DeleteVirtualServer:
		return o.Action.String() + " " + o.Key.String()
	case BindAddress, UnbindAddress:
		return o.Action.String() + " " + o.Addr.String()
	case CreateSet:
		return o.Action.String() + " " + o.Set.Name + " " + string(o.Set.Type)
	case AddEntry, DeleteEntry:
		return o.Action.String() + " " + o.Set.Name + " " + o.Entry.String()
	case RestoreGlue:
		return fmt.Sprintf("%s IPv%d (%d bytes)", o.Action, o.Family, len(o.Glue))
	case EnsureJumps:
		return fmt.Sprintf("%s IPv%d", o.Action, o.Family)
	}
	return o.Action.String()
}

// Plan returns the operations that turn observed into desired, in apply order (see
// Action). It is pure and deterministic, and minimal: equal snapshots give no
// operation at all, and each difference costs one operation.
//
// observed must hold only what the proxier owns; every virtual server in it that
// desired lacks is deleted. Keys absent from both snapshots are left alone, which is
// how a partial sync plans from partial views.
//
// A real server that is no longer desired is drained rather than deleted when its
// virtual server is TCP: its weight goes to 0 so new connections avoid it while
// established ones finish. A drained one whose connection counters read zero is
// deleted; one still carrying connections is left to the proxier's drain tracking.
// UDP and SCTP real servers are deleted at once. A desired real server found at
// weight 0 (being drained, or left behind by a crash) gets its weight back.
func Plan(desired, observed *Snapshot) []Op {
	// Every difference is found by walking maps in whatever order Go gives, and only
	// the differences are sorted, so an unchanged state of 10,000 Services costs no
	// sorting at all. Each kind of difference goes to its action's bucket in sorted
	// order, and the buckets are concatenated in action order: the result is ordered
	// by compareOps without sorting the (on a cold node, 140,000) operations
	// themselves, which costs seconds on a slow machine.
	var p planner
	if len(observed.Servers) == 0 {
		p.reserveCold(desired, observed)
	}

	if desired.Device && !observed.Device {
		p.emit(Op{Action: EnsureDevice})
	}
	p.planSets(desired, observed)
	p.planServers(desired, observed)
	p.planAddresses(desired, observed)

	if desired.Glue != nil {
		switch {
		case observed.Glue == nil:
			p.emit(Op{Action: RestoreGlue, Family: desired.Family, Glue: desired.Glue})
			p.emit(Op{Action: EnsureJumps, Family: desired.Family})
		case !bytes.Equal(desired.Glue, observed.Glue):
			p.emit(Op{Action: RestoreGlue, Family: desired.Family, Glue: desired.Glue})
		}
	}
	return p.ops()
}

// planner collects a plan's operations by action.
type planner struct {
	buckets [DeleteEntry + 1][]Op
	// all, when set, backs the buckets: each is a window of it sized for the
	// operations expected, so that when they all come exactly as expected the plan
	// is all, and is neither grown step by step nor copied.
	all      []Op
	reserved [DeleteEntry + 1]int
}

// reserveCold lays out p.all for a kernel without virtual servers, where every
// desired object is added: 140,000 operations at 10,000 Services, whose copying and
// growth would cost more than planning them.
func (p *planner) reserveCold(desired, observed *Snapshot) {
	n := &p.reserved
	if desired.Device && !observed.Device {
		n[EnsureDevice] = 1
	}
	for name, set := range desired.Sets {
		if _, ok := observed.Sets[name]; !ok {
			n[CreateSet]++
		}
		n[AddEntry] += len(set.Entries)
	}
	n[AddVirtualServer] = len(desired.Servers)
	for _, vs := range desired.Servers {
		n[AddRealServer] += len(vs.Reals)
	}
	n[BindAddress] = len(desired.Addresses)
	if desired.Glue != nil {
		n[RestoreGlue], n[EnsureJumps] = 1, 1
	}
	total := 0
	for _, c := range n {
		total += c
	}
	p.all = make([]Op, total)
	off := 0
	for a, c := range n {
		p.buckets[a] = p.all[off : off : off+c]
		off += c
	}
}

func (p *planner) emit(o Op) { p.buckets[o.Action] = append(p.buckets[o.Action], o) }

// ops concatenates the buckets in action order, or returns p.all when the buckets
// filled it exactly (they were appended to in place).
func (p *planner) ops() []Op {
	n, exact := 0, p.all != nil
	for a, b := range p.buckets {
		n += len(b)
		exact = exact && len(b) == p.reserved[a]
	}
	if n == 0 {
		return nil
	}
	if exact {
		return p.all
	}
	ops := make([]Op, 0, n)
	for _, b := range p.buckets {
		ops = append(ops, b...)
	}
	return ops
}

// planSets emits the creation of missing sets and the member changes, set by set in
// name order, members in order.
func (p *planner) planSets(desired, observed *Snapshot) {
	for _, name := range sortedKeys(desired.Sets) {
		set := desired.Sets[name]
		oset, exists := observed.Sets[name]
		if !exists {
			p.emit(Op{Action: CreateSet, Set: &set.Spec})
			oset = &SetState{}
		}
		var add, del []SetEntry
		for e := range set.Entries {
			if _, ok := oset.Entries[e]; !ok {
				add = append(add, e)
			}
		}
		for e := range oset.Entries {
			if _, ok := set.Entries[e]; !ok {
				del = append(del, e)
			}
		}
		slices.SortFunc(add, SetEntry.Compare)
		slices.SortFunc(del, SetEntry.Compare)
		for _, e := range add {
			p.emit(Op{Action: AddEntry, Set: &set.Spec, Entry: e})
		}
		for _, e := range del {
			p.emit(Op{Action: DeleteEntry, Set: &set.Spec, Entry: e})
		}
	}
}

// planServers emits the virtual and real server changes, virtual server by virtual
// server in key order (real servers are kept sorted).
func (p *planner) planServers(desired, observed *Snapshot) {
	var changed []VSKey
	for key, vs := range desired.Servers {
		ovs, exists := observed.Servers[key]
		if !exists || !vs.SameAttrs(ovs) || realsDiffer(vs, ovs) {
			changed = append(changed, key)
		}
	}
	for key := range observed.Servers {
		if _, ok := desired.Servers[key]; !ok {
			changed = append(changed, key)
		}
	}
	slices.SortFunc(changed, VSKey.Compare)
	for _, key := range changed {
		vs, ovs := desired.Servers[key], observed.Servers[key]
		switch {
		case vs == nil:
			p.emit(Op{Action: DeleteVirtualServer, Server: ovs, Key: key})
		case ovs == nil:
			p.emit(Op{Action: AddVirtualServer, Server: vs, Key: key})
			for _, r := range vs.Reals {
				p.emit(Op{Action: AddRealServer, Server: vs, Key: key, Real: r})
			}
		default:
			if !vs.SameAttrs(ovs) {
				p.emit(Op{Action: UpdateVirtualServer, Server: vs, Key: key})
			}
			diffReals(vs, ovs, p.emit)
		}
	}
}

// realsDiffer reports whether diffReals would emit anything.
func realsDiffer(vs, ovs *VirtualServer) bool {
	differ := false
	diffReals(vs, ovs, func(Op) { differ = true })
	return differ
}

// planAddresses emits the address bindings and unbindings, in address order.
func (p *planner) planAddresses(desired, observed *Snapshot) {
	var bind, unbind []netip.Addr
	for a := range desired.Addresses {
		if _, ok := observed.Addresses[a]; !ok {
			bind = append(bind, a)
		}
	}
	for a := range observed.Addresses {
		if _, ok := desired.Addresses[a]; !ok {
			unbind = append(unbind, a)
		}
	}
	slices.SortFunc(bind, netip.Addr.Compare)
	slices.SortFunc(unbind, netip.Addr.Compare)
	for _, a := range bind {
		p.emit(Op{Action: BindAddress, Addr: a})
	}
	for _, a := range unbind {
		p.emit(Op{Action: UnbindAddress, Addr: a})
	}
}

// diffReals emits the real server changes of one virtual server present on both sides.
// Both lists are sorted, so this is a merge.
func diffReals(vs, ovs *VirtualServer, emit func(Op)) {
	want, have := vs.Reals, ovs.Reals
	i, j := 0, 0
	for i < len(want) || j < len(have) {
		switch {
		case j == len(have) || (i < len(want) && want[i].Addr.Compare(have[j].Addr) < 0):
			emit(Op{Action: AddRealServer, Server: vs, Key: vs.VSKey, Real: want[i]})
			i++
		case i == len(want) || want[i].Addr.Compare(have[j].Addr) > 0:
			if op, ok := retire(vs, have[j]); ok {
				emit(op)
			}
			j++
		default:
			if want[i].Weight != have[j].Weight {
				emit(Op{Action: UpdateRealServer, Server: vs, Key: vs.VSKey, Real: want[i]})
			}
			i++
			j++
		}
	}
}

// retire returns the op that removes a real server no longer desired, if any is due.
func retire(vs *VirtualServer, r RealServer) (Op, bool) {
	switch {
	case !gracefulTermination(vs.Protocol) || (r.Weight == 0 && r.idle()):
		return Op{Action: DeleteRealServer, Server: vs, Key: vs.VSKey, Real: r}, true
	case r.Weight != 0:
		d := r
		d.Weight = 0
		return Op{Action: DrainRealServer, Server: vs, Key: vs.VSKey, Real: d}, true
	}
	return Op{}, false
}

// survivesRetire reports whether a real server that is no longer desired is still in
// the kernel after its plan was applied: a drained (or draining) TCP real server.
func survivesRetire(proto proxier.Protocol, r RealServer) bool {
	return gracefulTermination(proto) && !(r.Weight == 0 && r.idle())
}

// Sorted views of maps, for dumps and deterministic iteration outside the hot path.
func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }

func sortedServerKeys(m map[VSKey]*VirtualServer) []VSKey {
	return slices.SortedFunc(maps.Keys(m), VSKey.Compare)
}

func sortedAddrs(m map[netip.Addr]struct{}) []netip.Addr {
	return slices.SortedFunc(maps.Keys(m), netip.Addr.Compare)
}

func sortedEntries(m map[SetEntry]struct{}) []SetEntry {
	return slices.SortedFunc(maps.Keys(m), SetEntry.Compare)
}
