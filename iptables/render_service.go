package iptables

import (
	"net/netip"

	"github.com/kproxy/kproxy/proxier"
)

// dispatchRoot names one of the dispatchers a service port contributes rules to.
type dispatchRoot int

// The per-destination rule sets, each laid out as a dispatch tree under its
// top-level chain.
const (
	rootNatServices     dispatchRoot = iota // nat KUBE-SERVICES, by address
	rootNatNodePorts                        // nat KUBE-NODEPORTS, by protocol/port
	rootFilterServices                      // filter KUBE-SERVICES, by address
	rootFilterExternal                      // filter KUBE-EXTERNAL-SERVICES, by address
	rootFilterExtPorts                      // filter KUBE-EXTERNAL-SERVICES, by node port
	rootFilterFirewall                      // filter KUBE-PROXY-FIREWALL, by address
	rootFilterNodePorts                     // filter KUBE-NODEPORTS, by health-check port
	numDispatchRoots
)

// serviceFragment is everything one service port contributes to a ruleset: the nat
// chains it owns, its rules in the shared top-level chains, and its hairpin ipset
// entries. The Renderer keeps one per service port and re-renders it only when the
// port changes.
type serviceFragment struct {
	// sp is the service port this was rendered from; an unchanged pointer means an
	// unchanged fragment.
	sp *proxier.ServicePort
	// chains are KUBE-EXT-, KUBE-FW-, KUBE-SVC- and KUBE-SVL- as far as used, sorted
	// by name (which that order is).
	chains   []*ChainRules
	contribs []fragmentContrib
	loopback []string
}

// fragmentContrib is the rules a service port adds under one key of one dispatcher.
type fragmentContrib struct {
	root  dispatchRoot
	key   dispatchKey
	rules []string
}

// add appends a rule under (root, key), grouping rules of the same key.
func (f *serviceFragment) add(root dispatchRoot, key dispatchKey, rule string) {
	for i := range f.contribs {
		if c := &f.contribs[i]; c.root == root && c.key == key {
			c.rules = append(c.rules, rule)
			return
		}
	}
	f.contribs = append(f.contribs, fragmentContrib{root: root, key: key, rules: []string{rule}})
}

// servicePlan is what kube-proxy decides about a service port before writing rules:
// which chains exist and where each kind of traffic goes.
type servicePlan struct {
	sp    *proxier.ServicePort // filtered to the rendered family
	name  string               // upstream port name, for comments
	proto proxier.Protocol
	ip    netip.Addr // cluster IP of the family
	ch    serviceChains
	sel   proxier.Selection
	lbIPs []netip.Addr // VIP-mode load-balancer IPs of the family

	hasEndpoints   bool // some usable endpoint in the cluster: else REJECT
	usesCluster    bool // KUBE-SVC- exists
	usesLocal      bool // KUBE-SVL- exists
	internalChain  Chain
	hasInternal    bool // cluster-IP traffic has endpoints: else DROP
	externalChain  Chain
	hasExternal    bool // external traffic from outside has endpoints: else DROP
	usesExtChain   bool // KUBE-EXT- exists
	usesFirewall   bool // KUBE-FW- exists
	loadBalancerTo Chain
}

// plan categorises the endpoints and derives the chain layout, following
// kube-proxy's syncProxyRules.
func (env *renderEnv) plan(sp *proxier.ServicePort, ip netip.Addr) *servicePlan {
	p := &servicePlan{sp: sp, name: upstreamPortName(sp.Name), proto: sp.Name.Protocol, ip: ip}
	p.ch = chainsFor(p.name, p.proto)
	p.sel = proxier.CategorizeEndpoints(sp, &env.node)
	for _, ing := range sp.LoadBalancerIngress {
		if ing.Mode == proxier.IPModeVIP {
			p.lbIPs = append(p.lbIPs, ing.IP)
		}
	}
	p.hasEndpoints = p.sel.HasAny
	p.usesCluster = len(p.sel.Cluster) > 0 && sp.UsesClusterEndpoints()
	p.usesLocal = len(p.sel.Local) > 0 && sp.UsesLocalEndpoints()
	// A policy's chain only exists when it has endpoints; kube-proxy relies on that
	// implicitly, here it is spelled out so a jump never targets a missing chain.
	p.internalChain, p.hasInternal = p.ch.cluster, p.hasEndpoints && p.usesCluster
	if sp.InternalPolicyLocal() {
		p.internalChain, p.hasInternal = p.ch.local, p.hasEndpoints && p.usesLocal
	}
	p.externalChain, p.hasExternal = p.ch.cluster, p.hasEndpoints && p.usesCluster
	if sp.ExternalPolicyLocal() {
		p.externalChain, p.hasExternal = p.ch.local, p.hasEndpoints && p.usesLocal
	}
	// The external chain exists even without external endpoints, for the
	// short-circuit rules of traffic from inside the node.
	p.usesExtChain = p.hasEndpoints && sp.ExternallyAccessible()
	p.usesFirewall = p.hasEndpoints && len(p.lbIPs) > 0 && len(sp.LoadBalancerSourceRanges) > 0
	p.loadBalancerTo = p.ch.external
	if p.usesFirewall {
		p.loadBalancerTo = p.ch.firewall
	}
	return p
}

