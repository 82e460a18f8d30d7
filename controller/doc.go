// Package controller feeds kproxy's model from a Kubernetes API server with
// controller-runtime: level-based reconcilers for Services, EndpointSlices and this
// node's Node write into a proxier.Builder, and a proxier.Runner turns the resulting
// snapshots into syncs of the chosen Proxier.
//
// Setup registers all of it on a controller-runtime Manager, which may be kproxy's own
// or one an embedder already runs for its other controllers. Every runnable added is a
// per-node agent and never asks for leader election.
package controller
