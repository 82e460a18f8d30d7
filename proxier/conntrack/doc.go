// Package conntrack removes connection-tracking entries that would keep sending a
// Service's traffic to the wrong place after its endpoints changed.
//
// Connectionless protocols never "fail" a flow: once the kernel has created a conntrack
// entry for a UDP (or SCTP) flow to a Service IP, every later datagram of that flow is
// translated the same way, so a client that keeps its socket open would talk to a
// deleted endpoint forever, or keep hitting the "no endpoints" verdict cached before the
// first endpoint appeared. TCP does not need this: a dead backend resets the
// connection and the client reconnects through the current rules.
//
// The approach follows kube-proxy 1.36's conntrack reconciler: rather than remembering
// which endpoints went away, the proxier describes the desired state ([Target]: a service
// destination and the endpoints it may legitimately be translated to) and a [Cleaner]
// walks the flow table once, deleting every flow addressed to a target whose reply
// source is not one of its endpoints. That single rule covers removed endpoints,
// changed target ports, deleted Services and flows that were never translated because
// the Service had no endpoints when they started. [Netlink] is the kernel
// implementation (one table dump per call, namespace-aware); [Fake] keeps an in-memory
// flow table for tests.
//
// The package is shared by the iptables and IPVS backends; it knows nothing about
// either.
package conntrack
