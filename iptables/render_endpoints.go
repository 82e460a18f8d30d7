package iptables

import (
	"strconv"
	"time"

	"github.com/kproxy/kproxy/proxier"
)

// endpointRules fills a KUBE-SVC- or KUBE-SVL- chain. Where kube-proxy jumps to one
// KUBE-SEP- chain per endpoint, kproxy DNATs right here: one rule per endpoint,
// chosen with -m statistic exactly as kube-proxy chooses the chain (probability
// 1/(n-i), the last endpoint unconditionally). The hairpin masquerade of the SEP
// chains is done by the KUBE-LOOP-BACK ipset in KUBE-POSTROUTING instead.
//
// With ClientIP affinity, a first block of rules sends a client seen within the
// timeout back to its endpoint ("--rcheck --seconds T --reap", refreshing the entry
// with "--set" in the same rule, as the SEP chain's --set did), and each balancing
// rule records the client it picked with "--set". The lists keep kube-proxy's names
// (the SEP chain names), so affinity survives a switch from kube-proxy.
//
// Unlike kube-proxy's SEP rules, endpoint rules carry no "ns/svc:port -> ip:port"
// comment: the DNAT target already names the endpoint, and the service is named by
// the comments of the rules that enter the chain. Comments are not free on nft:
// iptables-nft 1.8.9 turns each into an xt "comment" match expression, which the
// kernel looks up and instantiates like any other compat match, and which
// iptables-nft-save and the commit-time table validation walk again. At 10,000
// services × 10 endpoints that was 100,000 expressions (a third of the compat
// expressions of the nat table) and 10-20% of a cold restore. Upstream drops the
// same comments in large clusters; here they are never written, so a service's rules
// do not depend on the size of the cluster.
//
// masq, when set, is the cluster-IP masquerade rule, which goes first.
func (env *renderEnv) endpointRules(p *servicePlan, masq string, eps []*proxier.Endpoint) []string {
	b := &env.b
	n := len(eps)
	rules := make([]string, 0, n*2+1)
	if masq != "" {
		rules = append(rules, masq)
	}
	var lists []string
	if p.sp.SessionAffinity() {
		secs := max(1, int(p.sp.AffinityTimeout/time.Second))
		lists = make([]string, n)
		for i, ep := range eps {
			lists[i] = affinityListName(p.name, p.proto, ep.String())
			rules = append(rules, b.reset().protocol(p.proto).
				recent(lists[i], secs, env.recentTail).recent(lists[i], 0, env.recentTail).
				dnat(ep.AddrPort()).String())
		}
	}
	for i, ep := range eps {
		b.reset().protocol(p.proto)
		if i < n-1 {
			b.statistic(env.probs.get(n - i))
		}
		if lists != nil {
			b.recent(lists[i], 0, env.recentTail)
		}
		rules = append(rules, b.dnat(ep.AddrPort()).String())
	}
	return rules
}

// loopbackEntries lists the KUBE-LOOP-BACK entries ("ip,proto:port,ip") of the
// endpoints a pod on this node could reach itself through. Only endpoints on this
// node (or of unknown node) can be the source of such traffic, so remote endpoints
// are left out: that keeps the set small and untouched by remote endpoint churn.
func (env *renderEnv) loopbackEntries(p *servicePlan) []string {
	var out []string
	for _, ep := range p.sel.AllReachable {
		if !ep.Local && ep.NodeName != "" {
			continue
		}
		ip := ep.Addr.String()
		out = append(out, ip+","+p.proto.String()+":"+strconv.Itoa(int(ep.Port))+","+ip)
	}
	return out
}
