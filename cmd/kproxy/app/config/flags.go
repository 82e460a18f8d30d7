package config

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/spf13/pflag"
	cliflag "k8s.io/component-base/cli/flag"
	logsapi "k8s.io/component-base/logs/api/v1"
)

// AddFlags registers kube-proxy's flags on fs, with kube-proxy's names, types and
// defaults, bound to o. Flags kproxy does not implement are registered too (the ones
// with no configuration field hidden) so that using one fails with a message saying
// why, rather than "unknown flag".
func (o *Options) AddFlags(fs *pflag.FlagSet) {
	o.fs = fs
	c := o.flags

	fs.StringVar(&o.ConfigFile, "config", o.ConfigFile, "Path of a kubeproxy.config.k8s.io/v1alpha1 KubeProxyConfiguration file. When set, the file is the configuration and the other configuration flags are ignored (with a warning), except --hostname-override and the logging flags.")
	fs.StringVar(&o.WriteConfigTo, "write-config-to", o.WriteConfigTo, "Write the effective configuration (defaults, then flags or the --config file) to this path as YAML and exit.")
	fs.BoolVar(&o.Cleanup, "cleanup", o.Cleanup, "Remove the rules kproxy (or kube-proxy) programmed, for every proxy mode, and exit.")
	fs.BoolVar(&o.InitOnly, "init-only", o.InitOnly, "Do the setup that needs full root privileges (sysctls, conntrack limits) and exit; kproxy can then run with CAP_NET_ADMIN only.")

	fs.Var(cliflag.NewMapStringBool(&c.FeatureGates), "feature-gates", "Rejected: kproxy has no feature gates. Ignored when --config is given.")

	fs.StringVar(&c.ClientConnection.Kubeconfig, "kubeconfig", c.ClientConnection.Kubeconfig, "Path of the kubeconfig file used to reach the API server (--master overrides its server URL). Empty means the in-cluster configuration.")
	fs.StringVar(&o.Master, "master", o.Master, "URL of the Kubernetes API server; takes precedence over the server in the kubeconfig.")
	fs.StringVar(&c.ClientConnection.ContentType, "kube-api-content-type", c.ClientConnection.ContentType, "Content type kproxy uses for requests to the API server.")
	fs.Int32Var(&c.ClientConnection.Burst, "kube-api-burst", c.ClientConnection.Burst, "Request burst allowed towards the API server.")
	fs.Float32Var(&c.ClientConnection.QPS, "kube-api-qps", c.ClientConnection.QPS, "Sustained requests per second allowed towards the API server.")

	fs.StringVar(&o.hostnameOverride, "hostname-override", o.hostnameOverride, "Name of this node's Node object. Default: the host name, lower-cased. Applies even with --config.")
	fs.Var(&ipValue{&c.BindAddress}, "bind-address", "This node's primary IP, overriding the Node object's addresses (0.0.0.0 or :: means no override). Despite the name, nothing binds to it. Ignored when --config is given.")
	fs.Var(&ipPortValue{&c.HealthzBindAddress}, "healthz-bind-address", "IP:port of the /healthz and /livez server (a bare IP gets port 10256); empty disables it. Ignored when --config is given.")
	fs.Var(&ipPortValue{&c.MetricsBindAddress}, "metrics-bind-address", "IP:port of the /metrics server (a bare IP gets port 10249); use 0.0.0.0:10249 or [::]:10249 to serve on every interface; empty disables it. Ignored when --config is given.")
	fs.BoolVar(&c.BindAddressHardFail, "bind-address-hard-fail", c.BindAddressHardFail, "Exit when the healthz or metrics server cannot bind its port, instead of logging and retrying every 5s.")
	fs.BoolVar(&c.EnableProfiling, "profiling", c.EnableProfiling, "Serve Go profiling data under /debug/pprof on the metrics server. Ignored when --config is given.")
	fs.StringVar(&c.ShowHiddenMetricsForVersion, "show-hidden-metrics-for-version", c.ShowHiddenMetricsForVersion, "Rejected: kproxy has no hidden metrics. Ignored when --config is given.")
	fs.Var(&enumValue{p: (*string)(&c.Mode), typ: "ProxyMode"}, "proxy-mode", "Proxy backend: iptables (the default when empty) or ipvs. Ignored when --config is given.")

	fs.Int32Var(c.IPTables.MasqueradeBit, "iptables-masquerade-bit", *c.IPTables.MasqueradeBit, "Bit of the packet mark (0 to 31) that flags packets to masquerade, in iptables and ipvs modes.")
	fs.BoolVar(&c.IPTables.MasqueradeAll, "masquerade-all", c.IPTables.MasqueradeAll, "Masquerade (SNAT) every packet sent to a Service cluster IP.")
	fs.BoolVar(c.IPTables.LocalhostNodePorts, "iptables-localhost-nodeports", *c.IPTables.LocalhostNodePorts, "Accept NodePort connections on 127.0.0.1 (iptables mode, IPv4 only; sets net.ipv4.conf.all.route_localnet).")
	fs.DurationVar(&c.IPTables.SyncPeriod.Duration, "iptables-sync-period", c.IPTables.SyncPeriod.Duration, "Longest time between two full resyncs of the iptables rules, e.g. 30s or 1m; must be positive.")
	fs.DurationVar(&c.IPTables.MinSyncPeriod.Duration, "iptables-min-sync-period", c.IPTables.MinSyncPeriod.Duration, "Shortest time between two syncs of the iptables rules; changes arriving sooner are batched. 0 syncs on every change.")

	fs.DurationVar(&c.IPVS.SyncPeriod.Duration, "ipvs-sync-period", c.IPVS.SyncPeriod.Duration, "Longest time between two full resyncs in ipvs mode; must be positive.")
	fs.DurationVar(&c.IPVS.MinSyncPeriod.Duration, "ipvs-min-sync-period", c.IPVS.MinSyncPeriod.Duration, "Shortest time between two syncs in ipvs mode; 0 syncs on every change.")
	fs.StringVar(&c.IPVS.Scheduler, "ipvs-scheduler", c.IPVS.Scheduler, "IPVS scheduler for ipvs mode (rr when empty).")
	fs.StringSliceVar(&c.IPVS.ExcludeCIDRs, "ipvs-exclude-cidrs", c.IPVS.ExcludeCIDRs, "Comma-separated CIDRs whose IPVS virtual servers kproxy never removes when cleaning up.")
	fs.BoolVar(&c.IPVS.StrictARP, "ipvs-strict-arp", c.IPVS.StrictARP, "In ipvs mode, set arp_ignore=1 and arp_announce=2.")
	fs.DurationVar(&c.IPVS.TCPTimeout.Duration, "ipvs-tcp-timeout", c.IPVS.TCPTimeout.Duration, "IPVS timeout for idle TCP connections; 0 leaves the kernel's value.")
	fs.DurationVar(&c.IPVS.TCPFinTimeout.Duration, "ipvs-tcpfin-timeout", c.IPVS.TCPFinTimeout.Duration, "IPVS timeout for TCP connections after a FIN; 0 leaves the kernel's value.")
	fs.DurationVar(&c.IPVS.UDPTimeout.Duration, "ipvs-udp-timeout", c.IPVS.UDPTimeout.Duration, "IPVS timeout for UDP; 0 leaves the kernel's value.")

	fs.Var(&enumValue{p: (*string)(&c.DetectLocalMode), typ: "LocalMode"}, "detect-local-mode", "How traffic from local pods is recognised: ClusterCIDR (the default when empty), NodeCIDR, BridgeInterface or InterfaceNamePrefix. Ignored when --config is given.")
	fs.StringVar(&c.DetectLocal.BridgeInterface, "pod-bridge-interface", c.DetectLocal.BridgeInterface, "With --detect-local-mode=BridgeInterface, traffic entering from this bridge is local.")
	fs.StringVar(&c.DetectLocal.InterfaceNamePrefix, "pod-interface-name-prefix", c.DetectLocal.InterfaceNamePrefix, "With --detect-local-mode=InterfaceNamePrefix, traffic entering from interfaces whose name starts with this prefix is local.")
	fs.StringVar(&c.ClusterCIDR, "cluster-cidr", c.ClusterCIDR, "Pod CIDR of the cluster, or a comma-separated IPv4,IPv6 pair; with --detect-local-mode=ClusterCIDR, traffic from it is local. Ignored when --config is given.")
	fs.StringSliceVar(&c.NodePortAddresses, "nodeport-addresses", c.NodePortAddresses, "Comma-separated CIDRs: NodePorts are only served on node IPs inside them. The single value 'primary' means the node's primary IP of each family. Empty serves NodePorts on every local IP. Ignored when --config is given.")

	fs.Int32Var(c.OOMScoreAdj, "oom-score-adj", *c.OOMScoreAdj, "oom_score_adj written for the kproxy process, from -1000 to 1000. Ignored when --config is given.")
	fs.Int32Var(c.Conntrack.MaxPerCore, "conntrack-max-per-core", *c.Conntrack.MaxPerCore, "Conntrack table entries to allow per CPU (0 leaves nf_conntrack_max alone and ignores --conntrack-min).")
	fs.Int32Var(c.Conntrack.Min, "conntrack-min", *c.Conntrack.Min, "Lower bound for nf_conntrack_max, whatever --conntrack-max-per-core gives.")
	fs.DurationVar(&c.Conntrack.TCPEstablishedTimeout.Duration, "conntrack-tcp-timeout-established", c.Conntrack.TCPEstablishedTimeout.Duration, "Conntrack timeout for idle established TCP connections; 0 leaves the kernel's value.")
	fs.DurationVar(&c.Conntrack.TCPCloseWaitTimeout.Duration, "conntrack-tcp-timeout-close-wait", c.Conntrack.TCPCloseWaitTimeout.Duration, "Conntrack timeout for TCP connections in CLOSE_WAIT; 0 leaves the kernel's value.")
	fs.BoolVar(&c.Conntrack.TCPBeLiberal, "conntrack-tcp-be-liberal", c.Conntrack.TCPBeLiberal, "Set nf_conntrack_tcp_be_liberal=1 so out-of-window TCP packets are not marked invalid.")
	fs.DurationVar(&c.Conntrack.UDPTimeout.Duration, "conntrack-udp-timeout", c.Conntrack.UDPTimeout.Duration, "Conntrack timeout for UDP flows that saw no reply; 0 leaves the kernel's value.")
	fs.DurationVar(&c.Conntrack.UDPStreamTimeout.Duration, "conntrack-udp-timeout-stream", c.Conntrack.UDPStreamTimeout.Duration, "Conntrack timeout for UDP flows that saw replies; 0 leaves the kernel's value.")
	fs.DurationVar(&c.ConfigSyncPeriod.Duration, "config-sync-period", c.ConfigSyncPeriod.Duration, "Resync period of the informers watching Services, EndpointSlices and the Node; must be positive.")

	fs.Int32Var(&o.healthzPort, "healthz-port", o.healthzPort, "Port of the health server; 0 disables it.")
	_ = fs.MarkDeprecated("healthz-port", "use --healthz-bind-address instead.")
	fs.Int32Var(&o.metricsPort, "metrics-port", o.metricsPort, "Port of the metrics server; 0 disables it.")
	_ = fs.MarkDeprecated("metrics-port", "use --metrics-bind-address instead.")

	// -v, --vmodule, --logging-format, --log-flush-frequency, --log-text-*.
	logsapi.AddFlags(&c.Logging, fs)

	for _, r := range rejectedFlags {
		fs.Var(&rejectedValue{typ: r.typ}, r.name, "Not supported by kproxy: "+r.reason)
		if r.typ == "bool" {
			fs.Lookup(r.name).NoOptDefVal = "true"
		}
		_ = fs.MarkHidden(r.name)
	}
}

