package app

import (
	"regexp"
	"slices"
	"strings"
	"testing"
)

// traceSummary is the outcome list of a trace's output.
type traceSummary struct {
	endpoints []string // distinct, in order of appearance
	lines     []string
}

var (
	summaryLineRE = regexp.MustCompile(`^  \d+\. +([0-9.]+%  .*)$`)
	endpointRE    = regexp.MustCompile(`%  -> (\S+) \(endpoint of `)
)

func parseTraceSummary(t *testing.T, out string) traceSummary {
	t.Helper()
	head, _, ok := strings.Cut(out, "\nTrace:\n")
	if !ok {
		t.Fatalf("no Trace section:\n%s", out)
	}
	var s traceSummary
	for _, l := range strings.Split(head, "\n") {
		m := summaryLineRE.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		s.lines = append(s.lines, m[1])
		if e := endpointRE.FindStringSubmatch(m[1]); e != nil && !slices.Contains(s.endpoints, e[1]) {
			s.endpoints = append(s.endpoints, e[1])
		}
	}
	if len(s.lines) == 0 {
		t.Fatalf("no outcome lines:\n%s", out)
	}
	return s
}

func TestTraceGolden(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		// endpoints the packet may reach; nil for a packet that must not get through.
		endpoints []string
		// every outcome line contains this ("masqueraded", "REJECT", ...).
		each string
		// no outcome line contains this.
		none string
	}{
		{
			name: "clusterip-from-pod", args: []string{"--src", "10.244.1.7", "--dst", "10.96.0.10:80/tcp"},
			endpoints: []string{"10.244.1.5:8080", "10.244.2.6:8080", "10.244.3.7:8080"},
			each:      "33.3%", none: ", masqueraded",
		},
		{
			name: "nodeport-from-outside", args: []string{"--src", "203.0.113.7", "--dst", "192.168.0.10:30080/tcp"},
			endpoints: []string{"10.244.1.6:8080", "10.244.2.8:8080"},
			each:      ", masqueraded", none: "not masqueraded",
		},
		{
			name: "etp-local-from-outside", args: []string{"--src", "203.0.113.7", "--dst", "198.51.100.50:80"},
			endpoints: []string{"10.244.1.20:8080"},
			each:      "not masqueraded",
		},
		{
			name: "etp-local-nodeport-from-outside", args: []string{"--src", "203.0.113.7", "--dst", "192.168.0.10:30050/tcp"},
			endpoints: []string{"10.244.1.20:8080"},
			each:      "not masqueraded",
		},
		{
			name: "no-endpoints", args: []string{"--src", "10.244.1.7", "--dst", "10.96.0.70:80/tcp"},
			each: "REJECT (icmp-port-unreachable) by filter KUBE-SERVICES", none: "->",
		},
		{
			name: "source-range-blocked", args: []string{"--src", "192.0.2.99", "--dst", "198.51.100.10:443/tcp"},
			each: "DROP by filter KUBE-PROXY-FIREWALL", none: "->",
		},
		{
			name: "source-range-allowed", args: []string{"--src", "203.0.113.7", "--dst", "198.51.100.10:443/tcp"},
			endpoints: []string{"10.244.2.9:8443"},
			each:      ", masqueraded",
		},
		{
			name: "hairpin", args: []string{"--src", "10.244.1.30", "--dst", "10.96.0.60:80/tcp"},
			endpoints: []string{"10.244.1.30:8080"},
			each:      "masqueraded (hairpin: the endpoint is the client)",
		},
		{
			name: "affinity", args: []string{"--src", "10.244.1.7", "--dst", "10.96.0.40:80/tcp"},
			endpoints: []string{"10.244.1.11:8080", "10.244.2.11:8080"},
			each:      "assuming recent list KUBE-SEP-",
		},
		{
			name: "node-local", args: []string{"--local", "--dst", "10.96.0.20:80/tcp"},
			endpoints: []string{"10.244.1.6:8080", "10.244.2.8:8080"},
			each:      "sent out by the node",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"trace", "-f", clusterFixture, "--cluster-cidr", "10.244.0.0/16"}, tc.args...)
			code, out, errOut := runMain(t, args...)
			if code != 0 || errOut != "" {
				t.Fatalf("exit %d, stderr:\n%s", code, errOut)
			}
			golden(t, "trace-"+tc.name+".golden", out)
			s := parseTraceSummary(t, out)
			if !slices.Equal(s.endpoints, tc.endpoints) {
				t.Errorf("endpoints %v, want %v\n%s", s.endpoints, tc.endpoints, out)
			}
			for _, l := range s.lines {
				if !strings.Contains(l, tc.each) {
					t.Errorf("outcome %q lacks %q", l, tc.each)
				}
				if tc.none != "" && strings.Contains(l, tc.none) {
					t.Errorf("outcome %q has %q", l, tc.none)
				}
			}
		})
	}
}

