package iptables

import (
	"net/netip"
	"slices"

	"github.com/kproxy/kproxy/proxier"
)

// nodePortJumps are the last rules of nat KUBE-SERVICES, sending traffic for the
// node's own addresses to KUBE-NODEPORTS: every local address, or one rule per
// allowed address when NodePortAddresses (or "primary") restricts them.
func (env *renderEnv) nodePortJumps() []string {
	const comment = "kubernetes service nodeports; NOTE: this must be the last rule in this chain"
	b := &env.b
	np := env.nodePortAddrs()
	if np.all {
		b.reset()
		// Loopback NodePorts never work on IPv6, and on IPv4 only when enabled.
		if env.family == IPv6 {
			b.destination(netip.MustParsePrefix("::1/128"), true)
		} else if !np.localhost {
			b.destination(netip.MustParsePrefix("127.0.0.0/8"), true)
		}
		return []string{b.comment(comment).match("-m addrtype --dst-type LOCAL").jump(topNodePorts).String()}
	}
	var rules []string
	for _, a := range np.addrs {
		if a.IsLoopback() && !np.localhost {
			continue
		}
		rules = append(rules, b.reset().destinationAddr(a).comment(comment).jump(topNodePorts).String())
	}
	return rules
}

// nodePortAddresses is NodePortAddresses resolved for one family and node.
type nodePortAddresses struct {
	// all means every local address accepts NodePorts.
	all bool
	// addrs are the accepting addresses otherwise, sorted.
	addrs []netip.Addr
	// localhost means NodePorts answer on IPv4 loopback.
	localhost bool
}

// nodePortAddrs resolves the NodePort addresses like kube-proxy's NodePortAddresses:
// CIDRs of the other family are ignored, no CIDR of this family (and no "primary")
// or a /0 means all local addresses, and localhost NodePorts need a CIDR covering
// 127.0.0.0. kube-proxy matches the CIDRs against the host's interface addresses;
// kproxy, being pure, uses the Node's addresses plus 127.0.0.1.
func (env *renderEnv) nodePortAddrs() nodePortAddresses {
	var cidrs []netip.Prefix
	for _, p := range env.opts.NodePortAddresses {
		if p.IsValid() && proxier.FamilyOf(p.Addr()) == env.family {
			cidrs = append(cidrs, p.Masked())
		}
	}
	res := nodePortAddresses{all: len(cidrs) == 0 && !env.opts.NodePortPrimary}
	loopback := netip.AddrFrom4([4]byte{127, 0, 0, 1})
	coversLoopback := res.all
	for _, c := range cidrs {
		res.all = res.all || c.Bits() == 0
		coversLoopback = coversLoopback || (env.family == IPv4 && c.Contains(netip.AddrFrom4([4]byte{127, 0, 0, 0})))
	}
	res.localhost = env.opts.LocalhostNodePorts && env.family == IPv4 && coversLoopback
	if res.all {
		return res
	}
	candidates := env.nodeIPs
	if env.family == IPv4 {
		candidates = append(slices.Clip(candidates), loopback)
	}
	for _, a := range candidates {
		if slices.ContainsFunc(cidrs, func(c netip.Prefix) bool { return c.Contains(a) }) {
			res.addrs = append(res.addrs, a)
		}
	}
	if env.opts.NodePortPrimary && len(env.nodeIPs) > 0 {
		res.addrs = append(res.addrs, env.nodeIPs[0])
	}
	slices.SortFunc(res.addrs, netip.Addr.Compare)
	res.addrs = slices.Compact(res.addrs)
	return res
}
