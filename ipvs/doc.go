// Package ipvs is kproxy's IPVS backend: a proxier.Proxier that load-balances Services
// with the kernel's IP Virtual Server, as kube-proxy's IPVS mode does, with the same
// virtual servers, kube-ipvs0 addresses, ipsets and iptables chains, so a node can
// switch between the two.
//
// The package is split the way sigs.k8s.io/knftables is:
//
//   - Desired turns a proxier.State into a Snapshot (virtual servers with their real
//     servers, addresses on kube-ipvs0, ipset members, the iptables glue). It is pure.
//   - Plan diffs two Snapshots into ordered operations (see Action for the ordering
//     rules). It is pure, and minimal: an unchanged state plans nothing.
//   - Kernel is the seam to the machine, one operation per call; the optional Batcher
//     takes a run of operations of one kind at once. Netlink implements both over
//     netlink only, no binaries executed: github.com/moby/ipvs lists virtual servers
//     and sets timeouts, vishvananda/netlink handles the device, address listing and
//     set creation, and a small encoder of its own sends virtual and real servers,
//     addresses and set members, hundreds per system call (vishvananda/netlink also
//     gets set members wrong for bitmap:port). Fake behaves like it in memory, errnos
//     included, and one conformance suite runs against both.
//   - Apply runs a plan in order, in batches of one action, and stops after the first
//     failed batch; addresses are bound on a second goroutine as soon as their virtual
//     servers are complete. IPVS has no transactions; the ordering keeps every service
//     reachable at every step, and the next full sync converges from wherever a
//     failure left things.
//   - Proxier ties them together: full syncs read the kernel back and repair it,
//     partial syncs touch only the changed services, removed TCP endpoints drain
//     gracefully, stale UDP/SCTP conntrack entries are cleared.
//
// The iptables glue (masquerading, firewalling) goes through an iptables.Kernel as one
// iptables-restore per change; it matches ipsets, so it stays a couple of dozen rules
// however many Services there are.
//
// Differences from kube-proxy worth knowing: kproxy only deletes virtual servers it
// owns (kube-proxy deletes every one outside --ipvs-exclude-cidrs); weight-0 real
// servers left by a crash are cleaned up by the next full sync (kube-proxy keeps them
// forever); a draining endpoint that returns gets its weight back instead of being
// deleted and re-added; partial syncs do not re-read the host's addresses (the next
// full sync does); and the per-Service scheduler annotation is not supported.
package ipvs
