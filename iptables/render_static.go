package iptables

// natStaticChains are the nat chains whose content depends only on the options:
// the masquerade mark and the SNAT chain. kproxy's hairpin rule comes first in
// KUBE-POSTROUTING: a pod reaching itself through a service is masqueraded by
// matching the KUBE-LOOP-BACK set (as kube-proxy's IPVS mode does), replacing the
// per-endpoint KUBE-SEP- rules of the iptables mode.
func (env *renderEnv) natStaticChains() []*ChainRules {
	b := &env.b
	masq := "MASQUERADE"
	if env.opts.RandomFully {
		masq = "MASQUERADE --random-fully"
	}
	post := []string{
		b.reset().comment("Kubernetes endpoints dst ip:port, source ip for solving hairpin purpose").
			match("-m set --match-set " + env.loopbackSetName() + " dst,dst,src").verdict(masq).String(),
		b.reset().match("-m mark ! --mark " + env.mark + "/" + env.mark).verdict("RETURN").String(),
		// Clear the mark so a packet that traverses the stack again (e.g. after
		// encapsulation) is not masqueraded twice.
		b.reset().verdict("MARK --set-xmark " + env.mark + "/0x0").String(),
		b.reset().comment("kubernetes service traffic requiring SNAT").verdict(masq).String(),
	}
	return []*ChainRules{
		{Name: topMarkMasq, Rules: []string{b.reset().verdict("MARK --set-xmark " + env.mark + "/" + env.mark).String()}},
		{Name: topPostrouting, Rules: post},
		{Name: topCanary},
	}
}

// filterStaticChains are KUBE-FORWARD and the filter canary.
func (env *renderEnv) filterStaticChains() []*ChainRules {
	b := &env.b
	var fwd []string
	// INVALID packets would otherwise reach endpoints un-NATed and be answered
	// with resets (kubernetes#74839), unless conntrack is liberal.
	if !env.opts.ConntrackTCPLiberal {
		fwd = append(fwd, b.reset().match("-m conntrack --ctstate INVALID").verdict("DROP").String())
	}
	fwd = append(fwd,
		b.reset().comment("kubernetes forwarding rules").match("-m mark --mark "+env.mark+"/"+env.mark).verdict("ACCEPT").String(),
		b.reset().comment("kubernetes forwarding conntrack rule").match("-m conntrack --ctstate RELATED,ESTABLISHED").verdict("ACCEPT").String(),
	)
	return []*ChainRules{{Name: topForward, Rules: fwd}, {Name: topCanary}}
}

// mangleChains is the mangle table: only the canary.
func mangleChains() []*ChainRules { return []*ChainRules{{Name: topCanary}} }

func (env *renderEnv) loopbackSetName() string {
	if env.family == IPv6 {
		return loopbackSetV6
	}
	return loopbackSetV4
}

// bootstrapJumps are the rules in built-in chains that lead into kproxy's chains:
// kube-proxy's set, in kube-proxy's order. Each is prepended in turn, so in the
// kernel a built-in chain holds them in reverse order, exactly as kube-proxy leaves
// them.
func bootstrapJumps() []Jump {
	newConn := []string{"-m", "conntrack", "--ctstate", "NEW"}
	const (
		portals    = "kubernetes service portals"
		external   = "kubernetes externally-visible service portals"
		healthPort = "kubernetes health check service ports"
		forwarding = "kubernetes forwarding rules"
		firewall   = "kubernetes load balancer firewall"
		postroute  = "kubernetes postrouting rules"
	)
	return []Jump{
		{Table: TableFilter, From: ChainInput, To: topExternalServices, Comment: external, Match: newConn},
		{Table: TableFilter, From: ChainForward, To: topExternalServices, Comment: external, Match: newConn},
		{Table: TableFilter, From: ChainInput, To: topNodePorts, Comment: healthPort},
		{Table: TableFilter, From: ChainForward, To: topServices, Comment: portals, Match: newConn},
		{Table: TableFilter, From: ChainOutput, To: topServices, Comment: portals, Match: newConn},
		{Table: TableFilter, From: ChainForward, To: topForward, Comment: forwarding},
		{Table: TableFilter, From: ChainInput, To: topFirewall, Comment: firewall, Match: newConn},
		{Table: TableFilter, From: ChainOutput, To: topFirewall, Comment: firewall, Match: newConn},
		{Table: TableFilter, From: ChainForward, To: topFirewall, Comment: firewall, Match: newConn},
		{Table: TableNAT, From: ChainOutput, To: topServices, Comment: portals},
		{Table: TableNAT, From: ChainPrerouting, To: topServices, Comment: portals},
		{Table: TableNAT, From: ChainPostrouting, To: topPostrouting, Comment: postroute},
	}
}
