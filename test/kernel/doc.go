// Package kernel holds kproxy's reliability tests against real kernel faults and
// against other software's rules on the same node (issue #8, items 2 and 4).
//
// Every test builds its own network-namespace topology (test/netns), runs the iptables
// proxier inside the node namespace as a library, the way the kproxy command does (the
// Proxier driven by a proxier.Runner, or iptables.NewNodeProxier), and proves what it
// claims with real connections from pods and clients:
//
//   - a restore that fails because another process holds the xtables lock
//     (iptables-legacy, a private lock file so the host is never blocked), or because the
//     kernel rejects the transaction (nft and legacy), leaves the previous ruleset in place,
//     is counted and logged, and is repaired by the Runner's full retry;
//   - the Runner's injected-failure path through the Fake kernel;
//   - an external flush of the nat table (or of everything, as a firewall reload does) is
//     repaired within one sync period;
//   - Docker-, CNI- and administrator-owned rules and ipsets stay byte-identical through
//     100 randomly varied syncs and kproxy's cleanup.
//
// The tests need root and both iptables variants; without root they skip, a missing tool
// fails them. Nothing outside the namespaces they create is touched.
//
//	sudo go test ./test/kernel/ -v
package kernel
