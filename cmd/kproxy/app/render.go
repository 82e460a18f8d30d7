package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strings"

	"github.com/go-logr/logr"
	"github.com/spf13/pflag"

	"github.com/kproxy/kproxy/cmd/kproxy/app/config"
	"github.com/kproxy/kproxy/iptables"
	"github.com/kproxy/kproxy/proxier"
)

const renderUsageHeader = `kproxy render prints what kproxy would program on a node for the Services,
EndpointSlices and Node in a YAML file (as kubectl get -o yaml prints them), without
root and without touching the kernel. In iptables mode that is the iptables-restore
payload, preceded by a comment block with the ipsets it needs (ipset restore syntax)
and the bootstrap jumps from the built-in chains.

Objects kproxy would ignore are reported on stderr with the file, document and field;
the others are still rendered (exit code 0). Options mean what they mean for kproxy
itself, and --config reads a KubeProxyConfiguration file.

Usage:
  kproxy render -f cluster.yaml [--node NAME] [--family ipv4|ipv6] [flags]

Flags:
`

// renderFlagNames are the flags of the main command that change what is rendered;
// the rest of the main command's flags are accepted but hidden.
var renderFlagNames = []string{
	"config", "proxy-mode", "hostname-override", "bind-address", "cluster-cidr", "detect-local-mode",
	"pod-bridge-interface", "pod-interface-name-prefix", "masquerade-all", "iptables-masquerade-bit",
	"iptables-localhost-nodeports", "nodeport-addresses", "conntrack-tcp-be-liberal",
	"ipvs-scheduler", "ipvs-strict-arp", "ipvs-exclude-cidrs",
}

// configOnlyFlags are the configuration flags that still apply when --config is given
// (see package config); the others are ignored then, with a warning.
var configOnlyFlags = []string{"config", "hostname-override", "v", "vmodule", "logging-format",
	"log-flush-frequency", "log-text-split-stream", "log-text-info-buffer-size"}

// renderCmd holds the flags and the loaded input shared by render and trace.
type renderCmd struct {
	name   string // "render" or "trace"
	stderr io.Writer

	opts        *config.Options
	cfgFlags    *pflag.FlagSet // the main command's flags
	fs          *pflag.FlagSet // cfgFlags plus the subcommand's own
	file        string
	node        string
	family      string
	randomFully bool
	help        bool
}

