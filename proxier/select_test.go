package proxier

import (
	"net/netip"
	"slices"
	"testing"
)

// The node every CategorizeEndpoints case runs on unless it says otherwise.
const (
	thisNode = "node-a"
	thisZone = "zone-a"
)

// mkEndpoint returns a ready, serving, remote endpoint on port 80, modified by mods.
func mkEndpoint(addr string, mods ...func(*Endpoint)) Endpoint {
	ep := Endpoint{Addr: netip.MustParseAddr(addr), Port: 80, Ready: true, Serving: true, NodeName: "node-remote"}
	for _, m := range mods {
		m(&ep)
	}
	return ep
}

// Endpoint modifiers, named after the state they describe.
func onThisNode(ep *Endpoint) { ep.NodeName, ep.Local = thisNode, true }

// servingTerminating is a pod shutting down that still accepts connections.
func servingTerminating(ep *Endpoint) { ep.Ready, ep.Serving, ep.Terminating = false, true, true }

// notServingTerminating is a pod shutting down that no longer accepts connections.
func notServingTerminating(ep *Endpoint) { ep.Ready, ep.Serving, ep.Terminating = false, false, true }

// notReady is a pod that is starting or failing its readiness probe.
func notReady(ep *Endpoint) { ep.Ready, ep.Serving, ep.Terminating = false, false, false }

func zoneHints(zones ...string) func(*Endpoint) {
	return func(ep *Endpoint) { ep.ZoneHints = zones }
}

func nodeHints(nodes ...string) func(*Endpoint) {
	return func(ep *Endpoint) { ep.NodeHints = nodes }
}

// portKind describes how a service port can be reached and which policies it uses.
type portKind struct {
	internalLocal bool
	externalLocal bool
	// reach: "" (ClusterIP only), "nodePort", "externalIP" or "loadBalancer".
	reach string
}

func (k portKind) servicePort(eps []Endpoint) *ServicePort {
	sp := &ServicePort{
		Name:       ServicePortName{ServiceName: ServiceName{Namespace: "ns", Name: "svc"}, Port: "http", Protocol: ProtocolTCP},
		ClusterIPs: []netip.Addr{netip.MustParseAddr("10.96.0.10")},
		Port:       80,
		Endpoints:  eps,
	}
	if k.internalLocal {
		sp.InternalPolicy = PolicyLocal
	}
	if k.externalLocal {
		sp.ExternalPolicy = PolicyLocal
	}
	switch k.reach {
	case "":
	case "nodePort":
		sp.NodePort = 30080
	case "externalIP":
		sp.ExternalIPs = []netip.Addr{netip.MustParseAddr("192.0.2.10")}
	case "loadBalancer":
		sp.LoadBalancerIngress = []LoadBalancerIngress{{IP: netip.MustParseAddr("198.51.100.10")}}
	default:
		panic("unknown reach " + k.reach)
	}
	return sp
}

var (
	clusterOnly          = portKind{}
	eTPLocalNodePort     = portKind{externalLocal: true, reach: "nodePort"}
	eTPLocalInternalOnly = portKind{externalLocal: true}
	iTPLocal             = portKind{internalLocal: true}
	iTPLocalNodePort     = portKind{internalLocal: true, reach: "nodePort"}
	bothLocalNodePort    = portKind{internalLocal: true, externalLocal: true, reach: "nodePort"}
)

func endpointStrings(eps []*Endpoint) []string {
	out := make([]string, 0, len(eps))
	for _, ep := range eps {
		out = append(out, ep.String())
	}
	return out
}

