package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	logsapi "k8s.io/component-base/logs/api/v1"
	v1alpha1 "k8s.io/kube-proxy/config/v1alpha1"
	"k8s.io/utils/ptr"
)

// parse runs the command-line half of kproxy: register, parse, complete.
func parse(t *testing.T, args ...string) (*Options, error) {
	t.Helper()
	o := NewOptions()
	fs := pflag.NewFlagSet("kproxy", pflag.ContinueOnError)
	fs.SetOutput(new(strings.Builder))
	o.AddFlags(fs)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	return o, o.Complete()
}

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

const header = "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\n"

func TestDefaults(t *testing.T) {
	c := Default()
	d := func(x time.Duration) metav1.Duration { return metav1.Duration{Duration: x} }
	for _, tc := range []struct {
		name      string
		got, want any
	}{
		{"mode", c.Mode, ModeIPTables},
		{"detectLocalMode", c.DetectLocalMode, LocalModeClusterCIDR},
		{"bindAddress", c.BindAddress, "0.0.0.0"},
		{"healthzBindAddress", c.HealthzBindAddress, "0.0.0.0:10256"},
		{"metricsBindAddress", c.MetricsBindAddress, "127.0.0.1:10249"},
		{"iptables.syncPeriod", c.IPTables.SyncPeriod, d(30 * time.Second)},
		{"iptables.minSyncPeriod", c.IPTables.MinSyncPeriod, d(time.Second)},
		{"iptables.masqueradeBit", *c.IPTables.MasqueradeBit, int32(14)},
		{"iptables.localhostNodePorts", *c.IPTables.LocalhostNodePorts, true},
		{"iptables.masqueradeAll", c.IPTables.MasqueradeAll, false},
		{"ipvs.syncPeriod", c.IPVS.SyncPeriod, d(30 * time.Second)},
		{"ipvs.minSyncPeriod", c.IPVS.MinSyncPeriod, d(0)},
		{"conntrack.maxPerCore", *c.Conntrack.MaxPerCore, int32(32768)},
		{"conntrack.min", *c.Conntrack.Min, int32(131072)},
		{"conntrack.tcpEstablishedTimeout", *c.Conntrack.TCPEstablishedTimeout, d(24 * time.Hour)},
		{"conntrack.tcpCloseWaitTimeout", *c.Conntrack.TCPCloseWaitTimeout, d(time.Hour)},
		{"conntrack.udpTimeout", c.Conntrack.UDPTimeout, d(0)},
		{"oomScoreAdj", *c.OOMScoreAdj, int32(-999)},
		{"configSyncPeriod", c.ConfigSyncPeriod, d(15 * time.Minute)},
		{"clientConnection.qps", c.ClientConnection.QPS, float32(5)},
		{"clientConnection.burst", c.ClientConnection.Burst, int32(10)},
		{"clientConnection.contentType", c.ClientConnection.ContentType, "application/vnd.kubernetes.protobuf"},
		{"logging.format", c.Logging.Format, "text"},
		{"logging.flushFrequency", c.Logging.FlushFrequency.Duration.Duration, 5 * time.Second},
		{"nodePortAddresses", c.NodePortAddresses, []string(nil)},
	} {
		if !reflect.DeepEqual(tc.got, tc.want) {
			t.Errorf("%s = %v, want %v", tc.name, tc.got, tc.want)
		}
	}
	if errs := Validate(c); len(errs) > 0 {
		t.Errorf("defaults do not validate: %v", errs)
	}
}