func newRenderCmd(name string, stderr io.Writer) *renderCmd {
	r := &renderCmd{name: name, stderr: stderr, opts: config.NewOptions()}
	normalize := func(_ *pflag.FlagSet, n string) pflag.NormalizedName {
		return pflag.NormalizedName(strings.ReplaceAll(n, "_", "-"))
	}
	r.cfgFlags = pflag.NewFlagSet("kproxy", pflag.ContinueOnError)
	r.cfgFlags.SetNormalizeFunc(normalize)
	r.opts.AddFlags(r.cfgFlags)
	r.cfgFlags.VisitAll(func(f *pflag.Flag) {
		if !slices.Contains(renderFlagNames, f.Name) {
			f.Hidden = true
		}
	})

	fs := pflag.NewFlagSet("kproxy "+name, pflag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {}
	fs.SetNormalizeFunc(normalize)
	fs.SortFlags = true
	fs.StringVarP(&r.file, "filename", "f", "", "YAML file with the Services, EndpointSlices and Node objects (several documents and v1 Lists are read). Required.")
	fs.StringVar(&r.node, "node", "", "Name of the node to render for: its endpoints are local, its addresses serve NodePorts. Default: --hostname-override, else the only Node in the file.")
	fs.BoolVar(&r.randomFully, "random-fully", true, "Render MASQUERADE with --random-fully, as kproxy does with iptables >= 1.6.2; set to false for older iptables.")
	fs.BoolVarP(&r.help, "help", "h", false, "Print this help and exit.")
	fs.AddFlagSet(r.cfgFlags)
	if name == "trace" {
		for _, n := range []string{"ipvs-scheduler", "ipvs-strict-arp", "ipvs-exclude-cidrs"} {
			fs.Lookup(n).Hidden = true
		}
		fs.Lookup("proxy-mode").Usage = "Proxy backend: only iptables (the default when empty) can be traced."
	} else {
		fs.Lookup("proxy-mode").Usage = "Proxy backend to render: iptables (the default when empty) or ipvs. Ignored when --config is given."
	}
	r.fs = fs
	return r
}

// parse parses args and completes the configuration. It returns done when the command
// should exit with code (after --help or an error).
func (r *renderCmd) parse(args []string, stdout io.Writer, usage string) (code int, done bool) {
	if err := r.fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			r.printUsage(stdout, usage)
			return 0, true
		}
		return r.fail(fmt.Errorf("%w (see kproxy %s --help)", err, r.name)), true
	}
	if r.help {
		r.printUsage(stdout, usage)
		return 0, true
	}
	if r.fs.NArg() > 0 {
		return r.fail(fmt.Errorf("kproxy %s takes no arguments, got %q", r.name, r.fs.Args())), true
	}
	if r.file == "" {
		return r.fail(fmt.Errorf("-f/--filename is required (see kproxy %s --help)", r.name)), true
	}
	if err := r.opts.Complete(); err != nil {
		return r.fail(err), true
	}
	if err := r.opts.Validate(); err != nil {
		return r.fail(err), true
	}
	for _, w := range r.opts.Warnings {
		r.warn(w)
	}
	if r.opts.ConfigFile != "" {
		var ignored []string
		r.cfgFlags.VisitAll(func(f *pflag.Flag) {
			if f.Changed && !slices.Contains(configOnlyFlags, f.Name) {
				ignored = append(ignored, "--"+f.Name)
			}
		})
		if len(ignored) > 0 {
			r.warn(fmt.Sprintf("ignoring %s because --config is set; set the corresponding fields in %s instead",
				strings.Join(ignored, ", "), r.opts.ConfigFile))
		}
	}
	return 0, false
}

func (r *renderCmd) printUsage(w io.Writer, header string) {
	fmt.Fprint(w, header)
	fmt.Fprint(w, r.fs.FlagUsages())
}

func (r *renderCmd) fail(err error) int {
	fmt.Fprintf(r.stderr, "kproxy %s: %s\n", r.name, strings.ReplaceAll(strings.TrimSpace(err.Error()), "\n", " "))
	return 1
}

func (r *renderCmd) warn(msg string) {
	fmt.Fprintf(r.stderr, "kproxy %s: warning: %s\n", r.name, msg)
}

// logger turns the log lines of shared code (the render options) into warnings.
func (r *renderCmd) logger() logr.Logger { return logr.New(warnSink{r}) }

// warnSink is a logr.LogSink printing every message as a warning.
type warnSink struct{ r *renderCmd }

func (warnSink) Init(logr.RuntimeInfo)  {}
func (warnSink) Enabled(level int) bool { return level == 0 }
func (s warnSink) Info(_ int, msg string, kv ...any) {
	s.r.warn(msg + formatKV(kv))
}
func (s warnSink) Error(err error, msg string, kv ...any) {
	s.r.warn(msg + formatKV(append(kv, "err", err)))
}
func (s warnSink) WithValues(...any) logr.LogSink { return s }
func (s warnSink) WithName(string) logr.LogSink   { return s }

func formatKV(kv []any) string {
	var b strings.Builder
	for i := 0; i+1 < len(kv); i += 2 {
		fmt.Fprintf(&b, " %v=%v", kv[i], kv[i+1])
	}
	return b.String()
}

