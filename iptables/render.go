package iptables

import (
	"slices"

	"github.com/kproxy/kproxy/proxier"
)

// Render turns a State into the complete ruleset of one IP family. It is pure and
// deterministic: the same state and options always give the same chains, rules and
// set entries, in the same order.
//
// The layout is kube-proxy's (same chain names and hashes, same rules in nat
// KUBE-SVC-/KUBE-SVL-/KUBE-EXT-/KUBE-FW- and in the filter chains) with two changes
// for speed: endpoints are DNAT rules inside KUBE-SVC-/KUBE-SVL- instead of one
// KUBE-SEP- chain each, and the per-destination rules of the top-level chains are laid
// out as a dispatch tree of KUBE-SVC-DST- chains (see dispatcher). In short:
//
//	nat    KUBE-SERVICES      tree of "-d IP -p P --dport N -j KUBE-SVC-/SVL-/EXT-/FW-",
//	                          then the jump(s) to KUBE-NODEPORTS
//	       KUBE-NODEPORTS     tree (by protocol and port) of "--dport N -j KUBE-EXT-"
//	       KUBE-SVC-, -SVL-   cluster-IP masquerade, affinity rules, balancing DNATs
//	       KUBE-EXT-          masquerade, or the Local-policy short-circuits; KUBE-SVC-/SVL-
//	       KUBE-FW-           allowed sources to KUBE-EXT-
//	       KUBE-POSTROUTING   hairpin (KUBE-LOOP-BACK set), mark check, MASQUERADE
//	       KUBE-MARK-MASQ, KUBE-PROXY-CANARY
//	filter KUBE-SERVICES, KUBE-EXTERNAL-SERVICES, KUBE-PROXY-FIREWALL (trees of
//	       REJECT/DROP rules), KUBE-NODEPORTS (health checks), KUBE-FORWARD,
//	       KUBE-PROXY-CANARY
//	mangle KUBE-PROXY-CANARY
//
// The KUBE-LOOP-BACK (KUBE-6-LOOP-BACK) ipset in Sets must exist before the payload
// is restored.
func Render(state *proxier.State, opts RenderOptions) *Ruleset {
	return NewRenderer(opts).Render(state, proxier.FullSync())
}

// Renderer renders successive States incrementally for the sync path: it re-renders
// only the service ports named in a ChangeSet and the dispatch chains on their paths,
// and shares every unchanged *ChainRules (and the set entries, when unchanged) with
// the Ruleset it returned before. Its result always equals Render's for the same
// state. A Renderer is not safe for concurrent use.
type Renderer struct {
	opts RenderOptions
	env  *renderEnv // nil until the first render; rebuilt when the node changes

	frags map[proxier.ServicePortName]*serviceFragment
	disp  [numDispatchRoots]*dispatcher
	loop  loopbackSet
	// nodePortTail ends nat KUBE-SERVICES; it depends on the node only.
	nodePortTail []string

	prev   *Ruleset
	jumps  []Jump
	mangle []*ChainRules
}

// NewRenderer returns a Renderer with fixed options.
func NewRenderer(opts RenderOptions) *Renderer {
	return &Renderer{opts: opts.normalized(), jumps: bootstrapJumps(), mangle: mangleChains()}
}

// Render returns the ruleset for state. changes names the service ports that differ
// from the state of the previous call; a full change set, the first call and a
// change of the Node re-render everything. A service port named in changes whose
// *ServicePort pointer is the one rendered before is not rendered again.
func (r *Renderer) Render(state *proxier.State, changes proxier.ChangeSet) *Ruleset {
	full := r.prev == nil || changes.Full || !r.env.node.Equal(&state.Node)
	var pend pending
	if full {
		r.reset(state.Node)
		for _, sp := range state.ServicePorts() {
			r.update(sp.Name, sp, &pend)
		}
	} else {
		names := make([]proxier.ServicePortName, 0, len(changes.Services))
		for name := range changes.Services {
			names = append(names, name)
		}
		slices.SortFunc(names, proxier.ServicePortName.Compare)
		for _, name := range names {
			sp, _ := state.Lookup(name)
			if old := r.frags[name]; (old == nil && sp == nil) || (old != nil && old.sp == sp) {
				continue
			}
			r.update(name, sp, &pend)
		}
	}
	return r.assemble(full, &pend)
}

// reset forgets everything rendered so far.
func (r *Renderer) reset(node proxier.Node) {
	r.env = newRenderEnv(r.opts, node)
	r.frags = map[proxier.ServicePortName]*serviceFragment{}
	leaf := r.opts.DispatchLeafSize
	addr := keyIPv4
	if r.opts.Family == IPv6 {
		addr = keyIPv6
	}
	r.disp = [numDispatchRoots]*dispatcher{
		rootNatServices:     newDispatcher(TableNAT, topServices, addr, leaf),
		rootNatNodePorts:    newDispatcher(TableNAT, topNodePorts, keyPort, leaf),
		rootFilterServices:  newDispatcher(TableFilter, topServices, addr, leaf),
		rootFilterExternal:  newDispatcher(TableFilter, topExternalServices, addr, leaf),
		rootFilterExtPorts:  newDispatcher(TableFilter, topExternalServices, keyPort, leaf),
		rootFilterFirewall:  newDispatcher(TableFilter, topFirewall, addr, leaf),
		rootFilterNodePorts: newDispatcher(TableFilter, topNodePorts, keyPort, leaf),
	}
	r.loop = loopbackSet{refs: map[string]int{}}
	r.nodePortTail = r.env.nodePortJumps()
	r.prev = nil
}

// pending collects the chains a render changed, per table.
type pending struct {
	upserts [2][]*ChainRules // nat, filter
	removed [2][]Chain
}

func tableIndex(t Table) int {
	if t == TableFilter {
		return 1
	}
	return 0
}

// update re-renders one service port (sp nil: deleted) and records what changed.
func (r *Renderer) update(name proxier.ServicePortName, sp *proxier.ServicePort, pend *pending) {
	old := r.frags[name]
	var nf *serviceFragment
	if sp != nil {
		nf = r.env.renderService(sp)
		r.frags[name] = nf
	} else {
		delete(r.frags, name)
	}
	oldChains, oldContribs, oldLoop := fragmentParts(old)
	newChains, newContribs, newLoop := fragmentParts(nf)

	// Own chains: keep the old pointer when a chain did not change.
	for i, c := range newChains {
		if j := slices.IndexFunc(oldChains, func(o *ChainRules) bool { return o.Name == c.Name }); j >= 0 && oldChains[j].Equal(c) {
			newChains[i] = oldChains[j]
			continue
		}
		pend.upserts[0] = append(pend.upserts[0], c)
	}
	for _, o := range oldChains {
		if !slices.ContainsFunc(newChains, func(c *ChainRules) bool { return c.Name == o.Name }) {
			pend.removed[0] = append(pend.removed[0], o.Name)
		}
	}

	// Shared chains: dispatchers compare rules and ignore what did not change.
	for _, c := range oldContribs {
		if !slices.ContainsFunc(newContribs, func(n fragmentContrib) bool { return n.root == c.root && n.key == c.key }) {
			r.disp[c.root].remove(name, c.key)
		}
	}
	for _, c := range newContribs {
		r.disp[c.root].set(name, c.key, c.rules)
	}
	r.loop.update(oldLoop, newLoop)
}

func fragmentParts(f *serviceFragment) ([]*ChainRules, []fragmentContrib, []string) {
	if f == nil {
		return nil, nil, nil
	}
	return f.chains, f.contribs, f.loopback
}
