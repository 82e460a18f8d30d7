package proxier

import (
	"maps"
	"net/netip"
	"slices"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
)

// BuilderOptions configures a Builder.
type BuilderOptions struct {
	// NodeName is the node this proxy runs on; endpoints on it are local. Required.
	NodeName string
	// NodePortRange bounds the node ports (and health-check node ports) accepted; a
	// Service outside it is rejected. The zero value accepts 1-65535, so clusters with a
	// custom --service-node-port-range work unchanged.
	NodePortRange PortRange
	// PrimaryNodeIP, when valid, is the node's primary address of its family, listed
	// first in State.Node.Addresses whatever the Node object says: kube-proxy's
	// --bind-address, for nodes whose Node object lists another address first (or
	// none yet).
	PrimaryNodeIP netip.Addr
}

// Builder turns Services, EndpointSlices and the Node into State snapshots. Each update
// recomputes only the Service it concerns; Snapshot publishes the result together with
// the set of service ports that really changed since the previous snapshot.
//
// A Builder is safe for concurrent use: controllers feed it from their goroutines while
// a Runner takes snapshots from another.
type Builder struct {
	opts BuilderOptions

	mu        sync.Mutex
	node      Node
	nodeDirty bool
	// services holds each Service's ports without endpoints, as parsed.
	services     map[ServiceName][]*ServicePort
	slices       map[sliceKey]*parsedSlice
	slicesBySvc  map[ServiceName]map[sliceKey]*parsedSlice
	current      map[ServicePortName]*ServicePort
	portsBySvc   map[ServiceName][]ServicePortName
	dirty        map[ServicePortName]struct{}
	triggerTimes map[ServiceName]time.Time
	published    *State

	changed     chan struct{}
	initialized chan struct{}
	initOnce    sync.Once
}

// NewBuilder returns an empty Builder for the node named in opts.
func NewBuilder(opts BuilderOptions) *Builder {
	if opts.NodePortRange == (PortRange{}) {
		opts.NodePortRange = PortRange{Min: 1, Max: 65535}
	}
	node := Node{Name: opts.NodeName}
	if opts.PrimaryNodeIP.IsValid() {
		node.Addresses = []netip.Addr{opts.PrimaryNodeIP}
	}
	return &Builder{
		opts:         opts,
		node:         node,
		services:     map[ServiceName][]*ServicePort{},
		slices:       map[sliceKey]*parsedSlice{},
		slicesBySvc:  map[ServiceName]map[sliceKey]*parsedSlice{},
		current:      map[ServicePortName]*ServicePort{},
		portsBySvc:   map[ServiceName][]ServicePortName{},
		dirty:        map[ServicePortName]struct{}{},
		triggerTimes: map[ServiceName]time.Time{},
		changed:      make(chan struct{}, 1),
		initialized:  make(chan struct{}),
	}
}

// Changed receives a value after the model changed; several changes may be folded into
// one notification, so a consumer takes a Snapshot after each receive.
func (b *Builder) Changed() <-chan struct{} { return b.changed }

// MarkInitialized tells consumers that every object that existed at start-up has been
// fed in, so a snapshot now is complete. Before that, syncing would program a partial
// ruleset and briefly break services whose objects were not read yet.
func (b *Builder) MarkInitialized() {
	b.initOnce.Do(func() { close(b.initialized) })
	b.notify()
}

// Initialized is closed once MarkInitialized was called.
func (b *Builder) Initialized() <-chan struct{} { return b.initialized }

func (b *Builder) notify() {
	select {
	case b.changed <- struct{}{}:
	default:
	}
}

// UpsertService adds or updates a Service. An invalid Service is removed from the model
// (as if deleted) and an *InvalidObjectError says why; every other service is unaffected.
func (b *Builder) UpsertService(svc *v1.Service) error {
	ports, err := servicePortsFromAPI(svc, &b.opts)
	name := ServiceName{Namespace: svc.Namespace, Name: svc.Name}
	b.mu.Lock()
	defer b.mu.Unlock()
	if ports == nil {
		delete(b.services, name)
	} else {
		b.services[name] = ports
	}
	b.recompute(name)
	return err
}