// rejectedFlag is a kube-proxy flag kproxy accepts on the command line only to refuse it
// with a reason.
type rejectedFlag struct{ name, typ, reason string }

var rejectedFlags = []rejectedFlag{
	{"boot-id-file", "string", "kproxy does not read the machine's boot ID"},
	{"machine-id-file", "string", "kproxy does not read the machine ID"},
	{"log-json-split-stream", "bool", "kproxy only logs in text format"},
	{"log-json-info-buffer-size", "quantity", "kproxy only logs in text format"},
}

// loggingFlags are the flags that still apply when --config is given (kube-proxy copies
// them over the file's logging section).
var loggingFlags = []string{"v", "vmodule", "logging-format", "log-flush-frequency", "log-text-split-stream", "log-text-info-buffer-size"}

// nonConfigFlags are not part of KubeProxyConfiguration and always apply.
var nonConfigFlags = []string{"config", "write-config-to", "cleanup", "init-only", "master", "hostname-override", "version", "help"}

// fieldFlags names the flag that sets each configuration field, for error messages.
var fieldFlags = map[string]string{
	"featureGates":                        "feature-gates",
	"clientConnection.kubeconfig":         "kubeconfig",
	"clientConnection.contentType":        "kube-api-content-type",
	"clientConnection.burst":              "kube-api-burst",
	"clientConnection.qps":                "kube-api-qps",
	"hostnameOverride":                    "hostname-override",
	"bindAddress":                         "bind-address",
	"healthzBindAddress":                  "healthz-bind-address",
	"metricsBindAddress":                  "metrics-bind-address",
	"bindAddressHardFail":                 "bind-address-hard-fail",
	"enableProfiling":                     "profiling",
	"showHiddenMetricsForVersion":         "show-hidden-metrics-for-version",
	"mode":                                "proxy-mode",
	"iptables.masqueradeBit":              "iptables-masquerade-bit",
	"iptables.masqueradeAll":              "masquerade-all",
	"iptables.localhostNodePorts":         "iptables-localhost-nodeports",
	"iptables.syncPeriod":                 "iptables-sync-period",
	"iptables.minSyncPeriod":              "iptables-min-sync-period",
	"ipvs.syncPeriod":                     "ipvs-sync-period",
	"ipvs.minSyncPeriod":                  "ipvs-min-sync-period",
	"ipvs.scheduler":                      "ipvs-scheduler",
	"ipvs.excludeCIDRs":                   "ipvs-exclude-cidrs",
	"ipvs.strictARP":                      "ipvs-strict-arp",
	"ipvs.tcpTimeout":                     "ipvs-tcp-timeout",
	"ipvs.tcpFinTimeout":                  "ipvs-tcpfin-timeout",
	"ipvs.udpTimeout":                     "ipvs-udp-timeout",
	"detectLocalMode":                     "detect-local-mode",
	"detectLocal.bridgeInterface":         "pod-bridge-interface",
	"detectLocal.interfaceNamePrefix":     "pod-interface-name-prefix",
	"clusterCIDR":                         "cluster-cidr",
	"nodePortAddresses":                   "nodeport-addresses",
	"oomScoreAdj":                         "oom-score-adj",
	"conntrack.maxPerCore":                "conntrack-max-per-core",
	"conntrack.min":                       "conntrack-min",
	"conntrack.tcpEstablishedTimeout":     "conntrack-tcp-timeout-established",
	"conntrack.tcpCloseWaitTimeout":       "conntrack-tcp-timeout-close-wait",
	"conntrack.tcpBeLiberal":              "conntrack-tcp-be-liberal",
	"conntrack.udpTimeout":                "conntrack-udp-timeout",
	"conntrack.udpStreamTimeout":          "conntrack-udp-timeout-stream",
	"configSyncPeriod":                    "config-sync-period",
	"logging.format":                      "logging-format",
	"logging.flushFrequency":              "log-flush-frequency",
	"logging.verbosity":                   "v",
	"logging.vmodule":                     "vmodule",
	"logging.options.text.splitStream":    "log-text-split-stream",
	"logging.options.text.infoBufferSize": "log-text-info-buffer-size",
	"logging.options.json.splitStream":    "log-json-split-stream",
	"logging.options.json.infoBufferSize": "log-json-info-buffer-size",
}

