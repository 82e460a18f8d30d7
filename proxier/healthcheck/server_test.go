package healthcheck

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestServerServesAndStops(t *testing.T) {
	s := &Server{Name: "test", Addr: "127.0.0.1:0", Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("hi"))
	})}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Start(ctx) }()
	addr := s.BoundAddr()
	if code, body := httpGet(t, "http://"+addr+"/"); code != 200 || body != "hi" {
		t.Errorf("got %d %q", code, body)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Start after cancel = %v, want nil", err)
	}
	if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		t.Error("still listening after cancel")
	}
	if s.NeedLeaderElection() {
		t.Error("must run on every node")
	}
}

func TestServerBindFailure(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := busy.Addr().String()

	// Hard fail: Start returns the error.
	hard := &Server{Name: "healthz", Addr: addr, Handler: http.NotFoundHandler(), HardFail: true}
	err = hard.Start(context.Background())
	if err == nil || !strings.Contains(err.Error(), "healthz server on "+addr) {
		t.Fatalf("hard fail: %v", err)
	}

	// Soft fail: retries until the port is free.
	soft := &Server{Name: "metrics", Addr: addr, Handler: http.NotFoundHandler(), RetryInterval: 20 * time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- soft.Start(ctx) }()
	select {
	case <-soft.Listening():
		t.Fatal("bound a busy port")
	case <-time.After(100 * time.Millisecond):
	}
	busy.Close()
	select {
	case <-soft.Listening():
	case <-time.After(5 * time.Second):
		t.Fatal("did not retry after the port was freed")
	}
	if soft.BoundAddr() != addr {
		t.Errorf("bound %s, want %s", soft.BoundAddr(), addr)
	}
	cancel()
	if err := <-done; err != nil {
		t.Error(err)
	}
}

func TestMetricsMux(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "kubeproxy_test_total", Help: "test"})
	reg.MustRegister(c)
	c.Add(3)
	for _, profiling := range []bool{false, true} {
		s := &Server{Name: "metrics", Addr: "127.0.0.1:0", Handler: NewMetricsMux(MetricsMuxOptions{Gatherer: reg, ProxyMode: "iptables", Profiling: profiling})}
		ctx, cancel := context.WithCancel(context.Background())
		go func() { _ = s.Start(ctx) }()
		base := "http://" + s.BoundAddr()
		if code, body := httpGet(t, base+"/metrics"); code != 200 || !strings.Contains(body, "kubeproxy_test_total 3") {
			t.Errorf("/metrics: %d %q", code, body)
		}
		if code, body := httpGet(t, base+"/healthz"); code != 200 || body != "ok" {
			t.Errorf("/healthz: %d %q", code, body)
		}
		if code, body := httpGet(t, base+"/proxyMode"); code != 200 || body != "iptables" {
			t.Errorf("/proxyMode: %d %q", code, body)
		}
		code, _ := httpGet(t, base+"/debug/pprof/")
		if want := map[bool]int{false: 404, true: 200}[profiling]; code != want {
			t.Errorf("profiling=%v: /debug/pprof/ = %d, want %d", profiling, code, want)
		}
		cancel()
	}
}
