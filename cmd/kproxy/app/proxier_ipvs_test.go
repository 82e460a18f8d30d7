package app

import (
	"context"
	"errors"
	"net/netip"
	"reflect"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/spf13/pflag"
	v1 "k8s.io/api/core/v1"
	v1alpha1 "k8s.io/kube-proxy/config/v1alpha1"

	"github.com/kproxy/kproxy/cmd/kproxy/app/config"
	"github.com/kproxy/kproxy/ipvs"
)

// parseFlags returns the completed, validated configuration for kproxy's flags.
func parseFlags(t *testing.T, args ...string) *v1alpha1.KubeProxyConfiguration {
	t.Helper()
	o := config.NewOptions()
	fs := pflag.NewFlagSet("kproxy", pflag.ContinueOnError)
	o.AddFlags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	if err := o.Complete(); err != nil {
		t.Fatal(err)
	}
	if err := o.Validate(); err != nil {
		t.Fatal(err)
	}
	return o.Config
}

// Every ipvs.* setting and the shared iptables/local-detection ones reach the plan.
func TestIPVSPlanOptions(t *testing.T) {
	pfx := netip.MustParsePrefix
	podCIDRs := []netip.Prefix{pfx("10.244.7.0/24"), pfx("fd00:10:244:7::/64")}
	for _, tc := range []struct {
		name string
		args []string
		want ipvs.PlanOptions
	}{
		{"defaults", nil, ipvs.PlanOptions{MasqueradeBit: 14}},
		{"ipvs flags", []string{"--ipvs-scheduler=wrr", "--ipvs-strict-arp", "--ipvs-exclude-cidrs=10.0.0.1/8,fd00::/64",
			"--ipvs-tcp-timeout=1h", "--ipvs-tcpfin-timeout=2m", "--ipvs-udp-timeout=30s", "--masquerade-all",
			"--iptables-masquerade-bit=9", "--nodeport-addresses=198.18.0.0/24"},
			ipvs.PlanOptions{Scheduler: "wrr", StrictARP: true, ExcludeCIDRs: []netip.Prefix{pfx("10.0.0.0/8"), pfx("fd00::/64")},
				TCPTimeout: time.Hour, TCPFinTimeout: 2 * time.Minute, UDPTimeout: 30 * time.Second, MasqueradeAll: true,
				MasqueradeBit: 9, NodePortAddresses: []string{"198.18.0.0/24"}}},
		{"primary node ports", []string{"--nodeport-addresses=primary"},
			ipvs.PlanOptions{MasqueradeBit: 14, NodePortAddresses: []string{"primary"}}},
		{"cluster CIDR", []string{"--cluster-cidr=10.244.0.0/16,fd00:10:244::/48"},
			ipvs.PlanOptions{MasqueradeBit: 14, LocalDetector: ipvs.LocalDetector{CIDRs: []netip.Prefix{pfx("10.244.0.0/16"), pfx("fd00:10:244::/48")}}}},
		{"node CIDR", []string{"--detect-local-mode=NodeCIDR", "--cluster-cidr=10.244.0.0/16"},
			ipvs.PlanOptions{MasqueradeBit: 14, LocalDetector: ipvs.LocalDetector{CIDRs: podCIDRs}}},
		{"bridge", []string{"--detect-local-mode=BridgeInterface", "--pod-bridge-interface=cbr0"},
			ipvs.PlanOptions{MasqueradeBit: 14, LocalDetector: ipvs.LocalDetector{Interface: "cbr0"}}},
		{"interface prefix", []string{"--detect-local-mode=InterfaceNamePrefix", "--pod-interface-name-prefix=veth"},
			ipvs.PlanOptions{MasqueradeBit: 14, LocalDetector: ipvs.LocalDetector{Interface: "veth+"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := parseFlags(t, append([]string{"--proxy-mode=ipvs"}, tc.args...)...)
			if got := ipvsPlanOptions(c, podCIDRs); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

// The periods of the active mode drive the sync loop.
func TestIPVSSyncPeriodsFromFlags(t *testing.T) {
	c := parseFlags(t, "--proxy-mode=ipvs", "--ipvs-min-sync-period=3s", "--ipvs-sync-period=1m", "--iptables-sync-period=5m")
	if m, s := syncPeriods(c); m != 3*time.Second || s != time.Minute {
		t.Errorf("got %v %v", m, s)
	}
}

func TestParsePodCIDRs(t *testing.T) {
	pfx := netip.MustParsePrefix
	for _, tc := range []struct {
		spec v1.NodeSpec
		want []netip.Prefix
	}{
		{v1.NodeSpec{PodCIDR: "10.244.1.0/24", PodCIDRs: []string{"10.244.1.0/24", "fd00:1::/64"}}, []netip.Prefix{pfx("10.244.1.0/24"), pfx("fd00:1::/64")}},
		{v1.NodeSpec{PodCIDR: "10.244.1.1/24"}, []netip.Prefix{pfx("10.244.1.0/24")}},
		{v1.NodeSpec{PodCIDRs: []string{"bogus"}}, nil},
		{v1.NodeSpec{}, nil},
	} {
		if got := parsePodCIDRs(&v1.Node{Spec: tc.spec}); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%+v: got %v, want %v", tc.spec, got, tc.want)
		}
	}
}

// Starting in iptables mode looks for (and removes) IPVS mode's leftovers; starting
// in ipvs mode leaves that to ipvs.NewNodeProxier, which removes iptables mode's.
func TestCleanOtherMode(t *testing.T) {
	saved := cleanIPVSLeftovers
	t.Cleanup(func() { cleanIPVSLeftovers = saved })
	var calls int
	var excluded []netip.Prefix
	result := error(nil)
	cleanIPVSLeftovers = func(_ context.Context, c *v1alpha1.KubeProxyConfiguration, log logr.Logger) (bool, error) {
		calls++
		excluded = ipvsNodeOptions(c, log).Plan.ExcludeCIDRs
		return result == nil, result
	}
	ctx := context.Background()
	c := parseFlags(t, "--proxy-mode=iptables", "--ipvs-exclude-cidrs=192.0.2.0/24")
	cleanOtherMode(ctx, c, logr.Discard())
	if calls != 1 || !reflect.DeepEqual(excluded, []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}) {
		t.Errorf("iptables mode: %d calls, exclude %v; want one call honouring --ipvs-exclude-cidrs", calls, excluded)
	}
	result = errors.New("boom")
	cleanOtherMode(ctx, c, logr.Discard()) // logged, not fatal
	if calls != 2 {
		t.Errorf("calls %d", calls)
	}
	cleanOtherMode(ctx, parseFlags(t, "--proxy-mode=ipvs"), logr.Discard())
	if calls != 2 {
		t.Error("ipvs mode must not run the IPVS cleanup")
	}
}

// The IPVS backend refuses what it cannot honour before touching the kernel.
func TestNewIPVSProxierChecks(t *testing.T) {
	c := parseFlags(t, "--proxy-mode=ipvs", "--iptables-masquerade-bit=3")
	*c.IPTables.MasqueradeBit = 0 // as if validation were bypassed
	if _, err := newIPVSProxier(context.Background(), c, proxierDeps{log: logr.Discard()}); err == nil {
		t.Fatal("masquerade bit 0 accepted")
	}
	c.DetectLocalMode = config.LocalModeNodeCIDR
	*c.IPTables.MasqueradeBit = 3
	if _, err := newIPVSProxier(context.Background(), c, proxierDeps{log: logr.Discard()}); err == nil {
		t.Fatal("NodeCIDR without an API client accepted")
	}
}
