package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"

	"github.com/kproxy/kproxy/cmd/kproxy/app/config"
	"github.com/kproxy/kproxy/iptables"
	"github.com/kproxy/kproxy/iptables/iptablestest"
	"github.com/kproxy/kproxy/proxier"
)

const traceUsageHeader = `kproxy trace renders the rules kproxy would program on a node (as kproxy render
does), installs them with the bootstrap jumps in an in-memory iptables, and walks one
packet through them like the kernel would. It prints every outcome (the endpoints
with their probabilities, REJECT or DROP, whether the packet is masqueraded) and,
for each, the chains and rules the packet went through.

By default the packet arrives from a pod on the node's bridge when --src is in the
node's pod CIDR, and from outside the node otherwise; --local traces a packet sent by
the node itself. Random balancing and unknown session-affinity state are explored as
separate outcomes.

Usage:
  kproxy trace -f cluster.yaml --src 10.244.1.5 --dst 10.96.0.10:80/tcp [flags]

Flags:
`

// traceMain runs "kproxy trace".
func traceMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	r := newRenderCmd("trace", stderr)
	var src, dst, inIface string
	var srcPort uint16
	var local bool
	r.fs.StringVar(&src, "src", "", "Source address of the packet. Required unless --local (default: the node's primary address).")
	r.fs.StringVar(&dst, "dst", "", "Destination as ADDRESS:PORT[/PROTOCOL], e.g. 10.96.0.10:80/tcp or [fd00::10]:53/udp; the protocol defaults to tcp. Required.")
	r.fs.Uint16Var(&srcPort, "src-port", 0, "Source port of the packet; 0 means unknown (rules that depend on it are explored both ways).")
	r.fs.StringVar(&inIface, "in-interface", "", "Interface the packet arrives on. Default: the pod bridge (--pod-bridge-interface, else cni0) for a source in the node's pod CIDR, eth0 otherwise.")
	r.fs.BoolVar(&local, "local", false, "Trace a packet sent by the node itself (the OUTPUT path) instead of an arriving one.")
	if code, done := r.parse(args, stdout, traceUsageHeader); done {
		return code
	}
	if r.opts.Config.Mode == config.ModeIPVS {
		return r.fail(errors.New("--proxy-mode=ipvs: tracing IPVS is not available yet (IPVS balances in the kernel's IPVS tables, which the tracer does not model); use kproxy render --proxy-mode=ipvs to see what would be programmed"))
	}
	dstAP, proto, err := parseTraceDestination(dst)
	if err != nil {
		return r.fail(err)
	}
	var srcAddr netip.Addr
	if src != "" {
		if srcAddr, err = netip.ParseAddr(src); err != nil {
			return r.fail(fmt.Errorf("--src: %q is not an IP address", src))
		}
		srcAddr = srcAddr.Unmap()
	} else if !local {
		return r.fail(errors.New("--src is required (or --local for a packet sent by the node)"))
	}

	in, err := r.load()
	if err != nil {
		return r.fail(err)
	}
	fam, err := r.pickFamily(in.state, dstAP.Addr())
	if err != nil {
		return r.fail(err)
	}
	node := &in.state.Node
	pkt := iptablestest.Packet{
		Source:          srcAddr,
		Destination:     dstAP.Addr(),
		Protocol:        proto,
		DestinationPort: dstAP.Port(),
		SourcePort:      srcPort,
		Local:           local,
		LocalAddresses:  node.Addresses,
	}
	var where string
	switch {
	case local:
		if !pkt.Source.IsValid() {
			for _, a := range node.Addresses {
				if proxier.FamilyOf(a) == fam {
					pkt.Source = a
					break
				}
			}
			if !pkt.Source.IsValid() {
				return r.fail(fmt.Errorf("--src is required: node %s has no %v address", in.node, fam))
			}
		}
		where = "sent by the node itself"
	case inIface != "":
		pkt.InInterface = inIface
		where = "arriving on " + inIface
	default:
		if cidr, ok := podCIDROf(node, pkt.Source); ok {
			pkt.InInterface = r.podInterface()
			where = fmt.Sprintf("arriving on %s from a pod on %s (%s is in its pod CIDR %s)", pkt.InInterface, in.node, pkt.Source, cidr)
		} else {
			pkt.InInterface = "eth0"
			where = fmt.Sprintf("arriving on eth0 from outside %s (%s is not in its pod CIDR)", in.node, pkt.Source)
		}
	}

	rs, err := r.renderIPTables(in.state, fam)
	if err != nil {
		return r.fail(err)
	}
	dump, err := installedDump(ctx, rs)
	if err != nil {
		return r.fail(err)
	}
	out, err := iptablestest.Trace(dump, pkt, iptablestest.TraceOptions{IPSets: rs.TracerSets()})
	if err != nil {
		return r.fail(fmt.Errorf("tracing: %w", err))
	}
	writeTrace(stdout, in, fam, pkt, where, out)
	return 0
}

