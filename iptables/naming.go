package iptables

import (
	"crypto/sha256"
	"encoding/base32"

	"github.com/kproxy/kproxy/proxier"
)

// Chains with fixed names. They are kube-proxy's names, so a node switched from
// kube-proxy to kproxy rewrites the same chains instead of leaving a second set behind.
const (
	topServices         Chain = "KUBE-SERVICES"
	topExternalServices Chain = "KUBE-EXTERNAL-SERVICES"
	topNodePorts        Chain = "KUBE-NODEPORTS"
	topPostrouting      Chain = "KUBE-POSTROUTING"
	topMarkMasq         Chain = "KUBE-MARK-MASQ"
	topForward          Chain = "KUBE-FORWARD"
	topFirewall         Chain = "KUBE-PROXY-FIREWALL"
	topCanary           Chain = "KUBE-PROXY-CANARY"
)

// Prefixes of the hash-named chains. The per-service ones are kube-proxy's.
//
// KUBE-SVC-DST- is kproxy's dispatch tree (see dispatch.go). It sits under kube-proxy's
// KUBE-SVC- prefix on purpose: kube-proxy flushes and deletes every KUBE-SVC- chain it
// does not program itself, so a node rolled back from kproxy to kube-proxy loses the
// dispatch chains in kube-proxy's first sync. Under a prefix kube-proxy does not know,
// they would survive, still jumping to per-service chains, and kube-proxy's deletion
// of any such chain would fail its whole restore. The "-" after DST can never appear
// in a 16-character hash, so the names cannot collide with a service chain's.
const (
	clusterChainPrefix  = "KUBE-SVC-"
	localChainPrefix    = "KUBE-SVL-"
	externalChainPrefix = "KUBE-EXT-"
	firewallChainPrefix = "KUBE-FW-"
	endpointListPrefix  = "KUBE-SEP-"
	dispatchChainPrefix = "KUBE-SVC-DST-"
	// legacyDispatchPrefix named the dispatch chains of kproxy before v0.2; they are
	// still owned, so that an upgrade deletes them.
	legacyDispatchPrefix = "KUBE-DST-"
)

// Names of the hairpin ipsets, as kube-proxy's IPVS mode names them.
const (
	loopbackSetV4   = "KUBE-LOOP-BACK"
	loopbackSetV6   = "KUBE-6-LOOP-BACK"
	loopbackSetType = "hash:ip,port,ip"
)

// upstreamPortName is how kube-proxy prints a service port in chain hashes and rule
// comments: "namespace/name:port", or "namespace/name" for an unnamed port. The
// protocol is not part of it (it is hashed separately).
func upstreamPortName(n proxier.ServicePortName) string {
	s := n.Namespace + "/" + n.Name
	if n.Port != "" {
		s += ":" + n.Port
	}
	return s
}

// nameHash is kube-proxy's chain-name hash: the first 16 characters of the base32
// SHA-256 of the input. Chain names must stay within 28 characters.
func nameHash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return base32.StdEncoding.EncodeToString(sum[:])[:16]
}

// serviceChains are the per-service-port chain names, all derived from one hash of
// the port name and protocol, exactly as kube-proxy derives them.
type serviceChains struct {
	cluster  Chain // KUBE-SVC-: endpoints for Cluster traffic policy
	local    Chain // KUBE-SVL-: endpoints on this node, for Local traffic policy
	external Chain // KUBE-EXT-: entry point of external traffic
	firewall Chain // KUBE-FW-: loadBalancerSourceRanges filter
}

// chainsFor names the chains of the service port whose upstream name is portName.
func chainsFor(portName string, proto proxier.Protocol) serviceChains {
	h := nameHash(portName + proto.String())
	return serviceChains{
		cluster:  Chain(clusterChainPrefix + h),
		local:    Chain(localChainPrefix + h),
		external: Chain(externalChainPrefix + h),
		firewall: Chain(firewallChainPrefix + h),
	}
}

// affinityListName names the -m recent list that remembers clients of one endpoint.
// It is the name of the KUBE-SEP- chain kube-proxy would create for the endpoint, and
// kube-proxy uses that chain name as the list name too, so session affinity survives
// a switch between the two. kproxy creates no such chain.
func affinityListName(portName string, proto proxier.Protocol, endpoint string) string {
	return endpointListPrefix + nameHash(portName+proto.String()+endpoint)
}

// dispatchChainName names the dispatch chain for one address (or port) prefix under
// one top-level chain. The table and the root are hashed in, so trees under different
// roots never share chains.
func dispatchChainName(table Table, root Chain, prefix string) Chain {
	// 15 hash characters keep the name within iptables' 28.
	return Chain(dispatchChainPrefix + nameHash(string(table) + " " + string(root) + " " + prefix)[:15])
}

// EndpointChains returns the names of the chains that hold a service port's DNAT rules:
// KUBE-SVC- (cluster endpoints) and KUBE-SVL- (local endpoints). Tools that read a ruleset
// back, such as kproxy trace, use them to tell which service a DNAT rule belongs to;
// the rules themselves carry no per-endpoint comment.
func EndpointChains(name proxier.ServicePortName) (cluster, local Chain) {
	c := chainsFor(upstreamPortName(name), name.Protocol)
	return c.cluster, c.local
}
