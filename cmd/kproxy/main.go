// Command kproxy is a drop-in replacement for kube-proxy. It accepts kube-proxy's flags
// and KubeProxyConfiguration file; see package app for what it runs.
package main

import (
	"os"

	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/kproxy/kproxy/cmd/kproxy/app"
)

func main() {
	// SIGTERM or SIGINT cancels the context: kproxy stops and leaves its rules in
	// place; a second signal exits at once.
	ctx := ctrl.SetupSignalHandler()
	os.Exit(app.Main(ctx, os.Args[1:], os.Stdout, os.Stderr))
}
