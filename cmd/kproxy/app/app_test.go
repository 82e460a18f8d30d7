package app

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	componentbaseconfig "k8s.io/component-base/config/v1alpha1"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/kproxy/kproxy/cmd/kproxy/app/config"
	"github.com/kproxy/kproxy/iptables"
)

func TestIPTablesRenderOptions(t *testing.T) {
	base := func(mut func(c *config.Options)) *config.Options {
		o := config.NewOptions()
		mut(o)
		config.ApplyPlatformDefaults(o.Config)
		return o
	}
	pfx := netip.MustParsePrefix
	for _, tc := range []struct {
		name   string
		family iptables.Family
		mut    func(o *config.Options)
		want   iptables.LocalDetector
		check  func(t *testing.T, ro iptables.RenderOptions)
	}{
		{"cluster CIDR v4", iptables.IPv4, func(o *config.Options) { o.Config.ClusterCIDR = "10.244.0.0/16,fd00::/48" },
			iptables.LocalDetector{Mode: iptables.LocalModeClusterCIDR, CIDRs: []netip.Prefix{pfx("10.244.0.0/16"), pfx("fd00::/48")}}, nil},
		// Each family's renderer uses the CIDR of its own family and detects nothing
		// when there is none.
		{"cluster CIDR of one family", iptables.IPv4, func(o *config.Options) { o.Config.ClusterCIDR = "10.244.0.0/16" },
			iptables.LocalDetector{Mode: iptables.LocalModeClusterCIDR, CIDRs: []netip.Prefix{pfx("10.244.0.0/16")}}, nil},
		{"no cluster CIDR", iptables.IPv4, func(o *config.Options) {}, iptables.LocalDetector{}, nil},
		{"node CIDR", iptables.IPv4, func(o *config.Options) { o.Config.DetectLocalMode = config.LocalModeNodeCIDR },
			iptables.LocalDetector{Mode: iptables.LocalModeNodeCIDR}, nil},
		{"bridge", iptables.IPv4, func(o *config.Options) {
			o.Config.DetectLocalMode, o.Config.DetectLocal.BridgeInterface = config.LocalModeBridgeInterface, "cbr0"
		}, iptables.LocalDetector{Mode: iptables.LocalModeBridgeInterface, Interface: "cbr0"}, nil},
		{"prefix", iptables.IPv4, func(o *config.Options) {
			o.Config.DetectLocalMode, o.Config.DetectLocal.InterfaceNamePrefix = config.LocalModeInterfaceNamePrefix, "veth"
		}, iptables.LocalDetector{Mode: iptables.LocalModeInterfaceNamePrefix, Interface: "veth"}, nil},
		{"node ports and masquerade", iptables.IPv4, func(o *config.Options) {
			o.Config.NodePortAddresses = []string{"10.0.0.1/8"}
			*o.Config.IPTables.MasqueradeBit = 9
			o.Config.IPTables.MasqueradeAll = true
			*o.Config.IPTables.LocalhostNodePorts = false
		}, iptables.LocalDetector{}, func(t *testing.T, ro iptables.RenderOptions) {
			if ro.MasqueradeBit != 9 || !ro.MasqueradeAll || ro.LocalhostNodePorts || ro.NodePortPrimary ||
				!reflect.DeepEqual(ro.NodePortAddresses, []netip.Prefix{pfx("10.0.0.0/8")}) {
				t.Errorf("%+v", ro)
			}
		}},
		{"primary", iptables.IPv4, func(o *config.Options) { o.Config.NodePortAddresses = []string{"primary"} }, iptables.LocalDetector{},
			func(t *testing.T, ro iptables.RenderOptions) {
				if !ro.NodePortPrimary || len(ro.NodePortAddresses) != 0 || !ro.LocalhostNodePorts {
					t.Errorf("%+v", ro)
				}
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := base(tc.mut)
			ro := iptablesRenderOptions(o.Config, logr.Discard())
			ro.Family = tc.family
			if !reflect.DeepEqual(ro.LocalDetector, tc.want) {
				t.Errorf("local detector %+v, want %+v", ro.LocalDetector, tc.want)
			}
			if err := ro.Validate(); err != nil {
				t.Errorf("render options do not validate: %v", err)
			}
			if tc.check != nil {
				tc.check(t, ro)
			}
		})
	}
}

func TestPrimaryNodeIPOverride(t *testing.T) {
	if primaryIPOverride("0.0.0.0").IsValid() || primaryIPOverride("::").IsValid() {
		t.Error("unspecified bind addresses must not override the node IP")
	}
	if ip := primaryIPOverride("192.0.2.9"); ip != netip.MustParseAddr("192.0.2.9") {
		t.Errorf("override = %v", ip)
	}
}

