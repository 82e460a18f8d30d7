package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/kproxy/kproxy/test/vm"
)

// kproxyBin is the binary under test, built once by TestMain.
var kproxyBin string

func TestMain(m *testing.M) {
	if vm.InVM() {
		// The test VM has no Go toolchain; vm_host_test.go ships a static build.
		kproxyBin = vmKproxyBin
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "kproxy-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	kproxyBin = filepath.Join(dir, "kproxy")
	build := exec.Command("go", "build", "-o", kproxyBin, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building kproxy:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// result is one run of the binary.
type result struct {
	code           int
	stdout, stderr string
}

func run(t *testing.T, args ...string) result {
	t.Helper()
	cmd := exec.Command(kproxyBin, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		t.Fatalf("running kproxy %v: %v", args, err)
	}
	return r
}

func TestHelpListsKubeProxyFlags(t *testing.T) {
	for _, arg := range []string{"--help", "-h"} {
		r := run(t, arg)
		if r.code != 0 || r.stderr != "" {
			t.Fatalf("%s: exit %d, stderr %q", arg, r.code, r.stderr)
		}
		for _, flag := range []string{
			"config", "kubeconfig", "master", "proxy-mode", "cleanup", "init-only", "hostname-override", "bind-address",
			"cluster-cidr", "detect-local-mode", "pod-bridge-interface", "pod-interface-name-prefix", "nodeport-addresses",
			"masquerade-all", "iptables-masquerade-bit", "iptables-min-sync-period", "iptables-sync-period",
			"iptables-localhost-nodeports", "ipvs-scheduler", "ipvs-strict-arp", "ipvs-exclude-cidrs", "ipvs-min-sync-period",
			"ipvs-sync-period", "ipvs-tcp-timeout", "ipvs-tcpfin-timeout", "ipvs-udp-timeout", "conntrack-max-per-core",
			"conntrack-min", "conntrack-tcp-timeout-established", "conntrack-tcp-timeout-close-wait", "conntrack-tcp-be-liberal",
			"conntrack-udp-timeout", "conntrack-udp-timeout-stream", "healthz-bind-address", "metrics-bind-address",
			"bind-address-hard-fail", "kube-api-qps", "kube-api-burst", "kube-api-content-type", "oom-score-adj",
			"config-sync-period", "profiling", "feature-gates", "show-hidden-metrics-for-version", "write-config-to",
			"version", "vmodule", "logging-format", "log-flush-frequency",
		} {
			if !strings.Contains(r.stdout, "--"+flag+" ") {
				t.Errorf("%s does not list --%s", arg, flag)
			}
		}
		if !strings.Contains(r.stdout, "-v, --v Level") {
			t.Errorf("%s does not list -v", arg)
		}
		for _, want := range []string{"(default 14)", "(default 30s)", "(default 1s)", "(default 0.0.0.0:10256)", "(default 127.0.0.1:10249)",
			"(default 32768)", "(default 131072)", "(default 24h0m0s)", "(default 1h0m0s)", "(default -999)", "(default 5)", "(default 10)"} {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("%s lacks the kube-proxy default %s", arg, want)
			}
		}
	}
}

func TestVersion(t *testing.T) {
	r := run(t, "--version")
	if r.code != 0 || !regexp.MustCompile(`^kproxy \S+\n$`).MatchString(r.stdout) {
		t.Errorf("--version: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	r = run(t, "--version=raw")
	if r.code != 0 || !strings.Contains(r.stdout, "go: go1.") {
		t.Errorf("--version=raw: exit %d, stdout %q", r.code, r.stdout)
	}
	if r = run(t, "--version=v9.9.9"); r.code != 1 {
		t.Errorf("--version=v9.9.9 must be refused, exit %d", r.code)
	}
}

// Every error is one line on stderr, names the flag or field, and exits 1.
func TestErrorsAreOneClearLine(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(cfg, []byte("apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\niptables:\n  masqueradBit: 3\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\nconntrack:\n  min: -5\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--no-such-flag"}, "kproxy: unknown flag: --no-such-flag (see kproxy --help)"},
		{[]string{"--bind-address=node-1"}, `invalid argument "node-1" for "--bind-address" flag`},
		{[]string{"--iptables-sync-period=soon"}, `"--iptables-sync-period"`},
		{[]string{"--iptables-masquerade-bit=32"}, "kproxy: invalid configuration: --iptables-masquerade-bit: Invalid value: 32: must be within the range [0, 31]"},
		{[]string{"--nodeport-addresses=primary,10.0.0.0/8"}, "--nodeport-addresses"},
		{[]string{"--detect-local-mode=BridgeInterface"}, "--pod-bridge-interface: Required value"},
		{[]string{"--proxy-mode=nftables"}, "--proxy-mode is not supported by kproxy"},
		{[]string{"--feature-gates=Foo=true"}, "--feature-gates is not supported by kproxy"},
		{[]string{"--boot-id-file=/etc/boot"}, "--boot-id-file is not supported by kproxy"},
		{[]string{"--logging-format=json"}, "--logging-format is not supported by kproxy"},
		{[]string{"--config", cfg}, `unknown field "iptables.masqueradBit"`},
		{[]string{"--config", bad}, `conntrack.min in config file "` + bad + `": Invalid value: -5`},
		{[]string{"--config", "/nonexistent/kproxy.yaml"}, "/nonexistent/kproxy.yaml"},
		{[]string{"--hostname-override= "}, "--hostname-override"},
		{[]string{"stray-argument"}, "kproxy takes no arguments"},
		{[]string{"--proxy-mode=ipvs", "--iptables-masquerade-bit=0", "--hostname-override=n", "--master=http://127.0.0.1:1"}, "--iptables-masquerade-bit is not supported by kproxy: kproxy's ipvs mode needs a masquerade bit from 1 to 31"},
	} {
		r := run(t, tc.args...)
		lines := strings.Split(strings.TrimRight(r.stderr, "\n"), "\n")
		last := lines[len(lines)-1]
		if r.code != 1 || !strings.Contains(last, tc.want) || !strings.HasPrefix(last, "kproxy: ") {
			t.Errorf("%v: exit %d, stderr %q; want exit 1 and a last line containing %q", tc.args, r.code, r.stderr, tc.want)
		}
		if len(lines) != 1 {
			t.Errorf("%v: want exactly one line on stderr, got %q", tc.args, r.stderr)
		}
		if r.stdout != "" {
			t.Errorf("%v: nothing belongs on stdout, got %q", tc.args, r.stdout)
		}
	}
}

func TestWriteConfigRoundTrips(t *testing.T) {
	dir := t.TempDir()
	first, second := filepath.Join(dir, "first.yaml"), filepath.Join(dir, "second.yaml")
	r := run(t, "--write-config-to", first, "--cluster-cidr=10.244.0.0/16", "--iptables-sync-period=45s", "--masquerade-all",
		"--nodeport-addresses=primary", "--conntrack-udp-timeout=30s", "--hostname-override=Node-7", "-v=2", "--kube-api-qps=20")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	data, err := os.ReadFile(first)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"apiVersion: kubeproxy.config.k8s.io/v1alpha1", "kind: KubeProxyConfiguration", "clusterCIDR: 10.244.0.0/16",
		"syncPeriod: 45s", "masqueradeAll: true", "- primary", "udpTimeout: 30s", "hostnameOverride: node-7", "verbosity: 2", "qps: 20",
		"mode: iptables", "detectLocalMode: ClusterCIDR", "masqueradeBit: 14"} {
		if !strings.Contains(string(data), want) {
			t.Errorf("written config lacks %q:\n%s", want, data)
		}
	}
	// Reading it back and writing it again changes nothing.
	if r := run(t, "--config", first, "--write-config-to", second); r.code != 0 {
		t.Fatalf("reading the written config back: exit %d: %s", r.code, r.stderr)
	}
	again, err := os.ReadFile(second)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(data, again) {
		t.Errorf("round trip changed the file:\n%s\n---\n%s", data, again)
	}
	// Underscores work as dashes, as in kube-proxy.
	if r := run(t, "--write-config-to", second, "--hostname_override=UNDERSCORE"); r.code != 0 {
		t.Fatalf("--hostname_override: exit %d: %s", r.code, r.stderr)
	}
	if again, _ := os.ReadFile(second); !strings.Contains(string(again), "hostnameOverride: underscore") {
		t.Errorf("--hostname_override not applied:\n%s", again)
	}
	// With --config, configuration flags are ignored (as in kube-proxy), with a warning.
	r = run(t, "--config", first, "--write-config-to", second, "--iptables-sync-period=5s", "--hostname-override=other")
	if r.code != 0 || !strings.Contains(r.stderr, "ignoring --iptables-sync-period because --config is set") {
		t.Errorf("exit %d, stderr %q", r.code, r.stderr)
	}
	again, _ = os.ReadFile(second)
	if !strings.Contains(string(again), "syncPeriod: 45s") || !strings.Contains(string(again), "hostnameOverride: other") {
		t.Errorf("--config precedence broken:\n%s", again)
	}
}
