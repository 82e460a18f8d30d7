package iptables

import (
	"errors"
	"fmt"
	"net/netip"
)

// LocalMode selects how rules tell traffic from this node's pods apart from everything
// else, mirroring kube-proxy's --detect-local-mode. It decides which cluster-IP traffic
// is masqueraded and which pod traffic to external IPs is short-circuited to the
// cluster endpoints under externalTrafficPolicy: Local.
type LocalMode string

// The local-traffic detection modes kube-proxy offers.
const (
	// LocalModeNone detects nothing: cluster-IP traffic is only masqueraded with
	// MasqueradeAll, and pod traffic to external IPs gets no short-circuit.
	LocalModeNone LocalMode = ""
	// LocalModeClusterCIDR treats sources inside the cluster's pod CIDR as local.
	LocalModeClusterCIDR LocalMode = "ClusterCIDR"
	// LocalModeNodeCIDR treats sources inside this node's pod CIDR as local.
	LocalModeNodeCIDR LocalMode = "NodeCIDR"
	// LocalModeBridgeInterface treats packets arriving on the pod bridge as local.
	LocalModeBridgeInterface LocalMode = "BridgeInterface"
	// LocalModeInterfaceNamePrefix treats packets arriving on interfaces whose name
	// starts with a prefix (the pods' veths) as local.
	LocalModeInterfaceNamePrefix LocalMode = "InterfaceNamePrefix"
)

// LocalDetector configures local-traffic detection for one IP family.
type LocalDetector struct {
	Mode LocalMode
	// CIDRs are the cluster CIDRs (ClusterCIDR) or the node's pod CIDRs (NodeCIDR).
	// Only the first CIDR of the rendered family is used, as kube-proxy accepts one
	// per family. For NodeCIDR an empty list means State.Node.PodCIDRs, so a node
	// whose pod CIDR is assigned later needs no new options.
	CIDRs []netip.Prefix
	// Interface is the bridge name (BridgeInterface) or the interface name prefix
	// (InterfaceNamePrefix).
	Interface string
}

// RenderOptions are the node-wide settings that shape the rendered rules; everything
// else comes from the proxier.State. They are fixed for the life of a Renderer.
type RenderOptions struct {
	// Family is the rule space rendered; the zero value means IPv4.
	Family Family
	// MasqueradeBit is the packet-mark bit (0..31) that flags connections for SNAT;
	// zero means DefaultMasqueradeBit, so bit 0 itself cannot be chosen.
	MasqueradeBit int
	// MasqueradeAll masquerades all traffic to cluster IPs, not only off-node.
	MasqueradeAll bool
	// RandomFully adds --random-fully to MASQUERADE (iptables >= 1.6.2) to avoid
	// source-port collisions; see Features.RandomFully.
	RandomFully bool
	// LocalDetector selects local-traffic detection for this family.
	LocalDetector LocalDetector
	// NodePortAddresses limits NodePorts to node addresses inside these CIDRs; CIDRs of
	// the other family are ignored, and when none is of this family every local
	// address (-m addrtype --dst-type LOCAL) accepts NodePorts, as in kube-proxy.
	NodePortAddresses []netip.Prefix
	// NodePortPrimary adds the node's primary address of this family (its first one
	// in State.Node.Addresses): kube-proxy's "primary" nodePortAddresses keyword.
	NodePortPrimary bool
	// LocalhostNodePorts lets NodePorts answer on 127.0.0.0/8 (IPv4 only, and only
	// when the NodePort addresses include loopback), like
	// --iptables-localhost-nodeports. It needs net.ipv4.conf.all.route_localnet=1.
	LocalhostNodePorts bool
	// ConntrackTCPLiberal reports that nf_conntrack_tcp_be_liberal is set; kube-proxy
	// then skips its DROP of INVALID packets in KUBE-FORWARD.
	ConntrackTCPLiberal bool
	// DispatchLeafSize is the most distinct destinations (IPs, or protocol/port pairs)
	// a dispatch chain holds before it is split into sub-chains; zero means
	// DefaultDispatchLeafSize.
	DispatchLeafSize int
}

// Defaults applied to zero-valued RenderOptions fields.
const (
	// DefaultMasqueradeBit is kube-proxy's --iptables-masquerade-bit default.
	DefaultMasqueradeBit = 14
	// DefaultDispatchLeafSize keeps each dispatch chain short enough that walking it
	// costs about as much as one more level of the tree.
	DefaultDispatchLeafSize = 16
)

// Validate reports option values Render cannot honour. Render itself never fails: it
// falls back to the default mark bit and to no local detection when these are wrong,
// so callers should validate once when they build the options.
func (o RenderOptions) Validate() error {
	var errs []error
	if o.Family == 0 {
		o.Family = IPv4
	}
	if o.Family != IPv4 && o.Family != IPv6 {
		errs = append(errs, fmt.Errorf("unknown family %v", o.Family))
	}
	if o.MasqueradeBit < 0 || o.MasqueradeBit > 31 {
		errs = append(errs, fmt.Errorf("masquerade bit %d out of range 0..31", o.MasqueradeBit))
	}
	if o.DispatchLeafSize < 0 {
		errs = append(errs, fmt.Errorf("dispatch leaf size %d is negative", o.DispatchLeafSize))
	}
	if err := o.LocalDetector.validate(o.Family); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// normalized fills in defaults and neutralises invalid values, so rendering never
// has to check them again.
func (o RenderOptions) normalized() RenderOptions {
	if o.Family == 0 {
		o.Family = IPv4
	}
	if o.MasqueradeBit <= 0 || o.MasqueradeBit > 31 {
		o.MasqueradeBit = DefaultMasqueradeBit
	}
	if o.DispatchLeafSize <= 0 {
		o.DispatchLeafSize = DefaultDispatchLeafSize
	}
	if o.Family != IPv6 {
		o.Family = IPv4
	}
	return o
}

// masqueradeMark is the mark value as iptables-save prints it ("0x4000").
func (o RenderOptions) masqueradeMark() string {
	return fmt.Sprintf("%#x", uint32(1)<<uint(o.MasqueradeBit))
}
