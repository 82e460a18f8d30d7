package ipvs

import (
	"bytes"
	"fmt"
	"net/netip"
	"strconv"

	"github.com/kproxy/kproxy/iptables"
	"github.com/kproxy/kproxy/proxier"
)

// IPVS forwards, but it neither masquerades nor filters: that still takes a few
// iptables rules, the "glue". They match ipsets rather than individual services, so
// the ruleset has the same couple of dozen rules whether the node has ten Services or
// thirty thousand, and a sync rewrites it only when a set turns empty or non-empty
// (or a load balancer's source ranges stop covering the node). The chains, rules,
// comments and jumps are kube-proxy's, so a node can switch between the two.

// The chains of the glue.
const (
	chainServices           iptables.Chain = "KUBE-SERVICES"
	chainPostrouting        iptables.Chain = "KUBE-POSTROUTING"
	chainNodePort           iptables.Chain = "KUBE-NODE-PORT"
	chainLoadBalancer       iptables.Chain = "KUBE-LOAD-BALANCER"
	chainMarkMasq           iptables.Chain = "KUBE-MARK-MASQ"
	chainForward            iptables.Chain = "KUBE-FORWARD"
	chainProxyFirewall      iptables.Chain = "KUBE-PROXY-FIREWALL"
	chainSourceRangesFW     iptables.Chain = "KUBE-SOURCE-RANGES-FIREWALL"
	chainIPVSFilter         iptables.Chain = "KUBE-IPVS-FILTER"
	chainIPVSOutFilter      iptables.Chain = "KUBE-IPVS-OUT-FILTER"
	defaultMasqueradeBit                   = 14
	commentServicePortals                  = "kubernetes service portals"
	commentPostrouting                     = "kubernetes postrouting rules"
	commentForward                         = "kubernetes forwarding rules"
	commentHealthCheck                     = "kubernetes health check rules"
	commentFirewall                        = "kube-proxy firewall rules"
	commentIPVSFilter                      = "kubernetes ipvs access filter"
	commentForwardConntrack                = "kubernetes forwarding conntrack rule"
	commentMasquerade                      = "kubernetes service traffic requiring SNAT"
)

// natChains and filterChains are the chains the glue owns, in kube-proxy's order.
var (
	natChains    = []iptables.Chain{chainServices, chainPostrouting, chainNodePort, chainLoadBalancer, chainMarkMasq}
	filterChains = []iptables.Chain{chainForward, chainNodePort, chainProxyFirewall, chainSourceRangesFW, chainIPVSFilter, chainIPVSOutFilter}
)

// Jumps returns the rules in built-in chains that lead into the glue. They are ensured
// (inserted first unless present) on every full sync and deleted by Cleanup.
func Jumps() []iptables.Jump {
	j := func(t iptables.Table, from, to iptables.Chain, comment string) iptables.Jump {
		return iptables.Jump{Table: t, From: from, To: to, Comment: comment, Position: iptables.Prepend}
	}
	return []iptables.Jump{
		j(iptables.TableNAT, iptables.ChainOutput, chainServices, commentServicePortals),
		j(iptables.TableNAT, iptables.ChainPrerouting, chainServices, commentServicePortals),
		j(iptables.TableNAT, iptables.ChainPostrouting, chainPostrouting, commentPostrouting),
		j(iptables.TableFilter, iptables.ChainForward, chainForward, commentForward),
		j(iptables.TableFilter, iptables.ChainInput, chainNodePort, commentHealthCheck),
		j(iptables.TableFilter, iptables.ChainInput, chainProxyFirewall, commentFirewall),
		j(iptables.TableFilter, iptables.ChainForward, chainProxyFirewall, commentFirewall),
		j(iptables.TableFilter, iptables.ChainInput, chainIPVSFilter, commentIPVSFilter),
		j(iptables.TableFilter, iptables.ChainOutput, chainIPVSOutFilter, commentIPVSFilter),
	}
}

// LocalDetector tells traffic from pods on this node apart from other traffic, like
// kube-proxy's --detect-local-mode. The glue uses it to masquerade traffic to cluster
// IPs that does not come from a pod: off-cluster clients routed to a service IP would
// otherwise get answers from an address they never talked to.
//
// Set CIDRs for the ClusterCIDR and NodeCIDR modes (one prefix per family; the one
// matching the proxier's family is used), or Interface for BridgeInterface ("cbr0")
// and InterfaceNamePrefix ("veth+", with iptables' trailing "+") modes. The zero value
// detects nothing; the glue then masquerades node-originated traffic from a service
// address instead, as kube-proxy does.
type LocalDetector struct {
	CIDRs     []netip.Prefix
	Interface string
}

// ifNotLocal returns the iptables match for "not from a local pod", or nil when the
// detector cannot tell for family f.
func (d LocalDetector) ifNotLocal(f proxier.IPFamily) []string {
	for _, c := range d.CIDRs {
		if proxier.FamilyOf(c.Addr()) == f {
			return []string{"!", "-s", c.Masked().String()}
		}
	}
	if d.Interface != "" {
		return []string{"!", "-i", d.Interface}
	}
	return nil
}

