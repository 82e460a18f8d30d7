package iptables

import (
	"fmt"
	mrand "math/rand/v2"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/kproxy/kproxy/proxier"
)

// These tests load rendered rulesets into the real kernel, always inside a network
// namespace they create (kpr-<random>, deleted afterwards), and compare what
// iptables-save prints back with the rendered text, byte for byte.

// renderNetns creates a private network namespace for one test that also loads
// ipsets into it.
func renderNetns(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("ipset"); err != nil {
		t.Skipf("needs ipset: %v", err)
	}
	return newTestNetns(t)
}

// nsRun runs a command in the namespace with stdin.
func nsRun(ns, stdin, name string, args ...string) (string, error) {
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns, name}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// backendsFor lists the installed backends for a family.
func backendsFor(t *testing.T, f Family) []Backend {
	var out []Backend
	for _, b := range []Backend{BackendNFT, BackendLegacy} {
		ok := true
		for _, s := range []string{"", "-save", "-restore"} {
			if _, err := exec.LookPath(binaryName(b, f, s)); err != nil {
				ok = false
			}
		}
		if ok {
			out = append(out, b)
		}
	}
	if len(out) == 0 {
		t.Skipf("no iptables backend installed for %v", f)
	}
	return out
}

// loadSets creates the ruleset's ipsets with the ipset CLI (replacing their content)
// and checks that `ipset save` prints the entries exactly as rendered.
func loadSets(t *testing.T, ns string, rs *Ruleset) {
	t.Helper()
	var b strings.Builder
	for _, s := range rs.Sets {
		family := "inet"
		if s.Family == IPv6 {
			family = "inet6"
		}
		fmt.Fprintf(&b, "create %s %s family %s maxelem 1048576\nflush %s\n", s.Name, s.Type, family, s.Name)
		for _, e := range s.Entries {
			fmt.Fprintf(&b, "add %s %s\n", s.Name, e)
		}
	}
	if _, err := nsRun(ns, b.String(), "ipset", "-exist", "restore"); err != nil {
		t.Fatal(err)
	}
	for _, s := range rs.Sets {
		out, err := nsRun(ns, "", "ipset", "save", s.Name)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, l := range strings.Split(out, "\n") {
			if e, ok := strings.CutPrefix(l, "add "+s.Name+" "); ok {
				got = append(got, e)
			}
		}
		slices.Sort(got)
		if !slices.Equal(got, s.Entries) {
			t.Errorf("ipset %s: kernel has %q, rendered %q", s.Name, got, s.Entries)
		}
	}
}

// savedChains parses iptables-save output into rules per table and chain.
func savedChains(save string) map[Table]map[Chain][]string {
	out := map[Table]map[Chain][]string{}
	var table Table
	for _, l := range strings.Split(save, "\n") {
		switch {
		case strings.HasPrefix(l, "*"):
			table = Table(l[1:])
			out[table] = map[Chain][]string{}
		case strings.HasPrefix(l, ":"):
			name, _, _ := strings.Cut(l[1:], " ")
			out[table][Chain(name)] = nil
		case strings.HasPrefix(l, "-A "):
			chain, rule, _ := strings.Cut(l[3:], " ")
			out[table][Chain(chain)] = append(out[table][Chain(chain)], rule)
		}
	}
	return out
}

// compareKernel checks every rendered chain against the kernel's copy.
func compareKernel(t *testing.T, rs *Ruleset, saved map[Table]map[Chain][]string) {
	t.Helper()
	for _, tr := range rs.Tables {
		for _, c := range tr.Chains {
			got, ok := saved[tr.Table][c.Name]
			if !ok {
				t.Errorf("%s %s: not in the kernel", tr.Table, c.Name)
				continue
			}
			if !slices.Equal(got, c.Rules) {
				for i := range max(len(got), len(c.Rules)) {
					var g, w string
					if i < len(got) {
						g = got[i]
					}
					if i < len(c.Rules) {
						w = c.Rules[i]
					}
					if g != w {
						t.Errorf("%s %s rule %d:\nkernel:   %s\nrendered: %s", tr.Table, c.Name, i+1, g, w)
						break
					}
				}
			}
		}
	}
}

