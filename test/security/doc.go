// Package security holds tests of kproxy's security posture, run against the real
// kproxy binary in network namespaces (test/netns) and a real kube-apiserver
// (test/envtest):
//
//   - its metrics listen on loopback only by default, its health endpoint on every
//     address, as kube-proxy's do;
//   - ClusterIPs are not reachable from off the node unless routed to it, while
//     externalIPs and LoadBalancer ingress IPs are;
//   - loadBalancerSourceRanges admit the listed sources and drop the others;
//   - NodePorts answer on 127.0.0.1 only with --iptables-localhost-nodeports, which
//     alone may turn route_localnet on;
//   - the ClusterRole of examples/daemonset grants exactly the verbs kproxy needs, as
//     the API server's authorizer sees it.
//
// The package has no API of its own. Its tests need root, the iptables tools and the
// envtest binaries, and fail (never skip) when one is missing.
package security