// DeleteService removes a Service.
func (b *Builder) DeleteService(name ServiceName) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.services, name)
	b.recompute(name)
}

// UpsertEndpointSlice adds or updates an EndpointSlice. An invalid slice is removed (its
// endpoints no longer count) and an *InvalidObjectError says why.
func (b *Builder) UpsertEndpointSlice(s *discovery.EndpointSlice) error {
	parsed, err := sliceFromAPI(s, b.opts.NodeName)
	key := sliceKey{s.Namespace, s.Name}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.removeSlice(key)
	if parsed != nil {
		b.slices[key] = parsed
		bySvc := b.slicesBySvc[parsed.service]
		if bySvc == nil {
			bySvc = map[sliceKey]*parsedSlice{}
			b.slicesBySvc[parsed.service] = bySvc
		}
		bySvc[key] = parsed
		if !parsed.trigger.IsZero() {
			if t, ok := b.triggerTimes[parsed.service]; !ok || parsed.trigger.Before(t) {
				b.triggerTimes[parsed.service] = parsed.trigger
			}
		}
		b.recompute(parsed.service)
	}
	return err
}

// DeleteEndpointSlice removes an EndpointSlice.
func (b *Builder) DeleteEndpointSlice(namespace, name string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.removeSlice(sliceKey{namespace, name})
}

// removeSlice forgets a slice and recomputes the service it belonged to. Called with
// b.mu held.
func (b *Builder) removeSlice(key sliceKey) {
	old, ok := b.slices[key]
	if !ok {
		return
	}
	delete(b.slices, key)
	bySvc := b.slicesBySvc[old.service]
	delete(bySvc, key)
	if len(bySvc) == 0 {
		delete(b.slicesBySvc, old.service)
	}
	b.recompute(old.service)
}

