package iptables

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"syscall"

	"github.com/go-logr/logr"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"github.com/kproxy/kproxy/proxier/metrics"
	"github.com/kproxy/kproxy/proxier/netlinkns"
)

// NetlinkIPSetOptions configures NewNetlinkIPSets.
type NetlinkIPSetOptions struct {
	// Netns, when set, manages the ipsets of that network namespace: a name as
	// created by "ip netns add" or an absolute namespace file path.
	Netns string
	// MaxElements is the maxelem of hash sets created; zero means 1<<20 (the
	// kernel's default of 65536 is too small for large clusters, and hash sets
	// allocate memory by content, not by maxelem).
	MaxElements uint32
	// Metrics, when set, counts netlink requests by operation.
	Metrics *metrics.Metrics
	// Logger receives V(4) lines per operation.
	Logger logr.Logger
}

// NetlinkIPSets implements IPSetKernel with the ipset netlink protocol through
// github.com/vishvananda/netlink: no ipset binary is needed and no process is started.
//
// Everything the proxier needs is expressible in netlink v1.3.1 (create with family
// and maxelem, add and delete elements of hash:ip, hash:net, hash:ip,port,
// hash:ip,port,ip, hash:ip,port,net and hash:net,port, list, destroy), so there is no
// `ipset restore` fallback. Two limits: the library sends one request per element
// (diffs are small after the first sync), and it cannot add bitmap:port elements (it
// always attaches a protocol, which the kernel rejects for that type), so that type
// is refused with an error rather than half-supported.
type NetlinkIPSets struct {
	mu      sync.Mutex
	h       *netlink.Handle
	maxElem uint32
	metrics *metrics.Metrics
	log     logr.Logger
}

var _ IPSetKernel = (*NetlinkIPSets)(nil)

// NewNetlinkIPSets opens a netfilter netlink socket, inside opts.Netns when set.
func NewNetlinkIPSets(opts NetlinkIPSetOptions) (*NetlinkIPSets, error) {
	h, err := netlinkns.Open(opts.Netns, unix.NETLINK_NETFILTER)
	if err != nil {
		return nil, fmt.Errorf("ipset: %w", err)
	}
	maxElem := opts.MaxElements
	if maxElem == 0 {
		maxElem = 1 << 20
	}
	return &NetlinkIPSets{h: h, maxElem: maxElem, metrics: opts.Metrics, log: opts.Logger}, nil
}

// Close releases the netlink socket.
func (n *NetlinkIPSets) Close() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.h != nil {
		n.h.Close()
		n.h = nil
	}
	return nil
}

// do runs fn with the handle, serialised, converting a panic of the library (its
// error classification asserts syscall.Errno) into an error.
func (n *NetlinkIPSets) do(ctx context.Context, op string, count int, fn func(h *netlink.Handle) error) (err error) {
	if err := ctx.Err(); err != nil {
		return err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.h == nil {
		return errors.New("ipset: handle is closed")
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("ipset: netlink %s: %v", op, r)
		}
	}()
	if n.metrics != nil && count > 0 {
		n.metrics.NetlinkOperations.WithLabelValues("ipset_" + op).Add(float64(count))
	}
	return fn(n.h)
}

// List implements IPSetKernel with one dump of every set.
func (n *NetlinkIPSets) List(ctx context.Context, want func(string) bool) ([]*IPSet, error) {
	var results []netlink.IPSetResult
	err := n.do(ctx, "list", 1, func(h *netlink.Handle) error {
		var err error
		results, err = h.IpsetListAll()
		return err
	})
	if err != nil {
		if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.EPROTONOSUPPORT) {
			return nil, nil // no ip_set module: no sets
		}
		return nil, fmt.Errorf("ipset: list: %w", err)
	}
	// A large set arrives in several messages, each a partial result.
	byName := map[string]*IPSet{}
	var order []string
	for i := range results {
		r := &results[i]
		if r.SetName == "" || (want != nil && !want(r.SetName)) {
			continue
		}
		s := byName[r.SetName]
		if s == nil {
			fam := IPv4
			if r.Family == unix.AF_INET6 {
				fam = IPv6
			}
			s = &IPSet{Name: r.SetName, Type: r.TypeName, Family: fam}
			byName[r.SetName] = s
			order = append(order, r.SetName)
		}
		if s.Type == "" {
			s.Type = r.TypeName
		}
		for j := range r.Entries {
			e, ok := elementFromNetlink(s.Type, &r.Entries[j])
			if !ok {
				return nil, fmt.Errorf("ipset: set %s: cannot represent an element of type %q", s.Name, s.Type)
			}
			s.Entries = append(s.Entries, e)
		}
	}
	out := make([]*IPSet, 0, len(order))
	for _, name := range order {
		s := byName[name]
		slices.Sort(s.Entries)
		out = append(out, s)
	}
	return out, nil
}