// parseTraceDestination parses "10.96.0.10:80/tcp", "[fd00::1]:53/udp" or "10.96.0.10:80".
func parseTraceDestination(s string) (netip.AddrPort, iptablestest.Protocol, error) {
	if s == "" {
		return netip.AddrPort{}, "", errors.New("--dst is required, e.g. --dst 10.96.0.10:80/tcp")
	}
	addr, proto, _ := strings.Cut(s, "/")
	p := iptablestest.Protocol(strings.ToLower(proto))
	switch p {
	case "":
		p = iptablestest.TCP
	case iptablestest.TCP, iptablestest.UDP, iptablestest.SCTP:
	default:
		return netip.AddrPort{}, "", fmt.Errorf("--dst: protocol %q is not tcp, udp or sctp", proto)
	}
	ap, err := netip.ParseAddrPort(addr)
	if err != nil || ap.Port() == 0 {
		return netip.AddrPort{}, "", fmt.Errorf("--dst: %q is not ADDRESS:PORT[/PROTOCOL] (IPv6 as [ADDRESS]:PORT)", s)
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), p, nil
}

// podCIDROf returns the node's pod CIDR holding a.
func podCIDROf(n *proxier.Node, a netip.Addr) (netip.Prefix, bool) {
	for _, p := range n.PodCIDRs {
		if p.Contains(a) {
			return p, true
		}
	}
	return netip.Prefix{}, false
}

// podInterface is the interface a packet from a local pod arrives on.
func (r *renderCmd) podInterface() string {
	c := r.opts.Config
	switch {
	case c.DetectLocalMode == config.LocalModeBridgeInterface && c.DetectLocal.BridgeInterface != "":
		return c.DetectLocal.BridgeInterface
	case c.DetectLocalMode == config.LocalModeInterfaceNamePrefix && c.DetectLocal.InterfaceNamePrefix != "":
		name := c.DetectLocal.InterfaceNamePrefix + "0"
		if len(name) > 15 {
			name = name[:15]
		}
		return name
	}
	return "cni0"
}

// installedDump returns what iptables-save would print after kproxy programmed rs on a
// node with empty tables: the built-in chains holding the bootstrap jumps, and the
// ruleset's chains. The in-memory Fake applies the payload and jumps exactly as
// iptables does (and rejects what iptables would reject).
func installedDump(ctx context.Context, rs *iptables.Ruleset) (*iptablestest.Dump, error) {
	k := iptables.NewFake(iptables.FakeOptions{})
	if err := k.Restore(ctx, rs.Family, rs.Payload(), iptables.RestoreOptions{}); err != nil {
		return nil, fmt.Errorf("the rendered rules do not restore: %w", err)
	}
	for _, j := range rs.Jumps {
		if _, err := k.EnsureJump(ctx, rs.Family, j); err != nil {
			return nil, fmt.Errorf("bootstrap jump %s -> %s: %w", j.From, j.To, err)
		}
	}
	text, err := k.Save(ctx, rs.Family)
	if err != nil {
		return nil, err
	}
	dump, err := iptablestest.ParseDump(string(text))
	if err != nil {
		return nil, fmt.Errorf("parsing the installed rules: %w", err)
	}
	return dump, nil
}

