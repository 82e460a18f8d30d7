package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/pflag"

	"github.com/kproxy/kproxy/cmd/kproxy/app/config"
)

const usageHeader = `kproxy is a drop-in replacement for kube-proxy: it watches Services, EndpointSlices
and this node's Node object and programs the node's data plane (iptables or IPVS) so that
Service traffic reaches its endpoints. It accepts kube-proxy's flags and its
kubeproxy.config.k8s.io/v1alpha1 configuration file.

Usage:
  kproxy [flags]
  kproxy render -f cluster.yaml [flags]   print the rules kproxy would program (see kproxy render --help)
  kproxy trace -f cluster.yaml --src IP --dst IP:PORT/PROTO [flags]   walk a packet through them

Flags:
`

// Main runs the kproxy command with args (without the program name) and returns the
// process exit code: 0 on success (including --help, --version, --write-config-to,
// --cleanup, --init-only and a signal-initiated shutdown), 1 on any error, which is
// reported on stderr in one line.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "render" {
		return renderMain(ctx, args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "trace" {
		return traceMain(ctx, args[1:], stdout, stderr)
	}
	opts := config.NewOptions()
	fs := pflag.NewFlagSet("kproxy", pflag.ContinueOnError)
	fs.SetOutput(stderr) // deprecation notices
	fs.Usage = func() {}
	// Like kube-proxy (and every Kubernetes component), accept "_" for "-" in names.
	fs.SetNormalizeFunc(func(_ *pflag.FlagSet, name string) pflag.NormalizedName {
		return pflag.NormalizedName(strings.ReplaceAll(name, "_", "-"))
	})
	opts.AddFlags(fs)
	help := fs.BoolP("help", "h", false, "Print this help and exit.")
	ver := addVersionFlag(fs)

	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			printUsage(stdout, fs)
			return 0
		}
		return fail(stderr, fmt.Errorf("%w (see kproxy --help)", err))
	}
	switch {
	case *help:
		printUsage(stdout, fs)
		return 0
	case ver.requested():
		fmt.Fprintln(stdout, ver.text())
		return 0
	case fs.NArg() > 0:
		return fail(stderr, fmt.Errorf("kproxy takes no arguments, got %q", fs.Args()))
	}

	if err := opts.Complete(); err != nil {
		return fail(stderr, err)
	}
	if err := opts.Validate(); err != nil {
		return fail(stderr, err)
	}
	log := newLogger(opts.Config.Logging, stderr)
	for _, w := range opts.Warnings {
		log.Info("WARNING: " + w)
	}

	if opts.WriteConfigTo != "" {
		if err := config.WriteFile(opts.WriteConfigTo, opts.Config); err != nil {
			return fail(stderr, err)
		}
		log.Info("Wrote configuration", "file", opts.WriteConfigTo)
		return 0
	}
	if err := Run(ctx, opts, log); err != nil {
		return fail(stderr, err)
	}
	return 0
}

func printUsage(w io.Writer, fs *pflag.FlagSet) {
	fmt.Fprint(w, usageHeader)
	fmt.Fprint(w, fs.FlagUsages())
}

// fail prints err as one line and returns the exit code for failures.
func fail(stderr io.Writer, err error) int {
	fmt.Fprintf(stderr, "kproxy: %s\n", strings.ReplaceAll(strings.TrimSpace(err.Error()), "\n", " "))
	return 1
}
