package healthcheck

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"reflect"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kproxy/kproxy/proxier"
)

// freePort returns a TCP port that was free on 127.0.0.1 a moment ago.
func freePort(t *testing.T) uint16 {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return uint16(ln.Addr().(*net.TCPAddr).Port)
}

func svcName(name string) proxier.ServiceName {
	return proxier.ServiceName{Namespace: "ns", Name: name}
}

func portName(svc, port string) proxier.ServicePortName {
	return proxier.ServicePortName{ServiceName: svcName(svc), Port: port, Protocol: proxier.ProtocolTCP}
}

func ep(addr string, port uint16, local, ready bool) proxier.Endpoint {
	return proxier.Endpoint{Addr: netip.MustParseAddr(addr), Port: port, Local: local, Ready: ready, Serving: ready, Terminating: !ready}
}

// lbPort is a LoadBalancer service port with externalTrafficPolicy Local.
func lbPort(svc, port string, hc uint16, eps ...proxier.Endpoint) *proxier.ServicePort {
	return &proxier.ServicePort{
		Name: portName(svc, port), ClusterIPs: []netip.Addr{netip.MustParseAddr("10.96.0.10")}, Port: 80, NodePort: 30080,
		ExternalPolicy: proxier.PolicyLocal, HealthCheckNodePort: hc, Endpoints: eps,
	}
}

type hcReply struct {
	code int
	body serviceStatus
	err  error
}

func probe(port uint16) hcReply {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d/", port))
	if err != nil {
		return hcReply{err: err}
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	r := hcReply{code: resp.StatusCode}
	if resp.Header.Get("Content-Type") != "application/json" || resp.Header.Get("X-Content-Type-Options") != "nosniff" {
		r.err = fmt.Errorf("headers %v", resp.Header)
	} else if err := json.Unmarshal(data, &r.body); err != nil {
		r.err = fmt.Errorf("body %q: %v", data, err)
	}
	return r
}

func loopbackOnly() ([]netip.Addr, error) {
	return []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("192.0.2.99")}, nil
}

func newTestServiceHealth(t *testing.T, healthy *atomic.Bool) *ServiceHealth {
	t.Helper()
	s := NewServiceHealth(ServiceHealthOptions{
		NodePortAddresses: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		InterfaceAddrs:    loopbackOnly,
		ProxyHealthy:      healthy.Load,
	})
	t.Cleanup(s.Close)
	return s
}

func full(st *proxier.State) proxier.SyncResult {
	return proxier.SyncResult{State: st, Changes: proxier.FullSync()}
}

func partial(st *proxier.State, names ...proxier.ServicePortName) proxier.SyncResult {
	cs := proxier.ChangeSet{Services: map[proxier.ServicePortName]struct{}{}}
	for _, n := range names {
		cs.Services[n] = struct{}{}
	}
	return proxier.SyncResult{State: st, Changes: cs}
}

