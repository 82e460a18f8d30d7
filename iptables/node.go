package iptables

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/go-logr/logr"

	"github.com/kproxy/kproxy/proxier"
	"github.com/kproxy/kproxy/proxier/conntrack"
	"github.com/kproxy/kproxy/proxier/metrics"
)

// NodeOptions configures NewNodeProxier: everything needed to program a whole node
// (or a network namespace standing in for one) in iptables mode.
type NodeOptions struct {
	// Backend forces iptables-nft or iptables-legacy; empty detects which one the node
	// already uses, as kube-proxy's image does.
	Backend Backend
	// Netns, when set, programs that network namespace (a name under /var/run/netns
	// or a path) instead of the caller's: iptables, ipsets and conntrack alike.
	Netns string
	// Render is the rendering template; Family is set per family, and the local
	// detector's CIDRs may mix both families (each family uses its own).
	Render RenderOptions
	// Families to program; nil means IPv4, plus IPv6 when ip6tables works.
	Families []Family
	// DisableConntrackCleanup leaves stale UDP/SCTP flows alone (for nodes where
	// another component cleans them).
	DisableConntrackCleanup bool
	Metrics                 *metrics.Metrics
	Logger                  logr.Logger
}

// NodeProxier is the iptables backend of a node: one Proxier per family, synced
// together, and the netlink handles they share.
type NodeProxier struct {
	proxier.Proxier
	// Families holds each family's proxier, for its LastSync statistics.
	Families map[Family]*Proxier
	closers  []io.Closer
}

// Close releases the netlink sockets. The rules stay in the kernel: leaving them is
// what keeps traffic flowing while kproxy restarts. A closed NodeProxier must not sync.
func (n *NodeProxier) Close() error {
	var errs []error
	for _, c := range n.closers {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}

// NewNodeProxier returns the iptables backend for a node: one Proxier per family,
// sharing one kernel, ipset and conntrack handle.
func NewNodeProxier(ctx context.Context, opts NodeOptions) (*NodeProxier, error) {
	parts, err := newNodeParts(ctx, opts, true)
	if err != nil {
		return nil, err
	}
	node := &NodeProxier{Families: map[Family]*Proxier{}, closers: parts.closers()}
	ps := make([]proxier.Proxier, 0, len(parts.families))
	for _, f := range parts.families {
		feat, err := parts.kernel.Features(ctx, f)
		if err != nil {
			_ = node.Close()
			return nil, fmt.Errorf("iptables %v: %w", f, err)
		}
		ro := opts.Render
		ro.Family = f
		ro.RandomFully = ro.RandomFully || feat.RandomFully
		if err := ro.LocalDetector.validate(f); err != nil {
			// As in kube-proxy, a family the cluster CIDR does not cover gets no local
			// traffic detection rather than failing the whole node.
			opts.Logger.Info("Local traffic is not detected for this family", "family", f, "reason", err.Error())
			ro.LocalDetector = LocalDetector{}
		}
		o := Options{Family: f, Kernel: parts.kernel, Render: ro, IPSets: parts.ipsets, Metrics: opts.Metrics, Logger: opts.Logger}
		if parts.conntrack != nil {
			o.Conntrack = parts.conntrack // a nil *Netlink must not become a non-nil Cleaner
		}
		p, err := New(ctx, o)
		if err != nil {
			_ = node.Close()
			return nil, err
		}
		ps = append(ps, p)
		node.Families[f] = p
	}
	node.Proxier = proxier.Multi(ps...)
	return node, nil
}

// CleanupNode removes everything kproxy's (or kube-proxy's) iptables mode owns on the
// node, in every family, and nothing else.
func CleanupNode(ctx context.Context, opts NodeOptions) error {
	parts, err := newNodeParts(ctx, opts, false)
	if err != nil {
		return err
	}
	defer func() {
		for _, c := range parts.closers() {
			_ = c.Close()
		}
	}()
	var errs []error
	for _, f := range parts.families {
		o := Options{Family: f, Kernel: parts.kernel, Render: RenderOptions{Family: f}, Logger: opts.Logger}
		if parts.ipsets != nil {
			o.IPSets = parts.ipsets
		}
		p, err := New(ctx, o)
		if err == nil {
			err = p.Cleanup(ctx)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%v: %w", f, err))
		}
	}
	return errors.Join(errs...)
}

type nodeParts struct {
	kernel    *ExecKernel
	families  []Family
	ipsets    *NetlinkIPSets
	conntrack *conntrack.Netlink
}

// closers returns the handles that hold sockets open.
func (p *nodeParts) closers() []io.Closer {
	var out []io.Closer
	if p.ipsets != nil {
		out = append(out, p.ipsets)
	}
	if p.conntrack != nil {
		out = append(out, p.conntrack)
	}
	return out
}

func newNodeParts(ctx context.Context, opts NodeOptions, forSync bool) (*nodeParts, error) {
	log := opts.Logger
	kernel, err := NewExecKernel(ctx, ExecOptions{Backend: opts.Backend, Netns: opts.Netns, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("iptables: %w", err)
	}
	det := kernel.Detection()
	log.Info("Using iptables", "backend", kernel.Backend(), "reason", det.Reason,
		"nftRules", det.NFTRules, "legacyRules", det.LegacyRules)
	parts := &nodeParts{kernel: kernel, families: opts.Families}
	if parts.families == nil {
		if parts.families, err = usableFamilies(ctx, kernel, log); err != nil {
			return nil, err
		}
	}
	parts.ipsets, err = NewNetlinkIPSets(NetlinkIPSetOptions{Netns: opts.Netns, Metrics: opts.Metrics, Logger: log.WithName("ipset")})
	if err != nil {
		if forSync {
			return nil, fmt.Errorf("ipset: %w", err)
		}
		log.Info("ipsets cannot be managed; leaving them", "err", err.Error())
		parts.ipsets = nil
	}
	if forSync && !opts.DisableConntrackCleanup {
		ct, err := conntrack.NewNetlink(conntrack.NetlinkOptions{Netns: opts.Netns, Metrics: opts.Metrics, Logger: log.WithName("conntrack")})
		if err != nil {
			return nil, fmt.Errorf("conntrack: %w", err)
		}
		parts.conntrack = ct
	}
	return parts, nil
}

// usableFamilies returns IPv4, plus IPv6 when ip6tables can program the nat table.
func usableFamilies(ctx context.Context, kernel *ExecKernel, log logr.Logger) ([]Family, error) {
	if ok, err := kernel.ChainExists(ctx, IPv4, TableNAT, ChainPostrouting); !ok || err != nil {
		return nil, fmt.Errorf("iptables: the IPv4 nat table is not usable: %v", err)
	}
	families := []Family{IPv4}
	if ok, err := kernel.ChainExists(ctx, IPv6, TableNAT, ChainPostrouting); ok && err == nil {
		families = append(families, IPv6)
	} else {
		log.Info("No IPv6 iptables support; programming IPv4 only", "reason", fmt.Sprint(err))
	}
	return families, nil
}
