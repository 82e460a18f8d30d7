package config

import (
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
	v1alpha1 "k8s.io/kube-proxy/config/v1alpha1"
)

// IPVSSchedulers are the IPVS schedulers kproxy accepts ("" means rr).
var IPVSSchedulers = []string{"", "rr", "wrr", "lc", "wlc", "lblc", "lblcr", "sh", "dh", "sed", "nq", "mh"}

// Validate checks a defaulted configuration the way kube-proxy does, and also rejects
// settings kproxy does not implement: those are field.ErrorTypeForbidden errors whose
// detail says why. Paths are the v1alpha1 JSON field names ("iptables.masqueradeBit").
func Validate(c *v1alpha1.KubeProxyConfiguration) field.ErrorList {
	var errs field.ErrorList
	unsupported := func(p *field.Path, why string) { errs = append(errs, field.Forbidden(p, why)) }

	if len(c.FeatureGates) > 0 {
		unsupported(field.NewPath("featureGates"), "kproxy has no feature gates; its behaviour is kube-proxy 1.36's with default gates")
	}
	if c.ClientConnection.Burst < 0 {
		errs = append(errs, field.Invalid(field.NewPath("clientConnection", "burst"), c.ClientConnection.Burst, "must be greater than or equal to 0"))
	}
	errs = append(errs, validateLogging(c)...)

	if _, err := parseIP(c.BindAddress); err != nil {
		errs = append(errs, field.Invalid(field.NewPath("bindAddress"), c.BindAddress, "must be an IP address"))
	}
	for _, a := range []struct {
		name, value string
	}{{"healthzBindAddress", c.HealthzBindAddress}, {"metricsBindAddress", c.MetricsBindAddress}} {
		if a.value == "" {
			continue // the server is disabled
		}
		if err := validateHostPort(a.value); err != "" {
			errs = append(errs, field.Invalid(field.NewPath(a.name), a.value, err))
		}
	}
	if c.ShowHiddenMetricsForVersion != "" {
		unsupported(field.NewPath("showHiddenMetricsForVersion"), "kproxy has no hidden metrics")
	}
	if c.PortRange != "" {
		unsupported(field.NewPath("portRange"), "port ranges only applied to the userspace proxy, which Kubernetes removed")
	}
	if c.Winkernel != (v1alpha1.KubeProxyWinkernelConfiguration{}) {
		unsupported(field.NewPath("winkernel"), "Windows settings; kproxy runs on Linux")
	}
	if c.WindowsRunAsService {
		unsupported(field.NewPath("windowsRunAsService"), "Windows settings; kproxy runs on Linux")
	}

	mode := field.NewPath("mode")
	switch c.Mode {
	case "", ModeIPTables:
		errs = append(errs, validatePeriods(field.NewPath("iptables"), c.IPTables.SyncPeriod, c.IPTables.MinSyncPeriod)...)
	case ModeIPVS:
		errs = append(errs, validateIPVS(c.IPVS)...)
		if b := c.IPTables.MasqueradeBit; b != nil && *b == 0 {
			unsupported(field.NewPath("iptables", "masqueradeBit"), "kproxy's ipvs mode needs a masquerade bit from 1 to 31 (0 would mean the default bit 14)")
		}
	case ModeNFTables:
		unsupported(mode, "the nftables proxy mode is not implemented by kproxy (use iptables)")
	default:
		errs = append(errs, field.NotSupported(mode, c.Mode, []string{string(ModeIPTables), string(ModeIPVS)}))
	}
	if b := c.IPTables.MasqueradeBit; b != nil && (*b < 0 || *b > 31) {
		errs = append(errs, field.Invalid(field.NewPath("iptables", "masqueradeBit"), *b, "must be within the range [0, 31]"))
	}

	errs = append(errs, validateDetectLocal(c)...)
	errs = append(errs, validateNodePortAddresses(c.NodePortAddresses)...)

	if a := c.OOMScoreAdj; a != nil && (*a < -1000 || *a > 1000) {
		errs = append(errs, field.Invalid(field.NewPath("oomScoreAdj"), *a, "must be within the range [-1000, 1000]"))
	}
	errs = append(errs, validateConntrack(c.Conntrack)...)
	if c.ConfigSyncPeriod.Duration <= 0 {
		errs = append(errs, field.Invalid(field.NewPath("configSyncPeriod"), c.ConfigSyncPeriod.Duration.String(), "must be greater than 0"))
	}
	return errs
}

