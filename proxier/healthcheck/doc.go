// Package healthcheck serves kproxy's health endpoints the way kube-proxy does, so that
// load balancers, liveness probes and dashboards built for kube-proxy keep working:
//
//   - [ProxyHealth] answers /healthz and /livez (port 10256 by default). It is a
//     [proxier.SyncObserver]: a change queued but not applied within the health timeout
//     (2 × syncPeriod) makes both fail, and /healthz also fails while the node is being
//     deleted, so load balancers drain it first.
//   - [ServiceHealth] opens one HTTP server per Service with externalTrafficPolicy Local
//     on its healthCheckNodePort, answering 200 while this node has a ready endpoint of
//     the Service and 503 otherwise. It follows the model through SyncDone, so it opens
//     and closes listeners only after a sync succeeded, as kube-proxy does.
//   - [Server] runs any handler on an address with kube-proxy's bind semantics (retry
//     every 5s, or exit when bind failures are fatal), and [NewMetricsMux] builds the
//     metrics endpoint's handler (/metrics, /healthz, /proxyMode, /debug/pprof).
//
// Everything takes its clock, listener and address discovery as options, so tests run
// with a fake clock and real sockets on 127.0.0.1.
package healthcheck
