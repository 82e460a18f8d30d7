package kernel

import (
	"slices"
	"sync"
	"time"

	"github.com/kproxy/kproxy/proxier"
)

// source is a proxier.Source a test sets directly, standing in for the controllers'
// Builder: Set publishes a new desired state, and Snapshot reports what changed since
// the previous snapshot exactly as a Builder would (changed ports; everything when the
// node changed).
type source struct {
	mu       sync.Mutex
	node     proxier.Node
	ports    map[proxier.ServicePortName]*proxier.ServicePort
	changed  map[proxier.ServicePortName]struct{}
	full     bool
	triggers map[proxier.ServiceName]time.Time
	notify   chan struct{}
	init     chan struct{}
}

var _ proxier.Source = (*source)(nil)

func newSource(node proxier.Node) *source {
	s := &source{
		node:    node,
		ports:   map[proxier.ServicePortName]*proxier.ServicePort{},
		changed: map[proxier.ServicePortName]struct{}{},
		notify:  make(chan struct{}, 1),
		init:    make(chan struct{}),
	}
	close(s.init)
	return s
}

// Set replaces the desired state with node and exactly sps, and wakes the Runner.
func (s *source) Set(node proxier.Node, sps ...*proxier.ServicePort) {
	s.mu.Lock()
	now := time.Now()
	next := make(map[proxier.ServicePortName]*proxier.ServicePort, len(sps))
	mark := func(name proxier.ServicePortName) {
		s.changed[name] = struct{}{}
		if s.triggers == nil {
			s.triggers = map[proxier.ServiceName]time.Time{}
		}
		if _, ok := s.triggers[name.ServiceName]; !ok {
			s.triggers[name.ServiceName] = now
		}
	}
	for _, sp := range sps {
		next[sp.Name] = sp
		if old, ok := s.ports[sp.Name]; !ok || old != sp {
			mark(sp.Name)
		}
	}
	for name := range s.ports {
		if _, ok := next[name]; !ok {
			mark(name)
		}
	}
	if !nodeEqual(node, s.node) {
		s.full = true
	}
	s.node, s.ports = node, next
	s.mu.Unlock()
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

// Snapshot implements proxier.Source.
func (s *source) Snapshot() (*proxier.State, proxier.ChangeSet) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ports := make([]*proxier.ServicePort, 0, len(s.ports))
	for _, sp := range s.ports {
		ports = append(ports, sp)
	}
	cs := proxier.ChangeSet{Full: s.full, TriggerTimes: s.triggers}
	if !s.full && len(s.changed) > 0 {
		cs.Services = s.changed
	}
	s.changed, s.full, s.triggers = map[proxier.ServicePortName]struct{}{}, false, nil
	return proxier.NewState(s.node, ports...), cs
}

// Changed implements proxier.Source.
func (s *source) Changed() <-chan struct{} { return s.notify }

// Initialized implements proxier.Source: the test's model is complete from the start.
func (s *source) Initialized() <-chan struct{} { return s.init }

// nodeEqual reports whether two nodes program the same rules.
func nodeEqual(a, b proxier.Node) bool {
	return a.Name == b.Name && a.Zone == b.Zone && a.Deleting == b.Deleting &&
		slices.Equal(a.Addresses, b.Addresses) && slices.Equal(a.PodCIDRs, b.PodCIDRs)
}