// renderService renders one service port. A port without a cluster IP of the family
// renders to an empty fragment, as kube-proxy ignores it in that family.
func (env *renderEnv) renderService(sp *proxier.ServicePort) *serviceFragment {
	f := &serviceFragment{sp: sp}
	view, ip, ok := familyView(sp, env.family)
	if !ok {
		return f
	}
	p := env.plan(view, ip)
	env.renderEntryRules(f, p)
	env.renderChains(f, p)
	f.loopback = env.loopbackEntries(p)
	return f
}

// renderEntryRules writes the rules that capture traffic in the top-level chains:
// DNAT entry points in nat, REJECT/DROP/firewall rules in filter.
func (env *renderEnv) renderEntryRules(f *serviceFragment, p *servicePlan) {
	b, sp := &env.b, p.sp
	if p.hasInternal {
		f.add(rootNatServices, addrKey(p.ip), b.reset().destinationAddr(p.ip).protocol(p.proto).
			commentParts(p.name, " cluster IP").dport(p.proto, sp.Port).jump(p.internalChain).String())
	} else {
		f.add(rootFilterServices, addrKey(p.ip), env.filterRule(p, p.ip, !p.hasEndpoints))
	}
	for _, eip := range sp.ExternalIPs {
		if p.hasEndpoints {
			f.add(rootNatServices, addrKey(eip), b.reset().destinationAddr(eip).protocol(p.proto).
				commentParts(p.name, " external IP").dport(p.proto, sp.Port).jump(p.ch.external).String())
		}
		if !p.hasExternal {
			f.add(rootFilterExternal, addrKey(eip), env.filterRule(p, eip, !p.hasEndpoints))
		}
	}
	for _, lb := range p.lbIPs {
		if p.hasEndpoints {
			f.add(rootNatServices, addrKey(lb), b.reset().destinationAddr(lb).protocol(p.proto).
				commentParts(p.name, " loadbalancer IP").dport(p.proto, sp.Port).jump(p.loadBalancerTo).String())
		}
		if p.usesFirewall {
			f.add(rootFilterFirewall, addrKey(lb), b.reset().destinationAddr(lb).protocol(p.proto).
				commentParts(p.name, " traffic not accepted by ", string(p.ch.firewall)).
				dport(p.proto, sp.Port).verdict("DROP").String())
		}
	}
	if !p.hasExternal {
		for _, lb := range p.lbIPs {
			f.add(rootFilterExternal, addrKey(lb), env.filterRule(p, lb, !p.hasEndpoints))
		}
	}
	if np := sp.NodePort; np != 0 {
		if p.hasEndpoints {
			f.add(rootNatNodePorts, portKey(p.proto, np), b.reset().protocol(p.proto).
				comment(p.name).dport(p.proto, np).jump(p.ch.external).String())
		}
		if !p.hasExternal {
			b.reset().protocol(p.proto).commentParts(p.name, noEndpointsSuffix(!p.hasEndpoints)).
				match("-m addrtype --dst-type LOCAL").dport(p.proto, np)
			f.add(rootFilterExtPorts, portKey(p.proto, np), env.filterVerdict(b, !p.hasEndpoints))
		}
	}
	if hc := sp.HealthCheckNodePort; hc != 0 {
		f.add(rootFilterNodePorts, portKey(proxier.ProtocolTCP, hc), b.reset().protocol(proxier.ProtocolTCP).
			commentParts(p.name, " health check node port").dport(proxier.ProtocolTCP, hc).verdict("ACCEPT").String())
	}
}

// filterRule is the filter-table rule for traffic to dst that has nowhere to go:
// REJECT when the service has no endpoints at all, DROP when only the policy's
// endpoints are missing on this node.
func (env *renderEnv) filterRule(p *servicePlan, dst netip.Addr, reject bool) string {
	b := &env.b
	b.reset().destinationAddr(dst).protocol(p.proto).commentParts(p.name, noEndpointsSuffix(reject)).dport(p.proto, p.sp.Port)
	return env.filterVerdict(b, reject)
}

