package ipvs

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"

	"github.com/go-logr/logr"
	"golang.org/x/sys/unix"
	"k8s.io/utils/clock"

	"github.com/kproxy/kproxy/iptables"
	"github.com/kproxy/kproxy/proxier"
	"github.com/kproxy/kproxy/proxier/conntrack"
	"github.com/kproxy/kproxy/proxier/metrics"
)

// NodeOptions configures NewNodeProxier, CleanupNode and CleanupLeftovers: everything
// needed to program a whole node (or a network namespace standing in for one) in IPVS
// mode.
type NodeOptions struct {
	// Netns, when set, programs that network namespace (a name under /var/run/netns or
	// a path) instead of the caller's: IPVS, kube-ipvs0, ipsets, sysctls, the iptables
	// glue and conntrack alike.
	Netns string
	// IPTablesBackend forces iptables-nft or iptables-legacy for the glue; empty detects
	// which one the node already uses.
	IPTablesBackend iptables.Backend
	// Plan is the planning template; Family is set per family. Its LocalDetector and
	// ExcludeCIDRs may mix both families (each family uses its own).
	Plan PlanOptions
	// Families to program; nil means IPv4, plus IPv6 when ip6tables works.
	Families []proxier.IPFamily
	// DisableConntrackCleanup leaves stale UDP/SCTP flows alone.
	DisableConntrackCleanup bool
	Metrics                 *metrics.Metrics
	Logger                  logr.Logger
}

// ErrUnavailable is matched (errors.Is) by the error NewNodeProxier returns when the
// kernel has no IPVS: not built, module missing, or not loadable from here.
var ErrUnavailable = errors.New("IPVS is not available in this kernel")

// unavailableError is ErrUnavailable with its cause.
type unavailableError struct{ cause error }

func (e *unavailableError) Error() string { return ErrUnavailable.Error() + ": " + e.cause.Error() }
func (e *unavailableError) Unwrap() []error {
	return []error{ErrUnavailable, e.cause}
}

// NodeProxier is the IPVS backend of a node: one Proxier per family, synced together,
// and the netlink handles and glue kernel they share.
type NodeProxier struct {
	proxier.Proxier
	// Families holds each family's proxier, for its Draining count and ReapDrained.
	Families map[proxier.IPFamily]*Proxier

	stop     context.CancelFunc // ends the proxiers' drain loops
	closers  []io.Closer
	closeErr error
	once     sync.Once
}

// Close stops checking draining real servers and releases the netlink sockets. The
// virtual servers, addresses, ipsets and glue stay in the kernel: leaving them is what
// keeps traffic flowing while kproxy restarts. A closed NodeProxier must not sync.
func (n *NodeProxier) Close() error {
	n.once.Do(func() {
		if n.stop != nil {
			n.stop()
		}
		// Wait for a sync or reap in flight before the handles go away.
		for _, p := range n.Families {
			p.mu.Lock()
			defer p.mu.Unlock()
		}
		var errs []error
		for _, c := range n.closers {
			errs = append(errs, c.Close())
		}
		n.closeErr = errors.Join(errs...)
	})
	return n.closeErr
}

