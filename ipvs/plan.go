package ipvs

import (
	"bytes"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"

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
	// Maps are walked in whatever order Go gives; only the (usually few) operations
	// are sorted, so an unchanged state of 10,000 Services costs no sorting at all.
	var ops []Op
	if len(observed.Servers) == 0 {
		// A cold kernel: everything is added, so size the plan once instead of
		// growing a 100,000-operation slice step by step.
		n := len(desired.Addresses) + len(desired.Sets) + 3
		for _, vs := range desired.Servers {
			n += 1 + len(vs.Reals)
		}
		for _, set := range desired.Sets {
			n += len(set.Entries)
		}
		ops = make([]Op, 0, n)
	}
	emit := func(o Op) { ops = append(ops, o) }

	if desired.Device && !observed.Device {
		emit(Op{Action: EnsureDevice})
	}

	for name, set := range desired.Sets {
		oset, exists := observed.Sets[name]
		if !exists {
			emit(Op{Action: CreateSet, Set: &set.Spec})
		}
		for e := range set.Entries {
			if exists {
				if _, ok := oset.Entries[e]; ok {
					continue
				}
			}
			emit(Op{Action: AddEntry, Set: &set.Spec, Entry: e})
		}
		if exists {
			for e := range oset.Entries {
				if _, ok := set.Entries[e]; !ok {
					emit(Op{Action: DeleteEntry, Set: &set.Spec, Entry: e})
				}
			}
		}
	}

	for key, vs := range desired.Servers {
		ovs, exists := observed.Servers[key]
		if !exists {
			emit(Op{Action: AddVirtualServer, Server: vs, Key: key})
			for _, r := range vs.Reals {
				emit(Op{Action: AddRealServer, Server: vs, Key: key, Real: r})
			}
			continue
		}
		if !vs.SameAttrs(ovs) {
			emit(Op{Action: UpdateVirtualServer, Server: vs, Key: key})
		}
		diffReals(vs, ovs, emit)
	}
	for key, ovs := range observed.Servers {
		if _, ok := desired.Servers[key]; !ok {
			emit(Op{Action: DeleteVirtualServer, Server: ovs, Key: key})
		}
	}

	for a := range desired.Addresses {
		if _, ok := observed.Addresses[a]; !ok {
			emit(Op{Action: BindAddress, Addr: a})
		}
	}
	for a := range observed.Addresses {
		if _, ok := desired.Addresses[a]; !ok {
			emit(Op{Action: UnbindAddress, Addr: a})
		}
	}

	if desired.Glue != nil {
		switch {
		case observed.Glue == nil:
			emit(Op{Action: RestoreGlue, Family: desired.Family, Glue: desired.Glue})
			emit(Op{Action: EnsureJumps, Family: desired.Family})
		case !bytes.Equal(desired.Glue, observed.Glue):
			emit(Op{Action: RestoreGlue, Family: desired.Family, Glue: desired.Glue})
		}
	}

	slices.SortFunc(ops, compareOps)
	return ops
}

// compareOps orders operations by action (see Action), then deterministically within
// an action: by virtual server and real server, by address, or by set and member.
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
