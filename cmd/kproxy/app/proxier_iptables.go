package app

import (
	"context"
	"errors"
	"fmt"

	"github.com/go-logr/logr"
	v1alpha1 "k8s.io/kube-proxy/config/v1alpha1"

	"github.com/kproxy/kproxy/cmd/kproxy/app/config"
	"github.com/kproxy/kproxy/iptables"
	"github.com/kproxy/kproxy/proxier"
	"github.com/kproxy/kproxy/proxier/conntrack"
)

// newIPTablesProxier returns the iptables backend: the iptables variant the node uses
// (nft or legacy, detected like kube-proxy's image does), and one iptables.Proxier per
// IP family the node supports (IPv4 always, IPv6 when ip6tables works), combined with
// proxier.Multi.
func newIPTablesProxier(ctx context.Context, c *v1alpha1.KubeProxyConfiguration, d proxierDeps) (proxier.Proxier, error) {
	log := d.log.WithName("iptables")
	if *c.IPTables.MasqueradeBit == 0 {
		return nil, errors.New("--iptables-masquerade-bit=0 (iptables.masqueradeBit: 0) is not supported by kproxy's iptables proxier; choose a bit from 1 to 31")
	}
	kernel, families, err := iptablesKernel(ctx, log)
	if err != nil {
		return nil, err
	}
	ipsets, err := iptables.NewNetlinkIPSets(iptables.NetlinkIPSetOptions{Metrics: d.metrics, Logger: log.WithName("ipset")})
	if err != nil {
		return nil, fmt.Errorf("ipset: %w", err)
	}
	ct, err := conntrack.NewNetlink(conntrack.NetlinkOptions{Metrics: d.metrics, Logger: log.WithName("conntrack")})
	if err != nil {
		return nil, fmt.Errorf("conntrack: %w", err)
	}
	liberal := false
	if v, err := d.setter.GetSysctl("net/netfilter/nf_conntrack_tcp_be_liberal"); err == nil && v == 1 {
		liberal = true
	}
	ps := make([]proxier.Proxier, 0, len(families))
	for _, f := range families {
		feat, err := kernel.Features(ctx, f)
		if err != nil {
			return nil, fmt.Errorf("iptables %v: %w", f, err)
		}
		ro := iptablesRenderOptions(c, f, log)
		ro.RandomFully = feat.RandomFully
		ro.ConntrackTCPLiberal = liberal
		p, err := iptables.New(ctx, iptables.Options{
			Family: f, Kernel: kernel, Render: ro, IPSets: ipsets, Conntrack: ct, Metrics: d.metrics, Logger: log,
		})
		if err != nil {
			return nil, err
		}
		ps = append(ps, p)
	}
	return proxier.Multi(ps...), nil
}

// iptablesKernel detects the iptables variant and the families it can program.
func iptablesKernel(ctx context.Context, log logr.Logger) (*iptables.ExecKernel, []iptables.Family, error) {
	kernel, err := iptables.NewExecKernel(ctx, iptables.ExecOptions{Logger: log})
	if err != nil {
		return nil, nil, fmt.Errorf("iptables: %w", err)
	}
	det := kernel.Detection()
	log.Info("Using iptables", "backend", kernel.Backend(), "reason", det.Reason,
		"nftRules", det.NFTRules, "legacyRules", det.LegacyRules)
	families := []iptables.Family{iptables.IPv4}
	if ok, err := kernel.ChainExists(ctx, iptables.IPv6, iptables.TableNAT, iptables.ChainPostrouting); ok && err == nil {
		families = append(families, iptables.IPv6)
	} else {
		log.Info("No IPv6 iptables support on this node; programming IPv4 only", "reason", fmt.Sprint(err))
	}
	if ok, err := kernel.ChainExists(ctx, iptables.IPv4, iptables.TableNAT, iptables.ChainPostrouting); !ok || err != nil {
		return nil, nil, fmt.Errorf("iptables: the IPv4 nat table is not usable: %v", err)
	}
	return kernel, families, nil
}

// iptablesRenderOptions maps the configuration onto one family's rendering options.
func iptablesRenderOptions(c *v1alpha1.KubeProxyConfiguration, f iptables.Family, log logr.Logger) iptables.RenderOptions {
	npa := nodePortAddresses(c)
	ro := iptables.RenderOptions{
		Family:             f,
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
		if c.ClusterCIDR == "" || ro.Validate() != nil {
			log.Info("detectLocalMode is ClusterCIDR but no cluster CIDR of this family is set: local traffic is not detected",
				"family", f, "clusterCIDR", c.ClusterCIDR)
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
	log = log.WithName("iptables")
	kernel, families, err := iptablesKernel(ctx, log)
	if err != nil {
		return err
	}
	ipsets, err := iptables.NewNetlinkIPSets(iptables.NetlinkIPSetOptions{Logger: log.WithName("ipset")})
	if err != nil {
		log.Info("ipsets cannot be listed; leaving them", "err", err.Error())
		ipsets = nil
	}
	var errs []error
	for _, f := range families {
		opts := iptables.Options{Family: f, Kernel: kernel, Render: iptables.RenderOptions{Family: f}, Logger: log}
		if ipsets != nil {
			opts.IPSets = ipsets
		}
		p, err := iptables.New(ctx, opts)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if err := p.Cleanup(ctx); err != nil {
			errs = append(errs, fmt.Errorf("%v: %w", f, err))
		}
	}
	return errors.Join(errs...)
}
