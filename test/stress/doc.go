// Package stress holds concurrency stress tests of kproxy as a whole: its controllers
// against a real kube-apiserver (test/envtest) and its iptables proxier against a real
// kernel inside a network namespace, under a storm of concurrent API changes.
//
// The package has no API of its own; everything is in its tests. They need root, the
// iptables tools and the envtest binaries, and fail (never skip) when one is missing.
//
// TestRandomChangesConverge is the main test: several writers apply thousands of
// random Service and EndpointSlice changes while kproxy syncs continuously; once kproxy
// is idle, the rules in the kernel must be exactly what a fresh model, built from a
// final list of the API objects, renders to. Set KPROXY_STRESS_SEED to replay a run.
package stress