func TestDefaultAddressesFollowBindAddressFamily(t *testing.T) {
	for _, tc := range []struct {
		bind, healthz, metrics   string
		wantHealthz, wantMetrics string
	}{
		{"", "", "", "0.0.0.0:10256", "127.0.0.1:10249"},
		{"::", "", "", "[::]:10256", "[::1]:10249"},
		{"10.0.0.1", "10.0.0.1", "0.0.0.0", "10.0.0.1:10256", "0.0.0.0:10249"},
		{"", "[::1]:99", "::", "[::1]:99", "[::]:10249"},
	} {
		c := &v1alpha1.KubeProxyConfiguration{BindAddress: tc.bind, HealthzBindAddress: tc.healthz, MetricsBindAddress: tc.metrics}
		SetDefaults(c)
		if c.HealthzBindAddress != tc.wantHealthz || c.MetricsBindAddress != tc.wantMetrics {
			t.Errorf("bind %q healthz %q metrics %q: got %q %q, want %q %q", tc.bind, tc.healthz, tc.metrics,
				c.HealthzBindAddress, c.MetricsBindAddress, tc.wantHealthz, tc.wantMetrics)
		}
	}
}

func TestDecode(t *testing.T) {
	c, err := Decode([]byte(header + `
mode: iptables
hostnameOverride: node-a
clusterCIDR: 10.244.0.0/16,fd00:10:244::/56
detectLocalMode: NodeCIDR
nodePortAddresses: [primary]
iptables:
  masqueradeBit: 12
  localhostNodePorts: false
  syncPeriod: 1m
  minSyncPeriod: 2s
conntrack:
  maxPerCore: 0
metricsBindAddress: 0.0.0.0
logging:
  verbosity: 3
`))
	if err != nil {
		t.Fatal(err)
	}
	switch {
	case c.HostnameOverride != "node-a", c.ClusterCIDR != "10.244.0.0/16,fd00:10:244::/56", c.DetectLocalMode != LocalModeNodeCIDR,
		!reflect.DeepEqual(c.NodePortAddresses, []string{"primary"}):
		t.Errorf("top-level fields not decoded: %+v", c)
	case *c.IPTables.MasqueradeBit != 12, *c.IPTables.LocalhostNodePorts, c.IPTables.SyncPeriod.Duration != time.Minute,
		c.IPTables.MinSyncPeriod.Duration != 2*time.Second:
		t.Errorf("iptables section not decoded: %+v", c.IPTables)
	case *c.Conntrack.MaxPerCore != 0:
		t.Errorf("an explicit 0 must survive defaulting: maxPerCore = %d", *c.Conntrack.MaxPerCore)
	case *c.Conntrack.Min != 131072:
		t.Errorf("unset conntrack.min not defaulted: %d", *c.Conntrack.Min)
	case c.MetricsBindAddress != "0.0.0.0:10249":
		t.Errorf("a bare metrics IP gets the default port: %q", c.MetricsBindAddress)
	case c.Logging.Verbosity != 3:
		t.Errorf("logging.verbosity = %d", c.Logging.Verbosity)
	}

	// JSON is a YAML subset and is accepted too; an IPVS file keeps minSyncPeriod 0.
	c, err = Decode([]byte(`{"apiVersion":"kubeproxy.config.k8s.io/v1alpha1","kind":"KubeProxyConfiguration","mode":"ipvs"}`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Mode != ModeIPVS || c.IPVS.SyncPeriod.Duration != 30*time.Second || c.IPVS.MinSyncPeriod.Duration != 0 {
		t.Errorf("ipvs defaults from a file: mode %q %+v", c.Mode, c.IPVS)
	}
}

func TestDecodeErrors(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		want       []string
	}{
		{"unknown fields name their path", header + "bogus: 1\niptables:\n  foo: 2\n", []string{`unknown field "bogus"`, `unknown field "iptables.foo"`}},
		{"duplicate field", header + "mode: iptables\nmode: ipvs\n", []string{`"mode" already set`}},
		{"missing apiVersion", "kind: KubeProxyConfiguration\n", []string{"apiVersion"}},
		{"unknown version", "apiVersion: kubeproxy.config.k8s.io/v1alpha2\nkind: KubeProxyConfiguration\n", []string{"v1alpha2"}},
		{"wrong kind", "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeletConfiguration\n", []string{"KubeletConfiguration"}},
		{"wrong type", header + "iptables:\n  masqueradeBit: fourteen\n", []string{"masqueradeBit"}},
		{"not yaml", "{{{", []string{"config file"}},
		{"empty", "\n", []string{"empty"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := writeFile(t, tc.body)
			_, err := Load(p)
			var fe *FileError
			if !errors.As(err, &fe) {
				t.Fatalf("got %v, want a *FileError", err)
			}
			msg := err.Error()
			if !strings.Contains(msg, p) {
				t.Errorf("%q does not name the file", msg)
			}
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("%q does not contain %q", msg, w)
				}
			}
		})
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing.yaml")); err == nil || !strings.Contains(err.Error(), "missing.yaml") {
		t.Errorf("missing file: %v", err)
	}
}

