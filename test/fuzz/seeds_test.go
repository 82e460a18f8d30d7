package fuzz

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

var updateSeeds = flag.Bool("update-seeds", false, "rewrite the seed corpus under testdata/fuzz from seeds_test.go")

// seed is a named scenario of the committed corpus; minPorts guards against a seed
// that silently stops exercising what it is named after (every object rejected).
type seed struct {
	name     string
	minPorts int
	s        scenario
}

// Shorthands for endpoints: ready ones, and terminating ones that still serve or not.
func ready(where, host, node int) endpointSpec {
	return endpointSpec{Where: where, Host: host, Ready: 1, Node: node}
}

func terminating(where, host, node int, serving bool) endpointSpec {
	e := endpointSpec{Where: where, Host: host, Ready: 2, Serving: 2, Term: 1, Node: node}
	if serving {
		e.Serving = 1
	}
	return e
}

func hinted(e endpointSpec, zone, hints int) endpointSpec {
	e.Zone, e.Hints = zone, hints
	return e
}

// Indexes into the pools, named for the seeds.
const (
	localPod, remotePod = 0, 1
	nodeNone, nodeThis  = 0, 1
	nodeOther           = 2
	tcp, udp, sctp      = 0, 1, 2
	p80, p53, p443      = 0, 1, 2
	t8080, t53, t9999   = 0, 1, 2
	nameHTTP, nameDNS   = 1, 2
	typeCluster         = 0
	typeNodePort        = 1
	typeLB              = 2
	famV4, famV6        = 0, 1
	famDual, famDual6   = 2, 3
)

func httpSlice(svc, addrType int, eps ...endpointSpec) sliceSpec {
	return sliceSpec{Service: svc, AddressType: addrType, Ports: []slicePortSpec{{Name: nameHTTP, Port: t8080}}, Endpoints: eps}
}

func httpPort() []portSpec { return []portSpec{{Name: nameHTTP, Port: p80}} }

