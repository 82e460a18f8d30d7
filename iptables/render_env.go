package iptables

import (
	"net/netip"

	"github.com/kproxy/kproxy/proxier"
)

// renderEnv is what rendering needs besides the service port: the options and the
// node, resolved once per node, plus scratch space reused across rules.
type renderEnv struct {
	opts   RenderOptions
	family Family
	node   proxier.Node
	local  localMatch
	// nodeIPs are the node's addresses of the family, primary first.
	nodeIPs []netip.Addr
	mark    string // masquerade mark, "0x4000"

	rejectTarget string // "REJECT --reject-with icmp-port-unreachable"
	recentTail   string // " --mask 255.255.255.255 --rsource": defaults iptables-save spells out

	probs probabilityCache
	b     ruleBuilder
}

func newRenderEnv(opts RenderOptions, node proxier.Node) *renderEnv {
	env := &renderEnv{opts: opts, family: opts.Family, node: node, mark: opts.masqueradeMark()}
	env.rejectTarget = "REJECT --reject-with icmp-port-unreachable"
	env.recentTail = " --mask 255.255.255.255 --rsource"
	if opts.Family == IPv6 {
		env.rejectTarget = "REJECT --reject-with icmp6-port-unreachable"
		env.recentTail = " --mask ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff --rsource"
	}
	env.local = opts.LocalDetector.resolve(opts.Family, &env.node)
	for _, a := range node.Addresses {
		if proxier.FamilyOf(a) == opts.Family {
			env.nodeIPs = append(env.nodeIPs, a)
		}
	}
	return env
}
