package netns

import (
	"errors"
	"fmt"
	"io/fs"
	"os/exec"
	"strconv"
)

// nodeSysctls make a namespace a router.
var nodeSysctls = []sysctl{
	{key: "net.ipv4.ip_forward", value: "1"},
	{key: "net.ipv6.conf.all.forwarding", value: "1"},
}

// bridgeNetfilterSysctls pass bridged traffic through iptables; on kernels since 5.3
// they are per namespace, and a new namespace starts with them on.
var bridgeNetfilterSysctls = []sysctl{
	{key: "net.bridge.bridge-nf-call-iptables", value: "1"},
	{key: "net.bridge.bridge-nf-call-ip6tables", value: "1"},
}

// Build creates a topology as described by spec. On error everything created so far is
// torn down. The caller must [Topology.Close] it; tests should use [New].
func Build(spec Spec) (*Topology, error) {
	if err := spec.validate(); err != nil {
		return nil, err
	}
	t, err := newTopology()
	if err != nil {
		return nil, err
	}
	if err := t.build(spec); err != nil {
		return nil, errors.Join(err, t.Close())
	}
	return t, nil
}

// newTopology picks an id no other topology on the host uses: the underlay namespace is
// created first, and its O_EXCL mount point claims the id.
func newTopology() (*Topology, error) {
	for range 5 {
		id, err := randomID()
		if err != nil {
			return nil, err
		}
		t := &Topology{ID: id, UnderlayCIDR: underlayCIDR, ClusterCIDR: clusterCIDR}
		ul, err := t.create("underlay")
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		t.Underlay = &Host{NS: ul, Addrs: underlayCIDR.hostAddrs(gatewayHost), Interface: UnderlayBridge}
		return t, nil
	}
	return nil, errors.New("netns: could not find an unused topology id")
}

// create makes one namespace of the topology and records it for Close.
func (t *Topology) create(label string) (*NS, error) {
	n, err := Create(NSOptions{Label: label, Name: "kp" + t.ID + "-" + label})
	if err != nil {
		return nil, err
	}
	t.namespaces = append(t.namespaces, n)
	return n, nil
}

// build wires the namespaces together; see the package documentation for the picture.
func (t *Topology) build(spec Spec) error {
	ul := t.Underlay
	if err := ul.addBridge(UnderlayBridge); err != nil {
		return err
	}
	if err := ul.addAddrs(UnderlayBridge, ul.Addrs, underlayCIDR); err != nil {
		return err
	}
	if err := ul.LinkUp(UnderlayBridge); err != nil {
		return err
	}

	var err error
	if t.Node, err = t.buildNode(nodeOptions{label: "node", host: nodeHost, podCIDR: nodePodCIDR,
		pods: spec.LocalPods, podLabel: "local"}); err != nil {
		return err
	}
	if t.Remote, err = t.buildNode(nodeOptions{label: "remote", host: remoteHost, podCIDR: remotePodCIDR,
		pods: spec.RemotePods, podLabel: "remote"}); err != nil {
		return err
	}
	// Each node reaches the other's pods over the underlay, as a routed CNI would.
	for _, pair := range [][2]*Node{{t.Node, t.Remote}, {t.Remote, t.Node}} {
		for _, f := range Families {
			if err := pair[0].AddRoute(pair[1].PodCIDR.Prefix(f), pair[1].IP(f)); err != nil {
				return err
			}
		}
	}
	if t.BridgeNetfilter, err = t.enableBridgeNetfilter(spec.LoadBridgeNetfilter); err != nil {
		return err
	}

	for i := range spec.Clients {
		c, err := t.buildClient(i)
		if err != nil {
			return err
		}
		t.Clients = append(t.Clients, c)
	}
	return nil
}

// attachToUnderlay connects n's uplink to the underlay bridge through a port named
// portName, and gives the uplink addrs.
func (t *Topology) attachToUnderlay(n *NS, portName string, addrs Addrs) error {
	ul := t.Underlay
	if err := ul.addVeth(portName, n, UplinkInterface); err != nil {
		return err
	}
	if err := ul.enslave(portName, UnderlayBridge, false); err != nil {
		return err
	}
	if err := ul.LinkUp(portName); err != nil {
		return err
	}
	if err := n.addAddrs(UplinkInterface, addrs, underlayCIDR); err != nil {
		return err
	}
	return n.LinkUp(UplinkInterface)
}

