package proxier

import (
	"fmt"
	"net/netip"
	"time"
)

// Protocol is a Service port's transport protocol.
type Protocol uint8

// The protocols kube-proxy programs. The zero value is deliberately invalid so that a
// forgotten assignment never silently means TCP.
const (
	ProtocolTCP Protocol = iota + 1
	ProtocolUDP
	ProtocolSCTP
)

// String returns the lower-case name iptables and ipset expect ("tcp", "udp", "sctp").
func (p Protocol) String() string {
	switch p {
	case ProtocolTCP:
		return "tcp"
	case ProtocolUDP:
		return "udp"
	case ProtocolSCTP:
		return "sctp"
	}
	return fmt.Sprintf("protocol(%d)", uint8(p))
}

// ServiceName identifies a Service, independent of its ports.
type ServiceName struct {
	Namespace string
	Name      string
}

// String returns "namespace/name", the form used in logs and rule comments.
func (n ServiceName) String() string { return n.Namespace + "/" + n.Name }

// ServicePortName identifies one port of a Service: kube-proxy programs each port of a
// Service independently, so this is the unit of the model and of change tracking.
type ServicePortName struct {
	ServiceName
	// Port is the port's name in the Service spec; empty for a single unnamed port.
	Port     string
	Protocol Protocol
}

// String returns "namespace/name:port/protocol"; the protocol is included because two
// ports of a Service may share a name only if their protocols differ.
func (n ServicePortName) String() string {
	return n.Namespace + "/" + n.Name + ":" + n.Port + "/" + n.Protocol.String()
}

// Compare orders names by namespace, name, port name, then protocol; rendered rulesets
// are sorted with it so their text is deterministic.
func (n ServicePortName) Compare(o ServicePortName) int {
	switch {
	case n.Namespace != o.Namespace:
		return cmpString(n.Namespace, o.Namespace)
	case n.Name != o.Name:
		return cmpString(n.Name, o.Name)
	case n.Port != o.Port:
		return cmpString(n.Port, o.Port)
	}
	return int(n.Protocol) - int(o.Protocol)
}

func cmpString(a, b string) int {
	if a < b {
		return -1
	}
	if a > b {
		return 1
	}
	return 0
}

// TrafficPolicy says which endpoints traffic of one kind (internal or external) may use.
type TrafficPolicy uint8

const (
	// PolicyCluster allows every usable endpoint in the cluster.
	PolicyCluster TrafficPolicy = iota
	// PolicyLocal allows only endpoints on this node; for external traffic it also
	// preserves the client's source address.
	PolicyLocal
)

// String returns "Cluster" or "Local", as the API spells them.
func (p TrafficPolicy) String() string {
	if p == PolicyLocal {
		return "Local"
	}
	return "Cluster"
}

// IPMode is how a load balancer delivers traffic to the node for one ingress IP.
type IPMode uint8

const (
	// IPModeVIP means the load balancer keeps the destination IP, so the node must
	// handle packets addressed to the ingress IP; this is kube-proxy's default.
	IPModeVIP IPMode = iota
	// IPModeProxy means the load balancer rewrites the destination to the node, so
	// traffic from inside the cluster to the ingress IP must go out to the load
	// balancer rather than being short-circuited to endpoints.
	IPModeProxy
)

// String returns "VIP" or "Proxy", as the API spells them.
func (m IPMode) String() string {
	if m == IPModeProxy {
		return "Proxy"
	}
	return "VIP"
}

// LoadBalancerIngress is one IP a cloud load balancer sends this Service's traffic to.
type LoadBalancerIngress struct {
	IP   netip.Addr
	Mode IPMode
}

// DefaultAffinityTimeout is the ClientIP session-affinity timeout the API defaults to
// (three hours); kept here so backends and tests agree without importing the API.
const DefaultAffinityTimeout = 10800 * time.Second

// ServicePort is the desired state of one port of one Service, with the endpoints that
// back it. It is immutable once it is part of a published State.
type ServicePort struct {
	Name ServicePortName

	// ClusterIPs holds at most one address per family, primary family first.
	ClusterIPs []netip.Addr
	// Port is the service port clients connect to.
	Port uint16
	// NodePort is 0 unless the Service is of type NodePort or LoadBalancer with node
	// ports allocated.
	NodePort uint16
	// ExternalIPs are the spec.externalIPs addresses, both families.
	ExternalIPs []netip.Addr
	// LoadBalancerIngress lists the status.loadBalancer.ingress IPs (hostnames are not
	// programmable and are dropped when the model is built).
	LoadBalancerIngress []LoadBalancerIngress
	// LoadBalancerSourceRanges restricts who may reach the load balancer IPs; empty
	// means everyone.
	LoadBalancerSourceRanges []netip.Prefix

	// AffinityTimeout is zero when session affinity is off, else the ClientIP
	// affinity timeout.
	AffinityTimeout time.Duration

	ExternalPolicy TrafficPolicy
	InternalPolicy TrafficPolicy
	// HealthCheckNodePort serves the endpoints-on-this-node health check for external
	// load balancers when ExternalPolicy is Local; 0 when there is none.
	HealthCheckNodePort uint16

	// Endpoints are every endpoint of this port from the Service's EndpointSlices
	// of its cluster IPs' families, de-duplicated and sorted by address then port. Use
	// CategorizeEndpoints to select the ones a packet may reach.
	Endpoints []Endpoint
}