func TestServiceHealthServesLocalEndpoints(t *testing.T) {
	var healthy atomic.Bool
	healthy.Store(true)
	s := newTestServiceHealth(t, &healthy)
	webHC, apiHC := freePort(t), freePort(t)
	node := proxier.Node{Name: "n1"}

	web := []*proxier.ServicePort{
		// Distinct local ready IPs are counted once across ports; remote, terminating
		// and not-ready ones are not counted.
		lbPort("web", "http", webHC, ep("10.244.1.2", 8080, true, true), ep("10.244.1.3", 8080, true, true),
			ep("10.244.2.2", 8080, false, true), ep("10.244.1.4", 8080, true, false)),
		lbPort("web", "https", webHC, ep("10.244.1.2", 8443, true, true)),
	}
	api := lbPort("api", "p", apiHC, ep("10.244.2.9", 9090, false, true))
	cluster := &proxier.ServicePort{Name: portName("internal", "p"), Port: 80} // no health check
	st := proxier.NewState(node, append(web, api, cluster)...)

	s.SyncDone(full(st))
	if got, want := s.Ports(), map[proxier.ServiceName]uint16{svcName("web"): webHC, svcName("api"): apiHC}; !reflect.DeepEqual(got, want) {
		t.Fatalf("Ports() = %v, want %v", got, want)
	}
	r := probe(webHC)
	if r.err != nil || r.code != 200 || r.body.LocalEndpoints != 2 || !r.body.ServiceProxyHealthy ||
		r.body.Service.Namespace != "ns" || r.body.Service.Name != "web" {
		t.Errorf("web: %+v", r)
	}
	if r := probe(apiHC); r.err != nil || r.code != 503 || r.body.LocalEndpoints != 0 {
		t.Errorf("api without local endpoints must answer 503: %+v", r)
	}

	// kproxy unhealthy: every check fails, and says why.
	healthy.Store(false)
	if r := probe(webHC); r.code != 503 || r.body.ServiceProxyHealthy || r.body.LocalEndpoints != 2 {
		t.Errorf("unhealthy proxy: %+v", r)
	}
	healthy.Store(true)

	// A failed sync changes nothing.
	emptied := lbPort("web", "http", webHC)
	st2 := proxier.NewState(node, emptied, web[1], api)
	s.SyncDone(proxier.SyncResult{State: st2, Changes: partial(st2, emptied.Name).Changes, Err: errors.New("boom")})
	if r := probe(webHC); r.body.LocalEndpoints != 2 {
		t.Errorf("a failed sync must not change the count: %+v", r)
	}

	// A partial sync of one port recounts its service.
	s.SyncDone(partial(st2, emptied.Name))
	if r := probe(webHC); r.code != 200 || r.body.LocalEndpoints != 1 {
		t.Errorf("after web:http lost its endpoints: %+v", r)
	}
	st3 := proxier.NewState(node, emptied, lbPort("web", "https", webHC), api)
	s.SyncDone(partial(st3, portName("web", "https")))
	if r := probe(webHC); r.code != 503 || r.body.LocalEndpoints != 0 {
		t.Errorf("web without local endpoints: %+v", r)
	}

	// Deleting api (partial) closes its port; the others stay.
	st4 := proxier.NewState(node, emptied, lbPort("web", "https", webHC))
	s.SyncDone(partial(st4, api.Name))
	if r := probe(apiHC); r.err == nil {
		t.Errorf("api's health check port still answers after the Service went away: %+v", r)
	}
	if _, ok := s.Ports()[svcName("web")]; !ok {
		t.Error("web closed by an unrelated change")
	}

	// A new health-check port for web moves the server.
	moved := freePort(t)
	st5 := proxier.NewState(node, lbPort("web", "http", moved, ep("10.244.1.2", 8080, true, true)), lbPort("web", "https", moved))
	s.SyncDone(full(st5))
	if r := probe(moved); r.code != 200 || r.body.LocalEndpoints != 1 {
		t.Errorf("moved port: %+v", r)
	}
	if r := probe(webHC); r.err == nil {
		t.Error("old port still open")
	}

	// A full sync without health checks closes everything.
	s.SyncDone(full(proxier.NewState(node, cluster)))
	if len(s.Ports()) != 0 {
		t.Errorf("Ports() = %v after a full sync without health checks", s.Ports())
	}
	if r := probe(moved); r.err == nil {
		t.Error("port still open")
	}
}

func TestServiceHealthRetriesBusyPort(t *testing.T) {
	var healthy atomic.Bool
	healthy.Store(true)
	s := newTestServiceHealth(t, &healthy)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := uint16(busy.Addr().(*net.TCPAddr).Port)
	node := proxier.Node{Name: "n1"}
	st := proxier.NewState(node, lbPort("web", "p", port, ep("10.244.1.2", 80, true, true)))
	s.SyncDone(full(st))
	if len(s.Ports()) != 0 {
		t.Fatalf("a busy port must not be reported open: %v", s.Ports())
	}
	busy.Close()
	// An unrelated partial sync retries it.
	other := &proxier.ServicePort{Name: portName("other", "p"), Port: 80}
	st2 := proxier.NewState(node, st.ServicePorts()[0], other)
	s.SyncDone(partial(st2, other.Name))
	if r := probe(port); r.err != nil || r.code != 200 || r.body.LocalEndpoints != 1 {
		t.Errorf("after the port was freed: %+v", r)
	}
}