// NewNodeProxier returns the IPVS backend for a node: one Proxier per family, sharing
// one netlink kernel, one iptables glue kernel (nft or legacy, as the node uses) and
// one conntrack cleaner. Each Proxier's New sets the sysctls and timeouts IPVS mode
// needs. It fails with an error matching ErrUnavailable when the kernel has no IPVS.
//
// A node switched from iptables mode still holds that mode's chains (KUBE-SVC-*,
// KUBE-SEP-*, KUBE-SVC-DST-* (KUBE-DST-* before), KUBE-NODEPORTS, the filter table's KUBE-SERVICES, the
// canaries...), whose REJECT rules would keep answering for services IPVS now serves.
// NewNodeProxier removes them, their bootstrap jumps, and the rules in the chains the
// glue shares with iptables mode that lead there; the shared chains themselves
// (KUBE-SERVICES in nat, KUBE-POSTROUTING, KUBE-MARK-MASQ, KUBE-FORWARD,
// KUBE-PROXY-FIREWALL) stay, and the first sync rewrites them and puts the glue's jumps
// back. A restart in IPVS mode finds nothing to remove and writes nothing.
//
// Cancelling ctx stops the drain loops; Close does too and releases the handles.
func NewNodeProxier(ctx context.Context, opts NodeOptions) (*NodeProxier, error) {
	log := opts.Logger
	kernel, err := NewNetlink(NetlinkOptions{Netns: opts.Netns})
	// NewNetlink has tried to load ip_vs. Its own check is not enough: on some kernels
	// without IPVS, requests to the unresolved generic netlink family succeed empty.
	switch {
	case err != nil && !ipvsInKernel():
		return nil, &unavailableError{cause: err}
	case err != nil:
		return nil, err
	case !ipvsInKernel():
		_ = kernel.Close()
		return nil, &unavailableError{cause: errors.New("no ip_vs module is loaded (modprobe ip_vs)")}
	}
	loopCtx, stop := context.WithCancel(ctx)
	node := &NodeProxier{Families: map[proxier.IPFamily]*Proxier{}, stop: stop, closers: []io.Closer{kernel}}
	fail := func(err error) (*NodeProxier, error) {
		_ = node.Close()
		return nil, err
	}
	glue, err := newGlueKernel(ctx, opts)
	if err != nil {
		return fail(fmt.Errorf("ipvs: the iptables glue needs iptables: %w", err))
	}
	families := opts.Families
	if families == nil {
		if families, err = glueFamilies(ctx, glue, log); err != nil {
			return fail(err)
		}
	}
	for _, f := range families {
		removed, err := removeIPTablesModeRules(ctx, glue, f)
		if err != nil {
			// Not fatal: IPVS works, but the leftovers may still reject service traffic.
			log.Error(err, "Failed to remove the iptables-mode rules of a previous proxy", "family", f)
		} else if len(removed) > 0 {
			log.Info("Removed the iptables-mode rules of a previous proxy", "family", f, "chains", len(removed))
		}
	}
	var ct conntrack.Cleaner
	if !opts.DisableConntrackCleanup {
		c, err := conntrack.NewNetlink(conntrack.NetlinkOptions{Netns: opts.Netns, Metrics: opts.Metrics, Logger: log.WithName("conntrack")})
		if err != nil {
			return fail(fmt.Errorf("ipvs: %w", err))
		}
		node.closers = append(node.closers, c)
		ct = c // a nil *Netlink must not become a non-nil Cleaner
	}
	ps := make([]proxier.Proxier, 0, len(families))
	for _, f := range families {
		plan := opts.Plan
		plan.Family = f
		p, err := New(loopCtx, Options{Kernel: kernel, Glue: glue, Plan: plan, Conntrack: ct, Metrics: opts.Metrics, Logger: log})
		if err != nil {
			return fail(err)
		}
		node.Families[f] = p
		ps = append(ps, p)
	}
	node.Proxier = proxier.Multi(ps...)
	return node, nil
}

// CleanupNode removes everything IPVS mode owns on the node, in every family: the
// virtual servers it owns (see Proxier; PlanOptions.ExcludeCIDRs are honoured),
// kube-ipvs0, the ipsets and the glue with every jump into it. Chains the glue shares
// with iptables mode go too, except one iptables mode's chains still jump to, which is
// emptied and left to iptables.CleanupNode: run this first. A kernel without IPVS is not
// an error: there are no virtual servers to remove, and the rest is removed all the
// same. It does not load the ip_vs module.
func CleanupNode(ctx context.Context, opts NodeOptions) error {
	parts, err := openCleanupParts(ctx, opts)
	if err != nil {
		return err
	}
	defer parts.close()
	var errs []error
	for _, f := range parts.families {
		if err := parts.cleanup(ctx, f, opts); err != nil {
			errs = append(errs, fmt.Errorf("%v: %w", f, err))
		}
	}
	return errors.Join(errs...)
}

