package iptables

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	goiptables "github.com/coreos/go-iptables/iptables"
	"github.com/go-logr/logr"
)

// DefaultWaitSeconds is how long iptables waits for the xtables lock when
// ExecOptions.WaitSeconds is zero; the value kube-proxy uses.
const DefaultWaitSeconds = 5

// ExecOptions configures an ExecKernel.
type ExecOptions struct {
	// Backend selects iptables-nft or iptables-legacy. Empty runs
	// DetectBackend (in Netns) and uses its answer.
	Backend Backend
	// WaitSeconds bounds the wait for the xtables lock (-w SECONDS).
	// Zero means DefaultWaitSeconds, negative waits forever. iptables
	// reads "-w 0" as "forever" and without -w also waits forever
	// (1.8.9), so one second is the shortest bounded wait. Only
	// iptables-legacy takes the lock; nft accepts and ignores -w.
	WaitSeconds int
	// Netns, when set, runs every command inside that network namespace:
	// a name as created by "ip netns add" (resolved under /var/run/netns)
	// or an absolute namespace file path.
	Netns string
	// Logger receives one V(4) line per command and the detection result.
	Logger logr.Logger
	// LockFile is the xtables lock taken by kproxy itself around
	// iptables-restore older than 1.6.2, which cannot wait on its own.
	// Empty means DefaultLockFile.
	LockFile string
	// Env holds extra "KEY=VALUE" environment entries for the iptables,
	// iptables-save and iptables-restore processes this kernel starts itself
	// (every Save and Restore, so every sync), on top of the caller's
	// environment. It exists so that a test can point iptables-legacy at a
	// private lock with XTABLES_LOCKFILE (together with LockFile) and hold
	// that lock without blocking the rest of the host; a process-wide
	// setenv would redirect every other iptables user in the process too.
	// The single-rule helpers that go through go-iptables (bootstrap and
	// cleanup) always inherit the caller's environment.
	Env []string
}

// ExecKernel implements Kernel by executing the iptables binaries of one
// backend. Save and Restore exec iptables-save/-restore directly, one
// process per call whatever the payload size; the single-rule helpers for
// bootstrap jumps go through github.com/coreos/go-iptables. It is safe for
// concurrent use; version probes are cached per family.
type ExecKernel struct {
	backend   Backend
	detection Detection
	wait      int // seconds; <0 forever
	lockFile  string
	run       *cmdRunner
	families  map[Family]*familyTools
}

var _ Kernel = &ExecKernel{}

// familyTools holds the resolved binaries and cached probes of one family.
type familyTools struct {
	family                  Family
	iptables, save, restore string
	missing                 []string

	mu      sync.Mutex
	version *Version
	ipt     *goiptables.IPTables
}

// NewExecKernel resolves the backend and its binaries. IPv4 binaries are
// required; missing IPv6 binaries only make IPv6 calls fail with
// ErrBinaryNotFound, so IPv4-only nodes work without ip6tables.
func NewExecKernel(ctx context.Context, opts ExecOptions) (*ExecKernel, error) {
	ns, err := newNetnsRunner(opts.Netns)
	if err != nil {
		return nil, err
	}
	det := Detection{Backend: opts.Backend, Reason: ReasonForced, NFTRules: -1, LegacyRules: -1}
	if opts.Backend == "" {
		det, err = DetectBackend(ctx, DetectOptions{Netns: opts.Netns, Logger: opts.Logger})
		if err != nil {
			return nil, err
		}
	} else if !opts.Backend.valid() {
		return nil, fmt.Errorf("iptables: unknown backend %q (want %q or %q)", opts.Backend, BackendNFT, BackendLegacy)
	}
	k := &ExecKernel{
		backend:   det.Backend,
		detection: det,
		wait:      opts.WaitSeconds,
		lockFile:  opts.LockFile,
		run:       &cmdRunner{ns: ns, backend: det.Backend, env: opts.Env, log: opts.Logger.WithValues("backend", det.Backend)},
	}
	if k.wait == 0 {
		k.wait = DefaultWaitSeconds
	}
	if k.lockFile == "" {
		k.lockFile = DefaultLockFile
	}
	k.families = make(map[Family]*familyTools, 2)
	for _, f := range []Family{IPv4, IPv6} {
		t := &familyTools{family: f}
		for _, b := range []struct {
			dst    *string
			suffix string
		}{{&t.iptables, ""}, {&t.save, "-save"}, {&t.restore, "-restore"}} {
			name := binaryName(k.backend, f, b.suffix)
			p, err := exec.LookPath(name)
			if err != nil {
				t.missing = append(t.missing, name)
				continue
			}
			*b.dst = p
		}
		k.families[f] = t
	}
	if err := k.families[IPv4].usable(); err != nil {
		return nil, err
	}
	return k, nil
}

