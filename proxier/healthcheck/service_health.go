package healthcheck

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/go-logr/logr"
	v1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/events"

	"github.com/kproxy/kproxy/proxier"
)

// ServiceHealthOptions configures a ServiceHealth.
type ServiceHealthOptions struct {
	// NodePortAddresses restricts the addresses health-check node ports listen on to
	// this node's local addresses inside these prefixes, as kube-proxy's
	// nodePortAddresses does. Empty listens on every address.
	NodePortAddresses []netip.Prefix
	// PrimaryNodeIPs listens on the node's primary address of each family (the first
	// of each family in State.Node.Addresses): nodePortAddresses "primary".
	PrimaryNodeIPs bool
	// ProxyHealthy, when set, is consulted on every request: while kproxy itself is
	// unhealthy every service answers 503 (usually ProxyHealth.Healthy).
	ProxyHealthy func() bool
	// Recorder, when set, gets a Warning Event on the Service when its port cannot be
	// opened.
	Recorder events.EventRecorder
	Logger   logr.Logger

	// InterfaceAddrs lists this host's addresses; default net.InterfaceAddrs. For tests.
	InterfaceAddrs func() ([]netip.Addr, error)
	// Listen opens a listener; default net.ListenConfig{}.Listen. For tests.
	Listen func(ctx context.Context, network, address string) (net.Listener, error)
}

// ServiceHealth runs the healthCheckNodePort servers of the Services whose external
// traffic policy is Local. It is a proxier.SyncObserver: after each successful sync it
// opens servers for new health-check ports, closes those no longer wanted and updates
// the counts of local endpoints; failed syncs change nothing. A port that cannot be
// opened (for instance because it is in use) is retried after every later sync.
type ServiceHealth struct {
	opts ServiceHealthOptions
	log  logr.Logger

	// ports indexes the synced model: every service port with a health-check port,
	// by Service. Only the Runner's goroutine touches it.
	ports map[proxier.ServiceName]map[proxier.ServicePortName]*proxier.ServicePort

	mu       sync.RWMutex
	services map[proxier.ServiceName]*hcService
	closed   bool
}

// hcService is one Service's health check: its port, its servers (one per listen
// address) and its local endpoint count.
type hcService struct {
	name      proxier.ServiceName
	port      uint16
	servers   []*http.Server // nil while the port could not be opened
	endpoints int
}

var _ proxier.SyncObserver = (*ServiceHealth)(nil)

// NewServiceHealth returns a ServiceHealth serving nothing until the first sync.
func NewServiceHealth(opts ServiceHealthOptions) *ServiceHealth {
	if opts.InterfaceAddrs == nil {
		opts.InterfaceAddrs = interfaceAddrs
	}
	if opts.Listen == nil {
		var lc net.ListenConfig
		opts.Listen = lc.Listen
	}
	return &ServiceHealth{
		opts:     opts,
		log:      opts.Logger,
		ports:    map[proxier.ServiceName]map[proxier.ServicePortName]*proxier.ServicePort{},
		services: map[proxier.ServiceName]*hcService{},
	}
}

// SyncQueued does nothing: servers follow what was synced, not what is queued.
func (s *ServiceHealth) SyncQueued(time.Time) {}

// SyncDone brings the servers in line with a successfully synced state.
func (s *ServiceHealth) SyncDone(r proxier.SyncResult) {
	if r.Err != nil || r.State == nil {
		return
	}
	touched := s.index(r.State, r.Changes)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	for name, svc := range s.services {
		if svc.servers == nil { // failed to open before: try again
			touched[name] = struct{}{}
		}
	}
	for name := range touched {
		s.reconcile(name, r.State)
	}
}