// ExternallyAccessible reports whether any traffic from outside the cluster network can
// reach this port (node port, external IP or load balancer IP).
func (sp *ServicePort) ExternallyAccessible() bool {
	return sp.NodePort != 0 || len(sp.ExternalIPs) > 0 || sp.HasVIPIngress()
}

// HasVIPIngress reports whether some load balancer IP is delivered to the node with
// its destination intact; only those are programmed.
func (sp *ServicePort) HasVIPIngress() bool {
	for _, ing := range sp.LoadBalancerIngress {
		if ing.Mode == IPModeVIP {
			return true
		}
	}
	return false
}

// ExternalPolicyLocal reports whether external traffic is restricted to local endpoints;
// it is never true for a port that cannot be reached from outside.
func (sp *ServicePort) ExternalPolicyLocal() bool {
	return sp.ExternalPolicy == PolicyLocal && sp.ExternallyAccessible()
}

// InternalPolicyLocal reports whether cluster-internal traffic is restricted to local
// endpoints.
func (sp *ServicePort) InternalPolicyLocal() bool { return sp.InternalPolicy == PolicyLocal }

// UsesClusterEndpoints reports whether some traffic to this port may go to endpoints on
// any node.
func (sp *ServicePort) UsesClusterEndpoints() bool {
	return !sp.InternalPolicyLocal() || sp.ExternallyAccessible()
}

// UsesLocalEndpoints reports whether some traffic to this port is restricted to endpoints
// on this node.
func (sp *ServicePort) UsesLocalEndpoints() bool {
	return sp.InternalPolicyLocal() || sp.ExternalPolicyLocal()
}

// SessionAffinity reports whether ClientIP session affinity is on.
func (sp *ServicePort) SessionAffinity() bool { return sp.AffinityTimeout > 0 }

// ClusterIP returns the port's cluster IP of the given family (4 or 6), if any.
func (sp *ServicePort) ClusterIP(family IPFamily) (netip.Addr, bool) {
	for _, ip := range sp.ClusterIPs {
		if FamilyOf(ip) == family {
			return ip, true
		}
	}
	return netip.Addr{}, false
}

// Endpoint is one backend address of a service port as the EndpointSlices describe it.
type Endpoint struct {
	Addr netip.Addr
	Port uint16

	// Ready, Serving and Terminating are the EndpointSlice conditions; a nil Ready or
	// Serving in the API counts as true, a nil Terminating as false.
	Ready       bool
	Serving     bool
	Terminating bool

	// NodeName is where the endpoint runs; Local is NodeName == this node.
	NodeName string
	Local    bool
	Zone     string

	// ZoneHints and NodeHints are the topology hints the EndpointSlice controller set;
	// empty when it set none.
	ZoneHints []string
	NodeHints []string
}

// AddrPort returns the endpoint as one address:port value.
func (e *Endpoint) AddrPort() netip.AddrPort { return netip.AddrPortFrom(e.Addr, e.Port) }

// String returns "ip:port" ("[ip]:port" for IPv6).
func (e *Endpoint) String() string { return e.AddrPort().String() }

// Node is what the proxier needs to know about the node it runs on.
type Node struct {
	Name string
	// Addresses are the node's InternalIP and ExternalIP status addresses.
	Addresses []netip.Addr
	// Zone is the topology.kubernetes.io/zone label; empty when unset.
	Zone     string
	PodCIDRs []netip.Prefix
	// Deleting is set once the Node has a deletion timestamp; health checks then fail
	// so load balancers drain the node.
	Deleting bool
}

// IPFamily is 4 or 6. Backends such as iptables program each family separately.
type IPFamily uint8

// The two address families.
const (
	IPv4 IPFamily = 4
	IPv6 IPFamily = 6
)

// String returns "IPv4" or "IPv6", for logs and errors.
func (f IPFamily) String() string {
	switch f {
	case IPv4:
		return "IPv4"
	case IPv6:
		return "IPv6"
	}
	return fmt.Sprintf("IPFamily(%d)", uint8(f))
}

// FamilyOf returns the family of an address, treating IPv4-mapped IPv6 addresses as IPv6
// as the kernel does.
func FamilyOf(a netip.Addr) IPFamily {
	if a.Is4() {
		return IPv4
	}
	return IPv6
}
