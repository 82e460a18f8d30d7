package config

import (
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/spf13/pflag"
	logsapi "k8s.io/component-base/logs/api/v1"
	v1alpha1 "k8s.io/kube-proxy/config/v1alpha1"
)

// Options holds what kproxy's command line decides: the configuration (from flags or a
// file) and the actions that are not part of it.
type Options struct {
	// ConfigFile is --config.
	ConfigFile string
	// WriteConfigTo is --write-config-to: write Config there and exit.
	WriteConfigTo string
	// Cleanup is --cleanup: remove every rule kproxy's backends own and exit.
	Cleanup bool
	// InitOnly is --init-only: do the privileged node setup and exit.
	InitOnly bool
	// Master is --master, which overrides the kubeconfig's server URL.
	Master string

	// Config is the effective configuration. It holds the flag values until Complete
	// replaces it with the merged, defaulted result.
	Config *v1alpha1.KubeProxyConfiguration
	// Warnings lists what Complete noticed without failing (flags ignored because of
	// --config, settings without effect); log them once logging is set up.
	Warnings []string

	flags            *v1alpha1.KubeProxyConfiguration // what configuration flags write to
	fs               *pflag.FlagSet
	hostnameOverride string
	healthzPort      int32
	metricsPort      int32
	completed        bool
}

// NewOptions returns options holding kube-proxy's flag defaults.
func NewOptions() *Options {
	c := flagDefaults()
	return &Options{Config: c, flags: c, healthzPort: HealthzPort, metricsPort: MetricsPort}
}

// Complete merges flags and the --config file into Config following kube-proxy's
// precedence (see the package documentation), then applies the platform defaults. Call
// it after parsing the flag set AddFlags registered on. It fails only when the file
// cannot be read or decoded or --hostname-override is blank; everything else is
// reported by Validate.
func (o *Options) Complete() error {
	if o.fs == nil {
		return fmt.Errorf("config: Complete called before AddFlags")
	}
	if o.ConfigFile != "" {
		c, err := Load(o.ConfigFile)
		if err != nil {
			return err
		}
		if err := copyLoggingFlags(o.fs, &c.Logging); err != nil {
			return err
		}
		if ignored := o.ignoredFlags(); len(ignored) > 0 {
			o.Warnings = append(o.Warnings, fmt.Sprintf(
				"ignoring %s because --config is set (kube-proxy ignores them too); set the corresponding fields in %s instead",
				strings.Join(ignored, ", "), o.ConfigFile))
		}
		o.Config = c
	} else {
		c := o.flags
		c.HealthzBindAddress = addressFromPortFlag(c.HealthzBindAddress, o.healthzPort)
		c.MetricsBindAddress = addressFromPortFlag(c.MetricsBindAddress, o.metricsPort)
		o.Config = c
	}
	if o.hostnameOverride != "" {
		name := strings.TrimSpace(o.hostnameOverride)
		if name == "" {
			return fmt.Errorf("--hostname-override: a blank node name is invalid")
		}
		o.Config.HostnameOverride = strings.ToLower(name)
	}
	ApplyPlatformDefaults(o.Config)
	if o.Config.Logging.FlushFrequency.Duration.Duration != logsapi.LogFlushFreqDefault {
		o.Warnings = append(o.Warnings, "the log flush frequency has no effect: kproxy writes its log unbuffered")
	}
	o.completed = true
	return nil
}

// ignoredFlags lists the configuration flags set on the command line that --config
// makes ineffective, as "--name" strings.
func (o *Options) ignoredFlags() []string {
	var out []string
	o.fs.Visit(func(f *pflag.Flag) {
		if slices.Contains(loggingFlags, f.Name) || slices.Contains(nonConfigFlags, f.Name) || isRejectedFlag(f.Name) {
			return
		}
		out = append(out, "--"+f.Name)
	})
	return out
}

func isRejectedFlag(name string) bool {
	return slices.ContainsFunc(rejectedFlags, func(r rejectedFlag) bool { return r.name == name })
}

// copyLoggingFlags applies the logging flags set on the command line over a file's
// logging section, as kube-proxy does: a flag wins, and --vmodule patterns come before
// the file's so that they take precedence.
func copyLoggingFlags(from *pflag.FlagSet, to *logsapi.LoggingConfiguration) error {
	fileVModule := to.VModule
	to.VModule = nil
	var clone pflag.FlagSet
	logsapi.AddFlags(to, &clone)
	var err error
	clone.VisitAll(func(f *pflag.Flag) {
		src := from.Lookup(f.Name)
		if err != nil || src == nil || !src.Changed {
			return
		}
		if e := f.Value.Set(src.Value.String()); e != nil {
			err = fmt.Errorf("--%s: %w", f.Name, e)
		}
	})
	to.VModule = append(to.VModule, fileVModule...)
	return err
}

// addressFromPortFlag applies the deprecated --healthz-port/--metrics-port: 0 disables
// the server, any other port is appended to a bare IP (an address with a port keeps
// it), as kube-proxy does when no --config is given.
func addressFromPortFlag(addr string, port int32) string {
	if port == 0 {
		return ""
	}
	return appendPortIfNeeded(addr, int(port))
}

// NodeName returns the name of this node's Node object: hostnameOverride when set,
// else the host name, trimmed and lower-cased as kube-proxy does.
func NodeName(c *v1alpha1.KubeProxyConfiguration) (string, error) {
	return nodeName(c.HostnameOverride, os.Hostname)
}

func nodeName(override string, hostname func() (string, error)) (string, error) {
	name := override
	if name == "" {
		h, err := hostname()
		if err != nil {
			return "", fmt.Errorf("finding this node's name: %w (set --hostname-override)", err)
		}
		name = h
	}
	name = strings.ToLower(strings.TrimSpace(name))
	if name == "" {
		return "", fmt.Errorf("finding this node's name: the host name is empty (set --hostname-override)")
	}
	return name, nil
}