// CleanupLeftovers is CleanupNode for a node starting in another proxy mode: it
// cleans up only when IPVS mode left something behind (kube-ipvs0, one of its own
// ipsets or glue chains), so that a restart in iptables mode, whose chains share names
// with the glue, is left alone. It reports whether it cleaned up. Like CleanupNode it
// works on kernels without IPVS and does not load the ip_vs module.
func CleanupLeftovers(ctx context.Context, opts NodeOptions) (bool, error) {
	parts, err := openCleanupParts(ctx, opts)
	if err != nil {
		return false, err
	}
	defer parts.close()
	var reasons []string
	for _, f := range parts.families {
		reason, err := ipvsLeftovers(ctx, parts.kernel, parts.glueFor(f), f)
		if err != nil {
			return false, fmt.Errorf("ipvs: looking for IPVS-mode leftovers: %w", err)
		}
		if reason != "" {
			reasons = append(reasons, reason)
		}
	}
	if len(reasons) == 0 {
		return false, nil
	}
	opts.Logger.Info("Removing what IPVS mode left behind", "found", strings.Join(reasons, "; "))
	var errs []error
	for _, f := range parts.families {
		if err := parts.cleanup(ctx, f, opts); err != nil {
			errs = append(errs, fmt.Errorf("%v: %w", f, err))
		}
	}
	return true, errors.Join(errs...)
}

// cleanupParts are the handles CleanupNode and CleanupLeftovers share.
type cleanupParts struct {
	kernel   Kernel
	closer   io.Closer
	glue     *iptables.ExecKernel // nil without iptables
	glueFams map[proxier.IPFamily]bool
	families []proxier.IPFamily
}

func openCleanupParts(ctx context.Context, opts NodeOptions) (*cleanupParts, error) {
	log := opts.Logger
	parts := &cleanupParts{families: opts.Families, glueFams: map[proxier.IPFamily]bool{}}
	if parts.families == nil {
		parts.families = []proxier.IPFamily{proxier.IPv4, proxier.IPv6}
	}
	if ipvsInKernel() {
		k, err := NewNetlink(NetlinkOptions{Netns: opts.Netns})
		if err != nil {
			return nil, err
		}
		parts.kernel, parts.closer = k, k
	} else {
		// Without IPVS there are no virtual servers, but kube-ipvs0, the ipsets and the
		// glue may have outlived the module.
		k, err := openNetlinkWithoutIPVS(opts.Netns)
		if err != nil {
			return nil, err
		}
		parts.kernel, parts.closer = withoutIPVS{k}, k
	}
	glue, err := newGlueKernel(ctx, opts)
	if err != nil {
		log.Info("iptables is not usable; leaving the IPVS glue alone", "err", err.Error())
		return parts, nil
	}
	parts.glue = glue
	for _, f := range parts.families {
		if ok, err := glue.ChainExists(ctx, f, iptables.TableNAT, iptables.ChainPostrouting); ok && err == nil {
			parts.glueFams[f] = true
		}
	}
	return parts, nil
}

// glueFor returns the glue kernel for family f, or nil when iptables cannot program it.
func (p *cleanupParts) glueFor(f proxier.IPFamily) iptables.Kernel {
	if p.glue == nil || !p.glueFams[f] {
		return nil // a nil *ExecKernel must not become a non-nil Kernel
	}
	return p.glue
}

func (p *cleanupParts) cleanup(ctx context.Context, f proxier.IPFamily, opts NodeOptions) error {
	plan := opts.Plan
	plan.Family = f
	return cleanupFamily(ctx, p.kernel, p.glueFor(f), plan, opts.Logger)
}

func (p *cleanupParts) close() { _ = p.closer.Close() }

// cleanupFamily removes IPVS mode's state in one family: the glue first (removeGlue,
// which copes with jumps and neighbours Proxier.Cleanup does not know), then the rest
// through Proxier.Cleanup, without New's side effects (New sets sysctls, which a cleanup
// must not, and which a kernel without IPVS lacks).
func cleanupFamily(ctx context.Context, k Kernel, glue iptables.Kernel, plan PlanOptions, log logr.Logger) error {
	plan = plan.withDefaults()
	var errs []error
	if glue != nil {
		if err := removeGlue(ctx, glue, plan.Family); err != nil {
			errs = append(errs, fmt.Errorf("ipvs: remove the iptables glue: %w", err))
		}
	}
	p := &Proxier{
		kernel: k,
		plan:   plan,
		log:    log.WithValues("backend", "ipvs", "family", fmt.Sprintf("IPv%d", plan.Family)),
		clock:  clock.RealClock{},
		drains: newDrainer(),
	}
	errs = append(errs, p.Cleanup(ctx))
	return errors.Join(errs...)
}

