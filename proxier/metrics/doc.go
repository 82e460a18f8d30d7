// Package metrics defines kproxy's Prometheus metrics. Names and labels of the ones
// kube-proxy also exports are kept identical, so dashboards and alerts written for
// kube-proxy keep working after a swap. Metrics are injected into the components that
// update them (a *Metrics value), never reached through globals, so an embedder can
// register them on its own registry or run two proxiers side by side.
package metrics
