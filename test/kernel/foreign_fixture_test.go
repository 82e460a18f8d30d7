package kernel

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/kproxy/kproxy/test/netns"
)

// foreignRule is one iptables command another component ran on the node before kproxy
// started.
type foreignRule struct {
	table string
	args  []string
}

// foreignSets are the ipsets an administrator made, none of them kproxy's.
var foreignSets = []struct {
	name, typ string
	members   []string
}{
	{"ADMIN-BLOCK-HOSTS", "hash:ip", []string{"203.0.113.7", "203.0.113.9", "198.51.100.20"}},
	{"ADMIN-BLOCK-NETS", "hash:net", []string{"203.0.113.128/25", "198.51.100.0/24"}},
}

// CNI chain names are "CNI-" and 24 hex digits (the longest name iptables accepts) in
// the bridge and portmap plugins.
const (
	cniMasqChain = "CNI-0c5a1e2e4d6b8f0a1b2c3d4e"
	cniDNChain   = "CNI-DN-0c5a1e2e4d6b8f0a1b2c3"
)

// foreignRuleSet is what kubelet, Docker, a CNI bridge plugin with ipMasq and portmap,
// and an administrator leave in a node: user chains in nat, filter, mangle and raw, jumps
// from every built-in chain kproxy also hooks, comments, and matches on the foreign
// ipsets. The CNI masquerade chain ACCEPTs pod traffic to the cluster CIDR in
// POSTROUTING, so kproxy's hairpin masquerade only works if its jump comes first.
// None of the rules touches the topology's traffic.
func (w *world) foreignRuleSet() []foreignRule {
	podCIDR := w.topo.Node.PodCIDR.Prefix(netns.V4).String()
	clusterCIDR := w.topo.ClusterCIDR.Prefix(netns.V4).String()
	hostPortPod := w.local(0).IP(netns.V4).String() + ":8443"
	cni := `name: "cbr0" id: "kernel0c5a1e2e4d6b8f"`
	r := func(table string, args ...string) foreignRule { return foreignRule{table: table, args: args} }
	return []foreignRule{
		// kubelet: its chains are named KUBE- too, but are not kproxy's.
		r("mangle", "-N", "KUBE-IPTABLES-HINT"),
		r("mangle", "-N", "KUBE-KUBELET-CANARY"),
		r("nat", "-N", "KUBE-KUBELET-CANARY"),
		r("filter", "-N", "KUBE-KUBELET-CANARY"),
		r("filter", "-N", "KUBE-FIREWALL"),
		r("filter", "-A", "INPUT", "-j", "KUBE-FIREWALL"),
		r("filter", "-A", "OUTPUT", "-j", "KUBE-FIREWALL"),
		r("filter", "-A", "KUBE-FIREWALL", "!", "-s", "127.0.0.0/8", "-d", "127.0.0.0/8", "-m", "comment", "--comment", "block incoming localnet connections",
			"-m", "conntrack", "!", "--ctstate", "RELATED,ESTABLISHED,DNAT", "-j", "DROP"),
		// Docker.
		r("nat", "-N", "DOCKER"),
		r("nat", "-A", "PREROUTING", "-m", "addrtype", "--dst-type", "LOCAL", "-j", "DOCKER"),
		r("nat", "-A", "OUTPUT", "!", "-d", "127.0.0.0/8", "-m", "addrtype", "--dst-type", "LOCAL", "-j", "DOCKER"),
		r("nat", "-A", "POSTROUTING", "-s", "172.17.0.0/16", "!", "-o", "docker0", "-j", "MASQUERADE"),
		r("nat", "-A", "DOCKER", "-i", "docker0", "-j", "RETURN"),
		r("filter", "-N", "DOCKER"),
		r("filter", "-N", "DOCKER-USER"),
		r("filter", "-N", "DOCKER-ISOLATION-STAGE-1"),
		r("filter", "-N", "DOCKER-ISOLATION-STAGE-2"),
		r("filter", "-A", "FORWARD", "-j", "DOCKER-USER"),
		r("filter", "-A", "FORWARD", "-j", "DOCKER-ISOLATION-STAGE-1"),
		r("filter", "-A", "FORWARD", "-o", "docker0", "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"),
		r("filter", "-A", "FORWARD", "-o", "docker0", "-j", "DOCKER"),
		r("filter", "-A", "FORWARD", "-i", "docker0", "!", "-o", "docker0", "-j", "ACCEPT"),
		r("filter", "-A", "DOCKER-ISOLATION-STAGE-1", "-i", "docker0", "!", "-o", "docker0", "-j", "DOCKER-ISOLATION-STAGE-2"),
		r("filter", "-A", "DOCKER-ISOLATION-STAGE-1", "-j", "RETURN"),
		r("filter", "-A", "DOCKER-ISOLATION-STAGE-2", "-o", "docker0", "-j", "DROP"),
		r("filter", "-A", "DOCKER-ISOLATION-STAGE-2", "-j", "RETURN"),
		r("filter", "-A", "DOCKER-USER", "-j", "RETURN"),
		// A CNI bridge plugin with ipMasq.
		r("nat", "-N", cniMasqChain),
		r("nat", "-A", "POSTROUTING", "-s", podCIDR, "-m", "comment", "--comment", cni, "-j", cniMasqChain),
		r("nat", "-A", cniMasqChain, "-d", clusterCIDR, "-m", "comment", "--comment", cni, "-j", "ACCEPT"),
		r("nat", "-A", cniMasqChain, "!", "-d", "224.0.0.0/4", "-m", "comment", "--comment", cni, "-j", "MASQUERADE"),
		// The portmap plugin with one hostPort.
		r("nat", "-N", "CNI-HOSTPORT-DNAT"),
		r("nat", "-N", "CNI-HOSTPORT-SETMARK"),
		r("nat", "-N", "CNI-HOSTPORT-MASQ"),
		r("nat", "-N", cniDNChain),
		r("nat", "-A", "PREROUTING", "-m", "addrtype", "--dst-type", "LOCAL", "-j", "CNI-HOSTPORT-DNAT"),
		r("nat", "-A", "OUTPUT", "-m", "addrtype", "--dst-type", "LOCAL", "-j", "CNI-HOSTPORT-DNAT"),
		r("nat", "-A", "POSTROUTING", "-m", "comment", "--comment", "CNI portfwd requiring masquerade", "-j", "CNI-HOSTPORT-MASQ"),
		r("nat", "-A", "CNI-HOSTPORT-MASQ", "-m", "mark", "--mark", "0x2000/0x2000", "-j", "MASQUERADE"),
		r("nat", "-A", "CNI-HOSTPORT-SETMARK", "-m", "comment", "--comment", "CNI portfwd masquerade mark", "-j", "MARK", "--set-xmark", "0x2000/0x2000"),
		r("nat", "-A", "CNI-HOSTPORT-DNAT", "-p", "tcp", "-m", "comment", "--comment", "dnat "+cni, "-m", "multiport", "--dports", "8443", "-j", cniDNChain),
		r("nat", "-A", cniDNChain, "-s", podCIDR, "-p", "tcp", "-m", "tcp", "--dport", "8443", "-j", "CNI-HOSTPORT-SETMARK"),
		r("nat", "-A", cniDNChain, "-p", "tcp", "-m", "tcp", "--dport", "8443", "-j", "DNAT", "--to-destination", hostPortPod),
		// An administrator.
		r("filter", "-A", "INPUT", "-p", "tcp", "-m", "tcp", "--dport", "22", "-m", "comment", "--comment", "admin: ssh", "-j", "ACCEPT"),
		r("filter", "-A", "INPUT", "-s", "203.0.113.0/24", "-m", "comment", "--comment", "admin: blocklist", "-j", "DROP"),
		r("filter", "-A", "INPUT", "-m", "set", "--match-set", "ADMIN-BLOCK-HOSTS", "src", "-m", "comment", "--comment", "admin: blocked hosts", "-j", "DROP"),
		r("filter", "-A", "FORWARD", "-m", "set", "--match-set", "ADMIN-BLOCK-NETS", "src", "-m", "comment", "--comment", "admin: blocked nets", "-j", "DROP"),
		r("filter", "-A", "FORWARD", "-d", "192.0.2.0/24", "-m", "comment", "--comment", "admin: lab", "-j", "ACCEPT"),
		r("mangle", "-A", "FORWARD", "-p", "tcp", "-m", "tcp", "--tcp-flags", "SYN,RST", "SYN", "-j", "TCPMSS", "--clamp-mss-to-pmtu"),
		r("mangle", "-A", "PREROUTING", "-p", "udp", "-m", "udp", "--dport", "4789", "-m", "comment", "--comment", "admin: vxlan", "-j", "MARK", "--set-xmark", "0x100/0x100"),
		r("raw", "-A", "PREROUTING", "-p", "udp", "-m", "udp", "--dport", "4789", "-m", "comment", "--comment", "admin: vxlan untracked", "-j", "CT", "--notrack"),
	}
}

