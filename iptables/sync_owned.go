package iptables

import "strings"

// ownedFixedChains are the top-level chains kproxy (and kube-proxy before it) creates
// under fixed names, per table.
var ownedFixedChains = map[Table]map[Chain]bool{
	TableNAT: {
		"KUBE-SERVICES": true, "KUBE-NODEPORTS": true, "KUBE-POSTROUTING": true,
		"KUBE-MARK-MASQ": true, "KUBE-MARK-DROP": true, "KUBE-PROXY-CANARY": true,
	},
	TableFilter: {
		"KUBE-SERVICES": true, "KUBE-EXTERNAL-SERVICES": true, "KUBE-FORWARD": true,
		"KUBE-NODEPORTS": true, "KUBE-PROXY-FIREWALL": true, "KUBE-PROXY-CANARY": true,
	},
	TableMangle: {
		"KUBE-PROXY-CANARY": true,
	},
}

// ownedChainPrefixes are the per-service chain families: kube-proxy's hash-named
// chains (kproxy's dispatch tree among them) and older kproxy versions' dispatch tree.
var ownedChainPrefixes = []string{clusterChainPrefix, localChainPrefix, externalChainPrefix, firewallChainPrefix,
	endpointListPrefix, legacyDispatchPrefix}

// canaryChain is created empty in mangle, nat and filter; its absence after it was
// written means someone flushed the tables behind our back.
const canaryChain Chain = "KUBE-PROXY-CANARY"

// OwnedChain reports whether chain in table belongs to the iptables proxier: it is
// created, rewritten and deleted by Sync, and deleted by Cleanup, whoever created it.
// Taking over kube-proxy's names is deliberate: a node switched from kube-proxy to
// kproxy converges without a reboot, and stale kube-proxy chains (KUBE-SEP-*, chains of
// deleted Services) are removed by the first full sync.
//
// Everything else is foreign and never touched: kubelet's KUBE-KUBELET-CANARY,
// KUBE-IPTABLES-HINT and KUBE-FIREWALL, CNI and Docker chains, built-in chains (only
// the individual bootstrap rules in them that jump to owned chains are ours).
func OwnedChain(table Table, chain Chain) bool {
	s := string(chain)
	if !strings.HasPrefix(s, "KUBE-") {
		return false
	}
	if table == TableNAT || table == TableFilter {
		for _, p := range ownedChainPrefixes {
			if strings.HasPrefix(s, p) {
				return true
			}
		}
	}
	return ownedFixedChains[table][chain]
}

// builtinChain reports whether chain is one of the kernel's built-in chains.
func builtinChain(chain Chain) bool {
	switch chain {
	case ChainPrerouting, ChainInput, ChainForward, ChainOutput, ChainPostrouting:
		return true
	}
	return false
}

// syncTables are the tables the proxier reads and writes, in payload order: nat first,
// because a failure there (the biggest, most complex block) then leaves every table as
// it was; see applyPlan.
var syncTables = []Table{TableNAT, TableFilter, TableMangle}