// ipValue is a flag holding an IP address ("ip" in the help, as kube-proxy's).
type ipValue struct{ p *string }

func (v *ipValue) String() string { return *v.p }
func (v *ipValue) Type() string   { return "ip" }
func (v *ipValue) Set(s string) error {
	if _, err := netip.ParseAddr(s); err != nil {
		return fmt.Errorf("%q is not a valid IP address", s)
	}
	*v.p = s
	return nil
}

// ipPortValue is a flag holding "IP" or "IP:port" ("ipport" in the help); empty disables
// the server it configures.
type ipPortValue struct{ p *string }

func (v *ipPortValue) String() string { return *v.p }
func (v *ipPortValue) Type() string   { return "ipport" }
func (v *ipPortValue) Set(s string) error {
	if s == "" {
		*v.p = ""
		return nil
	}
	if _, err := netip.ParseAddr(s); err == nil {
		*v.p = s
		return nil
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("%q is not in a valid format (ip or ip:port): %v", s, err)
	}
	if _, err := netip.ParseAddr(host); err != nil {
		return fmt.Errorf("%q is not a valid IP address", host)
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return fmt.Errorf("%q is not a valid port number", port)
	}
	*v.p = s
	return nil
}

// enumValue is a string flag with a descriptive type name; its values are checked by
// validation, as kube-proxy does, so the message can list the valid ones.
type enumValue struct {
	p   *string
	typ string
}

func (v *enumValue) String() string     { return *v.p }
func (v *enumValue) Type() string       { return v.typ }
func (v *enumValue) Set(s string) error { *v.p = strings.TrimSpace(s); return nil }

// rejectedValue accepts anything; setting it is reported by Validate.
type rejectedValue struct {
	typ, val string
}

func (v *rejectedValue) String() string     { return v.val }
func (v *rejectedValue) Type() string       { return v.typ }
func (v *rejectedValue) Set(s string) error { v.val = s; return nil }