var seeds = []seed{
	{name: "empty", s: scenario{}},
	{name: "dual-stack", minPorts: 1, s: scenario{
		Node:     nodeSpec{Addrs: 2, CIDRs: 3},
		Services: []serviceSpec{{Families: famDual, Type: typeNodePort, Ports: httpPort()}},
		Slices: []sliceSpec{
			httpSlice(0, 0, ready(localPod, 0, nodeThis), ready(remotePod, 1, nodeOther)),
			httpSlice(0, 1, ready(localPod, 0, nodeThis), ready(remotePod, 2, nodeOther)),
		},
	}},
	{name: "ipv6-only-v6-primary", minPorts: 1, s: scenario{
		Node:     nodeSpec{Addrs: 3, CIDRs: 2},
		Services: []serviceSpec{{Families: famDual6, Type: typeNodePort, Ports: httpPort()}, {Name: 1, Families: famV6, Ports: httpPort()}},
		Slices:   []sliceSpec{httpSlice(0, 1, ready(remotePod, 0, nodeOther)), httpSlice(1, 1, ready(localPod, 1, nodeThis))},
	}},
	{name: "slice-family-mismatch", minPorts: 1, s: scenario{
		// An IPv6 slice of an IPv4-only Service (left over from dual-stack): its
		// local endpoint must not count for the IPv4 Service.
		Node:     nodeSpec{Addrs: 2, CIDRs: 3},
		Services: []serviceSpec{{Families: famV4, Type: typeNodePort, Ports: httpPort(), ETPLocal: 1, HealthCheck: 1}},
		Slices:   []sliceSpec{httpSlice(0, 1, ready(localPod, 0, nodeThis)), httpSlice(0, 0, ready(remotePod, 1, nodeOther))},
	}},
	{name: "nodeport-lb-etp-local", minPorts: 3, s: scenario{
		Node: nodeSpec{Addrs: 0, CIDRs: 1},
		Services: []serviceSpec{
			{Type: typeLB, Ports: httpPort(), Ingress: []ingressSpec{{IP: 0, Mode: 1}, {IP: 1, Mode: 2}}, ETPLocal: 1, HealthCheck: 1},
			{Name: 1, Type: typeLB, Ports: httpPort(), Ingress: []ingressSpec{{IP: 3}}, ETPLocal: 1, HealthCheck: 1},
			{Name: 2, Type: typeNodePort, Ports: httpPort()},
		},
		Slices: []sliceSpec{
			httpSlice(0, 0, ready(localPod, 0, nodeThis), ready(remotePod, 1, nodeOther)),
			httpSlice(1, 0, ready(remotePod, 2, nodeOther)), // eTP Local, no local endpoint: external traffic dropped
			httpSlice(2, 0, ready(remotePod, 3, nodeOther)),
		},
	}},
	{name: "session-affinity", minPorts: 2, s: scenario{
		Node: nodeSpec{Addrs: 0},
		Services: []serviceSpec{
			{Ports: httpPort(), Affinity: 2},
			{Name: 1, Type: typeNodePort, Ports: httpPort(), Affinity: 1, ETPLocal: 1},
		},
		Slices: []sliceSpec{
			httpSlice(0, 0, ready(remotePod, 0, nodeOther), ready(remotePod, 1, nodeOther), ready(localPod, 2, nodeThis)),
			httpSlice(1, 0, ready(localPod, 3, nodeThis), ready(localPod, 4, nodeThis)),
		},
	}},
	{name: "topology-hints", minPorts: 3, s: scenario{
		Node:     nodeSpec{Addrs: 0, Zone: 1},
		Services: []serviceSpec{{Ports: httpPort()}, {Name: 1, Ports: httpPort()}, {Name: 2, Ports: httpPort(), ITP: 2}},
		Slices: []sliceSpec{
			// Zone hints: only zone-a's endpoint serves this node.
			httpSlice(0, 0, hinted(ready(remotePod, 0, nodeOther), 1, 1), hinted(ready(remotePod, 1, nodeOther), 2, 2)),
			// Node hints for this node, plus one endpoint without hints: hints ignored.
			httpSlice(1, 0, hinted(ready(localPod, 2, nodeThis), 1, 5), hinted(ready(remotePod, 3, nodeOther), 2, 0)),
			// iTP Local overrides hints.
			httpSlice(2, 0, hinted(ready(localPod, 4, nodeThis), 1, 2), hinted(ready(remotePod, 5, nodeOther), 1, 1)),
		},
	}},
	{name: "terminating-endpoints", minPorts: 3, s: scenario{
		Node: nodeSpec{Addrs: 0},
		Services: []serviceSpec{
			{Ports: httpPort()}, {Name: 1, Ports: httpPort()},
			{Name: 2, Type: typeNodePort, Ports: httpPort(), ETPLocal: 1},
		},
		Slices: []sliceSpec{
			// Only terminating endpoints: the serving one is the fallback.
			httpSlice(0, 0, terminating(remotePod, 0, nodeOther, true), terminating(remotePod, 1, nodeOther, false)),
			// A ready endpoint wins over a serving terminating one.
			httpSlice(1, 0, terminating(remotePod, 2, nodeOther, true), ready(remotePod, 3, nodeOther)),
			// Local fallback for eTP Local.
			httpSlice(2, 0, terminating(localPod, 4, nodeThis, true), ready(remotePod, 5, nodeOther)),
		},
	}},
	{name: "source-ranges", minPorts: 2, s: scenario{
		Node: nodeSpec{Addrs: 2},
		Services: []serviceSpec{
			{Type: typeLB, Families: famDual, Ports: httpPort(), Ingress: []ingressSpec{{IP: 0}, {IP: 2}}, Ranges: []int{0, 2}},
			{Name: 1, Type: typeLB, Ports: httpPort(), Ingress: []ingressSpec{{IP: 1, Mode: 1}}, Ranges: []int{1, 4}},
		},
		Slices: []sliceSpec{
			httpSlice(0, 0, ready(remotePod, 0, nodeOther)), httpSlice(0, 1, ready(remotePod, 1, nodeOther)),
			httpSlice(1, 0, ready(remotePod, 2, nodeOther)),
		},
	}},
	{name: "external-ips", minPorts: 2, s: scenario{
		Node: nodeSpec{Addrs: 0},
		Services: []serviceSpec{
			{Ports: httpPort(), ExternalIPs: []int{0, 3}},
			{Name: 1, Ports: httpPort(), ExternalIPs: []int{1}, ETPLocal: 1},
		},
		Slices: []sliceSpec{
			httpSlice(0, 0, ready(remotePod, 0, nodeOther)),
			httpSlice(1, 0, ready(localPod, 1, nodeThis), ready(remotePod, 2, nodeOther)),
		},
	}},
	{name: "udp-sctp", minPorts: 3, s: scenario{
		Node: nodeSpec{Addrs: 0},
		Services: []serviceSpec{
			{Name: 1, Type: typeNodePort, Ports: []portSpec{{Name: nameDNS, Proto: udp, Port: p53}, {Name: 1, Proto: tcp, Port: p53}}},
			{Name: 2, Ports: []portSpec{{Proto: sctp, Port: p443}}},
		},
		Slices: []sliceSpec{
			{Service: 0, Ports: []slicePortSpec{{Name: nameDNS, Proto: udp, Port: t53}, {Name: 1, Proto: tcp, Port: t53}},
				Endpoints: []endpointSpec{ready(remotePod, 0, nodeOther), ready(localPod, 1, nodeThis)}},
			{Service: 1, Ports: []slicePortSpec{{Proto: sctp, Port: t9999}}, Endpoints: []endpointSpec{ready(remotePod, 2, nodeOther)}},
		},
	}},
	{name: "no-endpoints", minPorts: 4, s: scenario{
		Node: nodeSpec{Addrs: 0},
		Services: []serviceSpec{
			{Type: typeNodePort, Ports: httpPort(), ExternalIPs: []int{0}},
			{Name: 1, Ports: httpPort(), ITP: 2},
			{Name: 2, Type: typeLB, Ports: httpPort(), Ingress: []ingressSpec{{IP: 0}}, ETPLocal: 1, HealthCheck: 1},
			{Name: 5, Ports: httpPort()},
		},
		Slices: []sliceSpec{
			httpSlice(1, 0, ready(remotePod, 0, nodeOther)),
			httpSlice(2, 0, endpointSpec{Where: localPod, Host: 1, Ready: 2, Serving: 2, Node: nodeThis}), // not ready
			{Service: 3, Endpoints: []endpointSpec{ready(remotePod, 2, nodeOther)}},                       // no ports
		},
	}},
	{name: "odd-names", minPorts: 3, s: scenario{
		Node:        nodeSpec{Addrs: 0},
		SlicesFirst: 1,
		Services: []serviceSpec{
			{NS: 3, Name: 3, Ports: httpPort()},
			{NS: 2, Name: 4, Ports: []portSpec{{Name: 3, Port: 3}}},
			{NS: 1, Name: 6, Ports: httpPort()},
		},
		Slices: []sliceSpec{
			httpSlice(0, 0, ready(remotePod, 0, nodeOther)),
			{Service: 1, Ports: []slicePortSpec{{Name: 3, Port: t8080}}, Endpoints: []endpointSpec{ready(remotePod, 1, nodeOther)}},
			httpSlice(2, 0, ready(localPod, 2, nodeThis)),
		},
	}},
	{name: "invalid-mix", minPorts: 1, s: scenario{
		Node: nodeSpec{Addrs: 0},
		Services: []serviceSpec{
			{Ports: httpPort()},
			{Name: 1, Ports: httpPort(), BadClusterIP: 1},
			{Name: 2, Type: typeNodePort, Ports: httpPort(), NodePortInRange: 1},
			{Name: 3, Ports: httpPort(), Affinity: 3, ExternalIPs: []int{4, 5}},
			{Name: 4, Type: typeLB, Ports: httpPort(), Ingress: []ingressSpec{{IP: 4}, {IP: 0, Mode: 3}}, Ranges: []int{5}},
			{Name: 5, Ports: []portSpec{{Name: nameHTTP, Port: 6}}, DuplicatePort: 1},
		},
		Slices: []sliceSpec{
			httpSlice(0, 0, ready(remotePod, 0, nodeOther)),
			httpSlice(0, 0, ready(4, 1, nodeOther)),  // loopback
			httpSlice(0, 0, ready(3, 2, nodeOther)),  // IPv6 in an IPv4 slice
			httpSlice(0, 1, ready(10, 3, nodeOther)), // IPv4-mapped in an IPv6 slice
			httpSlice(0, 2, ready(remotePod, 4, nodeOther)),
			{Service: 0, Labels: 1, Ports: []slicePortSpec{{Name: nameHTTP, Port: t8080}}, Endpoints: []endpointSpec{ready(remotePod, 5, nodeOther)}},
			{Service: 0, Ports: []slicePortSpec{{Name: nameHTTP, Port: 6}, {Name: nameHTTP, NilPort: 1}}, Endpoints: []endpointSpec{ready(remotePod, 6, nodeOther)}},
			httpSlice(6, 0, ready(remotePod, 7, nodeOther)), // no such Service
		},
	}},
	{name: "conflicts", minPorts: 3, s: scenario{
		Node: nodeSpec{Addrs: 0},
		Services: []serviceSpec{
			{Type: typeNodePort, Ports: httpPort()},
			{Name: 1, Type: typeNodePort, IPFrom: 1, Ports: []portSpec{{Name: nameHTTP, Port: p80, SharedNodePort: 1}}},
			{Name: 2, Ports: httpPort(), ExternalIPs: []int{6}},
			{Name: 0, Ports: []portSpec{{Name: nameDNS, Port: p53}}}, // replaces the first web
		},
		Slices: []sliceSpec{
			httpSlice(0, 0, ready(remotePod, 0, nodeOther), ready(remotePod, 0, nodeOther)),
			httpSlice(0, 0, ready(remotePod, 0, nodeOther), ready(8, 1, nodeOther), ready(9, 2, nodeOther)),
			httpSlice(1, 0, ready(remotePod, 3, nodeOther)),
			httpSlice(2, 0, ready(remotePod, 4, nodeOther)),
		},
	}},
}