// glueParams is what the glue depends on.
type glueParams struct {
	family        proxier.IPFamily
	nonEmpty      [numSets]bool
	denyFromNode  []VSKey
	masqueradeAll bool
	masqueradeBit int
	local         LocalDetector
	randomFully   bool
}

// renderGlue returns the iptables-restore --noflush payload for both tables. Every
// chain is declared, which flushes it, so the payload replaces the glue wholesale.
func renderGlue(p *glueParams) []byte {
	name := func(k setKind) string { return setName(p.family, k) }
	comment := func(k setKind) []string { return []string{"-m", "comment", "--comment", quote(setDefs[k].comment)} }
	matchSet := func(k setKind, dirs string) []string {
		return []string{"-m", "set", "--match-set", name(k), dirs}
	}
	mark := fmt.Sprintf("%#x", uint32(1)<<p.masqueradeBit)

	nat := map[iptables.Chain]*iptables.ChainRules{}
	filter := map[iptables.Chain]*iptables.ChainRules{}
	for _, c := range natChains {
		nat[c] = &iptables.ChainRules{Name: c}
	}
	for _, c := range filterChains {
		filter[c] = &iptables.ChainRules{Name: c}
	}
	add := func(t map[iptables.Chain]*iptables.ChainRules, c iptables.Chain, parts ...[]string) {
		var b bytes.Buffer
		for _, part := range parts {
			for _, w := range part {
				if b.Len() > 0 {
					b.WriteByte(' ')
				}
				b.WriteString(w)
			}
		}
		t[c].Rules = append(t[c].Rules, b.String())
	}
	w := func(words ...string) []string { return words }

	loopback := "127.0.0.0/8"
	if p.family == proxier.IPv6 {
		loopback = "::1/128"
	}
	add(nat, chainServices, w("-s", loopback, "-j", "RETURN"))

	// Rules that only depend on one set being non-empty, in kube-proxy's order (the
	// Local node port sets must come before the general ones).
	type setRule struct {
		set    setKind
		table  map[iptables.Chain]*iptables.ChainRules
		from   iptables.Chain
		proto  string
		dirs   string
		target string
	}
	for _, r := range []setRule{
		{setLoopBack, nat, chainPostrouting, "", "dst,dst,src", "MASQUERADE"},
		{setLoadBalancer, nat, chainServices, "", "dst,dst", string(chainLoadBalancer)},
		{setLoadBalancerLocal, nat, chainLoadBalancer, "", "dst,dst", "RETURN"},
		{setNodePortLocalTCP, nat, chainNodePort, "tcp", "dst", "RETURN"},
		{setNodePortTCP, nat, chainNodePort, "tcp", "dst", string(chainMarkMasq)},
		{setNodePortLocalUDP, nat, chainNodePort, "udp", "dst", "RETURN"},
		{setNodePortUDP, nat, chainNodePort, "udp", "dst", string(chainMarkMasq)},
		{setNodePortLocalSCTP, nat, chainNodePort, "sctp", "dst,dst", "RETURN"},
		{setNodePortSCTP, nat, chainNodePort, "sctp", "dst,dst", string(chainMarkMasq)},
		{setLoadBalancerFW, filter, chainProxyFirewall, "", "dst,dst", string(chainSourceRangesFW)},
		{setLoadBalancerSourceCIDR, filter, chainSourceRangesFW, "", "dst,dst,src", "RETURN"},
		{setLoadBalancerSourceIP, filter, chainSourceRangesFW, "", "dst,dst,src", "RETURN"},
	} {
		if !p.nonEmpty[r.set] {
			continue
		}
		var proto []string
		if r.proto != "" {
			proto = w("-p", r.proto)
		}
		add(r.table, r.from, proto, comment(r.set), matchSet(r.set, r.dirs), w("-j", r.target))
	}

	if p.nonEmpty[setClusterIP] {
		switch notLocal := p.local.ifNotLocal(p.family); {
		case p.masqueradeAll:
			add(nat, chainServices, comment(setClusterIP), matchSet(setClusterIP, "dst,dst"), w("-j", string(chainMarkMasq)))
		case notLocal != nil:
			// Off-cluster traffic routed to a service IP may be answered by a pod on
			// another node; masquerade it so the answer comes back through here.
			add(nat, chainServices, comment(setClusterIP), matchSet(setClusterIP, "dst,dst"), notLocal, w("-j", string(chainMarkMasq)))
		default:
			// Node-originated traffic picks a service address on kube-ipvs0 as its
			// source; masquerade it so the endpoint can answer.
			add(nat, chainServices, comment(setClusterIP), matchSet(setClusterIP, "src,dst"), w("-j", string(chainMarkMasq)))
		}
	}
	externalAccept := func(k setKind) {
		// Accept external IP traffic from off-node, and traffic to external IPs that
		// are local addresses anyway (cloud load balancers adding them to the host).
		add(nat, chainServices, comment(k), matchSet(k, "dst,dst"),
			w("-m", "physdev", "!", "--physdev-is-in", "-m", "addrtype", "!", "--src-type", "LOCAL", "-j", "ACCEPT"))
		add(nat, chainServices, comment(k), matchSet(k, "dst,dst"), w("-m", "addrtype", "--dst-type", "LOCAL", "-j", "ACCEPT"))
	}
	if p.nonEmpty[setExternalIP] {
		add(nat, chainServices, comment(setExternalIP), matchSet(setExternalIP, "dst,dst"), w("-j", string(chainMarkMasq)))
		externalAccept(setExternalIP)
	}
	if p.nonEmpty[setExternalIPLocal] {
		externalAccept(setExternalIPLocal)
	}
	add(nat, chainServices, w("-m", "addrtype", "--dst-type", "LOCAL", "-j", string(chainNodePort)))
	add(nat, chainLoadBalancer, w("-j", string(chainMarkMasq)))
	add(filter, chainSourceRangesFW, w("-j", "DROP"))

	// Nodes must not reach load balancer IPs whose source ranges leave them out; for
	// IPVS both source and virtual address are the load balancer IP.
	for _, k := range p.denyFromNode {
		add(filter, chainIPVSOutFilter, w("-s", hostPrefix(k.Addr), "-m", "ipvs", "--vaddr", hostPrefix(k.Addr),
			"--vproto", k.Protocol.String(), "--vport", strconv.Itoa(int(k.Port)), "-j", "DROP"))
	}
	// Accept service traffic at the end of KUBE-SERVICES so later rules cannot drop it
	// before IPVS sees it.
	for _, k := range []setKind{setClusterIP, setLoadBalancer} {
		if p.nonEmpty[k] {
			add(nat, chainServices, matchSet(k, "dst,dst"), w("-j", "ACCEPT"))
		}
	}

	add(filter, chainForward, w("-m", "comment", "--comment", quote(commentForward), "-m", "mark", "--mark", mark+"/"+mark, "-j", "ACCEPT"))
	add(filter, chainForward, w("-m", "comment", "--comment", quote(commentForwardConntrack), "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"))
	add(filter, chainNodePort, comment(setHealthCheckNodePort), matchSet(setHealthCheckNodePort, "dst"), w("-j", "ACCEPT"))

	// Service addresses answer only on service ports: new connections to any other
	// port of an address on kube-ipvs0 would otherwise reach the node's own sockets.
	for _, k := range []setKind{setLoadBalancer, setClusterIP, setExternalIP, setExternalIPLocal} {
		add(filter, chainIPVSFilter, matchSet(k, "dst,dst"), w("-j", "RETURN"))
	}
	add(filter, chainIPVSFilter, matchSet(setHealthCheckNodePort, "dst"), w("-j", "RETURN"))
	add(filter, chainIPVSFilter, w("-m", "conntrack", "--ctstate", "NEW"), matchSet(setIPVSIPs, "dst"), w("-j", "REJECT"))

	add(nat, chainPostrouting, w("-m", "mark", "!", "--mark", mark+"/"+mark, "-j", "RETURN"))
	// Clear the mark so a packet that traverses the stack again is not masqueraded twice.
	add(nat, chainPostrouting, w("-j", "MARK", "--xor-mark", mark))
	masq := w("-m", "comment", "--comment", quote(commentMasquerade), "-j", "MASQUERADE")
	if p.randomFully {
		masq = append(masq, "--random-fully")
	}
	add(nat, chainPostrouting, masq)
	add(nat, chainMarkMasq, w("-j", "MARK", "--or-mark", mark))

	var b bytes.Buffer
	iptables.WriteTable(&b, iptables.TableNAT, ordered(nat, natChains), nil)
	iptables.WriteTable(&b, iptables.TableFilter, ordered(filter, filterChains), nil)
	return b.Bytes()
}

// cleanupGlue returns the payload that flushes and deletes every glue chain. The jumps
// into them must be gone first.
func cleanupGlue() []byte {
	var b bytes.Buffer
	iptables.WriteTable(&b, iptables.TableNAT, nil, natChains)
	iptables.WriteTable(&b, iptables.TableFilter, nil, filterChains)
	return b.Bytes()
}

// ordered returns the chains of a table in declaration order.
func ordered(m map[iptables.Chain]*iptables.ChainRules, order []iptables.Chain) []*iptables.ChainRules {
	out := make([]*iptables.ChainRules, 0, len(order))
	for _, c := range order {
		out = append(out, m[c])
	}
	return out
}

// quote wraps a comment in double quotes for iptables-restore.
func quote(s string) string { return `"` + s + `"` }

// hostPrefix returns a as a single-address prefix ("1.2.3.4/32").
func hostPrefix(a netip.Addr) string { return netip.PrefixFrom(a, a.BitLen()).String() }

// iptablesFamily converts a proxier family to the iptables package's.
func iptablesFamily(f proxier.IPFamily) iptables.Family {
	if f == proxier.IPv6 {
		return iptables.IPv6
	}
	return iptables.IPv4
}