func TestCategorizeEndpoints(t *testing.T) {
	zoneANode := Node{Name: thisNode, Zone: thisZone}
	noZoneNode := Node{Name: thisNode}

	tests := []struct {
		name      string
		kind      portKind
		node      *Node // default: zoneANode
		endpoints []Endpoint

		// Expected endpoints as "ip:port"; nil and empty are the same.
		cluster, local, all []string
		hasAny              bool
	}{
		// Cluster policy.
		{
			name:      "no endpoints: nothing reachable and HasAny false, so traffic is rejected",
			kind:      clusterOnly,
			endpoints: nil,
			hasAny:    false,
		},
		{
			name: "cluster policy uses every ready endpoint, local or remote",
			kind: clusterOnly,
			endpoints: []Endpoint{
				mkEndpoint("10.0.0.1", onThisNode),
				mkEndpoint("10.0.0.2"),
			},
			cluster: []string{"10.0.0.1:80", "10.0.0.2:80"},
			all:     []string{"10.0.0.1:80", "10.0.0.2:80"},
			hasAny:  true,
		},
		{
			name: "cluster policy skips endpoints that are not ready",
			kind: clusterOnly,
			endpoints: []Endpoint{
				mkEndpoint("10.0.0.1", notReady),
				mkEndpoint("10.0.0.2"),
			},
			cluster: []string{"10.0.0.2:80"},
			all:     []string{"10.0.0.2:80"},
			hasAny:  true,
		},
		{
			name: "only unready endpoints: HasAny false, so traffic is rejected",
			kind: clusterOnly,
			endpoints: []Endpoint{
				mkEndpoint("10.0.0.1", notReady),
				mkEndpoint("10.0.0.2", notServingTerminating),
			},
			hasAny: false,
		},
		{
			name: "cluster falls back to serving-terminating endpoints when none is ready, never to non-serving ones",
			kind: clusterOnly,
			endpoints: []Endpoint{
				mkEndpoint("10.0.0.1", servingTerminating, onThisNode),
				mkEndpoint("10.0.0.2", servingTerminating),
				mkEndpoint("10.0.0.3", notServingTerminating),
				mkEndpoint("10.0.0.4", notReady),
			},
			cluster: []string{"10.0.0.1:80", "10.0.0.2:80"},
			all:     []string{"10.0.0.1:80", "10.0.0.2:80"},
			hasAny:  true,
		},
		{
			name: "cluster ignores serving-terminating endpoints while a ready one exists anywhere",
			kind: clusterOnly,
			endpoints: []Endpoint{
				mkEndpoint("10.0.0.1", servingTerminating, onThisNode),
				mkEndpoint("10.0.0.2"),
			},
			cluster: []string{"10.0.0.2:80"},
			all:     []string{"10.0.0.2:80"},
			hasAny:  true,
		},

		// externalTrafficPolicy: Local.
		{
			name: "eTP Local: cluster has every ready endpoint, local only this node's, all is the union",
			kind: eTPLocalNodePort,
			endpoints: []Endpoint{
				mkEndpoint("10.0.0.1", onThisNode),
				mkEndpoint("10.0.0.2"),
				mkEndpoint("10.0.0.3", onThisNode, notReady),
			},
			cluster: []string{"10.0.0.1:80", "10.0.0.2:80"},
			local:   []string{"10.0.0.1:80"},
			all:     []string{"10.0.0.1:80", "10.0.0.2:80"},
			hasAny:  true,
		},
		{
			name: "eTP Local without local endpoints: local empty but HasAny true, so external traffic is dropped not rejected",
			kind: eTPLocalNodePort,
			endpoints: []Endpoint{
				mkEndpoint("10.0.0.2"),
			},
			cluster: []string{"10.0.0.2:80"},
			local:   nil,
			all:     []string{"10.0.0.2:80"},
			hasAny:  true,
		},
		{
			name: "eTP Local on a service not reachable from outside behaves as Cluster",
			kind: eTPLocalInternalOnly,
			endpoints: []Endpoint{
				mkEndpoint("10.0.0.1", onThisNode),
				mkEndpoint("10.0.0.2"),
			},
			cluster: []string{"10.0.0.1:80", "10.0.0.2:80"},
			local:   nil,
			all:     []string{"10.0.0.1:80", "10.0.0.2:80"},
			hasAny:  true,
		},
		{
			name: "eTP Local applies to a port reachable only through an external IP",
			kind: portKind{externalLocal: true, reach: "externalIP"},
			endpoints: []Endpoint{
				mkEndpoint("10.0.0.1", onThisNode),
				mkEndpoint("10.0.0.2"),
			},
			cluster: []string{"10.0.0.1:80", "10.0.0.2:80"},
			local:   []string{"10.0.0.1:80"},
			all:     []string{"10.0.0.1:80", "10.0.0.2:80"},
			hasAny:  true,
		},
		{
			name: "eTP Local applies to a port reachable only through a load balancer IP",
			kind: portKind{externalLocal: true, reach: "loadBalancer"},
			endpoints: []Endpoint{
				mkEndpoint("10.0.0.1", onThisNode),
				mkEndpoint("10.0.0.2"),
			},
			cluster: []string{"10.0.0.1:80", "10.0.0.2:80"},
			local:   []string{"10.0.0.1:80"},
			all:     []string{"10.0.0.1:80", "10.0.0.2:80"},
			hasAny:  true,
		},

		// internalTrafficPolicy: Local.
		{
			name: "iTP Local on an internal-only port: no cluster endpoints, local only this node's",
			kind: iTPLocal,
			endpoints: []Endpoint{
				mkEndpoint("10.0.0.1", onThisNode),
				mkEndpoint("10.0.0.2"),
			},
			cluster: nil,
			local:   []string{"10.0.0.1:80"},
			all:     []string{"10.0.0.1:80"},
			hasAny:  true,
		},
		{
			name: "iTP Local with only remote endpoints: nothing reachable but HasAny true, so traffic is dropped",
			kind: iTPLocal,
			endpoints: []Endpoint{
				mkEndpoint("10.0.0.1"),
				mkEndpoint("10.0.0.2"),
			},
			hasAny: true,
		},
		{
			name:      "iTP Local without any endpoint: HasAny false, so traffic is rejected",
			kind:      iTPLocal,
			endpoints: nil,
			hasAny:    false,
		},
		{
			name: "iTP Local with only remote serving-terminating endpoints: HasAny true",
			kind: iTPLocal,
			endpoints: []Endpoint{
				mkEndpoint("10.0.0.1", servingTerminating),
			},
			hasAny: true,
		},
		{
			name: "iTP Local with only non-serving endpoints: HasAny false",
			kind: iTPLocal,
			endpoints: []Endpoint{
				mkEndpoint("10.0.0.1", notServingTerminating, onThisNode),
				mkEndpoint("10.0.0.2", notReady),
			},
			hasAny: false,
		},
		{
			name: "iTP Local with eTP Cluster on a node port: cluster for external traffic, local for internal, all is the union",
			kind: iTPLocalNodePort,
			endpoints: []Endpoint{
				mkEndpoint("10.0.0.1", onThisNode),
				mkEndpoint("10.0.0.2"),
			},
			cluster: []string{"10.0.0.1:80", "10.0.0.2:80"},
			local:   []string{"10.0.0.1:80"},
			all:     []string{"10.0.0.1:80", "10.0.0.2:80"},
			hasAny:  true,
		},
		{
			// Upstream keeps cluster endpoints for any externally reachable port so
			// that pods on this node reaching the external address are short-circuited
			// to the cluster endpoints (topology_test.go "iTP: Local, eTP: Local, ...").
			name: "iTP and eTP Local on a node port still has cluster endpoints for short-circuited pod traffic",
			kind: bothLocalNodePort,
			endpoints: []Endpoint{
				mkEndpoint("10.0.0.1", onThisNode),
				mkEndpoint("10.0.0.2"),
			},
			cluster: []string{"10.0.0.1:80", "10.0.0.2:80"},
			local:   []string{"10.0.0.1:80"},
			all:     []string{"10.0.0.1:80", "10.0.0.2:80"},
			hasAny:  true,
		},
		{
			name: "iTP and eTP Local on a node port with only remote endpoints: local empty, all is the cluster set",
			kind: bothLocalNodePort,
			endpoints: []Endpoint{
				mkEndpoint("10.0.0.1"),
				mkEndpoint("10.0.0.2"),
			},
			cluster: []string{"10.0.0.1:80", "10.0.0.2:80"},
			local:   nil,
			all:     []string{"10.0.0.1:80", "10.0.0.2:80"},
			hasAny:  true,
		},

		// Terminating fallback for local traffic, decided separately from cluster.
		{
			name: "local falls back to local serving-terminating endpoints while cluster keeps the remote ready one",
			kind: eTPLocalNodePort,
			endpoints: []Endpoint{
				mkEndpoint("10.0.0.1"),
				mkEndpoint("10.0.0.2", onThisNode, notReady),
				mkEndpoint("10.0.0.3", onThisNode, servingTerminating),
				mkEndpoint("10.0.0.4", servingTerminating),
			},
			cluster: []string{"10.0.0.1:80"},
			local:   []string{"10.0.0.3:80"},
			all:     []string{"10.0.0.1:80", "10.0.0.3:80"},
			hasAny:  true,
		},
		{
			name: "local ignores serving-terminating endpoints while a local ready one exists",
			kind: iTPLocal,
			endpoints: []Endpoint{
				mkEndpoint("10.0.0.1", onThisNode),
				mkEndpoint("10.0.0.2", onThisNode, servingTerminating),
			},
			local:  []string{"10.0.0.1:80"},
			all:    []string{"10.0.0.1:80"},
			hasAny: true,
		},
		{
			name: "local never uses non-serving terminating endpoints",
			kind: eTPLocalNodePort,
			endpoints: []Endpoint{
				mkEndpoint("10.0.0.1"),
				mkEndpoint("10.0.0.2", onThisNode, notServingTerminating),
			},
			cluster: []string{"10.0.0.1:80"},
			local:   nil,
			all:     []string{"10.0.0.1:80"},
			hasAny:  true,
		},
		{
			name: "iTP and eTP Local with only remote serving-terminating endpoints: cluster falls back, local empty",
			kind: bothLocalNodePort,
			endpoints: []Endpoint{
				mkEndpoint("10.0.0.1", servingTerminating),
				mkEndpoint("10.0.0.2", servingTerminating),
			},
			cluster: []string{"10.0.0.1:80", "10.0.0.2:80"},
			local:   nil,
			all:     []string{"10.0.0.1:80", "10.0.0.2:80"},
			hasAny:  true,
		},

		// Topology: PreferSameZone.
		{
			name: "zone hints: only endpoints hinted for this node's zone",
			kind: clusterOnly,
			endpoints: []Endpoint{
				mkEndpoint("10.0.0.1", zoneHints("zone-a")),
				mkEndpoint("10.0.0.2", zoneHints("zone-b")),
				mkEndpoint("10.0.0.3", zoneHints("zone-c")),
				mkEndpoint("10.0.0.4", zoneHints("zone-a")),
			},
			cluster: []string{"10.0.0.1:80", "10.0.0.4:80"},
			all:     []string{"10.0.0.1:80", "10.0.0.4:80"},
			hasAny:  true,
		},
		{
			name: "zone hints: an endpoint hinted for several zones counts for each of them",
			kind: clusterOnly,
			endpoints: []Endpoint{
				mkEndpoint("10.0.0.1", zoneHints("zone-b", "zone-a")),
				mkEndpoint("10.0.0.2", zoneHints("zone-b", "zone-c")),
				mkEndpoint("10.0.0.3", zoneHints("zone-a")),
			},
			cluster: []string{"10.0.0.1:80", "10.0.0.3:80"},
			all:     []string{"10.0.0.1:80", "10.0.0.3:80"},
			hasAny:  true,
		},
		{
			name: "zone hints ignored when the node has no zone label",
			kind: clusterOnly,
			node: &noZoneNode,
			endpoints: []Endpoint{
				mkEndpoint("10.0.0.1", zoneHints("zone-a")),
				mkEndpoint("10.0.0.2", zoneHints("zone-b")),
			},
			cluster: []string{"10.0.0.1:80", "10.0.0.2:80"},
			all:     []string{"10.0.0.1:80", "10.0.0.2:80"},
			hasAny:  true,
		},
		{
			name: "zone hints ignored when one ready endpoint has none",
			kind: clusterOnly,
			endpoints: []Endpoint{
				mkEndpoint("10.0.0.1", zoneHints("zone-a")),
				mkEndpoint("10.0.0.2", zoneHints("zone-b")),
				mkEndpoint("10.0.0.3"),
			},
			cluster: []string{"10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"},
			all:     []string{"10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"},
			hasAny:  true,
		},
		{
			name: "zone hints ignored when they only name other zones",
			kind: clusterOnly,
			endpoints: []Endpoint{
				mkEndpoint("10.0.0.1", zoneHints("zone-b")),
				mkEndpoint("10.0.0.2", zoneHints("zone-c")),
			},
			cluster: []string{"10.0.0.1:80", "10.0.0.2:80"},
			all:     []string{"10.0.0.1:80", "10.0.0.2:80"},
			hasAny:  true,
		},
		{
			name: "hints of unready endpoints do not matter: a hintless unready endpoint does not disable topology",
			kind: clusterOnly,
			endpoints: []Endpoint{
				mkEndpoint("10.0.0.1", zoneHints("zone-a")),
				mkEndpoint("10.0.0.2", zoneHints("zone-b")),
				mkEndpoint("10.0.0.3", notReady),
			},
			cluster: []string{"10.0.0.1:80"},
			all:     []string{"10.0.0.1:80"},
			hasAny:  true,
		},
		{
			name: "hints of unready endpoints do not matter: only unready endpoints hinted for this zone means no filtering",
			kind: clusterOnly,
			endpoints: []Endpoint{
				mkEndpoint("10.0.0.1", zoneHints("zone-a"), notReady),
				mkEndpoint("10.0.0.2", zoneHints("zone-b")),
				mkEndpoint("10.0.0.3", zoneHints("zone-c")),
			},
			cluster: []string{"10.0.0.2:80", "10.0.0.3:80"},
			all:     []string{"10.0.0.2:80", "10.0.0.3:80"},
			hasAny:  true,
		},

		// Topology: PreferSameNode.
		{
			name: "node hints: only the endpoints hinted for this node, even when zone hints would allow more",
			kind: clusterOnly,
			endpoints: []Endpoint{
				mkEndpoint("10.0.0.1", nodeHints(thisNode), zoneHints("zone-a")),
				mkEndpoint("10.0.0.2", nodeHints("node-b"), zoneHints("zone-a")),
				mkEndpoint("10.0.0.3", nodeHints("node-c"), zoneHints("zone-b")),
			},
			cluster: []string{"10.0.0.1:80"},
			all:     []string{"10.0.0.1:80"},
			hasAny:  true,
		},
		{
			name: "node hints: used without zone hints, and on a node without a zone",
			kind: clusterOnly,
			node: &noZoneNode,
			endpoints: []Endpoint{
				mkEndpoint("10.0.0.1", nodeHints("node-b")),
				mkEndpoint("10.0.0.2", nodeHints(thisNode)),
			},
			cluster: []string{"10.0.0.2:80"},
			all:     []string{"10.0.0.2:80"},
			hasAny:  true,
		},
		{
			name: "node hints ignored when a ready endpoint has none: falls back to zone hints",
			kind: clusterOnly,
			endpoints: []Endpoint{
				mkEndpoint("10.0.0.1", nodeHints(thisNode), zoneHints("zone-b")),
				mkEndpoint("10.0.0.2", zoneHints("zone-a")),
				mkEndpoint("10.0.0.3", nodeHints("node-c"), zoneHints("zone-a")),
			},
			cluster: []string{"10.0.0.2:80", "10.0.0.3:80"},
			all:     []string{"10.0.0.2:80", "10.0.0.3:80"},
			hasAny:  true,
		},
		{
			name: "node hints ignored when none is for this node: falls back to zone hints",
			kind: clusterOnly,
			endpoints: []Endpoint{
				mkEndpoint("10.0.0.1", nodeHints("node-b"), zoneHints("zone-a")),
				mkEndpoint("10.0.0.2", nodeHints("node-c"), zoneHints("zone-b")),
				mkEndpoint("10.0.0.3", nodeHints("node-d"), zoneHints("zone-a")),
			},
			cluster: []string{"10.0.0.1:80", "10.0.0.3:80"},
			all:     []string{"10.0.0.1:80", "10.0.0.3:80"},
			hasAny:  true,
		},
		{
			name: "node hints not for this node and incomplete zone hints: no topology at all",
			kind: clusterOnly,
			endpoints: []Endpoint{
				mkEndpoint("10.0.0.1", nodeHints("node-b"), zoneHints("zone-a")),
				mkEndpoint("10.0.0.2", nodeHints("node-c")),
			},
			cluster: []string{"10.0.0.1:80", "10.0.0.2:80"},
			all:     []string{"10.0.0.1:80", "10.0.0.2:80"},
			hasAny:  true,
		},
		{
			name: "node hints of an unready endpoint for this node do not count",
			kind: clusterOnly,
			endpoints: []Endpoint{
				mkEndpoint("10.0.0.1", nodeHints(thisNode), notReady),
				mkEndpoint("10.0.0.2", nodeHints("node-b")),
				mkEndpoint("10.0.0.3", nodeHints("node-c")),
			},
			cluster: []string{"10.0.0.2:80", "10.0.0.3:80"},
			all:     []string{"10.0.0.2:80", "10.0.0.3:80"},
			hasAny:  true,
		},

		// Topology and the terminating fallback.
		{
			// Hints are judged on ready endpoints only; with none ready there is no
			// topology, so every serving-terminating endpoint is used (upstream's
			// fallback ignores topology outright, which gives the same result).
			name: "terminating fallback: hints of terminating endpoints are not applied",
			kind: clusterOnly,
			endpoints: []Endpoint{
				mkEndpoint("10.0.0.1", zoneHints("zone-a"), servingTerminating),
				mkEndpoint("10.0.0.2", zoneHints("zone-b"), servingTerminating),
				mkEndpoint("10.0.0.3", nodeHints("node-b"), zoneHints("zone-b"), servingTerminating),
			},
			cluster: []string{"10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"},
			all:     []string{"10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"},
			hasAny:  true,
		},
		{
			name: "terminating fallback not taken while a ready endpoint exists in another zone",
			kind: clusterOnly,
			endpoints: []Endpoint{
				mkEndpoint("10.0.0.1", zoneHints("zone-a"), servingTerminating),
				mkEndpoint("10.0.0.2", zoneHints("zone-b")),
			},
			cluster: []string{"10.0.0.2:80"},
			all:     []string{"10.0.0.2:80"},
			hasAny:  true,
		},

		// Local policies override topology.
		{
			name: "eTP Local overrides topology: local uses every local endpoint, cluster is zone-filtered, all merges both",
			kind: eTPLocalNodePort,
			endpoints: []Endpoint{
				mkEndpoint("10.0.0.1", onThisNode, zoneHints("zone-a")),
				mkEndpoint("10.0.0.2", onThisNode, zoneHints("zone-b")),
				mkEndpoint("10.0.0.3", zoneHints("zone-a")),
				mkEndpoint("10.0.0.4", zoneHints("zone-b")),
			},
			cluster: []string{"10.0.0.1:80", "10.0.0.3:80"},
			local:   []string{"10.0.0.1:80", "10.0.0.2:80"},
			all:     []string{"10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"},
			hasAny:  true,
		},
		{
			name: "iTP Local overrides topology: local endpoints hinted for other zones and nodes are used",
			kind: iTPLocal,
			endpoints: []Endpoint{
				mkEndpoint("10.0.0.1", onThisNode, zoneHints("zone-b"), nodeHints("node-b")),
				mkEndpoint("10.0.0.2", zoneHints("zone-a"), nodeHints(thisNode)),
			},
			local:  []string{"10.0.0.1:80"},
			all:    []string{"10.0.0.1:80"},
			hasAny: true,
		},
		{
			name: "iTP Local with eTP Cluster and node hints: cluster is node-filtered, local is not, all merges both",
			kind: iTPLocalNodePort,
			endpoints: []Endpoint{
				mkEndpoint("10.0.0.1", onThisNode, nodeHints("node-b")),
				mkEndpoint("10.0.0.2", nodeHints(thisNode)),
				mkEndpoint("10.0.0.3", nodeHints("node-c")),
			},
			cluster: []string{"10.0.0.2:80"},
			local:   []string{"10.0.0.1:80"},
			all:     []string{"10.0.0.1:80", "10.0.0.2:80"},
			hasAny:  true,
		},
	}

	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			node := tc.node
			if node == nil {
				node = &zoneANode
			}
			sp := tc.kind.servicePort(tc.endpoints)
			sel := CategorizeEndpoints(sp, node)

			check := func(what string, got []*Endpoint, want []string) {
				t.Helper()
				if g := endpointStrings(got); !slices.Equal(g, want) && (len(g) != 0 || len(want) != 0) {
					t.Errorf("%s = %v, want %v", what, g, want)
				}
			}
			check("Cluster", sel.Cluster, tc.cluster)
			check("Local", sel.Local, tc.local)
			check("AllReachable", sel.AllReachable, tc.all)
			if sel.HasAny != tc.hasAny {
				t.Errorf("HasAny = %v, want %v", sel.HasAny, tc.hasAny)
			}
			// Whatever is selected points into the port's own endpoints, so a backend
			// can tell endpoints apart by pointer and never sees a copy.
			for _, ep := range slices.Concat(sel.Cluster, sel.Local, sel.AllReachable) {
				if !pointsInto(ep, sp.Endpoints) {
					t.Errorf("selected endpoint %v does not point into ServicePort.Endpoints", ep)
				}
			}
		})
	}
}

