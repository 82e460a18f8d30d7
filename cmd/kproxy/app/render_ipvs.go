package app

import (
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strings"

	"github.com/kproxy/kproxy/ipvs"
	"github.com/kproxy/kproxy/proxier"
)

// renderIPVS prints what the IPVS proxier would program for one family: the addresses
// on kube-ipvs0, the ipsets, the bootstrap jumps and the virtual servers (ipvsadm
// syntax) as comments, then the iptables glue as an iptables-restore payload. The
// node's own addresses are taken from the Node object, where kproxy would read them
// from the host's interfaces.
func (r *renderCmd) renderIPVS(w io.Writer, in *renderInput, fam proxier.IPFamily) error {
	opts := ipvsPlanOptions(r.opts.Config, in.state.Node.PodCIDRs)
	opts.Family = fam
	opts.RandomFully = r.randomFully
	for _, a := range in.state.Node.Addresses {
		if proxier.FamilyOf(a) == fam {
			opts.HostAddresses = append(opts.HostAddresses, a)
		}
	}
	snap := ipvs.Desired(in.state, opts)

	var b strings.Builder
	fmt.Fprintf(&b, "# kproxy render: ipvs mode, %v, node %s, %d service ports from %s\n", fam, in.node, in.state.Len(), in.file)
	fmt.Fprintf(&b, "#\n# addresses on %s:\n", ipvs.DeviceName)
	addrs := make([]netip.Addr, 0, len(snap.Addresses))
	for a := range snap.Addresses {
		addrs = append(addrs, a)
	}
	slices.SortFunc(addrs, netip.Addr.Compare)
	for _, a := range addrs {
		fmt.Fprintf(&b, "#   ip addr add %s dev %s\n", netip.PrefixFrom(a, a.BitLen()), ipvs.DeviceName)
	}

	b.WriteString("#\n# ipsets, in `ipset restore` syntax; they must exist before the rules are restored:\n")
	b.WriteString("#   grep -E '^# (create|add) ' <this file> | cut -c3- | ipset restore -exist\n")
	for _, spec := range ipvs.Sets(fam) {
		set := snap.Sets[spec.Name]
		if set == nil {
			continue
		}
		if spec.Type == ipvs.BitmapPort {
			fmt.Fprintf(&b, "# create %s %s range 0-65535\n", spec.Name, spec.Type)
		} else {
			famName := "inet"
			if fam == proxier.IPv6 {
				famName = "inet6"
			}
			fmt.Fprintf(&b, "# create %s %s family %s maxelem 65536\n", spec.Name, spec.Type, famName)
		}
		entries := make([]ipvs.SetEntry, 0, len(set.Entries))
		for e := range set.Entries {
			entries = append(entries, e)
		}
		slices.SortFunc(entries, ipvs.SetEntry.Compare)
		for _, e := range entries {
			fmt.Fprintf(&b, "# add %s %s\n", spec.Name, e)
		}
	}

	bin := "iptables"
	if fam == proxier.IPv6 {
		bin = "ip6tables"
	}
	b.WriteString("#\n# bootstrap jumps from the built-in chains, in the order kproxy inserts them:\n")
	for _, j := range ipvs.Jumps() {
		fmt.Fprintf(&b, "#   %s -t %s %s\n", bin, j.Table, jumpCommand(j))
	}

	b.WriteString("#\n# virtual servers, in `ipvsadm-restore` syntax:\n")
	servers := make([]*ipvs.VirtualServer, 0, len(snap.Servers))
	for _, vs := range snap.Servers {
		servers = append(servers, vs)
	}
	slices.SortFunc(servers, func(a, b *ipvs.VirtualServer) int { return a.VSKey.Compare(b.VSKey) })
	for _, vs := range servers {
		svc := ipvsadmService(vs.VSKey)
		line := fmt.Sprintf("-A %s -s %s", svc, vs.Scheduler)
		if vs.Flags&ipvs.FlagSourceHash != 0 {
			line += " -b " + vs.Scheduler + "-port"
		}
		if vs.Flags&ipvs.FlagPersistent != 0 {
			line += fmt.Sprintf(" -p %d", vs.Timeout)
		}
		fmt.Fprintf(&b, "# %s\n", line)
		for _, rs := range vs.Reals {
			fmt.Fprintf(&b, "# -a %s -r %s -m -w %d\n", svc, rs.Addr, rs.Weight)
		}
	}
	b.WriteString("#\n# iptables-restore --noflush payload (the glue):\n")
	b.Write(snap.Glue)
	_, err := io.WriteString(w, b.String())
	return err
}

// ipvsadmService is a virtual server as ipvsadm names it: "-t 10.96.0.1:443".
func ipvsadmService(k ipvs.VSKey) string {
	opt := "-t"
	switch k.Protocol {
	case proxier.ProtocolUDP:
		opt = "-u"
	case proxier.ProtocolSCTP:
		opt = "--sctp-service"
	}
	return opt + " " + netip.AddrPortFrom(k.Addr, k.Port).String()
}