// renderMain runs "kproxy render".
func renderMain(_ context.Context, args []string, stdout, stderr io.Writer) int {
	r := newRenderCmd("render", stderr)
	r.fs.StringVar(&r.family, "family", "", "IP family to render, ipv4 or ipv6. Default: the family of the node's primary address (ipv4 when unknown).")
	if code, done := r.parse(args, stdout, renderUsageHeader); done {
		return code
	}
	in, err := r.load()
	if err != nil {
		return r.fail(err)
	}
	fam, err := r.pickFamily(in.state, netip.Addr{})
	if err != nil {
		return r.fail(err)
	}
	switch r.opts.Config.Mode {
	case config.ModeIPVS:
		err = r.renderIPVS(stdout, in, fam)
	default:
		var rs *iptables.Ruleset
		if rs, err = r.renderIPTables(in.state, fam); err == nil {
			err = writeIPTablesRender(stdout, in, rs)
		}
	}
	if err != nil {
		return r.fail(err)
	}
	return 0
}

// renderInput is the model built from the file.
type renderInput struct {
	file  string
	node  string
	state *proxier.State
}

// load reads the file into a State for the chosen node; objects kproxy would ignore
// are reported as warnings.
func (r *renderCmd) load() (*renderInput, error) {
	f, err := loadClusterFile(r.file)
	if err != nil {
		return nil, err
	}
	node := r.node
	if node == "" {
		node = r.opts.Config.HostnameOverride
	}
	if node == "" {
		switch len(f.nodes) {
		case 0:
			return nil, fmt.Errorf("%s has no Node object: name the node to render for with --node", r.file)
		case 1:
			node = f.nodes[0]
		default:
			return nil, fmt.Errorf("%s has %d Node objects (%s): choose one with --node", r.file, len(f.nodes), strings.Join(f.nodes, ", "))
		}
	} else if !slices.Contains(f.nodes, node) {
		r.warn(fmt.Sprintf("node %q has no Node object in %s: its addresses and pod CIDRs are unknown, so NodePorts and local traffic detection by node CIDR are rendered without them", node, r.file))
	}
	st, problems, err := f.build(proxier.BuilderOptions{NodeName: node, PrimaryNodeIP: primaryIPOverride(r.opts.Config.BindAddress)})
	if err != nil {
		return nil, err
	}
	for _, p := range problems {
		r.warn(p)
	}
	if slices.Contains(f.nodes, node) && len(st.Node.Addresses) == 0 {
		r.warn(fmt.Sprintf("Node %q lists no addresses: kproxy waits for them before it programs anything (or give --bind-address)", node))
	}
	return &renderInput{file: r.file, node: node, state: st}, nil
}

// pickFamily returns the family to render: --family, else the family of addr when
// valid, else the family of the node's primary address.
func (r *renderCmd) pickFamily(st *proxier.State, addr netip.Addr) (proxier.IPFamily, error) {
	var want proxier.IPFamily
	switch strings.ToLower(r.family) {
	case "":
	case "ipv4", "4", "v4":
		want = proxier.IPv4
	case "ipv6", "6", "v6":
		want = proxier.IPv6
	default:
		return 0, fmt.Errorf("--family: %q is not ipv4 or ipv6", r.family)
	}
	if addr.IsValid() {
		if f := proxier.FamilyOf(addr); want != 0 && want != f {
			return 0, fmt.Errorf("--family=%s does not match the %v packet", r.family, f)
		} else if want == 0 {
			want = f
		}
	}
	if want != 0 {
		return want, nil
	}
	if len(st.Node.Addresses) > 0 {
		return proxier.FamilyOf(st.Node.Addresses[0]), nil
	}
	if len(st.Node.PodCIDRs) > 0 {
		return proxier.FamilyOf(st.Node.PodCIDRs[0].Addr()), nil
	}
	return proxier.IPv4, nil
}

