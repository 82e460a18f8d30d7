// Package netns builds small, cluster-shaped network topologies out of Linux network
// namespaces so end-to-end tests can send real packets through a real proxier.
//
// Everything is done in-process with netlink and setns(2); no `ip` binary is needed, so the
// kit works the same on a full host and inside a minimal busybox VM. Each namespace is still
// bind-mounted at /var/run/netns/<name>, exactly where `ip netns add` puts it, so a process
// can be started inside with `ip netns exec <name>` or `nsenter --net=/var/run/netns/<name>`.
//
// # Topology
//
// [New] (for tests) or [Build] creates:
//
//	client-i ──┐                      underlay bridge br0 (198.18.0.0/24, fd00:198:18::/64)
//	node ──────┼── br0 in "underlay" ── remote
//	  └ cbr0 (10.244.1.0/24) ─ local-0 … local-N
//	                              remote └ cbr0 (10.244.2.0/24) ─ remote-0 … remote-M
//
// Every link is dual-stack. The node and the remote node forward IPv4 and IPv6 and route to
// each other's pod CIDR over the underlay; clients route everything through the node, so
// traffic to a service VIP from outside enters the node's PREROUTING like it would from a
// real router. All addresses come from the benchmark range 198.18.0.0/15, the 10.244/16 pod
// range and ULA fd00::/8 prefixes, and exist only inside the namespaces this package makes:
// the host's own network namespace is never modified. Veth pairs are created with both ends
// directly in their target namespaces, so not even a transient link appears on the host.
//
// Several topologies (from parallel test packages, say) can exist at once: each gets a random
// id in its namespace names, and interface names only need to be unique per namespace.
//
// # Running code inside a namespace
//
// [NS.Do] runs a function on an OS thread switched into the namespace. Sockets keep the
// namespace they were created in, so [NS.Listen], [NS.ListenPacket] and [NS.Dial] create them
// inside and hand back ordinary net values usable from any goroutine. Child processes
// inherit the namespace of the thread that starts them; [NS.Command] relies on that.
//
// # Traffic
//
// [NS.ServeTCP], [NS.ServeUDP] and [NS.ServeHTTP] answer every request with one line,
// "<label> <server-ip> <client-ip>", which [ParseReply] turns into a [Reply]: a test sees
// which endpoint answered and whether the client address survived NAT. [NS.DialTCP],
// [NS.DialUDP], [NS.GetHTTP] and [NS.OpenTCP] are the matching clients; [Classify] tells a
// refused connection from a timeout.
//
// # Kernel settings
//
// Every namespace gets loopback up, ICMP rate limiting off (net.ipv4.icmp_ratelimit=0,
// net.ipv4.icmp_ratemask=0 and the IPv6 equivalents; otherwise a burst of probes turns
// "connection refused" into timeouts) and IPv6 duplicate address detection off (addresses are
// usable at once). Node namespaces additionally forward and, when the kernel has bridge
// netfilter, pass bridged traffic to iptables and ip6tables: kube-proxy needs that for
// pod-to-service traffic between pods on the same bridge.
package netns
