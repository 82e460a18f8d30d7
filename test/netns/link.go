package netns

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// addVeth creates a veth pair with name in n and peerName in peer. Both ends are created
// directly in their namespaces, so the pair never appears in the caller's namespace.
func (n *NS) addVeth(name string, peer *NS, peerName string) error {
	return n.Netlink(func(h *netlink.Handle) error {
		peer.mu.RLock()
		defer peer.mu.RUnlock()
		if peer.closed {
			return fmt.Errorf("%s: %w", peer, ErrClosed)
		}
		attrs := netlink.NewLinkAttrs()
		attrs.Name = name
		v := &netlink.Veth{LinkAttrs: attrs, PeerName: peerName, PeerNamespace: netlink.NsFd(peer.handle)}
		if err := h.LinkAdd(v); err != nil {
			return fmt.Errorf("netns: create veth %s in %s with peer %s in %s: %w", name, n, peerName, peer, err)
		}
		return nil
	})
}

// addBridge creates a bridge; STP stays off, so ports forward as soon as they are up.
func (n *NS) addBridge(name string) error {
	return n.Netlink(func(h *netlink.Handle) error {
		attrs := netlink.NewLinkAttrs()
		attrs.Name = name
		if err := h.LinkAdd(&netlink.Bridge{LinkAttrs: attrs}); err != nil {
			return fmt.Errorf("netns: create bridge %s in %s: %w", name, n, err)
		}
		return nil
	})
}

// enslave makes link a port of bridge, optionally with hairpin mode on: a pod reaching
// itself through its service needs the bridge to send the DNATed packet back out of the
// port it came in on, as CNI bridge plugins configure it.
func (n *NS) enslave(link, bridge string, hairpin bool) error {
	return n.Netlink(func(h *netlink.Handle) error {
		l, err := h.LinkByName(link)
		if err != nil {
			return fmt.Errorf("netns: find %s in %s: %w", link, n, err)
		}
		br, err := h.LinkByName(bridge)
		if err != nil {
			return fmt.Errorf("netns: find %s in %s: %w", bridge, n, err)
		}
		if err := h.LinkSetMaster(l, br); err != nil {
			return fmt.Errorf("netns: attach %s to %s in %s: %w", link, bridge, n, err)
		}
		if hairpin {
			if err := h.LinkSetHairpin(l, true); err != nil {
				return fmt.Errorf("netns: hairpin on %s in %s: %w", link, n, err)
			}
		}
		return nil
	})
}

// LinkUp sets an interface of the namespace up.
func (n *NS) LinkUp(name string) error {
	return n.Netlink(func(h *netlink.Handle) error {
		l, err := h.LinkByName(name)
		if err != nil {
			return fmt.Errorf("netns: find %s in %s: %w", name, n, err)
		}
		if err := h.LinkSetUp(l); err != nil {
			return fmt.Errorf("netns: set %s up in %s: %w", name, n, err)
		}
		return nil
	})
}

// AddAddress adds prefix (an address with its subnet length, like 10.0.0.5/24) to an
// interface. IPv6 addresses skip duplicate address detection, so they are usable at once.
func (n *NS) AddAddress(iface string, prefix netip.Prefix) error {
	return n.Netlink(func(h *netlink.Handle) error {
		l, err := h.LinkByName(iface)
		if err != nil {
			return fmt.Errorf("netns: find %s in %s: %w", iface, n, err)
		}
		a := &netlink.Addr{IPNet: ipNet(prefix)}
		if prefix.Addr().Is6() {
			a.Flags = unix.IFA_F_NODAD
		}
		if err := h.AddrAdd(l, a); err != nil {
			return fmt.Errorf("netns: add %s to %s in %s: %w", prefix, iface, n, err)
		}
		return nil
	})
}

// AddRoute routes dst via the gateway via. The gateway must be on a connected subnet of
// an interface that is up.
func (n *NS) AddRoute(dst netip.Prefix, via netip.Addr) error {
	return n.Netlink(func(h *netlink.Handle) error {
		r := &netlink.Route{Dst: ipNet(dst.Masked()), Gw: via.AsSlice()}
		if err := h.RouteAdd(r); err != nil {
			return fmt.Errorf("netns: add route %s via %s in %s: %w", dst, via, n, err)
		}
		return nil
	})
}

// ipNet converts a prefix to the type netlink wants, keeping the host bits.
func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// addAddrs adds a dual-stack address pair with the lengths of subnet.
func (n *NS) addAddrs(iface string, a Addrs, subnet Prefixes) error {
	for _, f := range Families {
		if err := n.AddAddress(iface, netip.PrefixFrom(a.IP(f), subnet.Prefix(f).Bits())); err != nil {
			return err
		}
	}
	return nil
}

// addDefaultRoutes points both families' default routes at gw.
func (n *NS) addDefaultRoutes(gw Addrs) error {
	for _, f := range Families {
		def := netip.PrefixFrom(netip.IPv4Unspecified(), 0)
		if f == V6 {
			def = netip.PrefixFrom(netip.IPv6Unspecified(), 0)
		}
		if err := n.AddRoute(def, gw.IP(f)); err != nil {
			return err
		}
	}
	return nil
}
