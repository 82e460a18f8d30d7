package proxier

import (
	"maps"
	"slices"
	"sync"
	"time"
)

// State is one immutable snapshot of everything a proxier programs: this node and every
// service port with its endpoints. Snapshots share unchanged ServicePorts with their
// predecessors, so publishing one costs a map copy, not a deep copy, and a backend can
// compare a ServicePort pointer with the one it last programmed to know it is unchanged.
//
// A State and everything reachable from it must not be modified.
type State struct {
	// Node is this node as last seen; Node.Name is always set.
	Node Node
	// Generation increases by one with every snapshot a Builder publishes.
	Generation uint64

	services map[ServicePortName]*ServicePort
	sorted   func() []*ServicePort
}

// NewState assembles a snapshot from service ports, for backends' tests and for embedders
// that build their desired state without a Builder. The ports must not be modified
// afterwards; a later port with the same name replaces an earlier one.
func NewState(node Node, ports ...*ServicePort) *State {
	m := make(map[ServicePortName]*ServicePort, len(ports))
	for _, sp := range ports {
		m[sp.Name] = sp
	}
	return newState(node, 0, m)
}

func newState(node Node, gen uint64, services map[ServicePortName]*ServicePort) *State {
	s := &State{Node: node, Generation: gen, services: services}
	s.sorted = sync.OnceValue(func() []*ServicePort {
		out := slices.Collect(maps.Values(s.services))
		slices.SortFunc(out, func(a, b *ServicePort) int { return a.Name.Compare(b.Name) })
		return out
	})
	return s
}

// Len returns the number of service ports.
func (s *State) Len() int { return len(s.services) }

// Lookup returns the service port with the given name.
func (s *State) Lookup(name ServicePortName) (*ServicePort, bool) {
	sp, ok := s.services[name]
	return sp, ok
}

// ServicePorts returns every service port sorted by name. The slice is shared between
// callers and must not be modified; sorting happens once per snapshot, on first use.
func (s *State) ServicePorts() []*ServicePort { return s.sorted() }

// ChangeSet tells a Proxier what changed between the State it last synced successfully
// and the one it is given now, so it can rewrite only those services (a partial sync).
type ChangeSet struct {
	// Full asks for everything to be written and checked again: the first sync, the
	// periodic resync, a sync after a failure, or a node change.
	Full bool
	// Services are the service ports added, updated or deleted. A deleted one is absent
	// from the new State; the proxier finds its old value in the State it synced last.
	Services map[ServicePortName]struct{}
	// TriggerTimes holds, per service, the earliest EndpointSlice change time (the
	// endpoints.kubernetes.io/last-change-trigger-time annotation) this change set
	// covers, for the network-programming latency metric.
	TriggerTimes map[ServiceName]time.Time
}

// FullSync is the change set that asks for a full sync.
func FullSync() ChangeSet { return ChangeSet{Full: true} }

// Has reports whether a service port is part of the change set; everything is in a full
// one.
func (c ChangeSet) Has(name ServicePortName) bool {
	if c.Full {
		return true
	}
	_, ok := c.Services[name]
	return ok
}

// Empty reports whether nothing is to be done.
func (c ChangeSet) Empty() bool { return !c.Full && len(c.Services) == 0 }

// Merge returns the union of two change sets, keeping the earliest trigger times. Used
// when syncs are coalesced or a sync failed and its changes must be carried over.
func (c ChangeSet) Merge(o ChangeSet) ChangeSet {
	out := ChangeSet{Full: c.Full || o.Full}
	if !out.Full && len(c.Services)+len(o.Services) > 0 {
		out.Services = make(map[ServicePortName]struct{}, len(c.Services)+len(o.Services))
		maps.Copy(out.Services, c.Services)
		maps.Copy(out.Services, o.Services)
	}
	if len(c.TriggerTimes)+len(o.TriggerTimes) > 0 {
		out.TriggerTimes = maps.Clone(c.TriggerTimes)
		if out.TriggerTimes == nil {
			out.TriggerTimes = make(map[ServiceName]time.Time, len(o.TriggerTimes))
		}
		for k, t := range o.TriggerTimes {
			if old, ok := out.TriggerTimes[k]; !ok || t.Before(old) {
				out.TriggerTimes[k] = t
			}
		}
	}
	return out
}
