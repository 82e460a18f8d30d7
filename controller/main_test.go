package controller_test

import (
	"fmt"
	"os"
	"testing"

	"github.com/kproxy/kproxy/test/envtest"
)

// runWithEnv starts one real control plane for the whole package.
func runWithEnv(m *testing.M) {
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
