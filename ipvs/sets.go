package ipvs

import (
	"cmp"
	"net/netip"
	"strconv"
	"strings"

	"github.com/kproxy/kproxy/proxier"
)

// SetType is an ipset type, spelled as ipset(8) spells it.
type SetType string

// The ipset types IPVS mode uses.
const (
	// HashIP holds addresses: KUBE-IPVS-IPS, every address bound to kube-ipvs0.
	HashIP SetType = "hash:ip"
	// HashIPPort holds address, protocol and port: service addresses.
	HashIPPort SetType = "hash:ip,port"
	// HashIPPortIP adds a second address: endpoint hairpin and LB source-IP rules.
	HashIPPortIP SetType = "hash:ip,port,ip"
	// HashIPPortNet adds a source prefix: loadBalancerSourceRanges.
	HashIPPortNet SetType = "hash:ip,port,net"
	// BitmapPort holds bare ports 0-65535: node ports. It has no address family.
	BitmapPort SetType = "bitmap:port"
)

// Set limits, kube-proxy's, so that sets it created are reused unchanged after a swap.
const (
	setHashSize = 1024
	setMaxElem  = 65536
)

// SetEntry is one ipset member. Which fields are used depends on the set's type:
// HashIP uses IP; HashIPPort IP, Protocol and Port; HashIPPortIP adds IP2;
// HashIPPortNet adds Net; BitmapPort uses Port only. It is comparable, so sets are
// plain Go maps.
type SetEntry struct {
	IP       netip.Addr
	Protocol proxier.Protocol
	Port     uint16
	IP2      netip.Addr
	Net      netip.Prefix
}

// String returns the member the way `ipset save` prints it: "30080",
// "10.96.0.1,tcp:443", "10.244.1.5,tcp:8080,10.244.1.5" or "1.2.3.4,tcp:80,10.0.0.0/8".
func (e SetEntry) String() string {
	if !e.IP.IsValid() {
		return strconv.Itoa(int(e.Port))
	}
	var b strings.Builder
	b.WriteString(e.IP.String())
	if e.Protocol != 0 {
		b.WriteByte(',')
		b.WriteString(e.Protocol.String())
		b.WriteByte(':')
		b.WriteString(strconv.Itoa(int(e.Port)))
	}
	if e.IP2.IsValid() {
		b.WriteByte(',')
		b.WriteString(e.IP2.String())
	}
	if e.Net.IsValid() {
		b.WriteByte(',')
		b.WriteString(e.Net.String())
	}
	return b.String()
}

// Compare orders entries deterministically.
func (e SetEntry) Compare(o SetEntry) int {
	if c := e.IP.Compare(o.IP); c != 0 {
		return c
	}
	if c := cmp.Compare(e.Protocol, o.Protocol); c != 0 {
		return c
	}
	if c := cmp.Compare(e.Port, o.Port); c != 0 {
		return c
	}
	if c := e.IP2.Compare(o.IP2); c != 0 {
		return c
	}
	if c := e.Net.Addr().Compare(o.Net.Addr()); c != 0 {
		return c
	}
	return cmp.Compare(e.Net.Bits(), o.Net.Bits())
}

// fits reports whether the entry has exactly the fields a set of type t and family f
// stores, the check the kernel makes when a member is added.
func (e SetEntry) fits(t SetType, f proxier.IPFamily) bool {
	famOK := func(a netip.Addr) bool { return a.IsValid() && proxier.FamilyOf(a) == f }
	portOK := e.Protocol == proxier.ProtocolTCP || e.Protocol == proxier.ProtocolUDP || e.Protocol == proxier.ProtocolSCTP
	switch t {
	case HashIP:
		return famOK(e.IP) && e.Protocol == 0 && e.Port == 0 && !e.IP2.IsValid() && !e.Net.IsValid()
	case HashIPPort:
		return famOK(e.IP) && portOK && !e.IP2.IsValid() && !e.Net.IsValid()
	case HashIPPortIP:
		return famOK(e.IP) && portOK && famOK(e.IP2) && !e.Net.IsValid()
	case HashIPPortNet:
		return famOK(e.IP) && portOK && !e.IP2.IsValid() && e.Net.IsValid() && famOK(e.Net.Addr()) &&
			e.Net == e.Net.Masked()
	case BitmapPort:
		return !e.IP.IsValid() && e.Protocol == 0 && !e.IP2.IsValid() && !e.Net.IsValid()
	}
	return false
}

// SetSpec describes one ipset kproxy owns.
type SetSpec struct {
	Name string
	Type SetType
	// Family is the family of the set's addresses; bitmap:port sets have none, but are
	// still owned by one family's proxier.
	Family proxier.IPFamily
	// Comment says what the set is for; the iptables rules matching it carry it.
	Comment string
}

// setKind identifies one of the sets IPVS mode uses, independent of the family.
type setKind int

// The sets, in the order kube-proxy declares them.
const (
	setLoopBack setKind = iota
	setClusterIP
	setExternalIP
	setExternalIPLocal
	setLoadBalancer
	setLoadBalancerFW
	setLoadBalancerLocal
	setLoadBalancerSourceIP
	setLoadBalancerSourceCIDR
	setNodePortTCP
	setNodePortLocalTCP
	setNodePortUDP
	setNodePortLocalUDP
	setNodePortSCTP
	setNodePortLocalSCTP
	setHealthCheckNodePort
	setIPVSIPs
	numSets
)

