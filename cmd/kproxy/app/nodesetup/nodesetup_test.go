package nodesetup

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"
)

// fakeRoot lays out the files Setter touches, with the given initial values.
func fakeRoot(t *testing.T, files map[string]string) (Paths, string) {
	t.Helper()
	dir := t.TempDir()
	p := Paths{ProcSys: filepath.Join(dir, "proc/sys"), ConntrackHashsize: filepath.Join(dir, "hashsize"), OOMScoreAdj: filepath.Join(dir, "oom_score_adj")}
	for name, v := range files {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(v+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return p, dir
}

func read(t *testing.T, dir, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func newSetter(p Paths) (*Setter, *strings.Builder) {
	var log strings.Builder
	return &Setter{Paths: p, Logger: funcr.New(func(prefix, args string) { log.WriteString(args + "\n") }, funcr.Options{})}, &log
}

func TestConntrack(t *testing.T) {
	p, dir := fakeRoot(t, map[string]string{
		"proc/sys/net/netfilter/nf_conntrack_max": "65536",
		"hashsize": "1024",
		"proc/sys/net/netfilter/nf_conntrack_tcp_timeout_established": "432000",
		"proc/sys/net/netfilter/nf_conntrack_tcp_timeout_close_wait":  "3600",
		"proc/sys/net/netfilter/nf_conntrack_udp_timeout":             "30",
		"proc/sys/net/netfilter/nf_conntrack_udp_timeout_stream":      "120",
		"proc/sys/net/netfilter/nf_conntrack_tcp_be_liberal":          "0",
	})
	s, log := newSetter(p)
	err := s.Conntrack(Conntrack{MaxPerCore: 32768, Min: 131072, NumCPU: 8, TCPEstablishedTimeout: 24 * time.Hour,
		TCPCloseWaitTimeout: time.Hour, UDPTimeout: 0, UDPStreamTimeout: 90 * time.Second, TCPBeLiberal: true})
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{
		"proc/sys/net/netfilter/nf_conntrack_max": "262144",
		"hashsize": "65536",
		"proc/sys/net/netfilter/nf_conntrack_tcp_timeout_established": "86400",
		"proc/sys/net/netfilter/nf_conntrack_tcp_timeout_close_wait":  "3600",
		"proc/sys/net/netfilter/nf_conntrack_udp_timeout":             "30", // 0 leaves it alone
		"proc/sys/net/netfilter/nf_conntrack_udp_timeout_stream":      "90",
		"proc/sys/net/netfilter/nf_conntrack_tcp_be_liberal":          "1",
	} {
		if got := read(t, dir, name); got != want {
			t.Errorf("%s = %s, want %s", name, got, want)
		}
	}
	if strings.Contains(log.String(), "close_wait") {
		t.Errorf("an unchanged value must not be written or logged:\n%s", log)
	}

	// The minimum wins on small machines; a larger hash table is kept.
	if got := (Conntrack{MaxPerCore: 32768, Min: 131072, NumCPU: 2}).Max(); got != 131072 {
		t.Errorf("Max() = %d, want the minimum 131072", got)
	}
	if got := (Conntrack{MaxPerCore: 0, Min: 131072}).Max(); got != 0 {
		t.Errorf("maxPerCore 0 must leave the limit alone, got %d", got)
	}
	if err := s.Conntrack(Conntrack{MaxPerCore: 1, Min: 1024, NumCPU: 1}); err != nil {
		t.Fatal(err)
	}
	if got := read(t, dir, "hashsize"); got != "65536" {
		t.Errorf("hashsize shrank to %s", got)
	}
}

func TestSkipsMissingAndReadOnly(t *testing.T) {
	p, _ := fakeRoot(t, map[string]string{"proc/sys/net/netfilter/nf_conntrack_tcp_timeout_established": "432000"})
	s, log := newSetter(p)
	// nf_conntrack_max and hashsize do not exist (as in a network namespace).
	if err := s.Conntrack(Conntrack{MaxPerCore: 10, NumCPU: 1}); err != nil {
		t.Fatalf("missing files must be skipped, got %v", err)
	}
	if !strings.Contains(log.String(), "cannot be changed here") {
		t.Errorf("a skipped setting must be logged:\n%s", log)
	}
	for _, e := range []error{os.ErrNotExist, os.ErrPermission} {
		if err := classify("x", e); !errors.Is(err, ErrSkipped) {
			t.Errorf("classify(%v) = %v, want ErrSkipped", e, err)
		}
	}
	if err := classify("x", errors.New("disk on fire")); errors.Is(err, ErrSkipped) {
		t.Error("other errors must not be skipped")
	}
	// A garbage value is a real error.
	p2, _ := fakeRoot(t, map[string]string{"proc/sys/net/ipv4/conf/all/route_localnet": "abc"})
	s2, _ := newSetter(p2)
	if err := s2.IPTables(true, nil, false); err == nil {
		t.Error("unparsable sysctl must fail")
	}
}

func TestIPTablesRouteLocalnet(t *testing.T) {
	for _, tc := range []struct {
		name      string
		localhost bool
		addrs     []netip.Prefix
		primary   bool
		want      string
	}{
		{"default", true, nil, false, "1"},
		{"disabled", false, nil, false, "0"},
		{"loopback CIDR", true, []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, false, "1"},
		{"no loopback CIDR", true, []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, false, "0"},
		{"primary", true, nil, true, "0"},
	} {
		p, dir := fakeRoot(t, map[string]string{"proc/sys/net/ipv4/conf/all/route_localnet": "0", "proc/sys/net/bridge/bridge-nf-call-iptables": "1"})
		s, log := newSetter(p)
		if err := s.IPTables(tc.localhost, tc.addrs, tc.primary); err != nil {
			t.Fatal(err)
		}
		if got := read(t, dir, "proc/sys/net/ipv4/conf/all/route_localnet"); got != tc.want {
			t.Errorf("%s: route_localnet = %s, want %s", tc.name, got, tc.want)
		}
		if strings.Contains(log.String(), "bridge-nf-call-iptables") {
			t.Errorf("%s: warned although bridge-nf-call-iptables is 1", tc.name)
		}
	}
	p, _ := fakeRoot(t, map[string]string{"proc/sys/net/ipv4/conf/all/route_localnet": "1"})
	s, log := newSetter(p)
	_ = s.IPTables(true, nil, false)
	if !strings.Contains(log.String(), "bridge-nf-call-iptables is not 1") {
		t.Errorf("missing br_netfilter must be warned about:\n%s", log)
	}
}

func TestOOMScoreAdj(t *testing.T) {
	p, dir := fakeRoot(t, map[string]string{"oom_score_adj": "0"})
	s, _ := newSetter(p)
	if err := s.OOMScoreAdj(-999); err != nil {
		t.Fatal(err)
	}
	if got := read(t, dir, "oom_score_adj"); got != "-999" {
		t.Errorf("oom_score_adj = %s", got)
	}
}

func TestHashsizeOnlyWithMax(t *testing.T) {
	// nf_conntrack_max missing (not the host's namespace): the global hash table is
	// left alone.
	p, dir := fakeRoot(t, map[string]string{"hashsize": "1024"})
	s, _ := newSetter(p)
	if err := s.Conntrack(Conntrack{MaxPerCore: 32768, NumCPU: 4}); err != nil {
		t.Fatal(err)
	}
	if got := read(t, dir, "hashsize"); got != "1024" {
		t.Errorf("hashsize changed to %s without nf_conntrack_max", got)
	}
}
