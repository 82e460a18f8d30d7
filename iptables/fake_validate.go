package iptables

import (
	"maps"
	"slices"
)

// targetLimit restricts where a target may be used. The kernel enforces
// both parts: the table when the rule is added, the hooks whenever a rule
// makes the target reachable from a built-in chain it does not support.
type targetLimit struct {
	table Table
	hooks []Chain
}

// targetLimits lists the restricted targets kube-proxy-style rulesets use.
var targetLimits = map[string]targetLimit{
	"MASQUERADE": {TableNAT, []Chain{ChainPostrouting}},
	"SNAT":       {TableNAT, []Chain{ChainPostrouting, ChainInput}},
	"DNAT":       {TableNAT, []Chain{ChainPrerouting, ChainOutput}},
	"REDIRECT":   {TableNAT, []Chain{ChainPrerouting, ChainOutput}},
	"REJECT":     {TableFilter, []Chain{ChainInput, ChainForward, ChainOutput}},
}

// knownTargets are the standard verdicts and the unrestricted extension
// targets the Fake accepts. Any other -j/-g argument must name a user
// chain of the same table.
var knownTargets = map[string]bool{
	"ACCEPT": true, "DROP": true, "RETURN": true, "QUEUE": true, "NFQUEUE": true,
	"MARK": true, "CONNMARK": true, "LOG": true, "NFLOG": true, "TCPMSS": true,
	"CLASSIFY": true, "DSCP": true, "TOS": true, "TTL": true, "HL": true,
	"AUDIT": true, "CHECKSUM": true, "SECMARK": true, "CONNSECMARK": true, "TRACE": true,
	"SET": true, "IDLETIMER": true, "LED": true, "NETMAP": true, "TEE": true,
	"SYNPROXY": true, "NOTRACK": true, "CT": true, "TPROXY": true, "TCPOPTSTRIP": true,
}

// validateGraph performs the checks the kernel makes when a table is
// committed, on the table as it is at COMMIT:
//
//   - restricted targets must be in their table (legacy checks the final
//     table; for nft see tableTx.misplaced);
//   - walking from every built-in chain, restricted targets must only be
//     reachable from hooks they support, and no chain may be reachable
//     from itself. Chains no built-in chain reaches are not checked (an
//     unreachable loop is accepted). Legacy's walk (ip_tables'
//     mark_source_chains) follows control flow and stops at an
//     unconditional ACCEPT, DROP, RETURN or QUEUE, so rules after one are
//     never checked; nf_tables validates every rule of a reachable chain.
func (tx *tableTx) validateGraph() *restoreFailure {
	const (
		unvisited = iota
		onStack
		done
	)
	if len(tx.misplaced) > 0 {
		names := slices.Sorted(maps.Keys(tx.misplaced))
		return tx.misplaced[names[0]]
	}
	for _, c := range tx.t.chains {
		for _, r := range c.rules {
			if lim, ok := targetLimits[r.target]; ok && !r.jump && lim.table != tx.t.name {
				return failf(exitOtherProblem, "target %s in chain %s is only valid in the %s table, not %s", r.target, c.name, lim.table, tx.t.name)
			}
		}
	}
	flowSensitive := tx.backend == BackendLegacy
	for _, hook := range builtinChains[tx.t.name] {
		state := map[Chain]int{}
		var visit func(c *fakeChain) *restoreFailure
		visit = func(c *fakeChain) *restoreFailure {
			state[c.name] = onStack
			for _, r := range c.rules {
				if lim, ok := targetLimits[r.target]; ok && !r.jump && !slices.Contains(lim.hooks, hook) {
					return failf(exitOtherProblem, "target %s in chain %s is reachable from %s, where it is not valid", r.target, c.name, hook)
				}
				if flowSensitive && unconditionalVerdicts[r.spec] {
					break
				}
				if !r.jump {
					continue
				}
				next := tx.t.chains[Chain(r.target)]
				switch state[next.name] {
				case onStack:
					return failf(exitOtherProblem, "loop: chain %s jumps back to %s (reachable from %s)", c.name, next.name, hook)
				case unvisited:
					if err := visit(next); err != nil {
						return err
					}
				}
			}
			state[c.name] = done
			return nil
		}
		if err := visit(tx.t.chains[hook]); err != nil {
			return err
		}
	}
	return nil
}

// unconditionalVerdicts are the rule specs after which ip_tables considers
// the rest of a chain unreachable.
var unconditionalVerdicts = map[string]bool{"-j ACCEPT": true, "-j DROP": true, "-j RETURN": true, "-j QUEUE": true}