// index updates the per-Service index from a sync and returns the Services touched.
func (s *ServiceHealth) index(st *proxier.State, changes proxier.ChangeSet) map[proxier.ServiceName]struct{} {
	touched := map[proxier.ServiceName]struct{}{}
	set := func(sp *proxier.ServicePort) {
		if sp.HealthCheckNodePort == 0 {
			return
		}
		m := s.ports[sp.Name.ServiceName]
		if m == nil {
			m = map[proxier.ServicePortName]*proxier.ServicePort{}
			s.ports[sp.Name.ServiceName] = m
		}
		m[sp.Name] = sp
		touched[sp.Name.ServiceName] = struct{}{}
	}
	if changes.Full {
		for name := range s.ports {
			touched[name] = struct{}{}
		}
		clear(s.ports)
		for _, sp := range st.ServicePorts() {
			set(sp)
		}
		return touched
	}
	for name := range changes.Services {
		if m := s.ports[name.ServiceName]; m != nil {
			delete(m, name)
			if len(m) == 0 {
				delete(s.ports, name.ServiceName)
			}
			touched[name.ServiceName] = struct{}{}
		}
		if sp, ok := st.Lookup(name); ok {
			set(sp)
		}
	}
	return touched
}

// reconcile makes one Service's server match the index. Called with mu held.
func (s *ServiceHealth) reconcile(name proxier.ServiceName, st *proxier.State) {
	port, endpoints := desired(s.ports[name])
	svc := s.services[name]
	if svc != nil && svc.port != port {
		s.log.V(2).Info("Closing service health check", "service", name, "port", svc.port)
		svc.close()
		delete(s.services, name)
		svc = nil
	}
	if port == 0 {
		return
	}
	if svc == nil {
		svc = &hcService{name: name, port: port}
		s.services[name] = svc
	}
	svc.endpoints = endpoints
	if svc.servers == nil {
		if err := s.open(svc, st); err != nil {
			s.log.Error(err, "Failed to open service health check port; retrying after the next sync", "service", name, "port", port)
			if s.opts.Recorder != nil {
				ref := &v1.ObjectReference{Kind: "Service", APIVersion: "v1", Namespace: name.Namespace, Name: name.Name}
				s.opts.Recorder.Eventf(ref, nil, v1.EventTypeWarning, "FailedToStartServiceHealthcheck", "Listen",
					"node %s failed to open health check port %d: %v", st.Node.Name, port, err)
			}
			return
		}
		s.log.V(2).Info("Opened service health check", "service", name, "port", port, "localEndpoints", endpoints)
	}
}

// desired returns a Service's health-check port and its number of local, ready
// endpoint addresses (kube-proxy counts distinct IPs across the Service's ports, and
// not terminating ones: a node with only terminating endpoints must fail the check).
func desired(ports map[proxier.ServicePortName]*proxier.ServicePort) (port uint16, localEndpoints int) {
	if len(ports) == 0 {
		return 0, 0
	}
	names := make([]proxier.ServicePortName, 0, len(ports))
	for n := range ports {
		names = append(names, n)
	}
	slices.SortFunc(names, proxier.ServicePortName.Compare)
	port = ports[names[0]].HealthCheckNodePort
	ips := map[netip.Addr]struct{}{}
	for _, n := range names {
		for i := range ports[n].Endpoints {
			if ep := &ports[n].Endpoints[i]; ep.Local && ep.Ready {
				ips[ep.Addr] = struct{}{}
			}
		}
	}
	return port, len(ips)
}

// open starts svc's servers on every listen address, or none of them.
func (s *ServiceHealth) open(svc *hcService, st *proxier.State) error {
	hosts, err := s.listenHosts(st)
	if err != nil {
		s.log.Error(err, "Cannot find the node addresses matching nodePortAddresses; health check ports listen on every address")
		hosts = []string{""}
	}
	h := &serviceHandler{sh: s, name: svc.name}
	var servers []*http.Server
	for _, host := range hosts {
		ln, err := s.opts.Listen(context.Background(), "tcp", net.JoinHostPort(host, strconv.Itoa(int(svc.port))))
		if err != nil {
			for _, srv := range servers {
				_ = srv.Close()
			}
			return err
		}
		srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
		servers = append(servers, srv)
		go func() {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				s.log.Error(err, "Service health check server stopped", "service", svc.name, "address", ln.Addr())
			}
		}()
	}
	svc.servers = servers
	return nil
}

