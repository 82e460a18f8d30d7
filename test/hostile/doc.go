// Package hostile runs kproxy's controllers against a real kube-apiserver full of
// invalid and hostile objects next to valid ones.
//
// TestHostileObjects creates twenty kinds of bad input (oversized EndpointSlices,
// addresses of the wrong family or of special ranges, ports out of range, odd
// names, duplicate and orphaned slices, conflicting protocols, out-of-range node
// ports, ...) and checks three things: what the apiserver refuses never reaches
// kproxy; every valid Service is in the model with exactly the endpoints it should
// have; and every bad object that does reach kproxy is reported exactly once, by the
// invalid-objects metric and by one Event, without disturbing anything else.
package hostile