func pointsInto(ep *Endpoint, eps []Endpoint) bool {
	for i := range eps {
		if ep == &eps[i] {
			return true
		}
	}
	return false
}

// TestCategorizeEndpointsPolicyUse pins the policy predicates CategorizeEndpoints builds on,
// against upstream's ServicePort.UsesClusterEndpoints / UsesLocalEndpoints.
func TestCategorizeEndpointsPolicyUse(t *testing.T) {
	tests := []struct {
		name                   string
		kind                   portKind
		usesCluster, usesLocal bool
	}{
		{"all Cluster", clusterOnly, true, false},
		{"eTP Local, node port", eTPLocalNodePort, true, true},
		{"eTP Local, not externally accessible", eTPLocalInternalOnly, true, false},
		{"iTP Local, internal only", iTPLocal, false, true},
		{"iTP Local, eTP Cluster, node port", iTPLocalNodePort, true, true},
		{"iTP Local, eTP Local, node port", bothLocalNodePort, true, true},
		{"iTP Local, eTP Local, external IP", portKind{internalLocal: true, externalLocal: true, reach: "externalIP"}, true, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sp := tc.kind.servicePort(nil)
			if got := sp.UsesClusterEndpoints(); got != tc.usesCluster {
				t.Errorf("UsesClusterEndpoints() = %v, want %v", got, tc.usesCluster)
			}
			if got := sp.UsesLocalEndpoints(); got != tc.usesLocal {
				t.Errorf("UsesLocalEndpoints() = %v, want %v", got, tc.usesLocal)
			}
		})
	}
}