// removeGlue removes the glue's chains in one iptables-restore: every rule of a
// built-in chain that jumps to one of them, whatever its matches and comment (iptables
// mode and kube-proxy versions write the shared jumps differently), then the chains
// themselves. A glue chain that a rule elsewhere still jumps to (iptables mode's
// KUBE-SVC-* chains jump to KUBE-MARK-MASQ) is emptied but kept, for iptables mode's own
// cleanup or sync.
func removeGlue(ctx context.Context, glue iptables.Kernel, f proxier.IPFamily) error {
	tables := []iptables.Table{iptables.TableNAT, iptables.TableFilter}
	text, err := glue.Save(ctx, f, tables...)
	if err != nil {
		return fmt.Errorf("read rules: %w", err)
	}
	saved := parseSave(text)
	var b bytes.Buffer
	for _, t := range tables {
		st := saved[t]
		if st == nil {
			continue
		}
		var present []iptables.Chain
		for _, c := range st.chains {
			if glueChain(t, c) {
				present = append(present, c)
			}
		}
		if len(present) == 0 {
			continue
		}
		isGlue := func(c iptables.Chain) bool { return slices.Contains(present, c) }
		referenced := map[iptables.Chain]bool{}
		fmt.Fprintf(&b, "*%s\n", t)
		for _, c := range present {
			fmt.Fprintf(&b, ":%s - [0:0]\n", c)
		}
		for _, r := range st.rules {
			target := ruleTarget(r.spec)
			switch {
			case !isGlue(target):
			case builtinChain(r.chain):
				fmt.Fprintf(&b, "-D %s %s\n", r.chain, r.spec)
			case !isGlue(r.chain):
				referenced[target] = true
			}
		}
		for _, c := range present {
			if !referenced[c] {
				fmt.Fprintf(&b, "-X %s\n", c)
			}
		}
		b.WriteString("COMMIT\n")
	}
	if b.Len() == 0 {
		return nil
	}
	return glue.Restore(ctx, f, b.Bytes(), iptables.RestoreOptions{})
}

// builtinChain reports whether c is one of the kernel's built-in chains.
func builtinChain(c iptables.Chain) bool {
	switch c {
	case iptables.ChainPrerouting, iptables.ChainInput, iptables.ChainForward, iptables.ChainOutput, iptables.ChainPostrouting:
		return true
	}
	return false
}

// newGlueKernel returns the iptables kernel the glue is written with.
func newGlueKernel(ctx context.Context, opts NodeOptions) (*iptables.ExecKernel, error) {
	log := opts.Logger.WithName("iptables")
	k, err := iptables.NewExecKernel(ctx, iptables.ExecOptions{Backend: opts.IPTablesBackend, Netns: opts.Netns, Logger: log})
	if err != nil {
		return nil, err
	}
	det := k.Detection()
	log.V(2).Info("Using iptables for the IPVS glue", "backend", k.Backend(), "reason", det.Reason)
	return k, nil
}

// glueFamilies returns IPv4, plus IPv6 when ip6tables can program the nat table.
func glueFamilies(ctx context.Context, glue iptables.Kernel, log logr.Logger) ([]proxier.IPFamily, error) {
	if ok, err := glue.ChainExists(ctx, proxier.IPv4, iptables.TableNAT, iptables.ChainPostrouting); !ok || err != nil {
		return nil, fmt.Errorf("ipvs: the IPv4 nat table is not usable for the glue: %v", err)
	}
	families := []proxier.IPFamily{proxier.IPv4}
	if ok, err := glue.ChainExists(ctx, proxier.IPv6, iptables.TableNAT, iptables.ChainPostrouting); ok && err == nil {
		families = append(families, proxier.IPv6)
	} else {
		log.Info("No IPv6 iptables support; programming IPv4 only", "reason", fmt.Sprint(err))
	}
	return families, nil
}

// ipvsInKernel reports whether the running kernel has IPVS loaded or built in (the
// module directory exists for built-in modules with parameters, as ip_vs has; the proc
// file exists whenever IPVS is there). It is a variable for tests.
var ipvsInKernel = func() bool {
	for _, p := range []string{"/sys/module/ip_vs", "/proc/net/ip_vs"} {
		if _, err := os.Stat(p); err == nil {
			return true
		}
	}
	return false
}