func TestFlags(t *testing.T) {
	o, err := parse(t, "--proxy-mode=iptables", "--iptables-sync-period=1m", "--iptables-min-sync-period=0",
		"--iptables-masquerade-bit=3", "--masquerade-all", "--iptables-localhost-nodeports=false",
		"--cluster-cidr=10.244.0.0/16", "--nodeport-addresses=10.0.0.0/8,fd00::/64", "--healthz-bind-address=127.0.0.1",
		"--metrics-bind-address=[::1]:9999", "--bind-address=192.0.2.1", "--kube-api-qps=50", "--kube-api-burst=100",
		"--conntrack-max-per-core=0", "--conntrack-tcp-timeout-established=0", "--oom-score-adj=-500", "--hostname-override=Node-A",
		"-v=4", "--config-sync-period=1h", "--kubeconfig=/k", "--master=https://m:6443", "--cleanup", "--init-only")
	if err != nil {
		t.Fatal(err)
	}
	c := o.Config
	for _, tc := range []struct {
		name      string
		got, want any
	}{
		{"mode", c.Mode, ModeIPTables},
		{"syncPeriod", c.IPTables.SyncPeriod.Duration, time.Minute},
		{"minSyncPeriod", c.IPTables.MinSyncPeriod.Duration, time.Duration(0)},
		{"masqueradeBit", *c.IPTables.MasqueradeBit, int32(3)},
		{"masqueradeAll", c.IPTables.MasqueradeAll, true},
		{"localhostNodePorts", *c.IPTables.LocalhostNodePorts, false},
		{"clusterCIDR", c.ClusterCIDR, "10.244.0.0/16"},
		{"nodePortAddresses", c.NodePortAddresses, []string{"10.0.0.0/8", "fd00::/64"}},
		{"healthz (bare IP gets the port)", c.HealthzBindAddress, "127.0.0.1:10256"},
		{"metrics", c.MetricsBindAddress, "[::1]:9999"},
		{"bindAddress", c.BindAddress, "192.0.2.1"},
		{"qps", c.ClientConnection.QPS, float32(50)},
		{"burst", c.ClientConnection.Burst, int32(100)},
		{"maxPerCore", *c.Conntrack.MaxPerCore, int32(0)},
		{"tcpEstablished", c.Conntrack.TCPEstablishedTimeout.Duration, time.Duration(0)},
		{"oomScoreAdj", *c.OOMScoreAdj, int32(-500)},
		{"hostnameOverride (lower-cased)", c.HostnameOverride, "node-a"},
		{"verbosity", c.Logging.Verbosity, logsapi.VerbosityLevel(4)},
		{"configSyncPeriod", c.ConfigSyncPeriod.Duration, time.Hour},
		{"kubeconfig", c.ClientConnection.Kubeconfig, "/k"},
		{"master", o.Master, "https://m:6443"},
		{"cleanup", o.Cleanup, true},
		{"init-only", o.InitOnly, true},
	} {
		if !reflect.DeepEqual(tc.got, tc.want) {
			t.Errorf("%s = %v, want %v", tc.name, tc.got, tc.want)
		}
	}
	if err := o.Validate(); err != nil {
		t.Errorf("valid flags rejected: %v", err)
	}
	if len(o.Warnings) != 0 {
		t.Errorf("unexpected warnings: %v", o.Warnings)
	}
}

