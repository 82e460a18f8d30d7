package scale

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/kproxy/kproxy/test/netns"
)

// relayPort is where the API server is reachable inside the node namespace. It lies
// below the node-port range, so no NodePort rule can capture the proxy's own API
// connections.
const relayPort = 6443

// World is one fresh netns topology for one proxy run: a node namespace with two real
// pods serving TCP on TargetPort, a client namespace, and the API server relayed onto
// the node's loopback.
type World struct {
	Topo       *netns.Topology
	Kubeconfig string
	Pods       []*netns.Pod
	Client     *netns.Host
	relay      *netns.Relay
}

// NewWorld builds a world whose proxies reach c through a relay. The caller must Close it
// after stopping every process it started inside.
func NewWorld(c *Cluster) (w *World, err error) {
	topo, err := netns.Build(netns.Spec{LocalPods: 2, Clients: 1})
	if err != nil {
		return nil, err
	}
	w = &World{Topo: topo, Pods: topo.Node.Pods, Client: topo.Clients[0]}
	defer func() {
		if err != nil {
			err = errors.Join(err, w.Close())
		}
	}()
	for _, p := range w.Pods {
		if _, err := p.ServeTCP(TargetPort); err != nil {
			return nil, err
		}
	}
	if err := refuseUnprogrammed(topo.Underlay.NS, c.opts.ServiceCIDR); err != nil {
		return nil, err
	}
	u, err := url.Parse(c.Config.Host)
	if err != nil {
		return nil, err
	}
	if w.relay, err = topo.Node.NewRelay(net.JoinHostPort("127.0.0.1", strconv.Itoa(relayPort)), u.Host); err != nil {
		return nil, err
	}
	w.Kubeconfig, err = c.kubeconfigFor(net.JoinHostPort("127.0.0.1", strconv.Itoa(relayPort)), "node-"+topo.ID)
	if err != nil {
		return nil, err
	}
	return w, nil
}

// refuseUnprogrammed makes the underlay (the node's default gateway) treat the whole
// service range as its own addresses, so a connection to a VIP the proxy has not
// programmed yet is refused at once with a TCP reset instead of vanishing: without it
// the probe waits for its timeout, and cold times are rounded up to it. (ICMP errors
// would be rate-limited by the host-wide net.ipv4.route.error_cost.) Only the underlay
// changes; the node the proxy runs in keeps its plain default route.
func refuseUnprogrammed(ns *netns.NS, serviceCIDR string) error {
	_, dst, err := net.ParseCIDR(serviceCIDR)
	if err != nil {
		return err
	}
	return ns.Netlink(func(h *netlink.Handle) error {
		lo, err := h.LinkByName("lo")
		if err != nil {
			return err
		}
		r := &netlink.Route{LinkIndex: lo.Attrs().Index, Dst: dst, Type: unix.RTN_LOCAL, Table: unix.RT_TABLE_LOCAL, Scope: netlink.SCOPE_HOST}
		if err := h.RouteAdd(r); err != nil {
			return fmt.Errorf("local route for %s in %s: %w", serviceCIDR, ns, err)
		}
		return nil
	})
}

// Close stops the relay and removes every namespace.
func (w *World) Close() error {
	var errs []error
	if w.relay != nil {
		w.relay.Close()
	}
	if err := w.Topo.Close(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// String names the world for logs.
func (w *World) String() string { return fmt.Sprintf("world %s", w.Topo.ID) }

// nodeName is the Node object every proxy runs as.
const nodeName = "scale-node"

// ensureNode makes the Node object match this world's node namespace. Every world has the
// same address plan, so this only writes on the first call.
func (w *World) ensureNode(ctx context.Context, c *Cluster) error {
	n := w.Topo.Node
	return c.EnsureNode(ctx, nodeName, n.Addrs.IPs(), n.PodCIDR.All())
}