// writeTrace prints the packet, a one-line summary per outcome, then every outcome's
// steps.
func writeTrace(w io.Writer, in *renderInput, fam proxier.IPFamily, p iptablestest.Packet, where string, out iptablestest.Outcomes) {
	var b strings.Builder
	src := p.Source.String()
	if p.SourcePort != 0 {
		src = netip.AddrPortFrom(p.Source, p.SourcePort).String()
	}
	fmt.Fprintf(&b, "Packet: %s %s -> %s, %s\n", p.Protocol, src, netip.AddrPortFrom(p.Destination, p.DestinationPort), where)
	addrs := make([]string, 0, len(p.LocalAddresses))
	for _, a := range p.LocalAddresses {
		addrs = append(addrs, a.String())
	}
	if len(addrs) == 0 {
		addrs = append(addrs, "none known")
	}
	fmt.Fprintf(&b, "Rules:  iptables mode, %v, node %s (addresses: %s), %d service ports from %s\n",
		fam, in.node, strings.Join(addrs, ", "), in.state.Len(), in.file)
	fmt.Fprintf(&b, "\n%d %s:\n", len(out), plural(len(out), "outcome", "outcomes"))
	owners := endpointChainOwners(in.state)
	for i, o := range out {
		fmt.Fprintf(&b, "  %d. %6s  %s\n", i+1, percent(o.Probability), summarize(o, owners))
	}
	b.WriteString("\nTrace:\n")
	b.WriteString(out.String())
	_, _ = io.WriteString(w, b.String())
}

// endpointChainOwners maps each KUBE-SVC-/KUBE-SVL- chain to its service port.
func endpointChainOwners(st *proxier.State) map[string]proxier.ServicePortName {
	out := make(map[string]proxier.ServicePortName, 2*st.Len())
	for _, sp := range st.ServicePorts() {
		cluster, local := iptables.EndpointChains(sp.Name)
		out[string(cluster)], out[string(local)] = sp.Name, sp.Name
	}
	return out
}

// summarize says what happened to the packet in one outcome; owners names the service
// port whose chain DNATed it.
func summarize(o iptablestest.Outcome, owners map[string]proxier.ServicePortName) string {
	var s string
	switch o.Verdict {
	case iptablestest.Accept:
		if o.DNAT != nil {
			s = fmt.Sprintf("-> %s", o.Destination)
			if svc, ok := owners[o.DNAT.Chain]; ok {
				name := svc.ServiceName.String()
				if svc.Port != "" {
					name += ":" + svc.Port
				}
				s += fmt.Sprintf(" (endpoint of %s)", name)
			}
		} else {
			s = fmt.Sprintf("-> %s, not translated (no service rule matched)", o.Destination)
		}
		switch o.Path {
		case iptablestest.PathForward:
			s += ", forwarded"
		case iptablestest.PathInput, iptablestest.PathLocal:
			s += ", delivered to the node"
		case iptablestest.PathOutput:
			s += ", sent out by the node"
		}
		if o.Masqueraded {
			s += ", masqueraded"
			if o.SNAT != nil && strings.Contains(o.SNAT.Text, "--match-set") {
				s += " (hairpin: the endpoint is the client)"
			}
		} else {
			s += ", not masqueraded"
		}
	case iptablestest.Reject, iptablestest.Drop:
		s = string(o.Verdict)
		if o.RejectWith != "" {
			s += " (" + o.RejectWith + ")"
		}
		if st, ok := lastRuleStep(o); ok {
			s += fmt.Sprintf(" by %s %s #%d", st.Table, st.Chain, st.Rule.Num)
			if c := ruleComment(st.Rule); c != "" {
				s += fmt.Sprintf(": %s", c)
			}
		}
	default:
		s = string(o.Verdict)
	}
	if len(o.Assumptions) > 0 {
		s += "; assuming " + strings.Join(o.Assumptions, "; ")
	}
	return s
}

// lastRuleStep returns the last step of o that matched a rule.
func lastRuleStep(o iptablestest.Outcome) (iptablestest.Step, bool) {
	for i := len(o.Steps) - 1; i >= 0; i-- {
		if o.Steps[i].Rule != nil {
			return o.Steps[i], true
		}
	}
	return iptablestest.Step{}, false
}

// ruleComment returns the --comment of a rule, if any.
func ruleComment(r *iptablestest.Rule) string {
	const flag = "--comment "
	i := strings.Index(r.Text, flag)
	if i < 0 {
		return ""
	}
	rest := r.Text[i+len(flag):]
	if strings.HasPrefix(rest, `"`) {
		if s, err := strconv.QuotedPrefix(rest); err == nil {
			if u, err := strconv.Unquote(s); err == nil {
				return u
			}
		}
		return ""
	}
	word, _, _ := strings.Cut(rest, " ")
	return word
}

func percent(p float64) string {
	return strconv.FormatFloat(p*100, 'f', 1, 64) + "%"
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