func TestFlagDefaultsMatchKubeProxy(t *testing.T) {
	o, err := parse(t)
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.IPVS.MinSyncPeriod.Duration = time.Second // see below
	got, _ := Marshal(o.Config)
	exp, _ := Marshal(want)
	if string(got) != string(exp) {
		t.Errorf("no flags != Default():\n%s\nwant\n%s", got, exp)
	}
	// kube-proxy's --ipvs-min-sync-period defaults to 1s, unlike a file's ipvs section.
	o, err = parse(t, "--proxy-mode=ipvs")
	if err != nil {
		t.Fatal(err)
	}
	if got := o.Config.IPVS.MinSyncPeriod.Duration; got != time.Second {
		t.Errorf("--proxy-mode=ipvs: ipvs.minSyncPeriod = %v, want 1s", got)
	}
}

func TestDeprecatedPortFlags(t *testing.T) {
	for _, tc := range []struct {
		args                 []string
		wantHealthz, wantMet string
	}{
		{[]string{"--healthz-port=0"}, "", "127.0.0.1:10249"},
		{[]string{"--metrics-port=0"}, "0.0.0.0:10256", ""},
		{[]string{"--healthz-bind-address=10.0.0.1", "--healthz-port=1234"}, "10.0.0.1:1234", "127.0.0.1:10249"},
		{[]string{"--healthz-bind-address=10.0.0.1:5", "--healthz-port=1234"}, "10.0.0.1:5", "127.0.0.1:10249"},
		{[]string{"--healthz-bind-address=", "--metrics-bind-address="}, "", ""},
	} {
		o, err := parse(t, tc.args...)
		if err != nil {
			t.Fatal(err)
		}
		if o.Config.HealthzBindAddress != tc.wantHealthz || o.Config.MetricsBindAddress != tc.wantMet {
			t.Errorf("%v: healthz %q metrics %q, want %q %q", tc.args, o.Config.HealthzBindAddress, o.Config.MetricsBindAddress, tc.wantHealthz, tc.wantMet)
		}
		if err := o.Validate(); err != nil {
			t.Errorf("%v: %v", tc.args, err)
		}
	}
}

func TestConfigFilePrecedence(t *testing.T) {
	p := writeFile(t, header+`
mode: iptables
hostnameOverride: from-file
iptables:
  syncPeriod: 10s
logging:
  verbosity: 2
  vmodule:
  - filePattern: runner*
    verbosity: 5
`)
	o, err := parse(t, "--config", p, "--proxy-mode=ipvs", "--iptables-sync-period=1h", "--hostname-override= From-Flag ",
		"-v=6", "--vmodule=builder*=4", "--master=https://m", "--cleanup")
	if err != nil {
		t.Fatal(err)
	}
	c := o.Config
	if c.Mode != ModeIPTables || c.IPTables.SyncPeriod.Duration != 10*time.Second {
		t.Errorf("configuration flags must not override the file: mode %q syncPeriod %v", c.Mode, c.IPTables.SyncPeriod)
	}
	if c.HostnameOverride != "from-flag" {
		t.Errorf("--hostname-override overrides the file (trimmed, lower-cased): got %q", c.HostnameOverride)
	}
	if c.Logging.Verbosity != 6 {
		t.Errorf("-v overrides the file: verbosity %d", c.Logging.Verbosity)
	}
	want := logsapi.VModuleConfiguration{{FilePattern: "builder*", Verbosity: 4}, {FilePattern: "runner*", Verbosity: 5}}
	if !reflect.DeepEqual(c.Logging.VModule, want) {
		t.Errorf("--vmodule comes first, then the file's: %+v", c.Logging.VModule)
	}
	if o.Master != "https://m" || !o.Cleanup {
		t.Errorf("non-configuration flags always apply: master %q cleanup %v", o.Master, o.Cleanup)
	}
	if len(o.Warnings) != 1 || !strings.Contains(o.Warnings[0], "--iptables-sync-period, --proxy-mode") ||
		strings.Contains(o.Warnings[0], "--hostname-override") || strings.Contains(o.Warnings[0], "--v") {
		t.Errorf("want one warning naming exactly the ignored flags, got %q", o.Warnings)
	}
	if err := o.Validate(); err != nil {
		t.Error(err)
	}

	// Without --hostname-override the file's value stands; a blank override is an error.
	if o, err := parse(t, "--config", p); err != nil || o.Config.HostnameOverride != "from-file" {
		t.Errorf("file hostname: %v %q", err, o.Config.HostnameOverride)
	}
	if _, err := parse(t, "--hostname-override", "  "); err == nil || !strings.Contains(err.Error(), "--hostname-override") {
		t.Errorf("blank --hostname-override: %v", err)
	}
}

func TestValidationErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		file string // when set, used as --config
		want string
	}{
		{"masquerade bit", []string{"--iptables-masquerade-bit=32"}, "", "--iptables-masquerade-bit: Invalid value: 32: must be within the range [0, 31]"},
		{"masquerade bit in file", nil, "iptables:\n  masqueradeBit: -1\n", `iptables.masqueradeBit in config file`},
		{"sync period zero", []string{"--iptables-sync-period=0"}, "", "--iptables-sync-period: Invalid value: \"0s\": must be greater than 0"},
		{"min above sync", []string{"--iptables-min-sync-period=1m"}, "", "--iptables-min-sync-period: Invalid value: \"1m0s\": must not be greater than iptables.syncPeriod (30s)"},
		{"negative min", []string{"--iptables-min-sync-period=-1s"}, "", "--iptables-min-sync-period: Invalid value: \"-1s\": must be greater than or equal to 0"},
		{"file min above sync", nil, "iptables:\n  syncPeriod: 10s\n  minSyncPeriod: 20s\n", "iptables.minSyncPeriod in config file"},
		{"ipvs sync period", []string{"--proxy-mode=ipvs", "--ipvs-sync-period=-1s"}, "", "--ipvs-sync-period: Invalid value"},
		{"ipvs scheduler", []string{"--proxy-mode=ipvs", "--ipvs-scheduler=fastest"}, "", "--ipvs-scheduler: Unsupported value: \"fastest\""},
		{"ipvs exclude cidr", []string{"--proxy-mode=ipvs", "--ipvs-exclude-cidrs=foo"}, "", "--ipvs-exclude-cidrs: Invalid value: \"foo\": must be a valid CIDR"},
		{"ipvs timeout", []string{"--proxy-mode=ipvs", "--ipvs-udp-timeout=-1s"}, "", "--ipvs-udp-timeout: Invalid value"},
		{"healthz not ip:port", nil, "healthzBindAddress: localhost:10256\n", "healthzBindAddress in config file"},
		{"healthz port range", nil, "healthzBindAddress: 0.0.0.0:0\n", "port between 1 and 65535"},
		{"metrics not ip:port", nil, "metricsBindAddress: '[::1'\n", "metricsBindAddress in config file"},
		{"bind address", nil, "bindAddress: node-a\n", "bindAddress in config file \"%s\": Invalid value: \"node-a\": must be an IP address"},
		{"cluster cidr", []string{"--cluster-cidr=10.0.0.0/33"}, "", "--cluster-cidr: Invalid value: \"10.0.0.0/33\""},
		{"cluster cidr same family", []string{"--cluster-cidr=10.0.0.0/8,10.1.0.0/16"}, "", "dual-stack pair"},
		{"cluster cidr three", []string{"--cluster-cidr=10.0.0.0/8,fd00::/64,10.1.0.0/16"}, "", "--cluster-cidr"},
		{"detect-local-mode value", []string{"--detect-local-mode=Bogus"}, "", "--detect-local-mode: Unsupported value: \"Bogus\""},
		{"bridge needs interface", []string{"--detect-local-mode=BridgeInterface"}, "", "--pod-bridge-interface: Required value: required when detectLocalMode is BridgeInterface"},
		{"bridge interface name", []string{"--detect-local-mode=BridgeInterface", "--pod-bridge-interface=a/b"}, "", "--pod-bridge-interface: Invalid value"},
		{"prefix needs prefix", []string{"--detect-local-mode=InterfaceNamePrefix"}, "", "--pod-interface-name-prefix: Required value"},
		{"file bridge needs interface", nil, "detectLocalMode: BridgeInterface\n", "detectLocal.bridgeInterface in config file"},
		{"nodeport address not cidr", []string{"--nodeport-addresses=10.0.0.1"}, "", "--nodeport-addresses: Invalid value: \"10.0.0.1\": must be a valid CIDR"},
		{"primary with cidrs", []string{"--nodeport-addresses=primary,10.0.0.0/8"}, "", "'primary' cannot be combined with CIDRs"},
		{"file nodeport index", nil, "nodePortAddresses: [10.0.0.0/8, nope]\n", "nodePortAddresses[1] in config file"},
		{"oom score", []string{"--oom-score-adj=2000"}, "", "--oom-score-adj: Invalid value: 2000"},
		{"conntrack min", []string{"--conntrack-min=-1"}, "", "--conntrack-min: Invalid value: -1"},
		{"conntrack timeout", []string{"--conntrack-tcp-timeout-close-wait=-1s"}, "", "--conntrack-tcp-timeout-close-wait: Invalid value"},
		{"conntrack udp timeout", []string{"--conntrack-udp-timeout-stream=-1s"}, "", "--conntrack-udp-timeout-stream: Invalid value"},
		{"config sync period", []string{"--config-sync-period=0"}, "", "--config-sync-period: Invalid value: \"0s\": must be greater than 0"},
		{"burst", []string{"--kube-api-burst=-1"}, "", "--kube-api-burst: Invalid value: -1"},
		{"mode", []string{"--proxy-mode=userspace"}, "", "--proxy-mode: Unsupported value: \"userspace\": supported values: \"iptables\", \"ipvs\""},
		{"nftables", []string{"--proxy-mode=nftables"}, "", "--proxy-mode is not supported by kproxy: the nftables proxy mode is not implemented"},
		{"file nftables", nil, "mode: nftables\n", "mode in config file"},
		{"feature gates", []string{"--feature-gates=Foo=true"}, "", "--feature-gates is not supported by kproxy"},
		{"file feature gates", nil, "featureGates:\n  Foo: true\n", "featureGates in config file"},
		{"hidden metrics", []string{"--show-hidden-metrics-for-version=1.35"}, "", "--show-hidden-metrics-for-version is not supported by kproxy"},
		{"json logging", []string{"--logging-format=json"}, "", "--logging-format is not supported by kproxy: kproxy only logs in text format"},
		{"json logging overrides file", nil, "logging:\n  format: text\n", ""},
		{"unknown logging format", []string{"--logging-format=xml"}, "", "--logging-format: Unsupported value"},
		{"text split stream", []string{"--log-text-split-stream"}, "", "--log-text-split-stream is not supported by kproxy"},
		{"json split stream flag", []string{"--log-json-split-stream"}, "", "--log-json-split-stream is not supported by kproxy: kproxy only logs in text format"},
		{"boot id file", []string{"--boot-id-file=/x"}, "", "--boot-id-file is not supported by kproxy"},
		{"machine id file", []string{"--machine-id-file=/x"}, "", "--machine-id-file is not supported by kproxy"},
		{"port range", nil, "portRange: 100-200\n", "portRange in config file \"%s\" is not supported by kproxy"},
		{"winkernel", nil, "winkernel:\n  networkName: x\n", "winkernel in config file"},
		{"windows service", nil, "windowsRunAsService: true\n", "windowsRunAsService in config file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := tc.args
			path := ""
			if tc.file != "" {
				path = writeFile(t, header+tc.file)
				args = append([]string{"--config", path}, args...)
			}
			o, err := parse(t, args...)
			if err != nil {
				t.Fatal(err)
			}
			err = o.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			var ve *Error
			if !errors.As(err, &ve) {
				t.Fatalf("got %v, want a *config.Error", err)
			}
			want := tc.want
			if strings.Contains(want, "%s") {
				want = strings.ReplaceAll(want, "%s", path)
			}
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error\n  %s\ndoes not contain\n  %s", err, want)
			}
		})
	}
}

