package app

import (
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kproxy/kproxy/iptables"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/render")

const (
	clusterFixture = "testdata/render/cluster.yaml"
	invalidFixture = "testdata/render/invalid.yaml"
)

// runMain runs the kproxy command line as the binary does.
func runMain(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb strings.Builder
	code = Main(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

// golden compares got with testdata/render/name, or rewrites it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", "render", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -run %s -update to create it)", err, t.Name())
	}
	if got != string(want) {
		t.Errorf("output differs from %s (rerun with -update if the change is intended):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

func TestRenderGolden(t *testing.T) {
	code, out, errOut := runMain(t, "render", "-f", clusterFixture, "--cluster-cidr", "10.244.0.0/16")
	if code != 0 || errOut != "" {
		t.Fatalf("exit %d, stderr:\n%s", code, errOut)
	}
	golden(t, "cluster.iptables.golden", out)

	// The parts the header promises, besides the payload.
	for _, want := range []string{
		"# create KUBE-LOOP-BACK hash:ip,port,ip family inet maxelem 1048576\n",
		"# add KUBE-LOOP-BACK 10.244.1.30,tcp:8080,10.244.1.30\n",
		`#   iptables -t nat -I PREROUTING 1 -m comment --comment "kubernetes service portals" -j KUBE-SERVICES` + "\n",
		"*nat\n", "*filter\n", "*mangle\n",
		// ClusterIP, NodePort, LB source ranges, affinity, eTP Local, no endpoints.
		// Endpoint rules carry no comment (it cost nft a compat match per endpoint).
		`-p tcp -j DNAT --to-destination 10.244.3.7:8080`,
		`--comment "default/shop:http" -m tcp --dport 30080 -j KUBE-EXT-`,
		`-s 203.0.113.0/24 -m comment --comment "default/admin:https loadbalancer IP"`,
		`-m recent --rcheck --seconds 600 --reap --name KUBE-SEP-`,
		`-A KUBE-SVL-`,
		`--comment "default/empty:http has no endpoints" -m tcp --dport 80 -j REJECT`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
}

// The whole output, header comments included, is iptables-restore input.
func TestRenderOutputRestores(t *testing.T) {
	_, out, _ := runMain(t, "render", "-f", clusterFixture, "--cluster-cidr", "10.244.0.0/16")
	k := iptables.NewFake(iptables.FakeOptions{})
	if err := k.Restore(context.Background(), iptables.IPv4, []byte(out), iptables.RestoreOptions{}); err != nil {
		t.Fatalf("restoring the render output: %v", err)
	}
	if rules, ok := k.Rules(iptables.IPv4, iptables.TableNAT, "KUBE-SERVICES"); !ok || len(rules) != 9 {
		t.Errorf("nat KUBE-SERVICES after restore: %d rules", len(rules))
	}
}

func TestRenderFamilies(t *testing.T) {
	code, out, errOut := runMain(t, "render", "-f", clusterFixture, "--family", "ipv6", "--cluster-cidr", "10.244.0.0/16")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if !strings.Contains(out, "iptables mode, IPv6") || strings.Contains(out, "10.96.0.10") ||
		!strings.Contains(out, "create KUBE-6-LOOP-BACK hash:ip,port,ip family inet6") || !strings.Contains(out, "#   ip6tables -t nat") {
		t.Errorf("IPv6 render of an IPv4 cluster:\n%s", out)
	}
	// The cluster CIDR has no IPv6 prefix: like kproxy, render without detection.
	if !strings.Contains(errOut, "local traffic is not detected for IPv6") {
		t.Errorf("stderr = %q", errOut)
	}
	if code, _, errOut := runMain(t, "render", "-f", clusterFixture, "--family", "ipx"); code != 1 || !strings.Contains(errOut, "--family") {
		t.Errorf("bad family: exit %d, %q", code, errOut)
	}
}

func TestRenderReportsInvalidObjects(t *testing.T) {
	code, out, errOut := runMain(t, "render", "-f", invalidFixture, "--cluster-cidr", "10.244.0.0/16")
	if code != 0 {
		t.Fatalf("invalid objects must not fail the command: exit %d\n%s", code, errOut)
	}
	golden(t, "invalid.stderr.golden", errOut)
	for _, want := range []string{
		"invalid.yaml: document 1 (Service default/typo): strict decoding error: unknown field \"spec.portz\"",
		"invalid.yaml: document 2 (ConfigMap default/settings): unsupported kind",
		"invalid.yaml: document 5 (EndpointSlice default/good-2): ignored: endpoints[0].addresses[0]: Invalid value: \"not-an-ip\"",
		"invalid.yaml: document 6 (Service default/badport): ignored: spec.ports[0].port: Invalid value: 0",
	} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut)
		}
	}
	if !strings.Contains(out, `-j DNAT --to-destination 10.244.1.5:8080`) || strings.Contains(out, "badport") {
		t.Errorf("the valid objects must be rendered, and only them:\n%s", out)
	}
}

func TestRenderErrors(t *testing.T) {
	dir := t.TempDir()
	twoNodes := filepath.Join(dir, "two.yaml")
	if err := os.WriteFile(twoNodes, []byte("apiVersion: v1\nkind: Node\nmetadata: {name: a}\n---\napiVersion: v1\nkind: Node\nmetadata: {name: b}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	noNode := filepath.Join(dir, "none.yaml")
	if err := os.WriteFile(noNode, []byte("apiVersion: v1\nkind: Service\nmetadata: {namespace: x, name: y}\nspec: {clusterIP: 10.0.0.1, ports: [{port: 80}]}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"unreadable file", []string{"-f", filepath.Join(dir, "missing.yaml")}, "missing.yaml"},
		{"no file", nil, "-f/--filename is required"},
		{"two nodes", []string{"-f", twoNodes}, "has 2 Node objects (a, b): choose one with --node"},
		{"no node", []string{"-f", noNode}, "has no Node object"},
		{"unknown flag", []string{"-f", clusterFixture, "--bogus"}, "unknown flag: --bogus"},
		{"argument", []string{"-f", clusterFixture, "extra"}, "takes no arguments"},
		{"invalid config", []string{"-f", clusterFixture, "--cluster-cidr", "nope"}, "--cluster-cidr"},
		{"masquerade bit 0", []string{"-f", clusterFixture, "--iptables-masquerade-bit", "0"}, "masquerade-bit=0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := runMain(t, append([]string{"render"}, tc.args...)...)
			if code != 1 || out != "" || !strings.Contains(errOut, tc.want) || !strings.HasPrefix(errOut, "kproxy render: ") {
				t.Errorf("exit %d, stdout %q, stderr %q; want exit 1 and %q", code, out, errOut, tc.want)
			}
		})
	}
	// --node chooses among several; a node absent from the file is a warning.
	if code, out, errOut := runMain(t, "render", "-f", twoNodes, "--node", "b"); code != 0 || !strings.Contains(out, "node b,") || errOut == "" {
		t.Errorf("--node b: exit %d, stderr %q", code, errOut)
	}
	if code, _, errOut := runMain(t, "render", "-f", noNode, "--hostname-override", "Elsewhere"); code != 0 ||
		!strings.Contains(errOut, `node "elsewhere" has no Node object`) {
		t.Errorf("--hostname-override: exit %d, stderr %q", code, errOut)
	}
}

func TestRenderHelp(t *testing.T) {
	code, out, _ := runMain(t, "render", "--help")
	if code != 0 || !strings.Contains(out, "--filename") || !strings.Contains(out, "--cluster-cidr") ||
		!strings.Contains(out, "--masquerade-all") || !strings.Contains(out, "--nodeport-addresses") || strings.Contains(out, "--conntrack-min") {
		t.Errorf("exit %d:\n%s", code, out)
	}
	if code, out, _ := runMain(t, "--help"); code != 0 || !strings.Contains(out, "kproxy render") {
		t.Errorf("the main help must mention the subcommands:\n%s", out)
	}
}

func TestRenderConfigFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.yaml")
	cfg := "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\nclusterCIDR: 10.244.0.0/16\niptables: {masqueradeAll: true}\n"
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runMain(t, "render", "-f", clusterFixture, "--config", path, "--nodeport-addresses", "10.0.0.0/8")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	// masqueradeAll from the file: every cluster IP rule masquerades, whatever the source.
	if !strings.Contains(out, `-A KUBE-SVC-CDGGSHYLG3RE2FKL -d 10.96.0.10/32 -p tcp -m comment --comment "default/web:http cluster IP" -m tcp --dport 80 -j KUBE-MARK-MASQ`) {
		t.Errorf("masqueradeAll from --config not applied:\n%s", out)
	}
	if !strings.Contains(errOut, "ignoring --nodeport-addresses because --config is set") {
		t.Errorf("a configuration flag next to --config must be reported as ignored: %q", errOut)
	}
}

func TestRenderIPVS(t *testing.T) {
	code, out, errOut := runMain(t, "render", "--proxy-mode=ipvs", "-f", clusterFixture, "--cluster-cidr", "10.244.0.0/16")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{
		"ipvs mode, IPv4, node node-a",
		"#   ip addr add 10.96.0.10/32 dev kube-ipvs0\n",
		"# -A -t 10.96.0.10:80 -s rr\n",
		"# -a -t 10.96.0.10:80 -r 10.244.3.7:8080 -m -w 1\n",
		"# -A -t 10.96.0.40:80 -s rr -p 600\n",
		"# add KUBE-LOAD-BALANCER-SOURCE-CIDR 198.51.100.10,tcp:443,203.0.113.0/24\n",
		"*nat\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("ipvs render lacks %q:\n%s", want, out)
		}
	}
}
