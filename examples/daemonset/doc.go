// Package daemonset holds the manifests, the Dockerfile and the guide for running kproxy
// as a DaemonSet in place of kube-proxy (see README.md). It has no Go API; its tests
// apply every manifest to a real kube-apiserver with strict field validation, pin the
// ServiceAccount's permissions, run kproxy's watch-and-report code under exactly those
// permissions, load the ConfigMap's configuration through kproxy's command line, and
// check the Dockerfile against the repository.
package daemonset