func validateLogging(c *v1alpha1.KubeProxyConfiguration) field.ErrorList {
	var errs field.ErrorList
	p := field.NewPath("logging")
	switch c.Logging.Format {
	case "", "text":
	case "json":
		errs = append(errs, field.Forbidden(p.Child("format"), "kproxy only logs in text format"))
	default:
		errs = append(errs, field.NotSupported(p.Child("format"), c.Logging.Format, []string{"text"}))
	}
	o := c.Logging.Options
	if o.Text.SplitStream {
		errs = append(errs, field.Forbidden(p.Child("options", "text", "splitStream"), "kproxy writes its whole log to stderr"))
	}
	if !o.Text.InfoBufferSize.IsZero() {
		errs = append(errs, field.Forbidden(p.Child("options", "text", "infoBufferSize"), "kproxy writes its log unbuffered"))
	}
	if o.JSON.SplitStream {
		errs = append(errs, field.Forbidden(p.Child("options", "json", "splitStream"), "kproxy only logs in text format"))
	}
	if !o.JSON.InfoBufferSize.IsZero() {
		errs = append(errs, field.Forbidden(p.Child("options", "json", "infoBufferSize"), "kproxy only logs in text format"))
	}
	if c.Logging.FlushFrequency.Duration.Duration < 0 {
		errs = append(errs, field.Invalid(p.Child("flushFrequency"), c.Logging.FlushFrequency.Duration.Duration.String(), "must not be negative"))
	}
	return errs
}

// validatePeriods checks one mode's syncPeriod and minSyncPeriod.
func validatePeriods(p *field.Path, sync, minSync metav1.Duration) field.ErrorList {
	var errs field.ErrorList
	if sync.Duration <= 0 {
		errs = append(errs, field.Invalid(p.Child("syncPeriod"), sync.Duration.String(), "must be greater than 0"))
	}
	if minSync.Duration < 0 {
		errs = append(errs, field.Invalid(p.Child("minSyncPeriod"), minSync.Duration.String(), "must be greater than or equal to 0"))
	} else if sync.Duration > 0 && minSync.Duration > sync.Duration {
		errs = append(errs, field.Invalid(p.Child("minSyncPeriod"), minSync.Duration.String(),
			fmt.Sprintf("must not be greater than %s (%s)", p.Child("syncPeriod"), sync.Duration)))
	}
	return errs
}

func validateIPVS(c v1alpha1.KubeProxyIPVSConfiguration) field.ErrorList {
	p := field.NewPath("ipvs")
	errs := validatePeriods(p, c.SyncPeriod, c.MinSyncPeriod)
	if !slices.Contains(IPVSSchedulers, c.Scheduler) {
		errs = append(errs, field.NotSupported(p.Child("scheduler"), c.Scheduler, IPVSSchedulers[1:]))
	}
	for i, cidr := range c.ExcludeCIDRs {
		if _, err := parsePrefix(cidr); err != nil {
			errs = append(errs, field.Invalid(p.Child("excludeCIDRs").Index(i), cidr, "must be a valid CIDR"))
		}
	}
	for _, t := range []struct {
		name string
		d    time.Duration
	}{{"tcpTimeout", c.TCPTimeout.Duration}, {"tcpFinTimeout", c.TCPFinTimeout.Duration}, {"udpTimeout", c.UDPTimeout.Duration}} {
		if t.d < 0 {
			errs = append(errs, field.Invalid(p.Child(t.name), t.d.String(), "must be greater than or equal to 0"))
		}
	}
	return errs
}

