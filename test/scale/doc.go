// Package scale is kproxy's scale and performance harness: it measures kproxy and
// upstream kube-proxy side by side, in turn, against the same real API server and the
// same synthetic cluster, with real packets.
//
// For each size N it grows one envtest control plane (a /12 service range, a wide
// node-port range) to N Services with EndpointSlices — 70% ClusterIP, 20% NodePort,
// 10% LoadBalancer with an ingress IP, 1–50 endpoints each (mean ≈ 10), generated
// deterministically by [Workload] — plus a sentinel Service backed by a real pod
// server. Each proxy then runs as a child process inside the node namespace of a fresh
// [netns] topology (the API server is relayed onto the node's loopback), with the same
// kube-proxy flags, and [Run] measures:
//
//   - cold program time: process start until the sentinel's ClusterIP answers a real
//     connection from a client namespace;
//   - first-packet latency: TCP connect time to the sentinel's ClusterIP and NodePort
//     (the NodePort rule sits behind every ClusterIP rule in kube-proxy's layout), with
//     a direct connect to the pod as the baseline;
//   - kernel state: iptables-save lines, chains and rules in the node namespace;
//   - steady CPU, peak RSS (VmHWM) of the proxy, and CPU including the iptables
//     processes it waited for (cutime and cstime);
//   - one-change latency: the sentinel's EndpointSlice is moved to the other pod and
//     real connections poll until they reach it, with --iptables-min-sync-period 0 and
//     1s (each in its own fresh world);
//   - churn: EndpointSlice updates at a fixed rate for a while, with the sentinel
//     flipped between pods meanwhile to sample the change latency under load, and the
//     proxy's CPU seconds.
//
// Probes are real TCP connections from the client namespace, each a new connection
// (so its first packet walks the rules) reset on close (no TIME_WAIT pile-up). The
// world's underlay, the node's default gateway, owns the service range as local
// addresses, so a VIP the proxy has not programmed yet answers with an immediate reset
// rather than a black hole: cold times are not rounded up to a probe timeout.
//
// [WriteReport] turns the results into a Markdown table, a JSON file and PNG plots.
// The command in cmd/bench drives it (make bench; -replot redraws a finished run);
// TestSmoke runs the smallest size.
//
// Every process the harness starts is killed and every namespace removed on every exit
// path the process survives; child proxies also get SIGKILL if the harness dies
// (Pdeathsig). Tests derive their deadline from go test's -timeout so the harness stops
// and cleans up before the test binary is killed.
package scale
