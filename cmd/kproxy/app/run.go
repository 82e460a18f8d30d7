package app

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"time"

	"github.com/go-logr/logr"
	v1alpha1 "k8s.io/kube-proxy/config/v1alpha1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/kproxy/kproxy/cmd/kproxy/app/config"
	"github.com/kproxy/kproxy/cmd/kproxy/app/nodesetup"
	"github.com/kproxy/kproxy/controller"
	"github.com/kproxy/kproxy/proxier"
	"github.com/kproxy/kproxy/proxier/healthcheck"
	"github.com/kproxy/kproxy/proxier/metrics"
)

// podCIDRTimeout is how long kproxy waits for the node's pod CIDRs with
// detectLocalMode NodeCIDR, as kube-proxy does.
const podCIDRTimeout = 5 * time.Minute

// Run does what completed, validated options ask for: clean up and exit (--cleanup),
// prepare the node and exit (--init-only), or run the proxy until ctx is cancelled,
// leaving the rules in place so traffic keeps flowing across a restart.
func Run(ctx context.Context, o *config.Options, log logr.Logger) error {
	c := o.Config
	log.Info("kproxy", "version", Version(), "mode", c.Mode)
	if o.Cleanup {
		return cleanup(ctx, c, log)
	}
	setter := &nodesetup.Setter{Logger: log.WithName("nodesetup")}
	if err := prepareNode(setter, c); err != nil {
		return err
	}
	if o.InitOnly {
		log.Info("Node prepared; exiting as --init-only asks")
		return nil
	}
	if err := setter.OOMScoreAdj(int(*c.OOMScoreAdj)); err != nil {
		log.Info("Could not set oom_score_adj", "err", err.Error())
	}
	return runProxy(ctx, o, setter, log)
}

// prepareNode applies the kernel settings kube-proxy makes before programming rules:
// conntrack limits and timeouts, and what the mode needs.
func prepareNode(s *nodesetup.Setter, c *v1alpha1.KubeProxyConfiguration) error {
	ct := c.Conntrack
	err := s.Conntrack(nodesetup.Conntrack{
		MaxPerCore:            int(*ct.MaxPerCore),
		Min:                   int(*ct.Min),
		TCPEstablishedTimeout: ct.TCPEstablishedTimeout.Duration,
		TCPCloseWaitTimeout:   ct.TCPCloseWaitTimeout.Duration,
		TCPBeLiberal:          ct.TCPBeLiberal,
		UDPTimeout:            ct.UDPTimeout.Duration,
		UDPStreamTimeout:      ct.UDPStreamTimeout.Duration,
	})
	if err != nil {
		return fmt.Errorf("configuring conntrack: %w", err)
	}
	if c.Mode == config.ModeIPTables {
		npa := nodePortAddresses(c)
		if err := s.IPTables(*c.IPTables.LocalhostNodePorts, npa.cidrs, npa.primary); err != nil {
			return fmt.Errorf("preparing the node for iptables: %w", err)
		}
	}
	return nil
}