// loadAndSave restores rs into the namespace (flushing the tables it names, so a
// namespace can be reused) and returns iptables-save's view.
func loadAndSave(t *testing.T, ns string, b Backend, rs *Ruleset) map[Table]map[Chain][]string {
	t.Helper()
	loadSets(t, ns, rs)
	if _, err := nsRun(ns, string(rs.Payload()), binaryName(b, rs.Family, "-restore")); err != nil {
		t.Fatal(err)
	}
	out, err := nsRun(ns, "", binaryName(b, rs.Family, "-save"))
	if err != nil {
		t.Fatal(err)
	}
	return savedChains(out)
}

// TestRenderCanonicalInKernel loads the golden states and the bootstrap jumps into
// both backends and both families and requires iptables-save to print back exactly
// the rendered rules.
func TestRenderCanonicalInKernel(t *testing.T) {
	for _, family := range []Family{IPv4, IPv6} {
		for _, b := range backendsFor(t, family) {
			t.Run(fmt.Sprintf("%v-%s", family, b), func(t *testing.T) {
				ns := renderNetns(t)
				for name, render := range kernelRenderCases(family) {
					rs := render()
					saved := loadAndSave(t, ns, b, rs)
					t.Run(name, func(t *testing.T) { compareKernel(t, rs, saved) })
				}
				rs := kernelRenderCases(family)["scenario"]()
				for _, j := range rs.Jumps {
					args := append([]string{"-t", string(j.Table), "-I", string(j.From)}, j.Args()...)
					if _, err := nsRun(ns, "", binaryName(b, family, ""), args...); err != nil {
						t.Fatal(err)
					}
				}
				out, err := nsRun(ns, "", binaryName(b, family, "-save"))
				if err != nil {
					t.Fatal(err)
				}
				saved := savedChains(out)
				for _, j := range rs.Jumps {
					if !slices.Contains(saved[j.Table][j.From], jumpText(j)) {
						t.Errorf("jump %q not in %s %s: %q", jumpText(j), j.Table, j.From, saved[j.Table][j.From])
					}
				}
			})
		}
	}
}

// kernelRenderCases are states covering every rule shape the renderer writes.
func kernelRenderCases(family Family) map[string]func() *Ruleset {
	withFamily := func(o RenderOptions) RenderOptions { o.Family = family; return o }
	state := proxier.NewState(nodeA, scenario()...)
	return map[string]func() *Ruleset{
		"scenario": func() *Ruleset {
			return Render(state, withFamily(RenderOptions{LocalDetector: clusterCIDRs, RandomFully: true, DispatchLeafSize: 2}))
		},
		"nodecidr-localhost": func() *Ruleset {
			return Render(state, withFamily(RenderOptions{LocalDetector: LocalDetector{Mode: LocalModeNodeCIDR},
				LocalhostNodePorts: true, MasqueradeBit: 31, NodePortAddresses: []netip.Prefix{prefix("127.0.0.0/8"), prefix("::/0")}}))
		},
		"bridge-all-primary": func() *Ruleset {
			return Render(state, withFamily(RenderOptions{LocalDetector: LocalDetector{Mode: LocalModeBridgeInterface, Interface: "cni0"},
				MasqueradeAll: true, NodePortPrimary: true, ConntrackTCPLiberal: true}))
		},
		"prefix-detect": func() *Ruleset {
			return Render(state, withFamily(RenderOptions{LocalDetector: LocalDetector{Mode: LocalModeInterfaceNamePrefix, Interface: "veth"},
				DispatchLeafSize: 1}))
		},
	}
}

// TestRenderRandomStatesInKernel loads a few hundred random states into both
// backends, checking that iptables-restore accepts each and that iptables-save
// prints every chain back exactly as rendered.
func TestRenderRandomStatesInKernel(t *testing.T) {
	n := 150
	if testing.Short() {
		n = 20
	}
	for _, family := range []Family{IPv4, IPv6} {
		for _, b := range backendsFor(t, family) {
			t.Run(fmt.Sprintf("%v-%s", family, b), func(t *testing.T) {
				ns := renderNetns(t)
				for i := range n {
					c := randChooser{mrand.New(mrand.NewPCG(uint64(i), uint64(family)))}
					opts := genOptions(c, family)
					var ports []*proxier.ServicePort
					for j := range c.intn(25) {
						ports = append(ports, genServicePort(c, j))
					}
					rs := Render(proxier.NewState(genNode(c), ports...), opts)
					compareKernel(t, rs, loadAndSave(t, ns, b, rs))
					if t.Failed() {
						t.Fatalf("state %d:\n%s", i, rs.Payload())
					}
				}
			})
		}
	}
}