// Create implements IPSetKernel.
func (n *NetlinkIPSets) Create(ctx context.Context, set *IPSet) error {
	if _, err := ipsetComponents(set.Type); err != nil {
		return err
	}
	// Replace drops NLM_F_EXCL: the kernel then accepts a create of a set that
	// exists with identical parameters (like "ipset create -exist").
	opts := netlink.IpsetCreateOptions{Family: unix.AF_INET, Replace: true}
	if set.Family == IPv6 {
		opts.Family = unix.AF_INET6
	}
	if strings.HasPrefix(set.Type, "bitmap:") {
		opts.PortFrom, opts.PortTo = 0, 65535
	} else {
		opts.MaxElements = n.maxElem
	}
	err := n.do(ctx, "create", 1, func(h *netlink.Handle) error {
		return h.IpsetCreate(set.Name, set.Type, opts)
	})
	if err != nil {
		return fmt.Errorf("ipset: create %s %s: %w", set.Name, set.Type, err)
	}
	n.log.V(4).Info("Created ipset", "name", set.Name, "type", set.Type, "family", set.Family)
	return nil
}

// Add implements IPSetKernel with one request per entry.
func (n *NetlinkIPSets) Add(ctx context.Context, set *IPSet, entries []string) error {
	return n.addDel(ctx, "add", set, entries)
}

// Del implements IPSetKernel with one request per entry.
func (n *NetlinkIPSets) Del(ctx context.Context, set *IPSet, entries []string) error {
	return n.addDel(ctx, "del", set, entries)
}

func (n *NetlinkIPSets) addDel(ctx context.Context, op string, set *IPSet, entries []string) error {
	if len(entries) == 0 {
		return nil
	}
	if strings.HasPrefix(set.Type, "bitmap:") {
		// netlink v1.3.1 always sends a protocol attribute with a port, which the
		// kernel rejects for bitmap:port ("invalid protocol", verified on 6.18).
		return fmt.Errorf("ipset: %s %s: elements of type %s are not supported over netlink", op, set.Name, set.Type)
	}
	nlEntries := make([]netlink.IPSetEntry, len(entries))
	for i, s := range entries {
		e, err := parseIPSetElement(set.Type, s)
		if err != nil {
			return err
		}
		nlEntries[i] = elementToNetlink(set.Type, e)
	}
	err := n.do(ctx, op, len(entries), func(h *netlink.Handle) error {
		for i := range nlEntries {
			if i%256 == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			var err error
			if op == "add" {
				err = h.IpsetAdd(set.Name, &nlEntries[i])
			} else {
				err = h.IpsetDel(set.Name, &nlEntries[i])
			}
			if err != nil {
				return fmt.Errorf("%s: %w", entries[i], err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("ipset: %s %s: %w", op, set.Name, err)
	}
	n.log.V(4).Info("Updated ipset", "op", op, "name", set.Name, "entries", len(entries))
	return nil
}

// Destroy implements IPSetKernel.
func (n *NetlinkIPSets) Destroy(ctx context.Context, name string) error {
	err := n.do(ctx, "destroy", 1, func(h *netlink.Handle) error { return h.IpsetDestroy(name) })
	if err != nil && !errors.Is(err, syscall.ENOENT) && !errors.Is(err, nl.IPSetError(nl.IPSET_ERR_PROTOCOL)) {
		return fmt.Errorf("ipset: destroy %s: %w", name, err)
	}
	return nil
}

// elementToNetlink maps a parsed element onto netlink's entry struct. Replace is set
// so that adding a present entry or deleting a missing one is not an error (the
// library otherwise sends NLM_F_EXCL, like "ipset add" without -exist).
func elementToNetlink(typ string, e ipsetElement) netlink.IPSetEntry {
	comps, _ := ipsetComponents(typ)
	out := netlink.IPSetEntry{Replace: true}
	addrs := 0
	for _, c := range comps {
		switch c {
		case compIP, compNet:
			p := e.ip
			if addrs > 0 {
				p = e.ip2
			}
			ip := net.IP(p.Addr().AsSlice())
			var cidr uint8
			if c == compNet {
				cidr = uint8(p.Bits())
			}
			if addrs == 0 {
				out.IP, out.CIDR = ip, cidr
			} else {
				out.IP2, out.CIDR2 = ip, cidr
			}
			addrs++
		case compPort:
			port := e.port
			out.Port = &port
			if e.proto != 0 {
				proto := e.proto
				out.Protocol = &proto
			}
		}
	}
	return out
}

// elementFromNetlink formats an element the kernel listed.
func elementFromNetlink(typ string, ne *netlink.IPSetEntry) (string, bool) {
	comps, err := ipsetComponents(typ)
	if err != nil {
		return "", false
	}
	var e ipsetElement
	addrs := 0
	for _, c := range comps {
		switch c {
		case compIP, compNet:
			ip, cidr := ne.IP, ne.CIDR
			if addrs > 0 {
				ip, cidr = ne.IP2, ne.CIDR2
			}
			a, ok := netip.AddrFromSlice(ip)
			if !ok {
				return "", false
			}
			a = a.Unmap()
			bits := a.BitLen()
			if c == compNet && cidr != 0 {
				bits = int(cidr)
			}
			p := netip.PrefixFrom(a, bits)
			if addrs == 0 {
				e.ip = p
			} else {
				e.ip2, e.has2 = p, true
			}
			addrs++
		case compPort:
			if ne.Port == nil {
				return "", false
			}
			e.port, e.hasPort = *ne.Port, true
			if ne.Protocol != nil && !strings.HasPrefix(typ, "bitmap:") {
				e.proto = *ne.Protocol
			}
		}
	}
	return e.format(typ), true
}