func TestTraceDefaultsAndOverrides(t *testing.T) {
	// A source in the node's pod CIDR arrives on the bridge; --pod-bridge-interface
	// names it; anything else arrives from outside; --in-interface overrides both.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--src", "10.244.1.7"}, "arriving on cni0 from a pod on node-a (10.244.1.7 is in its pod CIDR 10.244.1.0/24)"},
		{[]string{"--src", "10.244.1.7", "--detect-local-mode", "BridgeInterface", "--pod-bridge-interface", "br-pods"}, "arriving on br-pods from a pod"},
		{[]string{"--src", "10.244.2.7"}, "arriving on eth0 from outside node-a"},
		{[]string{"--src", "10.244.2.7", "--in-interface", "tun0"}, "arriving on tun0\n"},
		{[]string{"--local"}, "tcp 192.168.0.10 -> 10.96.0.10:80, sent by the node itself"},
		{[]string{"--src", "10.244.1.7", "--src-port", "40000"}, "tcp 10.244.1.7:40000 -> 10.96.0.10:80"},
	} {
		args := append([]string{"trace", "-f", clusterFixture, "--cluster-cidr", "10.244.0.0/16", "--dst", "10.96.0.10:80"}, tc.args...)
		code, out, errOut := runMain(t, args...)
		if code != 0 || !strings.Contains(out, tc.want) {
			t.Errorf("%v: exit %d, want %q in:\n%s%s", tc.args, code, tc.want, out, errOut)
		}
	}
	// A BridgeInterface detector: only pod traffic from the bridge skips masquerading.
	_, out, _ := runMain(t, "trace", "-f", clusterFixture, "--detect-local-mode", "BridgeInterface",
		"--pod-bridge-interface", "br-pods", "--src", "10.244.1.7", "--dst", "10.96.0.10:80")
	if s := parseTraceSummary(t, out); strings.Contains(strings.Join(s.lines, "\n"), ", masqueraded") {
		t.Errorf("pod traffic from the bridge must not be masqueraded:\n%s", out)
	}
}

func TestTraceErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--src", "10.244.1.7"}, "--dst is required"},
		{[]string{"--dst", "10.96.0.10:80"}, "--src is required"},
		{[]string{"--src", "nope", "--dst", "10.96.0.10:80"}, `--src: "nope" is not an IP address`},
		{[]string{"--src", "10.244.1.7", "--dst", "10.96.0.10"}, "is not ADDRESS:PORT"},
		{[]string{"--src", "10.244.1.7", "--dst", "10.96.0.10:80/icmp"}, `protocol "icmp" is not tcp, udp or sctp`},
		{[]string{"--src", "fd00::1", "--dst", "10.96.0.10:80"}, "different families"},
		{[]string{"--src", "10.244.1.7", "--dst", "10.96.0.10:80", "--proxy-mode", "ipvs"}, "tracing IPVS is not available yet"},
	} {
		args := append([]string{"trace", "-f", clusterFixture}, tc.args...)
		code, _, errOut := runMain(t, args...)
		if code != 1 || !strings.Contains(errOut, tc.want) || !strings.HasPrefix(errOut, "kproxy trace: ") {
			t.Errorf("%v: exit %d, stderr %q; want exit 1 and %q", tc.args, code, errOut, tc.want)
		}
	}
}