// nodeOptions describes one node to build.
type nodeOptions struct {
	label    string
	host     int // host number on the underlay
	podCIDR  Prefixes
	pods     int
	podLabel string
}

// buildNode creates a node namespace with uplink, pod bridge and pods.
func (t *Topology) buildNode(o nodeOptions) (*Node, error) {
	ns, err := t.create(o.label)
	if err != nil {
		return nil, err
	}
	node := &Node{
		NS:          ns,
		Addrs:       underlayCIDR.hostAddrs(o.host),
		Interface:   UplinkInterface,
		Bridge:      PodBridge,
		BridgeAddrs: o.podCIDR.hostAddrs(bridgeHost),
		PodCIDR:     o.podCIDR,
	}
	if err := ns.setSysctls(nodeSysctls); err != nil {
		return nil, err
	}
	if err := t.attachToUnderlay(ns, o.label, node.Addrs); err != nil {
		return nil, err
	}
	if err := ns.addDefaultRoutes(t.Underlay.Addrs); err != nil {
		return nil, err
	}
	if err := ns.addBridge(PodBridge); err != nil {
		return nil, err
	}
	if err := ns.addAddrs(PodBridge, node.BridgeAddrs, o.podCIDR); err != nil {
		return nil, err
	}
	if err := ns.LinkUp(PodBridge); err != nil {
		return nil, err
	}
	for i := range o.pods {
		pod, err := t.buildPod(node, o.podLabel+"-"+strconv.Itoa(i), firstPodHost+i)
		if err != nil {
			return nil, err
		}
		node.Pods = append(node.Pods, pod)
	}
	return node, nil
}

// buildPod creates a pod namespace on node's bridge.
func (t *Topology) buildPod(node *Node, label string, host int) (*Pod, error) {
	ns, err := t.create(label)
	if err != nil {
		return nil, err
	}
	pod := &Pod{
		NS:            ns,
		Addrs:         node.PodCIDR.hostAddrs(host),
		Node:          node,
		Interface:     UplinkInterface,
		HostInterface: PodVethPrefix + label,
	}
	if err := node.addVeth(pod.HostInterface, ns, pod.Interface); err != nil {
		return nil, err
	}
	if err := node.enslave(pod.HostInterface, node.Bridge, true); err != nil {
		return nil, err
	}
	if err := node.LinkUp(pod.HostInterface); err != nil {
		return nil, err
	}
	if err := ns.addAddrs(pod.Interface, pod.Addrs, node.PodCIDR); err != nil {
		return nil, err
	}
	if err := ns.LinkUp(pod.Interface); err != nil {
		return nil, err
	}
	if err := ns.addDefaultRoutes(node.BridgeAddrs); err != nil {
		return nil, err
	}
	return pod, nil
}

// buildClient creates external client i on the underlay, routed through the node.
func (t *Topology) buildClient(i int) (*Host, error) {
	label := "client-" + strconv.Itoa(i)
	ns, err := t.create(label)
	if err != nil {
		return nil, err
	}
	c := &Host{NS: ns, Addrs: underlayCIDR.hostAddrs(firstClientHost + i), Interface: UplinkInterface}
	if err := t.attachToUnderlay(ns, label, c.Addrs); err != nil {
		return nil, err
	}
	if err := ns.addDefaultRoutes(t.Node.Addrs); err != nil {
		return nil, err
	}
	return c, nil
}

// enableBridgeNetfilter turns bridge netfilter on in both nodes. When the kernel lacks it
// (br_netfilter not loaded), it loads the module only if allowed, and otherwise reports
// false so tests that depend on it can skip.
func (t *Topology) enableBridgeNetfilter(load bool) (bool, error) {
	err := t.Node.setSysctls(bridgeNetfilterSysctls)
	if errors.Is(err, fs.ErrNotExist) && load {
		if out, lerr := exec.Command("modprobe", "br_netfilter").CombinedOutput(); lerr != nil {
			return false, fmt.Errorf("netns: modprobe br_netfilter: %w: %s", lerr, out)
		}
		err = t.Node.setSysctls(bridgeNetfilterSysctls)
	}
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return true, t.Remote.setSysctls(bridgeNetfilterSysctls)
}
