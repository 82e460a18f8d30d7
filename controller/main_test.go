package controller_test

import (
	"fmt"
	"os"
	"testing"

	"github.com/go-logr/logr"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/kproxy/kproxy/test/envtest"
)

// runWithEnv starts one real control plane for the whole package.
func runWithEnv(m *testing.M) {
	// Managers get their own loggers; this only keeps controller-runtime from printing
	// a stack trace about its unset global logger 30 s into the run.
	ctrl.SetLogger(logr.Discard())
	var err error
	env, err = envtest.New(envtest.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("envtest: real kube-apiserver %s at %s\n", env.Version, env.Config.Host)
	code := m.Run()
	if err := env.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "stopping envtest:", err)
	}
	os.Exit(code)
}