// runProxy connects to the API server and runs the controllers, the sync loop and the
// health and metrics servers until ctx is cancelled.
func runProxy(ctx context.Context, o *config.Options, setter *nodesetup.Setter, log logr.Logger) error {
	c := o.Config
	nodeName, err := config.NodeName(c)
	if err != nil {
		return err
	}
	restCfg, err := restConfig(c.ClientConnection, o.Master)
	if err != nil {
		return err
	}
	if c.DetectLocalMode == config.LocalModeNodeCIDR {
		c, err := client.New(restCfg, client.Options{})
		if err != nil {
			return fmt.Errorf("API client: %w", err)
		}
		if err := waitForPodCIDRs(ctx, c, nodeName, podCIDRTimeout, time.Second, log); err != nil {
			return err
		}
	}

	minSync, sync := syncPeriods(c)
	m := metrics.New()
	health := healthcheck.NewProxyHealth(healthcheck.ProxyHealthOptions{HealthTimeout: 2 * sync})
	if err := registerMetrics(m, health); err != nil {
		return err
	}
	p, err := newProxier(ctx, c, proxierDeps{metrics: m, setter: setter, log: log, restCfg: restCfg, nodeName: nodeName})
	if err != nil {
		return err
	}
	if closer, ok := p.(io.Closer); ok {
		defer closer.Close()
	}
	bindIP := primaryIPOverride(c.BindAddress)
	if bindIP.IsValid() {
		log.Info("Using --bind-address as this node's primary IP", "ip", bindIP)
	}

	mgr, err := newManager(restCfg, c, nodeName, log)
	if err != nil {
		return err
	}
	svcHealth := newServiceHealth(c, health, mgr.GetEventRecorder("kproxy"), log)
	defer svcHealth.Close()
	if err := addServers(mgr, c, health, log); err != nil {
		return err
	}
	if o.ConfigFile != "" {
		if err := mgr.Add(&configWatcher{path: o.ConfigFile}); err != nil {
			return err
		}
	}
	if _, err := controller.Setup(mgr, controller.Options{
		NodeName:             nodeName,
		Proxier:              p,
		Metrics:              m,
		WaitForNodeAddresses: !bindIP.IsValid(),
		Builder:              proxier.BuilderOptions{PrimaryNodeIP: bindIP},
		Runner: proxier.RunnerOptions{
			MinSyncPeriod: minSync,
			SyncPeriod:    sync,
			Observers:     []proxier.SyncObserver{m, health, svcHealth},
		},
		Logger: log.WithName("proxy"),
	}); err != nil {
		return err
	}
	log.Info("Starting", "node", nodeName, "minSyncPeriod", minSync, "syncPeriod", sync)
	if err := mgr.Start(ctx); err != nil {
		return err
	}
	log.Info("Stopped; the rules stay in place until the next kproxy syncs them")
	return nil
}

// syncPeriods returns the active mode's minSyncPeriod and syncPeriod.
func syncPeriods(c *v1alpha1.KubeProxyConfiguration) (minSync, sync time.Duration) {
	if c.Mode == config.ModeIPVS {
		return c.IPVS.MinSyncPeriod.Duration, c.IPVS.SyncPeriod.Duration
	}
	return c.IPTables.MinSyncPeriod.Duration, c.IPTables.SyncPeriod.Duration
}

// registerMetrics exports kproxy's metrics on controller-runtime's registry, which also
// holds client-go, controller and Go runtime metrics.
func registerMetrics(m *metrics.Metrics, health *healthcheck.ProxyHealth) error {
	if err := m.Register(ctrlmetrics.Registry); err != nil {
		return fmt.Errorf("registering metrics: %w", err)
	}
	for _, col := range health.Collectors() {
		if err := ctrlmetrics.Registry.Register(col); err != nil {
			return fmt.Errorf("registering metrics: %w", err)
		}
	}
	return nil
}

// primaryIPOverride returns --bind-address when it names a specific IP.
func primaryIPOverride(bindAddress string) netip.Addr {
	ip, err := netip.ParseAddr(bindAddress)
	if err != nil || ip.IsUnspecified() {
		return netip.Addr{}
	}
	return ip.Unmap()
}

// nodePortAddressSet is nodePortAddresses parsed: CIDRs, or the "primary" keyword.
type nodePortAddressSet struct {
	cidrs   []netip.Prefix
	primary bool
}

// nodePortAddresses parses the validated nodePortAddresses.
func nodePortAddresses(c *v1alpha1.KubeProxyConfiguration) nodePortAddressSet {
	var out nodePortAddressSet
	for _, s := range c.NodePortAddresses {
		if s == config.NodePortAddressesPrimary {
			out.primary = true
			continue
		}
		if p, err := netip.ParsePrefix(s); err == nil {
			out.cidrs = append(out.cidrs, p.Masked())
		}
	}
	return out
}