func TestLoggingFlagOverridingFileIsNamed(t *testing.T) {
	p := writeFile(t, header)
	o, err := parse(t, "--config", p, "--logging-format=json")
	if err != nil {
		t.Fatal(err)
	}
	if err := o.Validate(); err == nil || !strings.Contains(err.Error(), "--logging-format is not supported") {
		t.Errorf("got %v", err)
	}
}

func TestMultipleProblemsInOneMessage(t *testing.T) {
	o, err := parse(t, "--iptables-masquerade-bit=40", "--oom-score-adj=5000", "--boot-id-file=x")
	if err != nil {
		t.Fatal(err)
	}
	err = o.Validate()
	var ve *Error
	if !errors.As(err, &ve) || len(ve.Problems) != 3 {
		t.Fatalf("want 3 problems, got %v", err)
	}
	if strings.Count(err.Error(), "\n") != 0 {
		t.Errorf("the message must be one line: %q", err)
	}
}

func TestMarshalRoundTrip(t *testing.T) {
	o, err := parse(t, "--proxy-mode=ipvs", "--ipvs-scheduler=wrr", "--cluster-cidr=10.244.0.0/16", "--nodeport-addresses=primary",
		"--conntrack-udp-timeout=30s", "--iptables-localhost-nodeports=false", "-v=3", "--vmodule=x*=2", "--hostname-override=n1")
	if err != nil {
		t.Fatal(err)
	}
	data, err := Marshal(o.Config)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(data), "apiVersion: kubeproxy.config.k8s.io/v1alpha1\n") || !strings.Contains(string(data), "\nkind: KubeProxyConfiguration\n") {
		t.Errorf("missing type meta:\n%s", data)
	}
	back, err := Decode(data)
	if err != nil {
		t.Fatalf("written config does not decode: %v\n%s", err, data)
	}
	ApplyPlatformDefaults(back)
	want := o.Config.DeepCopy()
	want.APIVersion, want.Kind = back.APIVersion, back.Kind
	if !reflect.DeepEqual(back, want) {
		t.Errorf("round trip changed the configuration:\nwrote %+v\nread  %+v", want, back)
	}
	// Written files are complete: every defaulted field is spelled out.
	for _, key := range []string{"masqueradeBit: 14", "syncPeriod: 30s", "maxPerCore: 32768", "healthzBindAddress: 0.0.0.0:10256",
		"oomScoreAdj: -999", "localhostNodePorts: false", "scheduler: wrr"} {
		if !strings.Contains(string(data), key) {
			t.Errorf("written config lacks %q", key)
		}
	}
	// WriteFile writes the same bytes.
	p := filepath.Join(t.TempDir(), "out.yaml")
	if err := WriteFile(p, o.Config); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(p); string(got) != string(data) {
		t.Error("WriteFile and Marshal differ")
	}
}

func TestNodeName(t *testing.T) {
	host := func(name string, err error) func() (string, error) {
		return func() (string, error) { return name, err }
	}
	for _, tc := range []struct {
		override string
		host     func() (string, error)
		want     string
		wantErr  bool
	}{
		{"", host("Worker-1.Example.COM\n", nil), "worker-1.example.com", false},
		{" Node-B ", host("ignored", nil), "node-b", false},
		{"", host("", errors.New("no uts")), "", true},
		{"", host("   ", nil), "", true},
	} {
		got, err := nodeName(tc.override, tc.host)
		if got != tc.want || (err != nil) != tc.wantErr {
			t.Errorf("nodeName(%q) = %q, %v; want %q (error %v)", tc.override, got, err, tc.want, tc.wantErr)
		}
	}
	if _, err := NodeName(&v1alpha1.KubeProxyConfiguration{HostnameOverride: "x"}); err != nil {
		t.Error(err)
	}
	_ = ptr.To(1)
}
