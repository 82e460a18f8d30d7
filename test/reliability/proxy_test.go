package reliability

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kproxy/kproxy/test/netns"
)

// Ports both proxies serve on inside the node namespace.
const (
	healthzPort = 10256
	metricsPort = 10249
)

// syncPeriod is the proxies' --iptables-sync-period. It is short so that /healthz,
// which fails after 2 × syncPeriod without a successful sync, would notice within
// seconds if periodic syncs stopped during an API server outage.
const syncPeriod = 5 * time.Second

// proxyArgs are the kube-proxy flags kproxy and upstream kube-proxy both get.
func (w *world) proxyArgs() []string {
	return []string{
		"--kubeconfig", w.kubeconfig,
		"--hostname-override", nodeName,
		"--proxy-mode=iptables",
		"--cluster-cidr", w.topo.ClusterCIDR.V4.String() + "," + w.topo.ClusterCIDR.V6.String(),
		// The node namespace cannot change the host-wide nf_conntrack_max.
		"--conntrack-max-per-core=0",
		"--iptables-sync-period=" + syncPeriod.String(),
		"--metrics-bind-address=127.0.0.1:" + strconv.Itoa(metricsPort),
		// Both default to -999; a test machine should stay able to kill them.
		"--oom-score-adj=0",
		"-v=2",
	}
}

// proxy is a proxy process running in the node namespace.
type proxy struct {
	name   string
	cmd    *netns.Cmd
	logs   *netns.Output
	exited chan struct{}
}

// startProxy starts binary in the node namespace with the common flags. The process
// is killed at the end of the test if it still runs, and its output is logged when the
// test failed.
func (w *world) startProxy(t *testing.T, name, binary string) *proxy {
	t.Helper()
	p := &proxy{name: name, logs: &netns.Output{}, exited: make(chan struct{})}
	p.cmd = w.node.Command(context.Background(), binary, w.proxyArgs()...)
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	// Its own process group, so that a signal to the test does not reach it and a
	// kill takes an iptables-restore in flight along.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	go func() {
		_ = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("%s output:\n%s", name, p.logs.String())
		}
	})
	return p
}

// signal sends sig to the process and waits up to timeout for it to exit.
func (p *proxy) signal(sig syscall.Signal, timeout time.Duration) error {
	if err := p.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("%s: %v: %w", p.name, sig, err)
	}
	select {
	case <-p.exited:
		return nil
	case <-time.After(timeout):
		return fmt.Errorf("%s did not exit within %s of %v", p.name, timeout, sig)
	}
}

// kill ends the process group at once and waits for it; harmless once it exited.
func (p *proxy) kill() {
	select {
	case <-p.exited:
		return
	default:
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.exited
}

// alive fails when the process has exited: waits end early instead of timing out.
func (p *proxy) alive() error {
	select {
	case <-p.exited:
		return fmt.Errorf("%s exited: %v", p.name, p.cmd.ProcessState)
	default:
		return nil
	}
}

// metrics scrapes the proxy's /metrics inside the node namespace: every sample by its
// name with labels, as printed.
func (w *world) metrics() (map[string]float64, error) {
	body, _, err := w.get(fmt.Sprintf("http://127.0.0.1:%d/metrics", metricsPort))
	if err != nil {
		return nil, err
	}
	m := map[string]float64{}
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			m[line[:i]] = v
		}
	}
	return m, sc.Err()
}

// metric adds up every series of the metric name (all label values, e.g. both IP
// families).
func metric(m map[string]float64, name string) float64 {
	var sum float64
	for k, v := range m {
		if base, _, _ := strings.Cut(k, "{"); base == name {
			sum += v
		}
	}
	return sum
}

// metricMax is the largest value among the series of the metric name.
func metricMax(m map[string]float64, name string) float64 {
	var out float64
	for k, v := range m {
		if base, _, _ := strings.Cut(k, "{"); base == name {
			out = max(out, v)
		}
	}
	return out
}

// healthz is kube-proxy's /healthz answer.
type healthz struct {
	Code         int
	LastUpdated  string `json:"lastUpdated"`
	CurrentTime  string `json:"currentTime"`
	NodeEligible bool   `json:"nodeEligible"`
}

// healthz asks the proxy's /healthz on the node's address, as a kubelet probe or a
// load balancer would.
func (w *world) healthz() (healthz, error) {
	var h healthz
	body, code, err := w.get(fmt.Sprintf("http://%s/healthz", net.JoinHostPort(w.node.V4.String(), strconv.Itoa(healthzPort))))
	if err != nil {
		return h, err
	}
	if err := json.Unmarshal(body, &h); err != nil {
		return h, fmt.Errorf("/healthz: %w: %q", err, body)
	}
	h.Code = code
	return h, nil
}

// get fetches url from inside the node namespace.
func (w *world) get(url string) ([]byte, int, error) {
	resp, err := w.node.HTTPClient(5 * time.Second).Get(url)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return b, resp.StatusCode, err
}
