package app

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/pflag"
)

// version is kproxy's release, set at build time with
// -ldflags "-X github.com/kproxy/kproxy/cmd/kproxy/app.version=v1.2.3". Without it the
// module version or the VCS revision recorded by the Go toolchain is reported.
var version = ""

// Version returns kproxy's version string.
func Version() string {
	if version != "" {
		return version
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	if v := info.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	rev, dirty := "", false
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev == "" {
		return "devel"
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if dirty {
		rev += "-dirty"
	}
	return "devel-" + rev
}

// versionFlag is --version: "--version" or "--version=true" prints the version,
// "--version=raw" prints build details, "false" (the default) does nothing.
type versionFlag struct{ value string }

func addVersionFlag(fs *pflag.FlagSet) *versionFlag {
	v := &versionFlag{value: "false"}
	fs.Var(v, "version", "--version or --version=raw prints version information and exits.")
	fs.Lookup("version").NoOptDefVal = "true"
	return v
}

func (v *versionFlag) String() string { return v.value }
func (v *versionFlag) Type() string   { return "version" }
func (v *versionFlag) Set(s string) error {
	switch s {
	case "true", "false", "raw":
		v.value = s
		return nil
	}
	return fmt.Errorf("want true, false or raw (kproxy cannot report a version other than its own)")
}

func (v *versionFlag) requested() bool { return v.value != "false" }

func (v *versionFlag) text() string {
	if v.value == "raw" {
		return fmt.Sprintf("kproxy %s\ngo: %s\nplatform: %s/%s\ncompatible with: kube-proxy v1.36 (kubeproxy.config.k8s.io/v1alpha1)",
			Version(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
	}
	return "kproxy " + Version()
}