// ifaceNameRE accepts what the kernel accepts as an interface name; ifacePrefixRE
// leaves room for iptables' "+" wildcard after the prefix.
var (
	ifaceNameRE   = regexp.MustCompile(`^[^/\s:]{1,15}$`)
	ifacePrefixRE = regexp.MustCompile(`^[^/\s:]{1,14}$`)
)

func validateDetectLocal(c *v1alpha1.KubeProxyConfiguration) field.ErrorList {
	var errs field.ErrorList
	dl := field.NewPath("detectLocal")
	switch c.DetectLocalMode {
	case "", LocalModeClusterCIDR, LocalModeNodeCIDR:
	case LocalModeBridgeInterface:
		switch name := c.DetectLocal.BridgeInterface; {
		case name == "":
			errs = append(errs, field.Required(dl.Child("bridgeInterface"), "required when detectLocalMode is BridgeInterface"))
		case !ifaceNameRE.MatchString(name):
			errs = append(errs, field.Invalid(dl.Child("bridgeInterface"), name, "must be an interface name (1-15 characters, no '/', ':' or space)"))
		}
	case LocalModeInterfaceNamePrefix:
		switch prefix := c.DetectLocal.InterfaceNamePrefix; {
		case prefix == "":
			errs = append(errs, field.Required(dl.Child("interfaceNamePrefix"), "required when detectLocalMode is InterfaceNamePrefix"))
		case !ifacePrefixRE.MatchString(prefix):
			errs = append(errs, field.Invalid(dl.Child("interfaceNamePrefix"), prefix, "must be an interface name prefix (1-14 characters, no '/', ':' or space)"))
		}
	default:
		errs = append(errs, field.NotSupported(field.NewPath("detectLocalMode"), c.DetectLocalMode,
			[]string{string(LocalModeClusterCIDR), string(LocalModeNodeCIDR), string(LocalModeBridgeInterface), string(LocalModeInterfaceNamePrefix)}))
	}
	if c.ClusterCIDR != "" {
		p := field.NewPath("clusterCIDR")
		cidrs, err := ParseClusterCIDRs(c.ClusterCIDR)
		switch {
		case err != nil:
			errs = append(errs, field.Invalid(p, c.ClusterCIDR, err.Error()))
		case len(cidrs) == 2 && cidrs[0].Addr().Is4() == cidrs[1].Addr().Is4():
			errs = append(errs, field.Invalid(p, c.ClusterCIDR, "must be one CIDR or a dual-stack pair of CIDRs (one IPv4, one IPv6)"))
		}
	}
	return errs
}

// ParseClusterCIDRs parses clusterCIDR ("10.244.0.0/16" or "10.244.0.0/16,fd00:10:244::/56").
func ParseClusterCIDRs(s string) ([]netip.Prefix, error) {
	parts := strings.Split(s, ",")
	if len(parts) > 2 {
		return nil, fmt.Errorf("must be one CIDR or a dual-stack pair of CIDRs (one IPv4, one IPv6)")
	}
	var out []netip.Prefix
	for _, part := range parts {
		p, err := parsePrefix(strings.TrimSpace(part))
		if err != nil {
			return nil, fmt.Errorf("%q is not a valid CIDR", part)
		}
		out = append(out, p)
	}
	return out, nil
}

func validateNodePortAddresses(addrs []string) field.ErrorList {
	var errs field.ErrorList
	p := field.NewPath("nodePortAddresses")
	for i, a := range addrs {
		if a == NodePortAddressesPrimary {
			if len(addrs) > 1 {
				errs = append(errs, field.Invalid(p.Index(i), a, "'primary' cannot be combined with CIDRs"))
			}
			continue
		}
		if _, err := parsePrefix(a); err != nil {
			errs = append(errs, field.Invalid(p.Index(i), a, "must be a valid CIDR or the single value 'primary'"))
		}
	}
	return errs
}

