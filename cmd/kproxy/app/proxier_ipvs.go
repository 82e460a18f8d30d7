package app

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	"github.com/go-logr/logr"
	v1 "k8s.io/api/core/v1"
	v1alpha1 "k8s.io/kube-proxy/config/v1alpha1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kproxy/kproxy/cmd/kproxy/app/config"
	"github.com/kproxy/kproxy/ipvs"
	"github.com/kproxy/kproxy/proxier"
)

// newIPVSProxier returns the IPVS backend: one proxier per IP family the node's
// iptables supports, sharing the netlink handles and the iptables glue. It removes the
// chains a previous iptables-mode proxy left (see ipvs.NewNodeProxier).
func newIPVSProxier(ctx context.Context, c *v1alpha1.KubeProxyConfiguration, d proxierDeps) (proxier.Proxier, error) {
	log := d.log.WithName("ipvs")
	if *c.IPTables.MasqueradeBit == 0 {
		// Validate rejects it; PlanOptions would read 0 as "the default bit".
		return nil, errors.New("--iptables-masquerade-bit=0 is not supported in ipvs mode")
	}
	var podCIDRs []netip.Prefix
	if c.DetectLocalMode == config.LocalModeNodeCIDR {
		var err error
		if podCIDRs, err = nodePodCIDRs(ctx, d); err != nil {
			return nil, err
		}
	}
	p, err := ipvs.NewNodeProxier(ctx, ipvs.NodeOptions{Plan: ipvsPlanOptions(c, podCIDRs), Metrics: d.metrics, Logger: log})
	if errors.Is(err, ipvs.ErrUnavailable) {
		return nil, fmt.Errorf("%w; use --proxy-mode=iptables", err)
	}
	return p, err
}

// ipvsPlanOptions maps the configuration onto the IPVS planning options of both
// families, for the proxier and for kproxy render. podCIDRs are the node's, used by
// detectLocalMode NodeCIDR. Family, HostAddresses and RandomFully are left to the
// caller (the proxier fills them itself).
func ipvsPlanOptions(c *v1alpha1.KubeProxyConfiguration, podCIDRs []netip.Prefix) ipvs.PlanOptions {
	opts := ipvs.PlanOptions{
		Scheduler:         c.IPVS.Scheduler,
		StrictARP:         c.IPVS.StrictARP,
		TCPTimeout:        c.IPVS.TCPTimeout.Duration,
		TCPFinTimeout:     c.IPVS.TCPFinTimeout.Duration,
		UDPTimeout:        c.IPVS.UDPTimeout.Duration,
		NodePortAddresses: c.NodePortAddresses,
		MasqueradeAll:     c.IPTables.MasqueradeAll,
		MasqueradeBit:     int(*c.IPTables.MasqueradeBit),
	}
	for _, s := range c.IPVS.ExcludeCIDRs {
		if p, err := netip.ParsePrefix(s); err == nil { // validated
			opts.ExcludeCIDRs = append(opts.ExcludeCIDRs, p.Masked())
		}
	}
	switch c.DetectLocalMode {
	case config.LocalModeClusterCIDR:
		opts.LocalDetector.CIDRs, _ = config.ParseClusterCIDRs(c.ClusterCIDR) // validated
	case config.LocalModeNodeCIDR:
		opts.LocalDetector.CIDRs = podCIDRs
	case config.LocalModeBridgeInterface:
		opts.LocalDetector.Interface = c.DetectLocal.BridgeInterface
	case config.LocalModeInterfaceNamePrefix:
		opts.LocalDetector.Interface = c.DetectLocal.InterfaceNamePrefix + "+"
	}
	return opts
}

// nodePodCIDRs reads this node's pod CIDRs, which runProxy has waited for.
func nodePodCIDRs(ctx context.Context, d proxierDeps) ([]netip.Prefix, error) {
	if d.restCfg == nil {
		return nil, errors.New("detectLocalMode NodeCIDR: no API client to read the node's pod CIDRs")
	}
	c, err := client.New(d.restCfg, client.Options{})
	if err != nil {
		return nil, fmt.Errorf("API client: %w", err)
	}
	n := &v1.Node{}
	if err := c.Get(ctx, client.ObjectKey{Name: d.nodeName}, n); err != nil {
		return nil, fmt.Errorf("detectLocalMode NodeCIDR: reading node %s: %w", d.nodeName, err)
	}
	return parsePodCIDRs(n), nil
}

// parsePodCIDRs returns the node's valid pod CIDRs, spec.podCIDRs or else spec.podCIDR.
func parsePodCIDRs(n *v1.Node) []netip.Prefix {
	list := n.Spec.PodCIDRs
	if len(list) == 0 && n.Spec.PodCIDR != "" {
		list = []string{n.Spec.PodCIDR}
	}
	var out []netip.Prefix
	for _, s := range list {
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
		}
	}
	return out
}

// ipvsNodeOptions are the options the IPVS cleanups need from the configuration: the
// exclude CIDRs whose virtual servers are never touched.
func ipvsNodeOptions(c *v1alpha1.KubeProxyConfiguration, log logr.Logger) ipvs.NodeOptions {
	opts := ipvs.NodeOptions{Logger: log.WithName("ipvs")}
	if c != nil {
		opts.Plan.ExcludeCIDRs = ipvsPlanOptions(c, nil).ExcludeCIDRs
	}
	return opts
}

// cleanupIPVS removes what IPVS mode owns: virtual servers, kube-ipvs0, ipsets and the
// iptables glue, in both families. A kernel without IPVS has nothing to remove.
func cleanupIPVS(ctx context.Context, c *v1alpha1.KubeProxyConfiguration, log logr.Logger) error {
	return ipvs.CleanupNode(ctx, ipvsNodeOptions(c, log))
}

// cleanIPVSLeftovers removes what an IPVS-mode proxy left on a node now starting in
// iptables mode. It is a variable for tests.
var cleanIPVSLeftovers = func(ctx context.Context, c *v1alpha1.KubeProxyConfiguration, log logr.Logger) (bool, error) {
	return ipvs.CleanupLeftovers(ctx, ipvsNodeOptions(c, log))
}
