package iptables

import (
	"context"
	"net/netip"
	"slices"

	"github.com/kproxy/kproxy/proxier"
	"github.com/kproxy/kproxy/proxier/conntrack"
)

// cleanConntrack deletes conntrack entries that the new rules would never create.
// A full sync reconciles every UDP/SCTP service port (and the ports of services
// deleted since the last applied state), like kube-proxy 1.36's reconciler; a partial
// sync only the changed ports whose endpoints could have left flows behind. Failures
// are logged and counted, never fatal: the next full sync tries again.
func (p *Proxier) cleanConntrack(ctx context.Context, state, prev *proxier.State, changes proxier.ChangeSet, full bool) int {
	if p.conntrack == nil {
		return 0
	}
	fam := p.family
	targets := conntrackTargets(state, prev, changes, full, fam)
	if len(targets) == 0 {
		return 0
	}
	n, err := p.conntrack.Clean(ctx, fam, targets)
	if p.metrics != nil {
		p.metrics.ConntrackEntriesCleared.Add(float64(n))
		if err != nil {
			p.metrics.ConntrackCleanupFailures.Inc()
		}
	}
	if err != nil {
		p.log.Error(err, "Failed to delete stale conntrack entries", "deleted", n)
	} else if n > 0 {
		p.log.V(2).Info("Deleted stale conntrack entries", "deleted", n, "targets", len(targets))
	}
	return n
}

// conntrackTargets lists the destinations to check. old may be nil (first sync).
func conntrackTargets(state, old *proxier.State, changes proxier.ChangeSet, full bool, fam proxier.IPFamily) []conntrack.Target {
	var out []conntrack.Target
	if full {
		for _, sp := range state.ServicePorts() {
			out = append(out, conntrack.TargetsFor(sp, fam)...)
		}
		if old != nil {
			for _, sp := range old.ServicePorts() {
				if _, ok := state.Lookup(sp.Name); !ok {
					out = append(out, conntrack.DeletedTargets(sp, fam)...)
				}
			}
		}
		return out
	}
	for name := range changes.Services {
		if !conntrack.Cleaned(name.Protocol) {
			continue
		}
		sp, _ := state.Lookup(name)
		var prev *proxier.ServicePort
		if old != nil {
			prev, _ = old.Lookup(name)
		}
		if !mayLeaveStaleFlows(prev, sp, fam) {
			continue
		}
		// Old destinations no longer served get no endpoints; destinations that
		// remain get the new endpoints (the Matcher merges both).
		out = append(out, conntrack.DeletedTargets(prev, fam)...)
		out = append(out, conntrack.TargetsFor(sp, fam)...)
	}
	return out
}

// mayLeaveStaleFlows reports whether a change from prev to sp (either may be nil) can
// leave conntrack entries that the new rules would not create: an endpoint stopped
// serving, a destination went away or appeared, or the port had no endpoints before
// (flows cached while it rejected traffic). A change that only adds endpoints to a
// port that already had some cannot.
func mayLeaveStaleFlows(prev, sp *proxier.ServicePort, fam proxier.IPFamily) bool {
	if prev == nil || sp == nil {
		return true
	}
	was, now := servingSet(prev, fam), servingSet(sp, fam)
	if len(was) == 0 && len(now) > 0 {
		return true
	}
	for ep := range was {
		if _, ok := now[ep]; !ok {
			return true
		}
	}
	pt, nt := conntrack.TargetsFor(prev, fam), conntrack.TargetsFor(sp, fam)
	return !slices.EqualFunc(pt, nt, func(a, b conntrack.Target) bool {
		return a.Protocol == b.Protocol && a.IP == b.IP && a.Port == b.Port
	})
}

// servingSet returns the serving endpoints of family as a set.
func servingSet(sp *proxier.ServicePort, fam proxier.IPFamily) map[netip.AddrPort]struct{} {
	m := map[netip.AddrPort]struct{}{}
	for i := range sp.Endpoints {
		ep := &sp.Endpoints[i]
		if (ep.Serving || ep.Ready) && proxier.FamilyOf(ep.Addr) == fam {
			m[ep.AddrPort()] = struct{}{}
		}
	}
	return m
}