func (env *renderEnv) filterVerdict(b *ruleBuilder, reject bool) string {
	if reject {
		return b.verdict(env.rejectTarget).String()
	}
	return b.verdict("DROP").String()
}

func noEndpointsSuffix(reject bool) string {
	if reject {
		return " has no endpoints"
	}
	return " has no local endpoints"
}

// renderChains writes the service port's own nat chains.
func (env *renderEnv) renderChains(f *serviceFragment, p *servicePlan) {
	var masq string
	if p.hasInternal {
		masq = env.clusterIPMasquerade(p)
	}
	if p.usesExtChain {
		f.chains = append(f.chains, &ChainRules{Name: p.ch.external, Rules: env.externalRules(p)})
	}
	if p.usesFirewall {
		f.chains = append(f.chains, &ChainRules{Name: p.ch.firewall, Rules: env.firewallRules(p)})
	}
	if p.usesCluster {
		m := ""
		if p.internalChain == p.ch.cluster {
			m = masq
		}
		f.chains = append(f.chains, &ChainRules{Name: p.ch.cluster, Rules: env.endpointRules(p, m, p.sel.Cluster)})
	}
	if p.usesLocal {
		m := ""
		if p.internalChain == p.ch.local {
			m = masq
		}
		f.chains = append(f.chains, &ChainRules{Name: p.ch.local, Rules: env.endpointRules(p, m, p.sel.Local)})
	}
}

// clusterIPMasquerade is the rule that marks cluster-IP traffic for SNAT: all of it
// with MasqueradeAll, else what does not come from a local pod (traffic routed to the
// node from outside may be answered from another node). Without local detection
// kube-proxy marks nothing, and neither does kproxy.
func (env *renderEnv) clusterIPMasquerade(p *servicePlan) string {
	b := &env.b
	switch {
	case env.opts.MasqueradeAll:
		b.reset()
	case env.local.implemented() && !env.local.matchesEverything():
		b.reset().local(env.local, true)
	default:
		return ""
	}
	return b.destinationAddr(p.ip).protocol(p.proto).commentParts(p.name, " cluster IP").
		dport(p.proto, p.sp.Port).jump(topMarkMasq).String()
}

// externalRules fills KUBE-EXT-: masquerade for Cluster policy; for Local policy keep
// the client address but send pod and node traffic (which never left the node) to
// the cluster endpoints, as if it had gone out to the load balancer and come back.
func (env *renderEnv) externalRules(p *servicePlan) []string {
	b := &env.b
	var rules []string
	if !p.sp.ExternalPolicyLocal() {
		rules = append(rules, b.reset().commentParts("masquerade traffic for ", p.name, " external destinations").
			jump(topMarkMasq).String())
	} else {
		if env.local.implemented() && p.usesCluster {
			rules = append(rules, b.reset().local(env.local, false).
				commentParts("pod traffic for ", p.name, " external destinations").jump(p.ch.cluster).String())
		}
		rules = append(rules, b.reset().commentParts("masquerade LOCAL traffic for ", p.name, " external destinations").
			match("-m addrtype --src-type LOCAL").jump(topMarkMasq).String())
		if p.usesCluster {
			rules = append(rules, b.reset().commentParts("route LOCAL traffic for ", p.name, " external destinations").
				match("-m addrtype --src-type LOCAL").jump(p.ch.cluster).String())
		}
	}
	if p.hasExternal {
		rules = append(rules, b.reset().jump(p.externalChain).String())
	}
	return rules
}

// firewallRules fills KUBE-FW-: allowed sources continue to KUBE-EXT-; the rest falls
// through and is dropped by the matching KUBE-PROXY-FIREWALL rule in filter.
func (env *renderEnv) firewallRules(p *servicePlan) []string {
	b := &env.b
	var rules []string
	allowFromNode := false
	for _, cidr := range p.sp.LoadBalancerSourceRanges {
		rules = append(rules, b.reset().source(cidr, false).commentParts(p.name, " loadbalancer IP").
			jump(p.ch.external).String())
		for _, a := range env.nodeIPs {
			allowFromNode = allowFromNode || cidr.Contains(a)
		}
	}
	// A VIP often sits on the node itself, so the node reaching it loops back with
	// the VIP as source instead of going through the load balancer.
	if allowFromNode {
		for _, lb := range p.lbIPs {
			rules = append(rules, b.reset().sourceAddr(lb).commentParts(p.name, " loadbalancer IP").
				jump(p.ch.external).String())
		}
	}
	return append(rules, b.reset().commentParts("other traffic to ", p.name, " will be dropped by KUBE-PROXY-FIREWALL").String())
}