// foreignState is what the node shows of the foreign rules and sets.
type foreignState struct {
	rules string // foreignPart of every table's iptables-save
	sets  string // "ipset save" of the foreign sets
}

// installForeign creates the foreign ipsets and rules in the node and returns what the
// node shows of them.
func (w *world) installForeign(t *testing.T) foreignState {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, s := range foreignSets {
		if _, err := w.topo.Node.Exec(ctx, "ipset", "create", s.name, s.typ); err != nil {
			t.Fatal(err)
		}
		for _, m := range s.members {
			if _, err := w.topo.Node.Exec(ctx, "ipset", "add", s.name, m); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, r := range w.foreignRuleSet() {
		w.iptables(t, r.table, r.args...)
	}
	return w.foreignState(t)
}

// foreignState reads the foreign rules and sets back from the node.
func (w *world) foreignState(t *testing.T) foreignState {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var sets strings.Builder
	for _, s := range foreignSets {
		out, err := w.topo.Node.Command(ctx, "ipset", "save", s.name).Output()
		if err != nil {
			t.Fatalf("ipset save %s: %v", s.name, err)
		}
		sets.Write(out)
	}
	return foreignState{rules: foreignPart(w.save(t), w.foreignChains()), sets: sets.String()}
}

// ipsetNames lists every ipset in the node.
func (w *world) ipsetNames(t *testing.T) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := w.topo.Node.Exec(ctx, "ipset", "list", "-n")
	if err != nil {
		t.Fatal(err)
	}
	return strings.Fields(string(out))
}

// foreignChains are the user chains the foreign rules create. The tests tell foreign
// from kproxy's rules with this list, not with iptables.OwnedChain, so that a product
// bug that claims someone else's chain cannot hide itself.
func (w *world) foreignChains() map[string]bool {
	out := map[string]bool{}
	for _, r := range w.foreignRuleSet() {
		if r.args[0] == "-N" {
			out[r.table+"/"+r.args[1]] = true
		}
	}
	return out
}