func TestServiceHealthCloseStopsEverything(t *testing.T) {
	var healthy atomic.Bool
	s := newTestServiceHealth(t, &healthy)
	port := freePort(t)
	st := proxier.NewState(proxier.Node{Name: "n1"}, lbPort("web", "p", port))
	s.SyncDone(full(st))
	if r := probe(port); r.err != nil {
		t.Fatal(r.err)
	}
	s.Close()
	if r := probe(port); r.err == nil {
		t.Error("port open after Close")
	}
	s.SyncDone(full(st))
	if len(s.Ports()) != 0 {
		t.Error("a closed ServiceHealth opened ports")
	}
}

func TestServiceHealthListenHosts(t *testing.T) {
	node := proxier.Node{Name: "n1", Addresses: []netip.Addr{
		netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2"),
		netip.MustParseAddr("2001:db8::1"),
	}}
	st := proxier.NewState(node)
	local := func() ([]netip.Addr, error) {
		return []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("10.0.0.5"), netip.MustParseAddr("fd00::5")}, nil
	}
	for _, tc := range []struct {
		name    string
		opts    ServiceHealthOptions
		want    []string
		wantErr bool
	}{
		{"all addresses by default", ServiceHealthOptions{}, []string{""}, false},
		{"primary node IPs, loopback skipped", ServiceHealthOptions{PrimaryNodeIPs: true}, []string{"192.0.2.1", "2001:db8::1"}, false},
		{"CIDRs select local addresses", ServiceHealthOptions{NodePortAddresses: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"),
			netip.MustParsePrefix("fd00::/8")}}, []string{"10.0.0.5", "fd00::5"}, false},
		{"no match", ServiceHealthOptions{NodePortAddresses: []netip.Prefix{netip.MustParsePrefix("172.16.0.0/12")}}, nil, true},
	} {
		tc.opts.InterfaceAddrs = local
		got, err := NewServiceHealth(tc.opts).listenHosts(st)
		if (err != nil) != tc.wantErr || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: got %q, %v; want %q", tc.name, got, err, tc.want)
		}
	}
	if _, err := NewServiceHealth(ServiceHealthOptions{PrimaryNodeIPs: true}).listenHosts(proxier.NewState(proxier.Node{Name: "n"})); err == nil {
		t.Error("primary without node addresses must be an error (the caller falls back to every address)")
	}
}

func TestServiceHealthListensOnEveryHost(t *testing.T) {
	var listened []string
	fail := false
	s := NewServiceHealth(ServiceHealthOptions{
		PrimaryNodeIPs: true,
		Listen: func(ctx context.Context, network, addr string) (net.Listener, error) {
			listened = append(listened, addr)
			if fail && len(listened) == 2 {
				return nil, errors.New("address in use")
			}
			return net.Listen("tcp", "127.0.0.1:0")
		},
	})
	defer s.Close()
	node := proxier.Node{Name: "n1", Addresses: []netip.Addr{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1")}}
	s.SyncDone(full(proxier.NewState(node, lbPort("web", "p", 31000))))
	if want := []string{"192.0.2.1:31000", "[2001:db8::1]:31000"}; !reflect.DeepEqual(listened, want) {
		t.Errorf("listened on %q, want %q", listened, want)
	}
	// All or nothing: when the second address fails, the first is closed again.
	s2 := NewServiceHealth(ServiceHealthOptions{PrimaryNodeIPs: true, Listen: s.opts.Listen})
	defer s2.Close()
	listened, fail = nil, true
	s2.SyncDone(full(proxier.NewState(node, lbPort("web", "p", 31000))))
	if len(s2.Ports()) != 0 {
		t.Errorf("half-opened service reported open: %v", s2.Ports())
	}
}
