package proxier

import "slices"

// Selection is the outcome of endpoint selection for one service port on this node.
type Selection struct {
	// Cluster are the endpoints traffic under the Cluster policy may use, after
	// topology filtering and the terminating fallback. Nil when no traffic to the
	// port uses the Cluster policy.
	Cluster []*Endpoint
	// Local are the endpoints on this node that traffic under the Local policy may use.
	// Nil when no traffic uses the Local policy.
	Local []*Endpoint
	// AllReachable is the union of Cluster and Local: every endpoint some packet may be
	// sent to from this node, e.g. for conntrack cleanup and hairpin rules.
	AllReachable []*Endpoint
	// HasAny reports whether the port has any usable endpoint anywhere in the cluster;
	// when false, traffic is rejected rather than dropped.
	HasAny bool
}

// topologyMode says which topology hints, if any, filter the cluster endpoints.
type topologyMode uint8

const (
	topologyNone topologyMode = iota
	topologySameNode
	topologySameZone
)

// CategorizeEndpoints selects the endpoints of sp that this node may send traffic to,
// following kube-proxy:
//
//   - Only ready endpoints are used; serving-but-terminating ones are a fallback used
//     only when no ready one remains (separately for cluster and local traffic).
//   - Topology hints narrow the cluster endpoints, same-node hints first, then same-zone
//     hints, and only when every ready endpoint carries hints of that kind and at least
//     one is meant for this node (or its zone); otherwise hints are ignored.
//   - A Local policy overrides topology: local traffic uses every local endpoint.
func CategorizeEndpoints(sp *ServicePort, node *Node) Selection {
	var sel Selection
	eps := sp.Endpoints

	if sp.UsesClusterEndpoints() {
		mode := topologyFromHints(eps, node)
		sel.Cluster = filterEndpoints(eps, func(ep *Endpoint) bool {
			return ep.Ready && availableForTopology(ep, mode, node)
		})
		if len(sel.Cluster) == 0 {
			sel.Cluster = filterEndpoints(eps, func(ep *Endpoint) bool {
				return ep.Serving && ep.Terminating && availableForTopology(ep, mode, node)
			})
		}
		// Any ready endpoint in the cluster ends up in Cluster (hints are ignored when
		// they would leave this node with none), so this is the cluster-wide answer.
		sel.HasAny = len(sel.Cluster) > 0
	}

	if !sp.UsesLocalEndpoints() {
		sel.AllReachable = sel.Cluster
		return sel
	}

	localReady, localTerminating := false, false
	for i := range eps {
		ep := &eps[i]
		switch {
		case ep.Ready:
			sel.HasAny = true
			localReady = localReady || ep.Local
		case ep.Serving && ep.Terminating:
			sel.HasAny = true
			localTerminating = localTerminating || ep.Local
		}
	}
	switch {
	case localReady:
		sel.Local = filterEndpoints(eps, func(ep *Endpoint) bool { return ep.Local && ep.Ready })
	case localTerminating:
		sel.Local = filterEndpoints(eps, func(ep *Endpoint) bool {
			return ep.Local && ep.Serving && ep.Terminating
		})
	}

	if !sp.UsesClusterEndpoints() || len(sel.Local) == 0 {
		if !sp.UsesClusterEndpoints() {
			sel.AllReachable = sel.Local
		} else {
			sel.AllReachable = sel.Cluster
		}
		return sel
	}
	sel.AllReachable = unionEndpoints(sel.Cluster, sel.Local)
	return sel
}

// topologyFromHints decides whether hints can be honoured: only when every ready
// endpoint has hints of a kind, and some endpoint is meant for this node or zone.
// Anything less would risk sending all of the node's traffic to too few endpoints.
func topologyFromHints(eps []Endpoint, node *Node) topologyMode {
	allNodeHints, forNode := true, false
	allZoneHints, forZone := true, false
	for i := range eps {
		ep := &eps[i]
		if !ep.Ready {
			continue
		}
		if len(ep.NodeHints) == 0 {
			allNodeHints = false
		} else if slices.Contains(ep.NodeHints, node.Name) {
			forNode = true
		}
		if len(ep.ZoneHints) == 0 {
			allZoneHints = false
		} else if node.Zone != "" && slices.Contains(ep.ZoneHints, node.Zone) {
			forZone = true
		}
	}
	switch {
	case allNodeHints && forNode:
		return topologySameNode
	case node.Zone != "" && allZoneHints && forZone:
		return topologySameZone
	}
	return topologyNone
}

func availableForTopology(ep *Endpoint, mode topologyMode, node *Node) bool {
	switch mode {
	case topologySameNode:
		return slices.Contains(ep.NodeHints, node.Name)
	case topologySameZone:
		return slices.Contains(ep.ZoneHints, node.Zone)
	}
	return true
}

func filterEndpoints(eps []Endpoint, keep func(*Endpoint) bool) []*Endpoint {
	var out []*Endpoint
	for i := range eps {
		if keep(&eps[i]) {
			out = append(out, &eps[i])
		}
	}
	return out
}

// unionEndpoints merges two selections of the same sorted endpoint slice, keeping order.
func unionEndpoints(a, b []*Endpoint) []*Endpoint {
	seen := make(map[*Endpoint]struct{}, len(a)+len(b))
	out := make([]*Endpoint, 0, len(a)+len(b))
	for _, list := range [][]*Endpoint{a, b} {
		for _, ep := range list {
			if _, dup := seen[ep]; !dup {
				seen[ep] = struct{}{}
				out = append(out, ep)
			}
		}
	}
	slices.SortFunc(out, compareEndpoints)
	return out
}

func compareEndpoints(a, b *Endpoint) int {
	if c := a.Addr.Compare(b.Addr); c != 0 {
		return c
	}
	return int(a.Port) - int(b.Port)
}