// SetNode records this node's addresses, zone and pod CIDRs. Objects for other nodes
// are ignored. Invalid addresses are left out and reported; the rest still applies,
// because the node cannot be skipped the way a Service can.
func (b *Builder) SetNode(n *v1.Node) error {
	if n.Name != b.opts.NodeName {
		return nil
	}
	node, err := nodeFromAPI(n)
	if ip := b.opts.PrimaryNodeIP; ip.IsValid() {
		node.Addresses = append([]netip.Addr{ip}, slices.DeleteFunc(node.Addresses, func(a netip.Addr) bool { return a == ip })...)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.node.Equal(&node) {
		b.node = node
		b.nodeDirty = true
		b.notify()
	}
	return err
}

// recompute rebuilds every port of one Service from its spec and slices, keeping the
// previous pointer of any port whose content did not change. Called with b.mu held.
func (b *Builder) recompute(name ServiceName) {
	oldNames := b.portsBySvc[name]
	templates := b.services[name]
	slicesOf := b.slicesBySvc[name]
	newNames := make([]ServicePortName, 0, len(templates))
	for _, tmpl := range templates {
		sp := *tmpl
		sp.Endpoints = mergeEndpoints(&sp, slicesOf)
		b.store(&sp)
		newNames = append(newNames, sp.Name)
	}
	for _, old := range oldNames {
		if !slices.Contains(newNames, old) {
			delete(b.current, old)
			b.dirty[old] = struct{}{}
		}
	}
	if len(newNames) == 0 {
		delete(b.portsBySvc, name)
	} else {
		b.portsBySvc[name] = newNames
	}
	if len(newNames) > 0 || len(oldNames) > 0 {
		b.notify()
	}
}

// store makes sp the current value of its port, reusing an equal published or current
// value so that a change which was undone before the next snapshot is no change at all.
func (b *Builder) store(sp *ServicePort) {
	if b.published != nil {
		if pub, ok := b.published.services[sp.Name]; ok && pub.Equal(sp) {
			sp = pub
		}
	}
	if cur, ok := b.current[sp.Name]; ok && cur != sp && cur.Equal(sp) {
		sp = cur
	}
	b.current[sp.Name] = sp
	b.dirty[sp.Name] = struct{}{}
}

// mergeEndpoints collects a port's endpoints from all slices of its service that are of
// one of its cluster IPs' families. An address listed twice (e.g. while a pod IP is
// reused, or an endpoint moves between slices) counts once: the ready copy wins, then a
// non-terminating one, then the one in the slice whose name sorts first, so the result
// never depends on map order.
func mergeEndpoints(sp *ServicePort, slicesOf map[sliceKey]*parsedSlice) []Endpoint {
	keys := slices.SortedFunc(maps.Keys(slicesOf), func(a, b sliceKey) int { return cmpString(a.name, b.name) })
	var out []Endpoint
	var index map[netip.AddrPort]int
	for _, key := range keys {
		s := slicesOf[key]
		if _, ok := sp.ClusterIP(s.family); !ok {
			// A slice of a family the Service has no cluster IP of (one left behind
			// when a Service went from dual-stack to single-stack, or written by
			// hand) lends it no endpoints: no backend could program them, and the
			// health check must not count them as local endpoints.
			continue
		}
		for _, p := range s.ports {
			if p.name != sp.Name.Port || p.protocol != sp.Name.Protocol {
				continue
			}
			if index == nil {
				index = make(map[netip.AddrPort]int, len(s.endpoints))
			}
			for _, ep := range s.endpoints {
				ep.Port = p.port
				k := ep.AddrPort()
				if i, dup := index[k]; dup {
					if preferEndpoint(&ep, &out[i]) {
						out[i] = ep
					}
					continue
				}
				index[k] = len(out)
				out = append(out, ep)
			}
		}
	}
	slices.SortFunc(out, func(a, b Endpoint) int { return compareEndpoints(&a, &b) })
	return out
}

// preferEndpoint reports whether a later duplicate should replace the one kept so far.
func preferEndpoint(later, kept *Endpoint) bool {
	if later.Ready != kept.Ready {
		return later.Ready
	}
	return kept.Terminating && !later.Terminating
}

// PendingChanges returns how many service ports were touched since the last snapshot
// (an upper bound: changes that cancel out are only dropped at the snapshot).
func (b *Builder) PendingChanges() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.dirty)
}

// Snapshot publishes the current model and returns it with the changes since the
// previous call. A first snapshot, and any after a node change, asks for a full sync.
// When nothing changed it returns the previous State and an empty ChangeSet.
func (b *Builder) Snapshot() (*State, ChangeSet) {
	b.mu.Lock()
	defer b.mu.Unlock()
	first := b.published == nil
	if !first && !b.nodeDirty && len(b.dirty) == 0 {
		return b.published, ChangeSet{}
	}
	cs := ChangeSet{Full: first || b.nodeDirty}
	if !cs.Full {
		cs.Services = make(map[ServicePortName]struct{}, len(b.dirty))
		for name := range b.dirty {
			if b.current[name] != b.published.services[name] {
				cs.Services[name] = struct{}{}
			}
		}
	}
	if !cs.Full && len(cs.Services) == 0 {
		// Everything touched since the last snapshot is back to what was published.
		clear(b.dirty)
		clear(b.triggerTimes)
		return b.published, cs
	}
	if len(b.triggerTimes) > 0 {
		cs.TriggerTimes = b.triggerTimes
		b.triggerTimes = map[ServiceName]time.Time{}
	}
	gen := uint64(1)
	if !first {
		gen = b.published.Generation + 1
	}
	b.published = newState(b.node, gen, maps.Clone(b.current))
	clear(b.dirty)
	b.nodeDirty = false
	return b.published, cs
}
