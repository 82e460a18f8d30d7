package conntrack

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"

	"github.com/go-logr/logr"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/kproxy/kproxy/proxier"
	"github.com/kproxy/kproxy/proxier/metrics"
	"github.com/kproxy/kproxy/proxier/netlinkns"
)

// NetlinkOptions configures NewNetlink.
type NetlinkOptions struct {
	// Netns, when set, cleans the flow table of that network namespace: a name as
	// created by "ip netns add" (resolved under /var/run/netns) or an absolute path
	// such as /proc/PID/ns/net. Empty means the caller's namespace.
	Netns string
	// Metrics, when set, counts netlink operations (op "conntrack_dump" and
	// "conntrack_delete").
	Metrics *metrics.Metrics
	// Logger receives one V(4) line per Clean.
	Logger logr.Logger
}

// Netlink is the kernel Cleaner. Each Clean dumps the family's conntrack table once
// and deletes the stale flows with one netlink request each; nothing is done when no
// target could match.
type Netlink struct {
	mu      sync.Mutex // the handle's sockets are not safe for concurrent requests
	h       *netlink.Handle
	metrics *metrics.Metrics
	log     logr.Logger
}

var _ Cleaner = (*Netlink)(nil)

// NewNetlink opens a netfilter netlink socket, inside opts.Netns when set. Close it
// when done.
func NewNetlink(opts NetlinkOptions) (*Netlink, error) {
	h, err := netlinkns.Open(opts.Netns, unix.NETLINK_NETFILTER)
	if err != nil {
		return nil, fmt.Errorf("conntrack: %w", err)
	}
	return &Netlink{h: h, metrics: opts.Metrics, log: opts.Logger}, nil
}

// Close releases the netlink socket.
func (n *Netlink) Close() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.h != nil {
		n.h.Close()
		n.h = nil
	}
	return nil
}

// Clean implements Cleaner.
func (n *Netlink) Clean(ctx context.Context, family proxier.IPFamily, targets []Target) (int, error) {
	m := NewMatcher(targets)
	if m.Empty() {
		return 0, nil
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	af := netlink.InetFamily(unix.AF_INET)
	if family == proxier.IPv6 {
		af = unix.AF_INET6
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.h == nil {
		return 0, errors.New("conntrack: cleaner is closed")
	}
	deleted, err := n.h.ConntrackDeleteFilters(netlink.ConntrackTable, af, flowFilter{m})
	n.count("conntrack_dump", 1)
	n.count("conntrack_delete", int(deleted))
	n.log.V(4).Info("Cleaned conntrack entries", "family", family, "targets", len(targets), "deleted", deleted, "err", err)
	if err != nil {
		return int(deleted), fmt.Errorf("conntrack: delete stale %s flows: %w", familyName(family), err)
	}
	return int(deleted), nil
}

func (n *Netlink) count(op string, v int) {
	if n.metrics != nil && v > 0 {
		n.metrics.NetlinkOperations.WithLabelValues(op).Add(float64(v))
	}
}

func familyName(f proxier.IPFamily) string {
	if f == proxier.IPv6 {
		return "IPv6"
	}
	return "IPv4"
}

// flowFilter adapts a Matcher to netlink's filter interface.
type flowFilter struct{ m *Matcher }

// MatchConntrackFlow implements netlink.CustomConntrackFilter.
func (f flowFilter) MatchConntrackFlow(flow *netlink.ConntrackFlow) bool {
	return f.m.Stale(FlowFromNetlink(flow))
}

// FlowFromNetlink converts a netlink flow. Netlink v1.3 decodes ports of TCP and UDP
// only, so SCTP flows come back with port 0, which the Matcher understands.
func FlowFromNetlink(flow *netlink.ConntrackFlow) Flow {
	return Flow{
		Protocol: flow.Forward.Protocol,
		OrigDst:  netip.AddrPortFrom(addrOf(flow.Forward.DstIP), flow.Forward.DstPort),
		ReplySrc: netip.AddrPortFrom(addrOf(flow.Reverse.SrcIP), flow.Reverse.SrcPort),
	}
}

func addrOf(ip net.IP) netip.Addr {
	a, _ := netip.AddrFromSlice(ip)
	return a.Unmap()
}