// seedPath is where a seed's corpus file lives.
func seedPath(target, name string) string {
	return filepath.Join("testdata", "fuzz", target, name)
}

func corpusFile(data []byte) []byte {
	return fmt.Appendf(nil, "go test fuzz v1\n[]byte(%q)\n", data)
}

// TestSeedCorpus checks that the committed corpus is what seeds_test.go describes
// (rewriting it with -update-seeds), that each seed encodes losslessly, and that each
// still builds the service ports it is meant to exercise.
func TestSeedCorpus(t *testing.T) {
	for _, sd := range seeds {
		data := encodeScenario(&sd.s)
		if again := encodeScenario(decodeScenario(data)); !bytes.Equal(again, data) {
			t.Errorf("%s: the scenario does not survive a decode: %x became %x", sd.name, data, again)
		}
		m, err := buildModel(buildObjects(decodeScenario(data)), sd.s.SlicesFirst == 1, false)
		if err != nil {
			t.Fatal(err)
		}
		if m.state.Len() < sd.minPorts {
			t.Errorf("%s: %d service ports in the model, the seed is meant to have at least %d", sd.name, m.state.Len(), sd.minPorts)
		}
		checkCorpusFile(t, seedPath("FuzzModelRender", sd.name), corpusFile(data))
	}
	for name, yaml := range decodeSeeds() {
		checkCorpusFile(t, seedPath("FuzzDecode", name), corpusFile(yaml))
	}
}

