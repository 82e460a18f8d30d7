package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/kproxy/kproxy/test/netns"
)

// foreignRule is one iptables command another component (Docker, a CNI plugin, an
// administrator) ran in the node before kproxy started.
type foreignRule struct {
	table string
	args  []string
}

// foreignRules are the rules installed in one env and what iptables-save showed of them
// right after they were installed.
type foreignRules struct {
	rules    []foreignRule
	snapshot string
}

// foreignChains are the user chains the foreign rules create.
var foreignChains = []string{"DOCKER", "DOCKER-USER", cniChain}

// cniChain is named like the CNI portmap/bridge plugins name theirs: "CNI-" and 24 hex
// digits, the longest name iptables accepts.
const cniChain = "CNI-0c5a1e2e4d6b8f0a1b2c3d4e"

// foreignRuleSet returns a Docker-like, a CNI-like and an administrator's rules for the
// env's family. They are shaped so that kproxy's rules must come first where kube-proxy
// puts them first: the CNI chain ACCEPTs pod traffic to the cluster CIDR in POSTROUTING,
// which would skip the hairpin masquerade if kproxy's POSTROUTING jump were appended
// instead of prepended.
func foreignRuleSet(e *env) []foreignRule {
	v6 := e.f == netns.V6
	pick := func(v4, v6addr string) string {
		if v6 {
			return v6addr
		}
		return v4
	}
	loopback := pick("127.0.0.0/8", "::1/128")
	docker := pick("172.17.0.0/16", "fd00:172:17::/64")
	multicast := pick("224.0.0.0/4", "ff00::/8")
	blocked := pick("203.0.113.0/24", "2001:db8:bad::/48")
	podCIDR := e.topo.Node.PodCIDR.Prefix(e.f).String()
	clusterCIDR := e.topo.ClusterCIDR.Prefix(e.f).String()
	cniComment := `name: "cbr0" id: "e2e0c5a1e2e4d6b8f"`
	r := func(table string, args ...string) foreignRule { return foreignRule{table: table, args: args} }
	return []foreignRule{
		// Docker.
		r("nat", "-N", "DOCKER"),
		r("nat", "-A", "PREROUTING", "-m", "addrtype", "--dst-type", "LOCAL", "-j", "DOCKER"),
		r("nat", "-A", "OUTPUT", "!", "-d", loopback, "-m", "addrtype", "--dst-type", "LOCAL", "-j", "DOCKER"),
		r("nat", "-A", "POSTROUTING", "-s", docker, "!", "-o", "docker0", "-j", "MASQUERADE"),
		r("nat", "-A", "DOCKER", "-i", "docker0", "-j", "RETURN"),
		r("filter", "-N", "DOCKER"),
		r("filter", "-N", "DOCKER-USER"),
		r("filter", "-A", "FORWARD", "-j", "DOCKER-USER"),
		r("filter", "-A", "FORWARD", "-o", "docker0", "-j", "DOCKER"),
		r("filter", "-A", "DOCKER-USER", "-j", "RETURN"),
		// A CNI bridge plugin with ipMasq.
		r("nat", "-N", cniChain),
		r("nat", "-A", "POSTROUTING", "-s", podCIDR, "-m", "comment", "--comment", cniComment, "-j", cniChain),
		r("nat", "-A", cniChain, "-d", clusterCIDR, "-m", "comment", "--comment", cniComment, "-j", "ACCEPT"),
		r("nat", "-A", cniChain, "!", "-d", multicast, "-m", "comment", "--comment", cniComment, "-j", "MASQUERADE"),
		// An administrator.
		r("filter", "-A", "INPUT", "-p", "tcp", "-m", "tcp", "--dport", "22", "-m", "comment", "--comment", "admin: ssh", "-j", "ACCEPT"),
		r("filter", "-A", "INPUT", "-s", blocked, "-m", "comment", "--comment", "admin: blocklist", "-j", "DROP"),
		r("mangle", "-A", "FORWARD", "-p", "tcp", "-m", "tcp", "--tcp-flags", "SYN,RST", "SYN", "-j", "TCPMSS", "--clamp-mss-to-pmtu"),
	}
}

// binary returns the env's iptables binary with suffix ("", "-save").
func (e *env) binary(suffix string) string {
	prefix := "iptables"
	if e.f == netns.V6 {
		prefix = "ip6tables"
	}
	return prefix + "-" + string(e.backend) + suffix
}

// iptables runs the env's iptables binary in the node namespace.
func (e *env) iptables(t *testing.T, table string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	full := append([]string{"-w", "5", "-t", table}, args...)
	if _, err := e.topo.Node.Exec(ctx, e.binary(""), full...); err != nil {
		t.Fatal(err)
	}
}

// save returns iptables-save of one table in the node namespace.
func (e *env) save(t *testing.T, table string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := e.topo.Node.Command(ctx, e.binary("-save"), "-t", table).Output()
	if err != nil {
		t.Fatalf("%s -t %s in %s: %v", e.binary("-save"), table, e.topo.Node, err)
	}
	return string(out)
}

// installForeignRules runs the foreign rules in the node and snapshots them.
func installForeignRules(t *testing.T, e *env) *foreignRules {
	t.Helper()
	fr := &foreignRules{rules: foreignRuleSet(e)}
	for _, r := range fr.rules {
		e.iptables(t, r.table, r.args...)
	}
	fr.snapshot = foreignSnapshot(t, e)
	t.Logf("foreign rules installed before the first sync:\n%s", fr.snapshot)
	return fr
}

// reinstallNAT puts the foreign nat rules back after `iptables -t nat -F`, as the
// software that owns them would (a firewall reload re-adds its own rules, and kproxy
// must repair its own).
func (fr *foreignRules) reinstallNAT(t *testing.T, e *env) {
	t.Helper()
	for _, r := range fr.rules {
		if r.table == "nat" && r.args[0] != "-N" {
			e.iptables(t, r.table, r.args...)
		}
	}
}

// foreignSnapshot is the iptables-save text of everything foreign in nat, filter and
// mangle: the foreign chains' declarations and rules, and every rule in a built-in
// chain that does not jump into kproxy's chains, in kernel order. Built-in chains'
// counters are left out (traffic changes them); nothing else is normalised.
func foreignSnapshot(t *testing.T, e *env) string {
	t.Helper()
	var b strings.Builder
	for _, table := range []string{"nat", "filter", "mangle"} {
		fmt.Fprintf(&b, "*%s\n", table)
		for _, line := range strings.Split(e.save(t, table), "\n") {
			if isForeignLine(line) {
				b.WriteString(line)
				b.WriteByte('\n')
			}
		}
	}
	return b.String()
}

func isForeignLine(line string) bool {
	switch {
	case strings.HasPrefix(line, ":"):
		name, _, _ := strings.Cut(line[1:], " ")
		for _, c := range foreignChains {
			if name == c {
				return true
			}
		}
		return false
	case strings.HasPrefix(line, "-A "):
		return !strings.Contains(line, "KUBE-")
	}
	return false
}

// ownedLeftovers returns every line of nat, filter and mangle that mentions a KUBE-
// chain, for checking that Cleanup left nothing behind.
func ownedLeftovers(t *testing.T, e *env) []string {
	t.Helper()
	var out []string
	for _, table := range []string{"nat", "filter", "mangle"} {
		for _, line := range strings.Split(e.save(t, table), "\n") {
			if strings.Contains(line, "KUBE-") {
				out = append(out, table+": "+line)
			}
		}
	}
	return out
}