func TestRestConfig(t *testing.T) {
	kc := clientcmdapi.NewConfig()
	kc.Clusters["c"] = &clientcmdapi.Cluster{Server: "https://from-kubeconfig:6443"}
	kc.AuthInfos["u"] = &clientcmdapi.AuthInfo{Token: "tok"}
	kc.Contexts["x"] = &clientcmdapi.Context{Cluster: "c", AuthInfo: "u"}
	kc.CurrentContext = "x"
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		t.Fatal(err)
	}
	cc := componentbaseconfig.ClientConnectionConfiguration{Kubeconfig: path, QPS: 7, Burst: 9, ContentType: "application/json", AcceptContentTypes: "application/json"}
	cfg, err := restConfig(cc, "")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Host != "https://from-kubeconfig:6443" || cfg.BearerToken != "tok" || cfg.QPS != 7 || cfg.Burst != 9 ||
		cfg.ContentType != "application/json" || cfg.AcceptContentTypes != "application/json" || !strings.HasPrefix(cfg.UserAgent, "kproxy/") {
		t.Errorf("%+v", cfg)
	}
	cfg, err = restConfig(cc, "https://master:443")
	if err != nil || cfg.Host != "https://master:443" {
		t.Errorf("--master must override the kubeconfig's server: %v %v", cfg.Host, err)
	}
	if _, err := restConfig(componentbaseconfig.ClientConnectionConfiguration{Kubeconfig: filepath.Join(t.TempDir(), "none")}, ""); err == nil {
		t.Error("missing kubeconfig must fail")
	}
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	if _, err := restConfig(componentbaseconfig.ClientConnectionConfiguration{}, ""); err == nil || !strings.Contains(err.Error(), "--kubeconfig") {
		t.Errorf("outside a cluster without a kubeconfig: %v", err)
	}
}

func TestWaitForPodCIDRs(t *testing.T) {
	scheme := runtime.NewScheme()
	if err := v1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	withCIDR := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "ready"}, Spec: v1.NodeSpec{PodCIDR: "10.244.1.0/24", PodCIDRs: []string{"10.244.1.0/24"}}}
	without := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "waiting"}}
	c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(withCIDR, without).Build()
	if err := waitForPodCIDRs(ctx, c, "ready", time.Second, 10*time.Millisecond, logr.Discard()); err != nil {
		t.Errorf("node with pod CIDRs: %v", err)
	}
	err := waitForPodCIDRs(ctx, c, "waiting", 100*time.Millisecond, 10*time.Millisecond, logr.Discard())
	if err == nil || !strings.Contains(err.Error(), "has no spec.podCIDRs") {
		t.Errorf("node without pod CIDRs: %v", err)
	}
	err = waitForPodCIDRs(ctx, c, "missing", 100*time.Millisecond, 10*time.Millisecond, logr.Discard())
	if err == nil || !strings.Contains(err.Error(), "not found") {
		t.Errorf("missing node: %v", err)
	}
	// The CIDR arrives while waiting.
	go func() {
		time.Sleep(50 * time.Millisecond)
		n := without.DeepCopy()
		n.Spec.PodCIDRs = []string{"10.244.2.0/24"}
		_ = c.Update(ctx, n)
	}()
	if err := waitForPodCIDRs(ctx, c, "waiting", 5*time.Second, 10*time.Millisecond, logr.Discard()); err != nil {
		t.Errorf("pod CIDR assigned later: %v", err)
	}
}

func TestMainWritesConfig(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out.yaml")
	var stdout, stderr strings.Builder
	if code := Main(context.Background(), []string{"--write-config-to", path, "--masquerade-all"}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	data, err := os.ReadFile(path)
	if err != nil || !strings.Contains(string(data), "masqueradeAll: true") {
		t.Errorf("%v\n%s", err, data)
	}
	if code := Main(context.Background(), []string{"--proxy-mode=ipvs", "--iptables-masquerade-bit=0", "--hostname-override=x", "--master=http://127.0.0.1:1"}, &stdout, &stderr); code != 1 ||
		!strings.Contains(stderr.String(), "ipvs mode") {
		t.Errorf("ipvs: exit %d, %q", code, stderr.String())
	}
}

func TestSyncPeriodsFollowMode(t *testing.T) {
	c := config.Default()
	c.IPTables.SyncPeriod.Duration, c.IPTables.MinSyncPeriod.Duration = time.Minute, 2*time.Second
	c.IPVS.SyncPeriod.Duration, c.IPVS.MinSyncPeriod.Duration = time.Hour, 0
	if m, s := syncPeriods(c); m != 2*time.Second || s != time.Minute {
		t.Errorf("iptables: %v %v", m, s)
	}
	c.Mode = config.ModeIPVS
	if m, s := syncPeriods(c); m != 0 || s != time.Hour {
		t.Errorf("ipvs: %v %v", m, s)
	}
}

func TestConfigWatcher(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte("a"), 0o600); err != nil {
		t.Fatal(err)
	}
	w := &configWatcher{path: path}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Start(ctx) }()
	time.Sleep(100 * time.Millisecond) // let the watch start
	if err := os.WriteFile(path, []byte("b"), 0o600); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), path) {
			t.Errorf("got %v, want an error naming the file", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a changed config file did not stop the watcher")
	}
	cancel()

	ctx, cancel = context.WithCancel(context.Background())
	go func() { done <- w.Start(ctx) }()
	cancel()
	if err := <-done; err != nil {
		t.Errorf("cancelled watcher: %v", err)
	}
	if w.NeedLeaderElection() {
		t.Error("must run on every node")
	}
}
