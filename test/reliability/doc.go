// Package reliability proves that kproxy keeps traffic flowing through the events a
// node's proxy lives through: an API server outage, a crash and restart, a rolling
// update to another build, and taking over a node from a running upstream kube-proxy.
//
// Every test runs the real kproxy binary (built by TestMain) in iptables mode inside a
// node namespace (test/netns) against a real kube-apiserver (test/envtest), with pod
// servers behind a ClusterIP and a NodePort Service. A prober in a client namespace
// opens a new connection to each every 10 ms for the whole scenario and records every
// attempt; the tests tolerate no failed attempt at all. Long-lived connections
// exchange data before and after each event to prove established flows survive.
//
// The tests need root and take about two minutes, most of it the 60-second outage:
//
//	sudo go test ./test/reliability/ -v
package reliability
