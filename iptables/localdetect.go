package iptables

import (
	"fmt"
	"net/netip"

	"github.com/kproxy/kproxy/proxier"
)

// localMatch is a LocalDetector resolved for one family and one node: the source
// prefix or the input interface that identifies traffic from this node's pods. The
// zero value detects nothing.
type localMatch struct {
	// src is set for the CIDR modes.
	src netip.Prefix
	// iface is set for the interface modes ("cni0", or "veth+" for a prefix).
	iface string
}

// implemented reports whether local traffic can be told apart at all; kube-proxy
// leaves out every rule that needs the distinction otherwise.
func (m localMatch) implemented() bool { return m.src.IsValid() || m.iface != "" }

// matchesEverything reports a CIDR detector whose prefix covers every address. Such a
// "not local" match can never be true (and iptables-legacy refuses to load "! -s
// 0.0.0.0/0"), so rules that need it are left out.
func (m localMatch) matchesEverything() bool { return m.src.IsValid() && m.src.Bits() == 0 }

// validate checks a detector for the family the options render.
func (d LocalDetector) validate(f Family) error {
	switch d.Mode {
	case LocalModeNone:
		return nil
	case LocalModeClusterCIDR:
		if _, ok := firstPrefixOf(d.CIDRs, f); !ok {
			return fmt.Errorf("local detection %s needs a %v CIDR", d.Mode, f)
		}
		return nil
	case LocalModeNodeCIDR:
		return nil // falls back to the node's pod CIDRs, which may come later
	case LocalModeBridgeInterface, LocalModeInterfaceNamePrefix:
		if d.resolve(f, &proxier.Node{}).iface == "" {
			return fmt.Errorf("local detection %s needs an interface name that fits IFNAMSIZ, got %q", d.Mode, d.Interface)
		}
		return nil
	}
	return fmt.Errorf("unknown local detection mode %q", d.Mode)
}

// resolve picks what the detector matches on for family f on node; an unusable
// detector resolves to the zero localMatch (no detection), as in kube-proxy.
func (d LocalDetector) resolve(f Family, node *proxier.Node) localMatch {
	switch d.Mode {
	case LocalModeClusterCIDR:
		if p, ok := firstPrefixOf(d.CIDRs, f); ok {
			return localMatch{src: p}
		}
	case LocalModeNodeCIDR:
		if p, ok := firstPrefixOf(d.CIDRs, f); ok {
			return localMatch{src: p}
		}
		if p, ok := firstPrefixOf(node.PodCIDRs, f); ok {
			return localMatch{src: p}
		}
	case LocalModeBridgeInterface:
		if d.Interface != "" && len(d.Interface) <= 15 {
			return localMatch{iface: d.Interface}
		}
	case LocalModeInterfaceNamePrefix:
		// "+" is iptables' interface wildcard; the name and wildcard must fit IFNAMSIZ.
		if d.Interface != "" && len(d.Interface) < 15 {
			return localMatch{iface: d.Interface + "+"}
		}
	}
	return localMatch{}
}

// firstPrefixOf returns the first prefix of family f, masked to its length.
func firstPrefixOf(ps []netip.Prefix, f Family) (netip.Prefix, bool) {
	for _, p := range ps {
		if p.IsValid() && proxier.FamilyOf(p.Addr()) == f {
			return p.Masked(), true
		}
	}
	return netip.Prefix{}, false
}