// renderIPTables renders one family the way kproxy's iptables proxier would on a node
// with this configuration (see newIPTablesProxier and iptables.NewNodeProxier).
func (r *renderCmd) renderIPTables(st *proxier.State, fam proxier.IPFamily) (*iptables.Ruleset, error) {
	c := r.opts.Config
	if *c.IPTables.MasqueradeBit == 0 {
		return nil, errors.New("--iptables-masquerade-bit=0 (iptables.masqueradeBit: 0) is not supported by kproxy's iptables proxier; choose a bit from 1 to 31")
	}
	ro := iptablesRenderOptions(c, r.logger())
	ro.Family = fam
	ro.RandomFully = r.randomFully
	ro.ConntrackTCPLiberal = c.Conntrack.TCPBeLiberal
	if err := ro.Validate(); err != nil {
		noDetect := ro
		noDetect.LocalDetector = iptables.LocalDetector{}
		if noDetect.Validate() != nil {
			return nil, err
		}
		r.warn(fmt.Sprintf("local traffic is not detected for %v: %v", fam, err))
		ro = noDetect
	}
	return iptables.Render(st, ro), nil
}

// writeIPTablesRender prints the header (ipsets and bootstrap jumps, as comments) and
// the iptables-restore payload.
func writeIPTablesRender(w io.Writer, in *renderInput, rs *iptables.Ruleset) error {
	var b strings.Builder
	fmt.Fprintf(&b, "# kproxy render: iptables mode, %v, node %s, %d service ports from %s\n",
		rs.Family, in.node, in.state.Len(), in.file)
	b.WriteString("#\n# ipsets, in `ipset restore` syntax; they must exist before the rules are restored:\n")
	b.WriteString("#   grep -E '^# (create|add) ' <this file> | cut -c3- | ipset restore -exist\n")
	for _, s := range rs.Sets {
		fmt.Fprintf(&b, "# %s\n", ipsetCreateLine(s))
		for _, e := range s.Entries {
			fmt.Fprintf(&b, "# add %s %s\n", s.Name, e)
		}
	}
	bin := "iptables"
	if rs.Family == iptables.IPv6 {
		bin = "ip6tables"
	}
	b.WriteString("#\n# bootstrap jumps from the built-in chains, in the order kproxy inserts them\n")
	b.WriteString("# (in the same restore, once the chains below exist):\n")
	for _, j := range rs.Jumps {
		fmt.Fprintf(&b, "#   %s -t %s %s\n", bin, j.Table, jumpCommand(j))
	}
	b.WriteString("#\n# iptables-restore --noflush payload:\n")
	b.Write(rs.Payload())
	_, err := io.WriteString(w, b.String())
	return err
}

// ipsetCreateLine is the "create" line kproxy's netlink ipset client is equivalent to.
func ipsetCreateLine(s *iptables.IPSet) string {
	fam := "inet"
	if s.Family == iptables.IPv6 {
		fam = "inet6"
	}
	if strings.HasPrefix(s.Type, "bitmap:") {
		return fmt.Sprintf("create %s %s range 0-65535", s.Name, s.Type)
	}
	return fmt.Sprintf("create %s %s family %s maxelem %d", s.Name, s.Type, fam, 1<<20)
}

// jumpCommand is a jump as the iptables command that inserts it (without the table).
func jumpCommand(j iptables.Jump) string {
	words := []string{"-I", string(j.From), "1"}
	if j.Position == iptables.Append {
		words = []string{"-A", string(j.From)}
	}
	for _, a := range j.Args() {
		words = append(words, quoteWord(a))
	}
	return strings.Join(words, " ")
}

// quoteWord double-quotes a word holding blanks or quotes, as iptables-save does.
func quoteWord(w string) string {
	if w != "" && !strings.ContainsAny(w, " \t\"'\\$`") {
		return w
	}
	var b strings.Builder
	b.WriteByte('"')
	for _, c := range w {
		if c == '"' || c == '\\' || c == '$' || c == '`' {
			b.WriteByte('\\')
		}
		b.WriteRune(c)
	}
	b.WriteByte('"')
	return b.String()
}
