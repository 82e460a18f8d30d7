package proxier

import "slices"

// Equal reports whether two service ports describe the same desired state. The Builder
// uses it to drop changes that cancel out before a backend ever sees them.
func (sp *ServicePort) Equal(o *ServicePort) bool {
	if sp == o {
		return true
	}
	if sp == nil || o == nil {
		return false
	}
	return sp.Name == o.Name &&
		sp.Port == o.Port &&
		sp.NodePort == o.NodePort &&
		sp.AffinityTimeout == o.AffinityTimeout &&
		sp.ExternalPolicy == o.ExternalPolicy &&
		sp.InternalPolicy == o.InternalPolicy &&
		sp.HealthCheckNodePort == o.HealthCheckNodePort &&
		slices.Equal(sp.ClusterIPs, o.ClusterIPs) &&
		slices.Equal(sp.ExternalIPs, o.ExternalIPs) &&
		slices.Equal(sp.LoadBalancerIngress, o.LoadBalancerIngress) &&
		slices.Equal(sp.LoadBalancerSourceRanges, o.LoadBalancerSourceRanges) &&
		slices.EqualFunc(sp.Endpoints, o.Endpoints, func(a, b Endpoint) bool { return a.Equal(&b) })
}

// Equal reports whether two endpoints are the same in every field.
func (e *Endpoint) Equal(o *Endpoint) bool {
	return e.Addr == o.Addr && e.Port == o.Port &&
		e.Ready == o.Ready && e.Serving == o.Serving && e.Terminating == o.Terminating &&
		e.NodeName == o.NodeName && e.Local == o.Local && e.Zone == o.Zone &&
		slices.Equal(e.ZoneHints, o.ZoneHints) && slices.Equal(e.NodeHints, o.NodeHints)
}

// Equal reports whether two node descriptions are the same.
func (n *Node) Equal(o *Node) bool {
	return n.Name == o.Name && n.Zone == o.Zone && n.Deleting == o.Deleting &&
		slices.Equal(n.Addresses, o.Addresses) && slices.Equal(n.PodCIDRs, o.PodCIDRs)
}