func (svc *hcService) close() {
	for _, srv := range svc.servers {
		_ = srv.Close()
	}
	svc.servers = nil
}

// listenHosts returns the hosts to listen on: "" for every address, or the node's
// addresses selected by nodePortAddresses.
func (s *ServiceHealth) listenHosts(st *proxier.State) ([]string, error) {
	var addrs []netip.Addr
	switch {
	case s.opts.PrimaryNodeIPs:
		var have4, have6 bool
		for _, a := range st.Node.Addresses {
			if a.IsLoopback() {
				continue
			}
			if a.Is4() && !have4 {
				addrs, have4 = append(addrs, a), true
			} else if a.Is6() && !have6 {
				addrs, have6 = append(addrs, a), true
			}
		}
		if len(addrs) == 0 {
			return nil, fmt.Errorf("node %s lists no address", st.Node.Name)
		}
	case len(s.opts.NodePortAddresses) > 0:
		local, err := s.opts.InterfaceAddrs()
		if err != nil {
			return nil, err
		}
		for _, a := range local {
			if slices.ContainsFunc(s.opts.NodePortAddresses, func(p netip.Prefix) bool { return p.Contains(a) }) {
				addrs = append(addrs, a)
			}
		}
		if len(addrs) == 0 {
			return nil, fmt.Errorf("no local address inside nodePortAddresses %v", s.opts.NodePortAddresses)
		}
	default:
		return []string{""}, nil
	}
	hosts := make([]string, len(addrs))
	for i, a := range addrs {
		hosts[i] = a.String()
	}
	return hosts, nil
}

func interfaceAddrs() ([]netip.Addr, error) {
	as, err := net.InterfaceAddrs()
	if err != nil {
		return nil, err
	}
	var out []netip.Addr
	for _, a := range as {
		if n, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP); ok {
				out = append(out, ip.Unmap())
			}
		}
	}
	return out, nil
}

// Ports returns the open health-check ports by Service, for tests and debugging.
func (s *ServiceHealth) Ports() map[proxier.ServiceName]uint16 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make(map[proxier.ServiceName]uint16, len(s.services))
	for name, svc := range s.services {
		if svc.servers != nil {
			out[name] = svc.port
		}
	}
	return out
}

// Close stops every server; later syncs open nothing.
func (s *ServiceHealth) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for name, svc := range s.services {
		svc.close()
		delete(s.services, name)
	}
}

// serviceHandler answers one Service's health check.
type serviceHandler struct {
	sh   *ServiceHealth
	name proxier.ServiceName
}

// serviceStatus is the body kube-proxy answers on a health-check node port.
type serviceStatus struct {
	Service struct {
		Namespace string `json:"namespace"`
		Name      string `json:"name"`
	} `json:"service"`
	LocalEndpoints      int  `json:"localEndpoints"`
	ServiceProxyHealthy bool `json:"serviceProxyHealthy"`
}

// ServeHTTP answers 200 while the Service has a local ready endpoint and kproxy is
// healthy, 503 otherwise, with kube-proxy's JSON body.
func (h *serviceHandler) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	h.sh.mu.RLock()
	svc, ok := h.sh.services[h.name]
	count := 0
	if ok {
		count = svc.endpoints
	}
	h.sh.mu.RUnlock()
	if !ok {
		// A request that raced with the server's closing.
		http.Error(w, "health check closed", http.StatusServiceUnavailable)
		return
	}
	healthy := h.sh.opts.ProxyHealthy == nil || h.sh.opts.ProxyHealthy()
	var body serviceStatus
	body.Service.Namespace, body.Service.Name = h.name.Namespace, h.name.Name
	body.LocalEndpoints, body.ServiceProxyHealthy = count, healthy
	setJSONHeaders(w)
	if count > 0 && healthy {
		w.WriteHeader(http.StatusOK)
	} else {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	out, _ := json.MarshalIndent(body, "", "\t")
	_, _ = w.Write(out)
}