func checkCorpusFile(t *testing.T, path string, want []byte) {
	t.Helper()
	if *updateSeeds {
		if err := os.WriteFile(path, want, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	got, err := os.ReadFile(path)
	if err != nil || !bytes.Equal(got, want) {
		t.Errorf("%s is not up to date (err %v); run go test ./test/fuzz -run TestSeedCorpus -update-seeds", path, err)
	}
}

// decodeSeeds are YAML files for FuzzDecode: the offline example, and broken ones.
func decodeSeeds() map[string][]byte {
	example, err := os.ReadFile(filepath.Join("..", "..", "controller", "offline", "testdata", "cluster.yaml"))
	if err != nil {
		panic(err)
	}
	return map[string][]byte{
		"offline-example": example,
		"empty":           nil,
		"not-yaml":        []byte("{{{{ : ]]"),
		"wrong-kind":      []byte("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\n"),
		"list": []byte(`apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Service
  metadata: {name: web, namespace: default}
  spec:
    clusterIP: 10.96.0.10
    clusterIPs: [10.96.0.10, fd00:96::10]
    type: NodePort
    externalTrafficPolicy: Local
    ports: [{name: http, port: 80, nodePort: 30080, protocol: TCP}]
- apiVersion: discovery.k8s.io/v1
  kind: EndpointSlice
  metadata: {name: web-1, namespace: default, labels: {kubernetes.io/service-name: web}}
  addressType: IPv4
  ports: [{name: http, port: 8080, protocol: TCP}]
  endpoints:
  - addresses: [10.244.1.2]
    nodeName: node-a
  - addresses: [127.0.0.1]
- apiVersion: v1
  kind: Node
  metadata: {name: node-a}
  status: {addresses: [{type: InternalIP, address: 192.168.0.10}, {type: InternalIP, address: not-an-ip}]}
`),
		"bad-fields": []byte(`apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  clusterIP: 10.96.0.10
  ports: [{port: 0}, {port: 70000, protocol: ICMP}]
  sessionAffinity: ClientIP
  sessionAffinityConfig: {clientIP: {timeoutSeconds: -5}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-x, namespace: default, labels: {kubernetes.io/service-name: web}}
addressType: IPv6
ports: [{port: 8080}]
endpoints: [{addresses: [10.244.1.2]}, {addresses: []}]
`),
	}
}