// usable reports missing binaries for this family.
func (t *familyTools) usable() error {
	if len(t.missing) > 0 {
		return fmt.Errorf("%w: %s (needed for %s rules)", ErrBinaryNotFound, strings.Join(t.missing, ", "), t.family)
	}
	return nil
}

// tools returns the usable binaries for family.
func (k *ExecKernel) tools(family Family) (*familyTools, error) {
	if !validFamily(family) {
		return nil, fmt.Errorf("iptables: invalid family %v", family)
	}
	t := k.families[family]
	if err := t.usable(); err != nil {
		return nil, err
	}
	return t, nil
}

// Backend implements Kernel.
func (k *ExecKernel) Backend() Backend { return k.backend }

// Detection reports how the backend was chosen (Reason "forced" when it
// came from ExecOptions.Backend).
func (k *ExecKernel) Detection() Detection { return k.detection }

// Version implements Kernel; the answer is cached per family.
func (k *ExecKernel) Version(ctx context.Context, family Family) (Version, error) {
	t, err := k.tools(family)
	if err != nil {
		return Version{}, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.version != nil {
		return *t.version, nil
	}
	out, err := k.run.run(ctx, OpVersion, t.iptables, []string{"--version"}, nil)
	if err != nil {
		return Version{}, err
	}
	v, err := ParseVersion(string(out))
	if err != nil {
		return Version{}, err
	}
	t.version = &v
	return v, nil
}

// Features implements Kernel.
func (k *ExecKernel) Features(ctx context.Context, family Family) (Features, error) {
	v, err := k.Version(ctx, family)
	if err != nil {
		return Features{}, err
	}
	return featuresFor(v), nil
}

// Save implements Kernel with a single iptables-save exec: "-t TABLE" for
// one table, otherwise a dump of all tables cut down to the named ones, in
// the order named. iptables-nft-save reads the whole ruleset whatever -t
// says, so one exec is much cheaper than one per table (BenchmarkKernelSave,
// 100k rules, nat and filter: 2.5-2.8 s vs 6.0-6.5 s on nft; legacy
// 0.33-0.38 s either way). A named table missing from the dump (legacy
// lists only loaded tables) is fetched with -t, which prints its built-in
// chains.
func (k *ExecKernel) Save(ctx context.Context, family Family, tables ...Table) ([]byte, error) {
	t, err := k.tools(family)
	if err != nil {
		return nil, err
	}
	if len(tables) == 1 {
		return k.run.run(ctx, OpSave, t.save, []string{"-t", string(tables[0])}, nil)
	}
	all, err := k.run.run(ctx, OpSave, t.save, nil, nil)
	if err != nil || len(tables) == 0 {
		return all, err
	}
	blocks := splitSaveTables(all)
	var out []byte
	for _, table := range tables {
		b, ok := blocks[table]
		if !ok {
			if b, err = k.run.run(ctx, OpSave, t.save, []string{"-t", string(table)}, nil); err != nil {
				return nil, err
			}
		}
		out = append(out, b...)
	}
	return out, nil
}

// saveChains implements chainSaver: it prints the named chains in iptables-save form
// ("*table", a declaration per chain, the rules, "COMMIT") with one
// "iptables-restore --noflush" call whose blocks only list chains ("-S CHAIN") and
// change nothing. iptables-nft then fetches just those chains from the kernel: at
// 10,000 services the ~300 chains of a sampled verification take 50-70 ms, where
// iptables-nft-save of everything takes over 2 s. A missing chain or table fails the
// call.
//
// "-S" prints each chain as "-P CHAIN POLICY" (built-in) or "-N CHAIN", then its
// rules as "-A CHAIN ..." exactly as iptables-save does, in the order asked; the
// output is checked against that order so a chain is never attributed to the wrong
// table.
func (k *ExecKernel) saveChains(ctx context.Context, family Family, chains []tableChains) ([]byte, error) {
	t, err := k.tools(family)
	if err != nil {
		return nil, err
	}
	feat, err := k.Features(ctx, family)
	if err != nil {
		return nil, err
	}
	var args []string
	if feat.WaitSupported {
		args = append(args, k.waitArgs()...)
	}
	args = append(args, "--noflush")
	if !feat.WaitSupported {
		release, err := k.lockForOldRestore(ctx, t, args)
		if err != nil {
			return nil, err
		}
		defer release()
	}
	var in bytes.Buffer
	for _, tc := range chains {
		if len(tc.chains) == 0 {
			continue
		}
		in.WriteString("*" + string(tc.table) + "\n")
		for _, c := range tc.chains {
			in.WriteString("-S " + string(c) + "\n")
		}
		in.WriteString("COMMIT\n")
	}
	out, err := k.run.run(ctx, OpSave, t.restore, args, in.Bytes())
	if err != nil {
		return nil, err
	}
	return listingToSave(out, chains)
}

// listingToSave turns the "-S" output of the chains asked for, in that order, into
// iptables-save text.
func listingToSave(out []byte, chains []tableChains) ([]byte, error) {
	lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	if len(out) == 0 {
		lines = nil
	}
	var b bytes.Buffer
	i := 0
	for _, tc := range chains {
		if len(tc.chains) == 0 {
			continue
		}
		var decls, rules []string
		for _, c := range tc.chains {
			if i >= len(lines) {
				return nil, fmt.Errorf("iptables: listing of %s %s missing", tc.table, c)
			}
			f := strings.Fields(lines[i])
			switch {
			case len(f) == 2 && f[0] == "-N" && f[1] == string(c):
				decls = append(decls, ":"+string(c)+" - [0:0]")
			case len(f) == 3 && f[0] == "-P" && f[1] == string(c):
				decls = append(decls, ":"+string(c)+" "+f[2]+" [0:0]")
			default:
				return nil, fmt.Errorf("iptables: listing of %s %s: unexpected line %q", tc.table, c, truncate(lines[i]))
			}
			i++
			prefix := "-A " + string(c) + " "
			for i < len(lines) && (strings.HasPrefix(lines[i], prefix) || lines[i] == prefix[:len(prefix)-1]) {
				rules = append(rules, lines[i])
				i++
			}
		}
		b.WriteString("*" + string(tc.table) + "\n")
		for _, l := range decls {
			b.WriteString(l + "\n")
		}
		for _, l := range rules {
			b.WriteString(l + "\n")
		}
		b.WriteString("COMMIT\n")
	}
	if i != len(lines) {
		return nil, fmt.Errorf("iptables: unexpected listing line %q", truncate(lines[i]))
	}
	return b.Bytes(), nil
}

// splitSaveTables cuts iptables-save output into its "*table ... COMMIT"
// blocks; comment lines between blocks are dropped.
func splitSaveTables(save []byte) map[Table][]byte {
	blocks := map[Table][]byte{}
	for rest := save; len(rest) > 0; {
		i := bytes.Index(rest, []byte("\n*"))
		switch {
		case bytes.HasPrefix(rest, []byte("*")):
			i = 0
		case i < 0:
			return blocks
		default:
			i++
		}
		rest = rest[i:]
		name, _, _ := bytes.Cut(rest[1:], []byte("\n"))
		end := bytes.Index(rest, []byte("\nCOMMIT\n"))
		if end < 0 {
			blocks[Table(name)] = rest
			return blocks
		}
		end += len("\nCOMMIT\n")
		blocks[Table(name)] = rest[:end]
		rest = rest[end:]
	}
	return blocks
}

// waitArgs returns the -w flag for the configured wait.
func (k *ExecKernel) waitArgs() []string {
	if k.wait < 0 {
		return []string{"-w"}
	}
	return []string{"-w", strconv.Itoa(k.wait)}
}

// Restore implements Kernel with exactly one iptables-restore exec; the
// payload goes to stdin. Counters are never restored.
func (k *ExecKernel) Restore(ctx context.Context, family Family, payload []byte, opts RestoreOptions) error {
	t, err := k.tools(family)
	if err != nil {
		return err
	}
	feat, err := k.Features(ctx, family)
	if err != nil {
		return err
	}
	var args []string
	if feat.WaitSupported {
		args = append(args, k.waitArgs()...)
	}
	if !opts.Flush {
		args = append(args, "--noflush")
	}
	if opts.Test {
		args = append(args, "--test")
	}
	if !feat.WaitSupported {
		release, err := k.lockForOldRestore(ctx, t, args)
		if err != nil {
			return err
		}
		defer release()
	}
	if payload == nil {
		payload = []byte{}
	}
	_, err = k.run.run(ctx, OpRestore, t.restore, args, payload)
	var ee *ExecError
	if errors.As(err, &ee) {
		ee.Line = blamedLine(ee.Stderr)
		ee.LineText = payloadLine(payload, ee.Line)
	}
	return err
}

// lockForOldRestore takes the xtables lock for an iptables-restore that
// cannot wait for it itself, failing with ErrLockHeld after the wait.
func (k *ExecKernel) lockForOldRestore(ctx context.Context, t *familyTools, args []string) (func(), error) {
	wait := time.Duration(k.wait) * time.Second
	release, err := acquireXtablesLock(ctx, k.lockFile, wait)
	if err == nil {
		return release, nil
	}
	e := &ExecError{Op: OpRestore, Backend: k.backend, Cmd: t.restore, Args: args, ExitCode: -1, Err: err}
	if errors.Is(err, errLockTimeout) {
		e.kind = ErrLockHeld
	}
	return nil, e
}

// ipt returns the go-iptables handle for family, creating it on first use
// (go-iptables runs "--version" when constructed, so inside the netns).
func (k *ExecKernel) ipt(family Family) (*goiptables.IPTables, *familyTools, error) {
	t, err := k.tools(family)
	if err != nil {
		return nil, nil, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.ipt != nil {
		return t.ipt, t, nil
	}
	proto := goiptables.ProtocolIPv4
	if family == IPv6 {
		proto = goiptables.ProtocolIPv6
	}
	// go-iptables waits forever with Timeout(0), which is our "negative".
	timeout := max(k.wait, 0)
	var h *goiptables.IPTables
	err = k.run.ns.do(func() error {
		var err error
		h, err = goiptables.New(goiptables.IPFamily(proto), goiptables.Path(t.iptables), goiptables.Timeout(timeout))
		return err
	})
	if err != nil {
		return nil, nil, k.run.fromGoIPTables(OpVersion, t.iptables, []string{"--version"}, err)
	}
	t.ipt = h
	return h, t, nil
}

// viaGoIPTables runs fn with the family's go-iptables handle inside the
// namespace, converting its error.
func (k *ExecKernel) viaGoIPTables(ctx context.Context, family Family, op string, args []string, fn func(*goiptables.IPTables) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	h, t, err := k.ipt(family)
	if err != nil {
		return err
	}
	start := time.Now()
	err = k.run.ns.do(func() error { return fn(h) })
	k.run.log.V(4).Info("ran iptables via go-iptables", "op", op, "args", args, "duration", time.Since(start), "err", err)
	return k.run.fromGoIPTables(op, t.iptables, args, err)
}

// EnsureChain implements Kernel: "iptables -N", where exit status 1 means
// the chain already exists (the chain could otherwise not be created).
func (k *ExecKernel) EnsureChain(ctx context.Context, family Family, table Table, chain Chain) (bool, error) {
	args := []string{"-t", string(table), "-N", string(chain)}
	err := k.viaGoIPTables(ctx, family, OpEnsureChain, args, func(h *goiptables.IPTables) error {
		return h.NewChain(string(table), string(chain))
	})
	if exitCodeOf(err) == exitOtherProblem {
		return true, nil
	}
	return false, err
}

// ChainExists implements Kernel ("iptables -S CHAIN 1"; status 1 = absent).
func (k *ExecKernel) ChainExists(ctx context.Context, family Family, table Table, chain Chain) (bool, error) {
	var exists bool
	err := k.viaGoIPTables(ctx, family, OpChainExists, []string{"-t", string(table), "-S", string(chain), "1"},
		func(h *goiptables.IPTables) error {
			var err error
			exists, err = h.ChainExists(string(table), string(chain))
			return err
		})
	return exists, err
}

// FlushChain implements Kernel with "iptables -F". go-iptables has no
// flush that leaves a missing chain missing (ClearChain creates it), so
// this one is a direct exec.
func (k *ExecKernel) FlushChain(ctx context.Context, family Family, table Table, chain Chain) error {
	t, err := k.tools(family)
	if err != nil {
		return err
	}
	args := append(k.waitArgs(), "-t", string(table), "-F", string(chain))
	_, err = k.run.run(ctx, OpFlushChain, t.iptables, args, nil)
	return err
}

// DeleteChain implements Kernel with "iptables -X". Exit status 1 means
// either "no such chain" or (legacy) "not empty"; a follow-up existence
// check tells them apart so a missing chain is not an error.
func (k *ExecKernel) DeleteChain(ctx context.Context, family Family, table Table, chain Chain) error {
	args := []string{"-t", string(table), "-X", string(chain)}
	err := k.viaGoIPTables(ctx, family, OpDeleteChain, args, func(h *goiptables.IPTables) error {
		return h.DeleteChain(string(table), string(chain))
	})
	if exitCodeOf(err) != exitOtherProblem {
		return err
	}
	exists, cerr := k.ChainExists(ctx, family, table, chain)
	if cerr != nil {
		return errors.Join(err, cerr)
	}
	if !exists {
		return nil
	}
	var ee *ExecError
	if errors.As(err, &ee) {
		ee.kind = ErrInvalidRuleset // still there: not empty or referenced
	}
	return err
}

// EnsureJump implements Kernel with go-iptables: "-C" to check, then
// "-I FROM 1" or "-A FROM".
func (k *ExecKernel) EnsureJump(ctx context.Context, family Family, j Jump) (bool, error) {
	if err := j.validate(); err != nil {
		return false, err
	}
	spec := j.Args()
	table, from := string(j.Table), string(j.From)
	var existed bool
	err := k.viaGoIPTables(ctx, family, OpEnsureJump, append([]string{"-t", table, "-C", from}, spec...),
		func(h *goiptables.IPTables) error {
			var err error
			existed, err = h.Exists(table, from, spec...)
			return err
		})
	if err != nil || existed {
		return existed, err
	}
	op, args := "-A", []string{"-t", table, "-A", from}
	if j.Position == Prepend {
		op, args = "-I", []string{"-t", table, "-I", from, "1"}
	}
	err = k.viaGoIPTables(ctx, family, OpEnsureJump, append(args, spec...), func(h *goiptables.IPTables) error {
		if op == "-I" {
			return h.Insert(table, from, 1, spec...)
		}
		return h.Append(table, from, spec...)
	})
	return false, err
}

// DeleteJump implements Kernel ("-C" then "-D"). A missing rule or a
// missing built-in chain is not an error.
func (k *ExecKernel) DeleteJump(ctx context.Context, family Family, j Jump) error {
	if err := j.validate(); err != nil {
		return err
	}
	spec := j.Args()
	table, from := string(j.Table), string(j.From)
	err := k.viaGoIPTables(ctx, family, OpDeleteJump, append([]string{"-t", table, "-D", from}, spec...),
		func(h *goiptables.IPTables) error { return h.DeleteIfExists(table, from, spec...) })
	if exitCodeOf(err) == exitParameterProblem {
		// "-C" cannot even parse a jump to a missing chain; no rule can
		// jump there, so there is nothing to delete.
		if exists, cerr := k.ChainExists(ctx, family, j.Table, j.To); cerr == nil && !exists {
			return nil
		}
	}
	return err
}
