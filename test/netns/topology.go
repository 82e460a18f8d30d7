package netns

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
)

// Spec sizes a topology. The zero value is a node and a remote node with no pods and no
// clients; [DefaultSpec] is a useful starting point.
type Spec struct {
	// LocalPods is the number of pods on the node's bridge (at most 250).
	LocalPods int
	// RemotePods is the number of pods on the remote node's bridge (at most 250).
	RemotePods int
	// Clients is the number of external clients on the underlay (at most 100).
	Clients int
	// LoadBridgeNetfilter runs `modprobe br_netfilter` when the kernel lacks bridge
	// netfilter. Loading the module is a host-wide change (every bridge on the host starts
	// passing traffic through iptables), so it is meant for throwaway VMs only. Without it
	// the topology is still built and [Topology.BridgeNetfilter] reports false.
	LoadBridgeNetfilter bool
}

// DefaultSpec is two local pods, two remote pods and one client: enough to see load
// balancing, a remote endpoint and an external source.
func DefaultSpec() Spec {
	return Spec{LocalPods: 2, RemotePods: 2, Clients: 1}
}

// Limits of the address plan.
const (
	maxPods    = 250
	maxClients = 100
)

// validate rejects specs the address plan cannot hold.
func (s Spec) validate() error {
	var errs []error
	if s.LocalPods < 0 || s.LocalPods > maxPods {
		errs = append(errs, fmt.Errorf("LocalPods %d is outside [0, %d]", s.LocalPods, maxPods))
	}
	if s.RemotePods < 0 || s.RemotePods > maxPods {
		errs = append(errs, fmt.Errorf("RemotePods %d is outside [0, %d]", s.RemotePods, maxPods))
	}
	if s.Clients < 0 || s.Clients > maxClients {
		errs = append(errs, fmt.Errorf("Clients %d is outside [0, %d]", s.Clients, maxClients))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("netns: invalid Spec: %w", err)
	}
	return nil
}

// The address plan. Every address lives only inside the topology's namespaces; the ranges
// were picked so they cannot be confused with a real host's: the 198.18.0.0/15 benchmark
// range for the underlay, 10.244/16 for pods, and ULA prefixes for IPv6.
var (
	underlayCIDR  = mustPrefixes("198.18.0.0/24", "fd00:198:18::/64")
	clusterCIDR   = mustPrefixes("10.244.0.0/16", "fd00:10:244::/48")
	nodePodCIDR   = mustPrefixes("10.244.1.0/24", "fd00:10:244:1::/64")
	remotePodCIDR = mustPrefixes("10.244.2.0/24", "fd00:10:244:2::/64")
)

// Host numbers inside the plan's subnets.
const (
	gatewayHost     = 1   // underlay bridge address
	nodeHost        = 10  // node uplink
	remoteHost      = 11  // remote node uplink
	firstClientHost = 100 // client-0
	bridgeHost      = 1   // pod bridge address on each node
	firstPodHost    = 2   // first pod on each node
)

// Fixed interface names. They only need to be unique per namespace, so they can read like
// a real node's.
const (
	// UplinkInterface is the name of the underlay-facing interface in nodes and clients,
	// and of every pod's interface.
	UplinkInterface = "eth0"
	// PodBridge is the name of the pod bridge in both nodes, as kubenet called it.
	PodBridge = "cbr0"
	// UnderlayBridge is the bridge joining nodes and clients in the underlay namespace.
	UnderlayBridge = "br0"
	// PodVethPrefix starts the name of every pod's host-side veth in its node, as for
	// kube-proxy's InterfaceNamePrefix local-traffic detection: "veth-local-0".
	PodVethPrefix = "veth-"
)

// mustPrefixes parses a constant prefix pair.
func mustPrefixes(v4, v6 string) Prefixes {
	return Prefixes{V4: netip.MustParsePrefix(v4), V6: netip.MustParsePrefix(v6)}
}

// Host is a namespace attached to one network with one address per family: an external
// client, or the underlay itself (whose addresses are the gateway).
type Host struct {
	*NS
	// Addrs are the host's addresses on Interface.
	Addrs
	// Interface is the name of the interface holding Addrs.
	Interface string
}

// Node is a node namespace: an uplink on the underlay and a pod bridge.
type Node struct {
	*NS
	// Addrs are the uplink addresses: what the Node object would report as InternalIP,
	// and where NodePorts are reached from clients.
	Addrs
	// Interface is the uplink's name.
	Interface string
	// Bridge is the pod bridge's name.
	Bridge string
	// BridgeAddrs are the bridge's addresses, the pods' default gateway.
	BridgeAddrs Addrs
	// PodCIDR is the node's pod range.
	PodCIDR Prefixes
	// Pods are the pods on the bridge, in creation order.
	Pods []*Pod
}

// Pod is a pod namespace attached to a node's bridge.
type Pod struct {
	*NS
	// Addrs are the pod IPs.
	Addrs
	// Node is the node the pod runs on.
	Node *Node
	// Interface is the pod's interface name.
	Interface string
	// HostInterface is the name of the pod's veth peer in the node namespace, a port of
	// the node's bridge with hairpin mode on.
	HostInterface string
}

// Topology is a built set of namespaces; see the package documentation for the picture.
type Topology struct {
	// ID is the random id in every namespace name of this topology.
	ID string
	// Underlay holds the bridge joining nodes and clients; its addresses are the nodes'
	// default gateway.
	Underlay *Host
	// UnderlayCIDR is the underlay subnet.
	UnderlayCIDR Prefixes
	// ClusterCIDR covers both nodes' pod ranges, for kube-proxy's clusterCIDR setting.
	ClusterCIDR Prefixes
	// Node is where the proxier under test runs.
	Node *Node
	// Remote is a second node whose pods are remote endpoints.
	Remote *Node
	// Clients are external clients on the underlay. They route everything through Node,
	// as if it were their router, so service VIPs need no extra routes.
	Clients []*Host
	// BridgeNetfilter reports whether bridged traffic in the node namespaces passes
	// through iptables and ip6tables. Without it, service traffic between two pods on the
	// same bridge bypasses kube-proxy's rules.
	BridgeNetfilter bool

	namespaces []*NS // in creation order
	closeOnce  sync.Once
	closeErr   error
}

// Pods returns all pods, local first.
func (t *Topology) Pods() []*Pod {
	return append(append([]*Pod(nil), t.Node.Pods...), t.Remote.Pods...)
}

// Namespaces returns every namespace of the topology, in creation order.
func (t *Topology) Namespaces() []*NS {
	return append([]*NS(nil), t.namespaces...)
}

// Close tears the topology down: it stops every server and connection started in its
// namespaces and removes every namespace. Every link of the topology lives inside these
// namespaces (both ends of every veth), so the kernel deletes them all as it destroys the
// namespaces, in one batch. Deleting them one by one first would make Close about ten
// times slower than Build (each deletion waits for an RCU grace period) without leaving
// anything less behind. Close is idempotent and keeps going after errors, returning all
// of them.
func (t *Topology) Close() error {
	t.closeOnce.Do(func() { t.closeErr = t.teardown() })
	return t.closeErr
}

// teardown closes the namespaces in reverse creation order.
func (t *Topology) teardown() error {
	var errs []error
	for i := len(t.namespaces) - 1; i >= 0; i-- {
		if err := t.namespaces[i].Close(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
