// Package envtest starts a real kube-apiserver and etcd for kproxy's integration tests,
// through controller-runtime's envtest. The binaries are built from Go modules by
// hack/envtest-assets.sh into a cache outside the clone and reused; KUBEBUILDER_ASSETS
// overrides where they are found.
package envtest