// glueChain reports whether the IPVS glue declares chain in table.
func glueChain(t iptables.Table, c iptables.Chain) bool {
	switch t {
	case iptables.TableNAT:
		return slices.Contains(natChains, c)
	case iptables.TableFilter:
		return slices.Contains(filterChains, c)
	}
	return false
}

// removeIPTablesModeRules removes, in one iptables-restore, the chains iptables mode
// owns (iptables.OwnedChain) that the glue does not use, the bootstrap jumps of the
// tables holding them, and the content of glue chains that still jumps into them. A
// chain a foreign rule jumps to is emptied but kept. It returns the chains it removed or
// emptied, "table/chain"; nothing when iptables mode left nothing.
func removeIPTablesModeRules(ctx context.Context, glue iptables.Kernel, f proxier.IPFamily) ([]string, error) {
	tables := []iptables.Table{iptables.TableNAT, iptables.TableFilter, iptables.TableMangle}
	text, err := glue.Save(ctx, f, tables...)
	if err != nil {
		return nil, fmt.Errorf("read rules: %w", err)
	}
	saved, err := iptables.ParseSaved(text)
	if err != nil {
		return nil, fmt.Errorf("read rules: %w", err)
	}
	var (
		b       bytes.Buffer
		removed []string
	)
	for _, t := range tables {
		st := saved.Table(t)
		if st == nil {
			continue
		}
		referenced := map[iptables.Chain]bool{}
		for _, r := range st.ForeignRefs {
			referenced[r.Target] = true
		}
		var stale, flush []iptables.Chain
		for c, rules := range st.Chains {
			// An empty chain a foreign rule jumps to is what an earlier removal had to
			// leave; it does nothing, and there is nothing more to do about it.
			if !glueChain(t, c) && (len(rules) > 0 || !referenced[c]) {
				stale = append(stale, c)
			}
		}
		if len(stale) == 0 {
			continue
		}
		slices.Sort(stale)
		isStale := func(c iptables.Chain) bool { _, ok := slices.BinarySearch(stale, c); return ok }
		for c, rules := range st.Chains {
			if !isStale(c) && !glueChain(t, c) {
				continue // a kept foreign-referenced chain: empty
			}
			if !isStale(c) && slices.ContainsFunc(rules, func(r string) bool { return isStale(ruleTarget(r)) }) {
				flush = append(flush, c)
			}
		}
		slices.Sort(flush)
		fmt.Fprintf(&b, "*%s\n", t)
		for _, c := range append(slices.Clone(stale), flush...) {
			fmt.Fprintf(&b, ":%s - [0:0]\n", c)
		}
		// Every bootstrap jump goes, also those into the shared chains: iptables mode
		// writes some of them differently (KUBE-PROXY-FIREWALL only for new
		// connections, with another comment), and the IPVS proxier's first full sync
		// puts its own back.
		for _, r := range st.BuiltinJumps {
			fmt.Fprintf(&b, "-D %s %s\n", r.Chain, r.Spec)
		}
		for _, c := range stale {
			removed = append(removed, fmt.Sprintf("%s/%s", t, c))
			if !referenced[c] {
				fmt.Fprintf(&b, "-X %s\n", c)
			}
		}
		b.WriteString("COMMIT\n")
	}
	if b.Len() == 0 {
		return nil, nil
	}
	if err := glue.Restore(ctx, f, b.Bytes(), iptables.RestoreOptions{}); err != nil {
		return nil, fmt.Errorf("remove chains: %w", err)
	}
	return removed, nil
}

// ruleTarget returns the chain an iptables-save rule jumps or goes to, or "".
func ruleTarget(rule string) iptables.Chain {
	words := strings.Fields(rule)
	for i := 0; i+1 < len(words); i++ {
		switch words[i] {
		case "-j", "--jump", "-g", "--goto":
			return iptables.Chain(words[i+1])
		}
	}
	return ""
}

