package scale

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/kproxy/kproxy/test/netns"
)

// Proxy is a proxy binary under test. Both take kube-proxy's flags.
type Proxy struct {
	// Name labels the proxy in results: "kproxy" or "kube-proxy".
	Name string
	// Binary is the executable.
	Binary string
	// Version is what the binary reports, for the report header.
	Version string
}

// Ports the proxies serve on inside the node namespace.
const (
	metricsPort = 10249
	healthzPort = 10256
)

// proxyArgs are the flags both proxies get: kube-proxy's own.
func proxyArgs(kubeconfig string, w *World, minSync time.Duration) []string {
	return []string{
		"--kubeconfig", kubeconfig,
		"--hostname-override", nodeName,
		"--proxy-mode=iptables",
		"--cluster-cidr", w.Topo.ClusterCIDR.V4.String() + "," + w.Topo.ClusterCIDR.V6.String(),
		"--conntrack-max-per-core=0",
		"--metrics-bind-address=127.0.0.1:" + strconv.Itoa(metricsPort),
		"--healthz-bind-address=127.0.0.1:" + strconv.Itoa(healthzPort),
		"--iptables-min-sync-period=" + minSync.String(),
		// Both default to -999; a benchmark on a shared machine should stay killable.
		"--oom-score-adj=0",
		"-v=2",
	}
}

// Process is a proxy running inside a node namespace.
type Process struct {
	Pid     int
	Started time.Time
	Args    []string
	cmd     *netns.Cmd
	log     *os.File
	exited  chan struct{}
	waitErr error
}

// StartProxy starts p inside w's node namespace, writing its output to logPath. The
// process is in its own process group, gets SIGKILL if the harness thread that started
// it dies, and is killed (with its children) when ctx ends or on Stop.
func (w *World) StartProxy(ctx context.Context, p Proxy, minSync time.Duration, logPath string) (*Process, error) {
	if err := os.MkdirAll(filepath.Dir(logPath), 0o755); err != nil {
		return nil, err
	}
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	args := proxyArgs(w.Kubeconfig, w, minSync)
	fmt.Fprintf(f, "# %s %s\n", p.Binary, strings.Join(args, " "))
	cmd := w.Topo.Node.Command(ctx, p.Binary, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	start := time.Now()
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("starting %s: %w", p.Name, err)
	}
	proc := &Process{Pid: cmd.Process.Pid, Started: start, Args: args, cmd: cmd, log: f, exited: make(chan struct{})}
	go func() {
		proc.waitErr = cmd.Wait()
		close(proc.exited)
	}()
	return proc, nil
}

// Exited reports whether the process has ended, with Wait's error.
func (p *Process) Exited() (bool, error) {
	select {
	case <-p.exited:
		return true, p.waitErr
	default:
		return false, nil
	}
}

// Stop sends SIGTERM, waits up to grace, then kills the process group. It is safe to
// call more than once.
func (p *Process) Stop(grace time.Duration) error {
	if done, _ := p.Exited(); !done {
		_ = syscall.Kill(p.Pid, syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(grace):
		}
		// Children (an iptables-restore in flight) go with the group.
		_ = syscall.Kill(-p.Pid, syscall.SIGKILL)
		<-p.exited
	}
	return p.log.Close()
}

// ProcStat is a snapshot of /proc/<pid>/stat and /proc/<pid>/status.
type ProcStat struct {
	// CPU is user+system time of the process itself.
	CPU time.Duration
	// ChildCPU is user+system time of children it waited for (iptables-save,
	// iptables-restore and the like).
	ChildCPU time.Duration
	// HWM is the peak resident set size (VmHWM), RSS the current one, in bytes.
	HWM, RSS int64
}

// Total is the CPU time of the process and its reaped children.
func (s ProcStat) Total() time.Duration { return s.CPU + s.ChildCPU }

// clockTicks is USER_HZ, 100 on every Linux architecture Go supports.
const clockTicks = 100

// Stat reads the process's CPU times and memory.
func (p *Process) Stat() (ProcStat, error) {
	return readProcStat(p.Pid)
}

func readProcStat(pid int) (ProcStat, error) {
	var s ProcStat
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return s, err
	}
	// The command name may contain spaces and parentheses; fields start after the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return s, fmt.Errorf("/proc/%d/stat: malformed", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); utime, stime, cutime, cstime are fields 14–17.
	if len(f) < 15 {
		return s, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	var t [4]int64
	for k := range t {
		if t[k], err = strconv.ParseInt(f[11+k], 10, 64); err != nil {
			return s, fmt.Errorf("/proc/%d/stat: %w", pid, err)
		}
	}
	tick := time.Second / clockTicks
	s.CPU = time.Duration(t[0]+t[1]) * tick
	s.ChildCPU = time.Duration(t[2]+t[3]) * tick
	st, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, err
	}
	defer st.Close()
	sc := bufio.NewScanner(st)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || (k != "VmHWM" && k != "VmRSS") {
			continue
		}
		fs := strings.Fields(v)
		if len(fs) != 2 || fs[1] != "kB" {
			continue
		}
		kb, err := strconv.ParseInt(fs[0], 10, 64)
		if err != nil {
			continue
		}
		if k == "VmHWM" {
			s.HWM = kb << 10
		} else {
			s.RSS = kb << 10
		}
	}
	return s, sc.Err()
}

// scrapeMetrics fetches the proxy's /metrics from inside the node namespace.
func (w *World) scrapeMetrics(ctx context.Context) (metricSet, error) {
	c := w.Topo.Node.HTTPClient(10 * time.Second)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/metrics", metricsPort), nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("/metrics: %s", resp.Status)
	}
	return parseMetrics(resp.Body)
}

// metricSet maps a sample's name with its labels, as printed, to its value.
type metricSet map[string]float64

// parseMetrics reads the Prometheus text format, keeping plain samples.
func parseMetrics(r io.Reader) (metricSet, error) {
	m := metricSet{}
	sc := bufio.NewScanner(r)
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
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		m[line[:i]] = v
	}
	return m, sc.Err()
}

// syncStats reads the count and total time of kubeproxy_sync_proxy_rules_duration_seconds.
// Where the series carry an ip_family label (upstream's dual-stack proxier), only IPv4
// counts: the harness's Services are all IPv4.
func (m metricSet) syncStats() (count float64, sum time.Duration, ok bool) {
	c, ok1 := m.familySum("kubeproxy_sync_proxy_rules_duration_seconds_count")
	s, ok2 := m.familySum("kubeproxy_sync_proxy_rules_duration_seconds_sum")
	return c, time.Duration(s * float64(time.Second)), ok1 && ok2
}

// familySum adds up the series of metric name, the IPv4 ones only when they are
// labelled by family.
func (m metricSet) familySum(name string) (float64, bool) {
	var all, v4 float64
	var found, labelled bool
	for k, v := range m {
		base, labels, _ := strings.Cut(k, "{")
		if base != name {
			continue
		}
		found = true
		all += v
		if strings.Contains(labels, `ip_family="IPv4"`) {
			labelled = true
			v4 += v
		}
	}
	if labelled {
		return v4, true
	}
	return all, found
}

var errExited = errors.New("the proxy exited")