// setDefs are kube-proxy's IPv4 names, types and comments. IPv6 names replace the
// "KUBE-" prefix by "KUBE-6-", as kube-proxy does, so both families coexist.
var setDefs = [numSets]struct {
	name    string
	typ     SetType
	comment string
}{
	setLoopBack:               {"KUBE-LOOP-BACK", HashIPPortIP, "Kubernetes endpoints dst ip:port, source ip for solving hairpin purpose"},
	setClusterIP:              {"KUBE-CLUSTER-IP", HashIPPort, "Kubernetes service cluster ip + port for masquerade purpose"},
	setExternalIP:             {"KUBE-EXTERNAL-IP", HashIPPort, "Kubernetes service external ip + port for masquerade and filter purpose"},
	setExternalIPLocal:        {"KUBE-EXTERNAL-IP-LOCAL", HashIPPort, "Kubernetes service external ip + port with externalTrafficPolicy=local"},
	setLoadBalancer:           {"KUBE-LOAD-BALANCER", HashIPPort, "Kubernetes service lb portal"},
	setLoadBalancerFW:         {"KUBE-LOAD-BALANCER-FW", HashIPPort, "Kubernetes service load balancer ip + port for load balancer with sourceRange"},
	setLoadBalancerLocal:      {"KUBE-LOAD-BALANCER-LOCAL", HashIPPort, "Kubernetes service load balancer ip + port with externalTrafficPolicy=local"},
	setLoadBalancerSourceIP:   {"KUBE-LOAD-BALANCER-SOURCE-IP", HashIPPortIP, "Kubernetes service load balancer ip + port + source IP for packet filter purpose"},
	setLoadBalancerSourceCIDR: {"KUBE-LOAD-BALANCER-SOURCE-CIDR", HashIPPortNet, "Kubernetes service load balancer ip + port + source cidr for packet filter purpose"},
	setNodePortTCP:            {"KUBE-NODE-PORT-TCP", BitmapPort, "Kubernetes nodeport TCP port for masquerade purpose"},
	setNodePortLocalTCP:       {"KUBE-NODE-PORT-LOCAL-TCP", BitmapPort, "Kubernetes nodeport TCP port with externalTrafficPolicy=local"},
	setNodePortUDP:            {"KUBE-NODE-PORT-UDP", BitmapPort, "Kubernetes nodeport UDP port for masquerade purpose"},
	setNodePortLocalUDP:       {"KUBE-NODE-PORT-LOCAL-UDP", BitmapPort, "Kubernetes nodeport UDP port with externalTrafficPolicy=local"},
	setNodePortSCTP:           {"KUBE-NODE-PORT-SCTP-HASH", HashIPPort, "Kubernetes nodeport SCTP port for masquerade purpose with type 'hash ip:port'"},
	setNodePortLocalSCTP:      {"KUBE-NODE-PORT-LOCAL-SCTP-HASH", HashIPPort, "Kubernetes nodeport SCTP port with externalTrafficPolicy=local with type 'hash ip:port'"},
	setHealthCheckNodePort:    {"KUBE-HEALTH-CHECK-NODE-PORT", BitmapPort, "Kubernetes health check node port"},
	setIPVSIPs:                {"KUBE-IPVS-IPS", HashIP, "Addresses on the ipvs interface"},
}

// maxSetName is the longest ipset name the kernel accepts (IPSET_MAXNAMELEN - 1).
const maxSetName = 31

// setNames holds the per-family set names, computed once. Like kube-proxy, IPv6 names
// longer than the kernel allows are truncated ("KUBE-6-LOAD-BALANCER-SOURCE-CID").
var setNames = func() (n [2][numSets]string) {
	for k := range numSets {
		n[0][k] = setDefs[k].name
		v6 := "KUBE-6-" + strings.TrimPrefix(setDefs[k].name, "KUBE-")
		n[1][k] = v6[:min(len(v6), maxSetName)]
	}
	return n
}()

// setName returns the name of set k for family f.
func setName(f proxier.IPFamily, k setKind) string {
	if f == proxier.IPv6 {
		return setNames[1][k]
	}
	return setNames[0][k]
}

// Sets returns the specs of every ipset the proxier of family f owns, in kube-proxy's
// order. Cleanup destroys exactly these.
func Sets(f proxier.IPFamily) []SetSpec {
	out := make([]SetSpec, numSets)
	for k := range numSets {
		out[k] = SetSpec{Name: setName(f, k), Type: setDefs[k].typ, Family: f, Comment: setDefs[k].comment}
	}
	return out
}

// nodePortSets returns the node port set and its Local variant for a protocol.
func nodePortSets(p proxier.Protocol) (all, local setKind) {
	switch p {
	case proxier.ProtocolUDP:
		return setNodePortUDP, setNodePortLocalUDP
	case proxier.ProtocolSCTP:
		return setNodePortSCTP, setNodePortLocalSCTP
	}
	return setNodePortTCP, setNodePortLocalTCP
}
