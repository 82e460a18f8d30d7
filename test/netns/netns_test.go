package netns

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

func TestTopology(t *testing.T) {
	RequireRoot(t)
	before := rootLinkNames(t)
	start := time.Now()
	topo := New(t, DefaultSpec())
	t.Logf("built topology %s (%d namespaces) in %v", topo.ID, len(topo.Namespaces()), time.Since(start))

	serveAll(t, topo.Pods())
	node, remote, client := topo.Node, topo.Remote, topo.Clients[0]
	l0, l1 := node.Pods[0], node.Pods[1]
	r0, r1 := remote.Pods[0], remote.Pods[1]

	t.Run("NoLinksInRootNamespace", func(t *testing.T) {
		for name := range rootLinkNames(t) {
			if !before[name] {
				t.Errorf("link %q appeared in the test's own namespace", name)
			}
		}
	})

	for _, f := range Families {
		t.Run(f.String(), func(t *testing.T) {
			t.Run("PodToPodSameBridge", func(t *testing.T) {
				wantReply(t, l0.DialTCP, l1.AddrPort(f, tcpPort), l1.Label, l0.IP(f))
				wantReply(t, l0.DialUDP, l1.AddrPort(f, udpPort), l1.Label, l0.IP(f))
				wantReply(t, l0.GetHTTP, l1.AddrPort(f, httpPort), l1.Label, l0.IP(f))
			})
			t.Run("PodToItself", func(t *testing.T) {
				wantReply(t, l0.DialTCP, l0.AddrPort(f, tcpPort), l0.Label, l0.IP(f))
			})
			t.Run("NodeToRemotePod", func(t *testing.T) {
				wantReply(t, node.DialTCP, r0.AddrPort(f, tcpPort), r0.Label, node.IP(f))
				wantReply(t, node.DialUDP, r0.AddrPort(f, udpPort), r0.Label, node.IP(f))
			})
			t.Run("PodToRemotePodKeepsPodIP", func(t *testing.T) {
				wantReply(t, l1.DialTCP, r1.AddrPort(f, tcpPort), r1.Label, l1.IP(f))
				wantReply(t, l1.GetHTTP, r1.AddrPort(f, httpPort), r1.Label, l1.IP(f))
			})
			t.Run("RemotePodToLocalPod", func(t *testing.T) {
				wantReply(t, r0.DialUDP, l0.AddrPort(f, udpPort), l0.Label, r0.IP(f))
			})
			t.Run("ClientToPodThroughNode", func(t *testing.T) {
				wantReply(t, client.DialTCP, l0.AddrPort(f, tcpPort), l0.Label, client.IP(f))
			})
		})
	}

	t.Run("ClientToNodeUplink", func(t *testing.T) {
		if _, err := node.ServeTCP(tcpPort); err != nil {
			t.Fatal(err)
		}
		if _, err := node.ServeUDP(udpPort); err != nil {
			t.Fatal(err)
		}
		for _, f := range Families {
			wantReply(t, client.DialTCP, node.AddrPort(f, tcpPort), node.Label, client.IP(f))
			wantReply(t, client.DialUDP, node.AddrPort(f, udpPort), node.Label, client.IP(f))
		}
	})

	// The route from a pod to the node's uplink address leaves through the bridge, whose
	// address the kernel would pick as the reply's source; the server must answer from
	// the address the request was sent to, or the connected client socket drops it.
	t.Run("UDPAnswersFromRequestedAddress", func(t *testing.T) {
		for _, f := range Families {
			wantReply(t, l0.DialUDP, node.AddrPort(f, udpPort), node.Label, l0.IP(f))
			wantReply(t, l0.DialUDP, node.BridgeAddrs.AddrPort(f, udpPort), node.Label, l0.IP(f))
		}
	})

	t.Run("HairpinOnEveryPodPort", func(t *testing.T) {
		for _, p := range topo.Pods() {
			var link netlink.Link
			var pi netlink.Protinfo
			err := p.Node.Netlink(func(h *netlink.Handle) error {
				var err error
				if link, err = h.LinkByName(p.HostInterface); err != nil {
					return err
				}
				pi, err = h.LinkGetProtinfo(link)
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			if !pi.Hairpin {
				t.Errorf("%s: hairpin off on %s", p.Node, p.HostInterface)
			}
			if link.Attrs().MasterIndex == 0 {
				t.Errorf("%s: %s is not a bridge port", p.Node, p.HostInterface)
			}
		}
	})

	t.Run("RefusedIsFastAndClassified", func(t *testing.T) {
		for _, f := range Families {
			for name, probe := range map[string]probeFunc{"tcp": l0.DialTCP, "udp": l0.DialUDP} {
				start := time.Now()
				_, err := probe(t.Context(), r0.AddrPort(f, 9), probeTimeout)
				took := time.Since(start)
				if !errors.Is(err, syscall.ECONNREFUSED) || Classify(err) != Refused {
					t.Errorf("%s %s to a closed port: got %v (%s), want ECONNREFUSED", f, name, err, Classify(err))
				}
				if took > time.Second {
					t.Errorf("%s %s refusal took %v; ICMP rate limiting still on?", f, name, took)
				}
			}
		}
	})

	t.Run("RefusedBurstStaysRefused", func(t *testing.T) {
		// With the default ICMP rate limits, most of these would time out.
		for i := range 50 {
			_, err := l0.DialUDP(t.Context(), r0.AddrPort(V4, 9), probeTimeout)
			if Classify(err) != Refused {
				t.Fatalf("probe %d: got %v (%s), want refused", i, err, Classify(err))
			}
		}
	})

	t.Run("TimeoutIsClassified", func(t *testing.T) {
		// A neighbour entry nobody answers for: packets leave and vanish.
		hole := blackhole(t, client.NS)
		const timeout = 300 * time.Millisecond
		for name, probe := range map[string]probeFunc{"tcp": client.DialTCP, "udp": client.DialUDP, "http": client.GetHTTP} {
			for _, dst := range hole {
				start := time.Now()
				_, err := probe(t.Context(), netip.AddrPortFrom(dst, 80), timeout)
				if !errors.Is(err, os.ErrDeadlineExceeded) || Classify(err) != Timeout {
					t.Errorf("%s to %s: got %v (%s), want a timeout", name, dst, err, Classify(err))
				}
				if took := time.Since(start); took > 3*timeout {
					t.Errorf("%s to %s: timeout took %v, want about %v", name, dst, took, timeout)
				}
			}
		}
	})

	t.Run("LongLivedConnection", func(t *testing.T) {
		srv, err := r1.ServeTCP(tcpPort + 100)
		if err != nil {
			t.Fatal(err)
		}
		c, err := client.OpenTCP(t.Context(), r1.AddrPort(V6, tcpPort+100), probeTimeout)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if got := c.LocalAddr().Addr(); got != client.V6 {
			t.Errorf("local address %s, want %s", got, client.V6)
		}
		for i := range 3 {
			rep, err := c.Exchange(probeTimeout)
			if err != nil || rep.Server != r1.Label || rep.ClientIP != client.V6 {
				t.Fatalf("exchange %d: %v, %v", i, rep, err)
			}
		}
		if err := srv.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Exchange(probeTimeout); Classify(err) != Reset {
			t.Errorf("exchange after server stop: got %v (%s), want reset", err, Classify(err))
		}
	})

	t.Run("Sysctls", func(t *testing.T) {
		want := map[string]string{"net.ipv4.icmp_ratelimit": "0", "net.ipv4.icmp_ratemask": "0", "net.ipv6.icmp.ratelimit": "0"}
		for _, n := range topo.Namespaces() {
			for k, v := range want {
				if got, err := n.ReadSysctl(k); err != nil || got != v {
					t.Errorf("%s: %s = %q, %v; want %q", n, k, got, err, v)
				}
			}
		}
		nodeWant := map[string]string{"net.ipv4.ip_forward": "1", "net/ipv6/conf/all/forwarding": "1"}
		if topo.BridgeNetfilter {
			nodeWant["net.bridge.bridge-nf-call-iptables"] = "1"
			nodeWant["net.bridge.bridge-nf-call-ip6tables"] = "1"
		} else {
			t.Log("bridge netfilter is not available in this kernel")
		}
		for _, n := range []*Node{node, remote} {
			for k, v := range nodeWant {
				if got, err := n.ReadSysctl(k); err != nil || got != v {
					t.Errorf("%s: %s = %q, %v; want %q", n, k, got, err, v)
				}
			}
		}
		if got, err := client.ReadSysctl("net.ipv4.ip_forward"); err != nil || got != "0" {
			t.Errorf("client forwards: %q, %v", got, err)
		}
		if err := node.Sysctl("kernel.hostname", "x"); err == nil {
			t.Error("a non-net sysctl was accepted")
		}
	})

	t.Run("CommandRunsInNamespace", func(t *testing.T) {
		for _, tool := range []string{"readlink", "cat", "sh"} {
			if _, err := exec.LookPath(tool); err != nil {
				t.Skipf("%s not installed", tool)
			}
		}
		want := nsLink(nsInode(t, node.Path()))
		out, err := node.Exec(t.Context(), "readlink", "/proc/self/ns/net")
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.TrimSpace(string(out)); got != want {
			t.Errorf("child process runs in %s, want %s", got, want)
		}
		out, err = node.Command(t.Context(), "cat", "/proc/net/dev").Output()
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(out), PodBridge+":") {
			t.Errorf("/proc/net/dev in the node lacks %s:\n%s", PodBridge, out)
		}
		_, err = node.Command(t.Context(), "sh", "-c", "echo oops >&2; exit 3").Output()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 3 || strings.TrimSpace(string(ee.Stderr)) != "oops" {
			t.Errorf("failing command: got %v", err)
		}
	})

	t.Run("ReachableByPathForOtherTools", func(t *testing.T) {
		want := nsLink(nsInode(t, l0.Path()))
		if !strings.HasPrefix(l0.Path(), RunDir+"/") {
			t.Errorf("path %s is not under %s", l0.Path(), RunDir)
		}
		for _, argv := range [][]string{
			{"nsenter", "--net=" + l0.Path(), "readlink", "/proc/self/ns/net"},
			{"ip", "netns", "exec", l0.Name, "readlink", "/proc/self/ns/net"},
		} {
			if _, err := exec.LookPath(argv[0]); err != nil {
				t.Logf("%s not installed, skipping that check", argv[0])
				continue
			}
			out, err := exec.CommandContext(t.Context(), argv[0], argv[1:]...).CombinedOutput()
			if err != nil || strings.TrimSpace(string(out)) != want {
				t.Errorf("%v: %q, %v; want %s", argv, out, err, want)
			}
		}
	})

	t.Run("DoSwitchesAndRestores", func(t *testing.T) {
		outside, err := threadNS()
		if err != nil {
			t.Fatal(err)
		}
		var inside string
		if err := l1.Do(func() error { inside, err = threadNS(); return err }); err != nil {
			t.Fatal(err)
		}
		if want := nsLink(nsInode(t, l1.Path())); inside != want {
			t.Errorf("Do ran in %s, want %s", inside, want)
		}
		// Run many Do calls and then check every thread of the process is back home.
		for range 20 {
			if err := l1.Do(func() error { return nil }); err != nil {
				t.Fatal(err)
			}
		}
		tasks, err := os.ReadDir("/proc/self/task")
		if err != nil {
			t.Fatal(err)
		}
		for _, task := range tasks {
			got, err := os.Readlink("/proc/self/task/" + task.Name() + "/ns/net")
			if err == nil && got != outside {
				t.Errorf("thread %s left in %s", task.Name(), got)
			}
		}
		func() {
			defer func() {
				if r := recover(); r != "boom" {
					t.Errorf("recovered %v, want the panic from fn", r)
				}
			}()
			_ = l1.Do(func() error { panic("boom") })
		}()
	})
}

// blackhole installs, in n, permanent neighbour entries for one unused underlay address
// per family with a MAC address no interface has, and returns the addresses: traffic to
// them leaves and is never answered, which is a timeout rather than a refusal.
func blackhole(t *testing.T, n *NS) []netip.Addr {
	t.Helper()
	mac, _ := net.ParseMAC("02:00:5e:00:53:99")
	var out []netip.Addr
	err := n.Netlink(func(h *netlink.Handle) error {
		link, err := h.LinkByName(UplinkInterface)
		if err != nil {
			return err
		}
		for _, f := range Families {
			dst := underlayCIDR.hostAddrs(250).IP(f)
			err := h.NeighAdd(&netlink.Neigh{
				LinkIndex:    link.Attrs().Index,
				Family:       map[Family]int{V4: unix.AF_INET, V6: unix.AF_INET6}[f],
				State:        netlink.NUD_PERMANENT,
				IP:           dst.AsSlice(),
				HardwareAddr: mac,
			})
			if err != nil {
				return fmt.Errorf("add neighbour %s: %w", dst, err)
			}
			out = append(out, dst)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
