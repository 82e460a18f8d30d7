// Package e2e holds kproxy's real-kernel end-to-end tests: they build a small cluster out
// of network namespaces (see test/netns), run a proxier inside the node namespace exactly
// as a node would, and prove each behaviour with real TCP and UDP connections from pods
// and external clients.
//
// The tests need root (they create namespaces and program iptables inside them) and skip
// with a clear message otherwise. Nothing outside the namespaces they create is touched,
// and no packet is sent anywhere else.
//
//	sudo go test ./test/e2e/ -run TestIPTables -v
package e2e