func validateConntrack(c v1alpha1.KubeProxyConntrackConfiguration) field.ErrorList {
	var errs field.ErrorList
	p := field.NewPath("conntrack")
	for _, v := range []struct {
		name string
		n    *int32
	}{{"maxPerCore", c.MaxPerCore}, {"min", c.Min}} {
		if v.n != nil && *v.n < 0 {
			errs = append(errs, field.Invalid(p.Child(v.name), *v.n, "must be greater than or equal to 0"))
		}
	}
	deref := func(d *metav1.Duration) time.Duration {
		if d == nil {
			return 0
		}
		return d.Duration
	}
	for _, t := range []struct {
		name string
		d    time.Duration
	}{
		{"tcpEstablishedTimeout", deref(c.TCPEstablishedTimeout)},
		{"tcpCloseWaitTimeout", deref(c.TCPCloseWaitTimeout)},
		{"udpTimeout", c.UDPTimeout.Duration},
		{"udpStreamTimeout", c.UDPStreamTimeout.Duration},
	} {
		if t.d < 0 {
			errs = append(errs, field.Invalid(p.Child(t.name), t.d.String(), "must be greater than or equal to 0"))
		}
	}
	return errs
}

// validateHostPort returns why s is not "IP:port", or "".
func validateHostPort(s string) string {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return "must be IP:port"
	}
	if _, err := parseIP(host); err != nil {
		return "must be IP:port with a valid IP"
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return "must be IP:port with a port between 1 and 65535"
	}
	return ""
}

func parseIP(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err == nil && a.Zone() != "" {
		return netip.Addr{}, fmt.Errorf("zoned address %q", s)
	}
	return a, err
}

func parsePrefix(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err == nil && p.Addr().Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("zoned prefix %q", s)
	}
	return p, err
}

// Error is an invalid configuration: every problem, each naming the flag or the file
// field it comes from.
type Error struct {
	// Problems are one sentence each, e.g. "--iptables-masquerade-bit: Invalid value:
	// 32: must be within the range [0, 31]".
	Problems []string
}

// Error joins every problem in one line.
func (e *Error) Error() string {
	return "invalid configuration: " + strings.Join(e.Problems, "; ")
}

// Validate checks the completed configuration and the flags kproxy rejects. Each
// problem names the flag it came from, or the field of the --config file.
func (o *Options) Validate() error {
	if !o.completed {
		return fmt.Errorf("config: Validate called before Complete")
	}
	var problems []string
	for _, r := range rejectedFlags {
		if f := o.fs.Lookup(r.name); f != nil && f.Changed {
			problems = append(problems, fmt.Sprintf("--%s is not supported by kproxy: %s", r.name, r.reason))
		}
	}
	for _, e := range Validate(o.Config) {
		problems = append(problems, o.describe(e))
	}
	if len(problems) > 0 {
		return &Error{Problems: problems}
	}
	return nil
}

// indexRE strips list indexes from a field path to find its flag.
var indexRE = regexp.MustCompile(`\[[0-9]+\]`)

// describe words a validation error in terms of where the value came from: the flag
// when there is no --config file (or the flag overrides the file), else the file field.
func (o *Options) describe(e *field.Error) string {
	name := fmt.Sprintf("%s in config file %q", e.Field, o.ConfigFile)
	if flag, ok := fieldFlags[indexRE.ReplaceAllString(e.Field, "")]; ok {
		f := o.fs.Lookup(flag)
		fromFlag := o.ConfigFile == "" || (slices.Contains(loggingFlags, flag) && f != nil && f.Changed)
		if fromFlag {
			name = "--" + flag
		}
	}
	if e.Type == field.ErrorTypeForbidden {
		return fmt.Sprintf("%s is not supported by kproxy: %s", name, e.Detail)
	}
	return name + ": " + e.ErrorBody()
}
