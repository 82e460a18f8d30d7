package nodesetup

import (
	"errors"
	"net/netip"
	"runtime"
	"time"
)

// Conntrack is the conntrack part of KubeProxyConfiguration; zero leaves a setting alone.
type Conntrack struct {
	MaxPerCore            int
	Min                   int
	TCPEstablishedTimeout time.Duration
	TCPCloseWaitTimeout   time.Duration
	TCPBeLiberal          bool
	UDPTimeout            time.Duration
	UDPStreamTimeout      time.Duration
	// NumCPU overrides the CPU count; 0 means runtime.NumCPU().
	NumCPU int
}

// Max returns the nf_conntrack_max kube-proxy sets: MaxPerCore × CPUs, at least Min;
// 0 (leave alone) when MaxPerCore is 0.
func (c Conntrack) Max() int {
	if c.MaxPerCore <= 0 {
		return 0
	}
	n := c.NumCPU
	if n <= 0 {
		n = runtime.NumCPU()
	}
	return max(c.MaxPerCore*n, c.Min)
}

// Conntrack applies the conntrack limits and timeouts. When the limit is set, the hash
// table is grown to a quarter of it, as kube-proxy does, if it is smaller.
func (s *Setter) Conntrack(c Conntrack) error {
	var errs []error
	if m := c.Max(); m > 0 {
		err := s.SetSysctl("net/netfilter/nf_conntrack_max", m)
		if err == nil {
			// The hash table is global: only grow it when the limit could be set,
			// which the kernel allows only in the host's network namespace.
			errs = append(errs, s.apply(s.writeInt("conntrack hashsize", s.paths().ConntrackHashsize, m/4, true)))
		}
		errs = append(errs, s.apply(err))
	}
	for _, t := range []struct {
		name string
		d    time.Duration
	}{
		{"net/netfilter/nf_conntrack_tcp_timeout_established", c.TCPEstablishedTimeout},
		{"net/netfilter/nf_conntrack_tcp_timeout_close_wait", c.TCPCloseWaitTimeout},
		{"net/netfilter/nf_conntrack_udp_timeout", c.UDPTimeout},
		{"net/netfilter/nf_conntrack_udp_timeout_stream", c.UDPStreamTimeout},
	} {
		if secs := int(t.d / time.Second); secs > 0 {
			errs = append(errs, s.apply(s.SetSysctl(t.name, secs)))
		}
	}
	if c.TCPBeLiberal {
		errs = append(errs, s.apply(s.SetSysctl("net/netfilter/nf_conntrack_tcp_be_liberal", 1)))
	}
	return errors.Join(errs...)
}

// IPTables applies what the iptables proxier needs: route_localnet when NodePorts may
// be reached on 127.0.0.1 (localhostNodePorts and nodePortAddresses empty or covering
// 127.0.0.1), and a warning when bridged pod traffic bypasses iptables.
func (s *Setter) IPTables(localhostNodePorts bool, nodePortAddresses []netip.Prefix, primaryOnly bool) error {
	var err error
	if LocalhostNodePortsApply(localhostNodePorts, nodePortAddresses, primaryOnly) {
		err = s.apply(s.SetSysctl("net/ipv4/conf/all/route_localnet", 1))
	}
	if v, e := s.GetSysctl("net/bridge/bridge-nf-call-iptables"); e != nil || v != 1 {
		s.Logger.Info("net.bridge.bridge-nf-call-iptables is not 1 (br_netfilter missing?): Service traffic between pods on the same bridge may bypass the rules")
	}
	return err
}

// LocalhostNodePortsApply reports whether NodePorts are served on 127.0.0.1: only with
// localhostNodePorts and when nodePortAddresses allows IPv4 loopback.
func LocalhostNodePortsApply(localhostNodePorts bool, nodePortAddresses []netip.Prefix, primaryOnly bool) bool {
	if !localhostNodePorts || primaryOnly {
		return false
	}
	if len(nodePortAddresses) == 0 {
		return true
	}
	lo := netip.MustParseAddr("127.0.0.1")
	for _, p := range nodePortAddresses {
		if p.Contains(lo) {
			return true
		}
	}
	return false
}

// OOMScoreAdj writes this process's oom_score_adj.
func (s *Setter) OOMScoreAdj(v int) error {
	return s.apply(s.writeInt("oom_score_adj", s.paths().OOMScoreAdj, v, false))
}
