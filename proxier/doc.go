// Package proxier is the heart of kproxy: the desired-state model every backend programs,
// the rules that pick which endpoints a packet may reach, and the machinery that turns a
// stream of API changes into rate-limited syncs.
//
// The flow is one-directional. A [Builder] is fed Services, EndpointSlices and this
// node's Node (by the controllers in package controller, by an offline YAML source, or by
// an embedder) and publishes immutable [State] snapshots together with a [ChangeSet]
// naming the services that changed since the previous snapshot. A [Runner] takes those
// snapshots at a bounded frequency and hands them to a [Proxier] — the iptables or IPVS
// backend, or one an embedder writes — which diffs them against the kernel and applies
// them atomically.
//
// Nothing in the model refers to the Kubernetes API machinery: a State is plain data,
// built from net/netip values, and is never mutated once published, so it can be read
// from any goroutine and kept as long as a backend needs it.
package proxier
