package app

import (
	"context"
	"errors"

	"github.com/go-logr/logr"
	v1alpha1 "k8s.io/kube-proxy/config/v1alpha1"

	"github.com/kproxy/kproxy/cmd/kproxy/app/config"
	"github.com/kproxy/kproxy/iptables"
	"github.com/kproxy/kproxy/proxier"
)

// newIPTablesProxier returns the iptables backend: the iptables variant the node uses
// (nft or legacy, detected like kube-proxy's image does), and one proxier per IP family
// the node supports.
func newIPTablesProxier(ctx context.Context, c *v1alpha1.KubeProxyConfiguration, d proxierDeps) (proxier.Proxier, error) {
	log := d.log.WithName("iptables")
	if *c.IPTables.MasqueradeBit == 0 {
		return nil, errors.New("--iptables-masquerade-bit=0 (iptables.masqueradeBit: 0) is not supported by kproxy's iptables proxier; choose a bit from 1 to 31")
	}
	ro := iptablesRenderOptions(c, log)
	if v, err := d.setter.GetSysctl("net/netfilter/nf_conntrack_tcp_be_liberal"); err == nil && v == 1 {
		ro.ConntrackTCPLiberal = true
	}
	return iptables.NewNodeProxier(ctx, iptables.NodeOptions{Render: ro, Metrics: d.metrics, Logger: log})
}

// iptablesRenderOptions maps the configuration onto the rendering options of both
// families.
func iptablesRenderOptions(c *v1alpha1.KubeProxyConfiguration, log logr.Logger) iptables.RenderOptions {
	npa := nodePortAddresses(c)
	ro := iptables.RenderOptions{
		MasqueradeBit:      int(*c.IPTables.MasqueradeBit),
		MasqueradeAll:      c.IPTables.MasqueradeAll,
		NodePortAddresses:  npa.cidrs,
		NodePortPrimary:    npa.primary,
		LocalhostNodePorts: *c.IPTables.LocalhostNodePorts,
	}
	switch c.DetectLocalMode {
	case config.LocalModeClusterCIDR:
		cidrs, _ := config.ParseClusterCIDRs(c.ClusterCIDR) // validated; empty is allowed
		ro.LocalDetector = iptables.LocalDetector{Mode: iptables.LocalModeClusterCIDR, CIDRs: cidrs}
		if len(cidrs) == 0 {
			// A family without a CIDR of its own is left undetected by the renderer.
			log.Info("detectLocalMode is ClusterCIDR but no cluster CIDR is set: local traffic is not detected")
			ro.LocalDetector = iptables.LocalDetector{}
		}
	case config.LocalModeNodeCIDR:
		ro.LocalDetector = iptables.LocalDetector{Mode: iptables.LocalModeNodeCIDR}
	case config.LocalModeBridgeInterface:
		ro.LocalDetector = iptables.LocalDetector{Mode: iptables.LocalModeBridgeInterface, Interface: c.DetectLocal.BridgeInterface}
	case config.LocalModeInterfaceNamePrefix:
		ro.LocalDetector = iptables.LocalDetector{Mode: iptables.LocalModeInterfaceNamePrefix, Interface: c.DetectLocal.InterfaceNamePrefix}
	}
	return ro
}

// cleanupIPTables removes the iptables rules and ipsets kproxy or kube-proxy created,
// in both families.
func cleanupIPTables(ctx context.Context, log logr.Logger) error {
	return iptables.CleanupNode(ctx, iptables.NodeOptions{Logger: log.WithName("iptables")})
}
