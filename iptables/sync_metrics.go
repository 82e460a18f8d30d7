package iptables

import (
	"github.com/kproxy/kproxy/proxier"
)

// noLocalEndpoints records which traffic of a service port is dropped for want of a
// local endpoint (a Local policy, endpoints elsewhere, none here).
type noLocalEndpoints struct {
	internal, external bool
}

// noLocalFor computes the flags the way kube-proxy counts them: only ports that have
// endpoints somewhere (otherwise traffic is rejected, not dropped).
func noLocalFor(sp *proxier.ServicePort, node *proxier.Node) noLocalEndpoints {
	if !sp.UsesLocalEndpoints() {
		return noLocalEndpoints{}
	}
	sel := proxier.CategorizeEndpoints(sp, node)
	if !sel.HasAny || len(sel.Local) > 0 {
		return noLocalEndpoints{}
	}
	return noLocalEndpoints{internal: sp.InternalPolicyLocal(), external: sp.ExternalPolicyLocal()}
}

// updateMetrics publishes the rule counts and the no-local-endpoints gauges after a
// successful sync. The per-service flags are recomputed only for changed services on
// a partial sync (the node, which they also depend on, changes only with a full one).
func (p *Proxier) updateMetrics(rs *Ruleset, pl *plan, state *proxier.State, changes proxier.ChangeSet, full bool) {
	if full {
		clear(p.noLocal)
		for _, sp := range state.ServicePorts() {
			if f := noLocalFor(sp, &state.Node); f != (noLocalEndpoints{}) {
				p.noLocal[sp.Name] = f
			}
		}
	} else {
		for name := range changes.Services {
			delete(p.noLocal, name)
			if sp, ok := state.Lookup(name); ok {
				if f := noLocalFor(sp, &state.Node); f != (noLocalEndpoints{}) {
					p.noLocal[name] = f
				}
			}
		}
	}
	m := p.metrics
	if m == nil {
		return
	}
	var internal, external int
	for _, f := range p.noLocal {
		if f.internal {
			internal++
		}
		if f.external {
			external++
		}
	}
	m.NoLocalEndpoints.WithLabelValues("internal").Set(float64(internal))
	m.NoLocalEndpoints.WithLabelValues("external").Set(float64(external))

	written := map[Table]int{}
	for _, tp := range pl.tables {
		written[tp.table] = tp.rules()
	}
	for _, t := range syncTables {
		total := 0
		if tr := rs.Table(t); tr != nil {
			for _, c := range tr.Chains {
				total += len(c.Rules)
			}
		}
		m.RulesTotal.WithLabelValues(string(t)).Set(float64(total))
		m.RulesLast.WithLabelValues(string(t)).Set(float64(written[t]))
	}
}
