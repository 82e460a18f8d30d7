package config

import (
	"net"
	"net/netip"
	"strconv"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	logsapi "k8s.io/component-base/logs/api/v1"
	v1alpha1 "k8s.io/kube-proxy/config/v1alpha1"
	"k8s.io/utils/ptr"
)

// Proxy modes and local-traffic detection modes, spelled as the API spells them.
const (
	ModeIPTables v1alpha1.ProxyMode = "iptables"
	ModeIPVS     v1alpha1.ProxyMode = "ipvs"
	ModeNFTables v1alpha1.ProxyMode = "nftables"

	LocalModeClusterCIDR         v1alpha1.LocalMode = "ClusterCIDR"
	LocalModeNodeCIDR            v1alpha1.LocalMode = "NodeCIDR"
	LocalModeBridgeInterface     v1alpha1.LocalMode = "BridgeInterface"
	LocalModeInterfaceNamePrefix v1alpha1.LocalMode = "InterfaceNamePrefix"

	// NodePortAddressesPrimary is the nodePortAddresses value that means "the node's
	// primary IP of each family".
	NodePortAddressesPrimary = "primary"
)

// kube-proxy's well-known ports and defaults (pkg/cluster/ports, pkg/kubelet/qos and
// pkg/proxy/apis/config/v1alpha1/defaults.go in Kubernetes 1.36).
const (
	// HealthzPort is the port of the /healthz and /livez server.
	HealthzPort = 10256
	// MetricsPort is the port of the /metrics server.
	MetricsPort = 10249
	// DefaultOOMScoreAdj is the oom_score_adj kube-proxy gives itself.
	DefaultOOMScoreAdj = -999

	defaultSyncPeriod            = 30 * time.Second
	defaultMinSyncPeriod         = time.Second
	defaultMasqueradeBit         = 14
	defaultConntrackMaxPerCore   = 32 * 1024
	defaultConntrackMin          = 128 * 1024
	defaultTCPEstablishedTimeout = 24 * time.Hour
	defaultTCPCloseWaitTimeout   = time.Hour
	defaultConfigSyncPeriod      = 15 * time.Minute
	defaultContentType           = "application/vnd.kubernetes.protobuf"
	defaultQPS                   = 5
	defaultBurst                 = 10
)

// SetDefaults fills in every unset field with kube-proxy's v1alpha1 default, exactly as
// kube-proxy's scheme defaulting does when it reads a file: a zero duration or an empty
// address counts as unset, so a file cannot ask for "0s" where a default exists. The
// proxy mode and detect-local mode are left alone; see ApplyPlatformDefaults.
func SetDefaults(c *v1alpha1.KubeProxyConfiguration) {
	if c.BindAddress == "" {
		c.BindAddress = "0.0.0.0"
	}
	healthzHost, metricsHost := "0.0.0.0", "127.0.0.1"
	if ip, err := netip.ParseAddr(c.BindAddress); err == nil && !ip.Unmap().Is4() {
		healthzHost, metricsHost = "::", "::1"
	}
	c.HealthzBindAddress = defaultAddress(c.HealthzBindAddress, healthzHost, HealthzPort)
	c.MetricsBindAddress = defaultAddress(c.MetricsBindAddress, metricsHost, MetricsPort)

	if c.OOMScoreAdj == nil {
		c.OOMScoreAdj = ptr.To[int32](DefaultOOMScoreAdj)
	}
	defaultDuration(&c.IPTables.SyncPeriod, defaultSyncPeriod)
	defaultDuration(&c.IPTables.MinSyncPeriod, defaultMinSyncPeriod)
	defaultDuration(&c.IPVS.SyncPeriod, defaultSyncPeriod)
	if c.IPTables.MasqueradeBit == nil {
		c.IPTables.MasqueradeBit = ptr.To[int32](defaultMasqueradeBit)
	}
	if c.IPTables.LocalhostNodePorts == nil {
		c.IPTables.LocalhostNodePorts = ptr.To(true)
	}
	if c.NFTables.MasqueradeBit == nil {
		c.NFTables.MasqueradeBit = ptr.To[int32](defaultMasqueradeBit)
	}
	if c.Conntrack.MaxPerCore == nil {
		c.Conntrack.MaxPerCore = ptr.To[int32](defaultConntrackMaxPerCore)
	}
	if c.Conntrack.Min == nil {
		c.Conntrack.Min = ptr.To[int32](defaultConntrackMin)
	}
	if c.Conntrack.TCPEstablishedTimeout == nil {
		c.Conntrack.TCPEstablishedTimeout = &metav1.Duration{Duration: defaultTCPEstablishedTimeout}
	}
	if c.Conntrack.TCPCloseWaitTimeout == nil {
		c.Conntrack.TCPCloseWaitTimeout = &metav1.Duration{Duration: defaultTCPCloseWaitTimeout}
	}
	defaultDuration(&c.ConfigSyncPeriod, defaultConfigSyncPeriod)
	if c.ClientConnection.ContentType == "" {
		c.ClientConnection.ContentType = defaultContentType
	}
	if c.ClientConnection.QPS == 0 {
		c.ClientConnection.QPS = defaultQPS
	}
	if c.ClientConnection.Burst == 0 {
		c.ClientConnection.Burst = defaultBurst
	}
	logsapi.SetRecommendedLoggingConfiguration(&c.Logging)
}

// ApplyPlatformDefaults sets what kube-proxy decides on Linux after reading flags or a
// file: an empty mode means iptables and an empty detect-local mode means ClusterCIDR.
func ApplyPlatformDefaults(c *v1alpha1.KubeProxyConfiguration) {
	if c.Mode == "" {
		c.Mode = ModeIPTables
	}
	if c.DetectLocalMode == "" {
		c.DetectLocalMode = LocalModeClusterCIDR
	}
}

// Default returns a fully defaulted configuration, as `kproxy --write-config-to` writes
// it when given no other flag.
func Default() *v1alpha1.KubeProxyConfiguration {
	c := &v1alpha1.KubeProxyConfiguration{}
	SetDefaults(c)
	ApplyPlatformDefaults(c)
	return c
}

// flagDefaults is the configuration the flags start from. It differs from a defaulted
// empty file in one place, as in kube-proxy: --ipvs-min-sync-period defaults to 1s,
// while an ipvs.minSyncPeriod missing from a file stays 0.
func flagDefaults() *v1alpha1.KubeProxyConfiguration {
	c := &v1alpha1.KubeProxyConfiguration{}
	SetDefaults(c)
	c.IPVS.MinSyncPeriod.Duration = defaultMinSyncPeriod
	return c
}

func defaultDuration(d *metav1.Duration, def time.Duration) {
	if d.Duration == 0 {
		d.Duration = def
	}
}

// defaultAddress returns host:port when addr is empty, addr:port when addr is a bare IP,
// and addr unchanged otherwise (validation reports anything malformed).
func defaultAddress(addr, host string, port int) string {
	if addr == "" {
		return net.JoinHostPort(host, strconv.Itoa(port))
	}
	return appendPortIfNeeded(addr, port)
}

// appendPortIfNeeded turns a bare IP into IP:port, leaving anything else alone.
func appendPortIfNeeded(addr string, port int) string {
	if _, err := netip.ParseAddr(addr); err == nil {
		return net.JoinHostPort(addr, strconv.Itoa(port))
	}
	return addr
}