// ipvsLeftovers reports what IPVS mode left in family f ("" when nothing): kube-ipvs0,
// one of its ipsets other than the hairpin set iptables mode shares, or one of the glue
// chains iptables mode does not have. glue may be nil.
func ipvsLeftovers(ctx context.Context, k Kernel, glue iptables.Kernel, f proxier.IPFamily) (string, error) {
	if _, exists, err := k.DeviceAddresses(ctx, f); err != nil {
		return "", err
	} else if exists {
		return DeviceName + " exists", nil
	}
	for _, spec := range Sets(f) {
		if spec.Name == setName(f, setLoopBack) {
			continue
		}
		_, err := k.ListSet(ctx, spec.Name)
		switch {
		case err == nil:
			return "ipset " + spec.Name + " exists", nil
		case !errors.Is(err, ErrNotFound):
			return "", err
		}
	}
	if glue == nil {
		return "", nil
	}
	text, err := glue.Save(ctx, f, iptables.TableNAT, iptables.TableFilter)
	if err != nil {
		return "", err
	}
	saved := parseSave(text)
	for _, t := range []iptables.Table{iptables.TableNAT, iptables.TableFilter} {
		if st := saved[t]; st != nil {
			for _, c := range st.chains {
				if glueChain(t, c) && !iptables.OwnedChain(t, c) {
					return fmt.Sprintf("IPv%d chain %s/%s exists", f, t, c), nil
				}
			}
		}
	}
	return "", nil
}

// savedTable is one table of iptables-save output: every chain declared, and every rule.
// (iptables.ParseSaved keeps only what iptables mode owns; the glue's own chains are not
// among them.)
type savedTable struct {
	chains []iptables.Chain
	rules  []savedRule
}

type savedRule struct {
	chain iptables.Chain
	spec  string // the text after "-A CHAIN "
}

// parseSave reads iptables-save text.
func parseSave(text []byte) map[iptables.Table]*savedTable {
	out := map[iptables.Table]*savedTable{}
	var cur *savedTable
	sc := bufio.NewScanner(bytes.NewReader(text))
	sc.Buffer(make([]byte, 0, 64*1024), 16*1024*1024)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "*"):
			cur = &savedTable{}
			out[iptables.Table(strings.TrimSpace(line[1:]))] = cur
		case cur == nil:
		case strings.HasPrefix(line, ":"):
			if name, _, ok := strings.Cut(line[1:], " "); ok {
				cur.chains = append(cur.chains, iptables.Chain(name))
			}
		case strings.HasPrefix(line, "-A "):
			chain, spec, _ := strings.Cut(line[3:], " ")
			cur.rules = append(cur.rules, savedRule{iptables.Chain(chain), spec})
		}
	}
	return out
}

// withoutIPVS is a Kernel on a machine without IPVS: it has no virtual servers and
// refuses to create any.
type withoutIPVS struct{ Kernel }

// noIPVS is the error of an IPVS operation on a kernel without IPVS: a lookup finds
// nothing (ErrNotFound), a change is not supported.
func noIPVS(op string, lookup bool) error {
	if lookup {
		return &KernelError{Op: op, Errno: unix.ENOENT, Err: ErrUnavailable}
	}
	return &KernelError{Op: op, Errno: unix.EOPNOTSUPP, Err: ErrUnavailable}
}

func (withoutIPVS) VirtualServers(context.Context, proxier.IPFamily) ([]*VirtualServer, error) {
	return nil, nil
}
func (withoutIPVS) RealServers(context.Context, VSKey) ([]RealServer, error) {
	return nil, noIPVS(OpListDestinations, true)
}
func (withoutIPVS) AddVirtualServer(context.Context, *VirtualServer) error {
	return noIPVS(OpAddService, false)
}
func (withoutIPVS) UpdateVirtualServer(context.Context, *VirtualServer) error {
	return noIPVS(OpUpdateService, false)
}
func (withoutIPVS) DeleteVirtualServer(context.Context, VSKey) error {
	return noIPVS(OpDeleteService, true)
}
func (withoutIPVS) AddRealServer(context.Context, VSKey, RealServer) error {
	return noIPVS(OpAddDestination, false)
}
func (withoutIPVS) UpdateRealServer(context.Context, VSKey, RealServer) error {
	return noIPVS(OpUpdateDestination, false)
}
func (withoutIPVS) DeleteRealServer(context.Context, VSKey, netip.AddrPort) error {
	return noIPVS(OpDeleteDestination, true)
}
func (withoutIPVS) SetTimeouts(context.Context, Timeouts) error { return noIPVS(OpSetTimeouts, false) }
