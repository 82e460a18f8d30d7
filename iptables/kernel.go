package iptables

import (
	"context"
	"fmt"
	"strings"

	"github.com/kproxy/kproxy/proxier"
)

// Family selects the IPv4 (iptables) or IPv6 (ip6tables) rule space; the two are
// entirely separate in the kernel, so every Kernel call names one. It is the model's
// family type, so states and rulesets need no conversion.
type Family = proxier.IPFamily

// The two families, as the model names them.
const (
	// IPv4 drives iptables, iptables-save and iptables-restore.
	IPv4 = proxier.IPv4
	// IPv6 drives ip6tables, ip6tables-save and ip6tables-restore.
	IPv6 = proxier.IPv6
)

// validFamily reports whether f is one of the two families the kernel knows.
func validFamily(f Family) bool { return f == IPv4 || f == IPv6 }

// Table names an iptables table. Only the tables kube-proxy programs have
// constants; the Fake and Exec accept raw and security as well.
type Table string

const (
	// TableNAT holds the service DNAT/SNAT chains.
	TableNAT Table = "nat"
	// TableFilter holds REJECT/DROP rules for services without endpoints
	// and the firewall chains.
	TableFilter Table = "filter"
	// TableMangle holds only KUBE-PROXY-CANARY (and kubelet's hint chain).
	TableMangle Table = "mangle"
)

// Chain names a chain inside a table.
type Chain string

// The built-in chains the bootstrap jumps hang from. Which of them exist
// depends on the table (nat has no FORWARD, filter no PREROUTING).
const (
	ChainPrerouting  Chain = "PREROUTING"
	ChainInput       Chain = "INPUT"
	ChainForward     Chain = "FORWARD"
	ChainOutput      Chain = "OUTPUT"
	ChainPostrouting Chain = "POSTROUTING"
)

// Backend is the iptables variant a Kernel drives. The two variants keep
// separate rule sets in the kernel, so a proxier must use the one the rest
// of the node (kubelet, CNI) uses.
type Backend string

const (
	// BackendNFT is iptables-nft: the iptables CLI on top of nf_tables.
	BackendNFT Backend = "nft"
	// BackendLegacy is iptables-legacy: the original x_tables interface,
	// serialised by the host-wide xtables lock.
	BackendLegacy Backend = "legacy"
)

// valid reports whether b names a known backend.
func (b Backend) valid() bool { return b == BackendNFT || b == BackendLegacy }

// RestoreOptions tunes one iptables-restore call. The zero value is what a
// proxier sync wants: --noflush, no counters, commit for real.
type RestoreOptions struct {
	// Test passes --test: the payload is checked but nothing is
	// committed. How much is checked depends on the backend: nft only
	// parses, legacy also resolves chains (jump targets, -X of a busy
	// chain) in memory; neither runs the kernel's hook checks. The Fake
	// checks everything it would check for a real restore.
	Test bool
	// Flush drops --noflush, so every table named in the payload is
	// emptied (user chains deleted, built-ins flushed) before the payload
	// is applied. Note that iptables-nft also resets built-in chain
	// policies to ACCEPT in this mode, iptables-legacy keeps them.
	Flush bool
}

// Position says where EnsureJump puts a missing jump rule.
type Position int

const (
	// Prepend inserts the jump as rule 1, so it runs before rules other
	// software appended (what kube-proxy does for its service chains).
	Prepend Position = iota
	// Append adds the jump at the end of the built-in chain.
	Append
)

// Jump describes a bootstrap rule in a built-in chain that sends traffic
// into one of our top-level chains, such as
// "-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES".
type Jump struct {
	// Table holds both chains.
	Table Table
	// From is the chain the rule lives in, normally a built-in chain.
	From Chain
	// To is the chain the rule jumps to.
	To Chain
	// Comment is attached with -m comment so humans (and kube-proxy's
	// cleanup) can recognise the rule; empty means no comment match.
	Comment string
	// Match holds extra match arguments placed before the comment, e.g.
	// {"-m", "conntrack", "--ctstate", "NEW"}. Each element is one argv
	// word; do not quote.
	Match []string
	// Position is where a missing rule is inserted.
	Position Position
}

// Args returns the rule specification as argv words (without "-A chain"),
// in the order iptables-save prints them, so the same spec can be checked
// with -C, inserted, deleted, or compared against saved text.
func (j Jump) Args() []string {
	args := make([]string, 0, len(j.Match)+6)
	args = append(args, j.Match...)
	if j.Comment != "" {
		args = append(args, "-m", "comment", "--comment", j.Comment)
	}
	return append(args, "-j", string(j.To))
}

// validate rejects jumps that would produce a malformed iptables command.
func (j Jump) validate() error {
	switch {
	case j.Table == "":
		return fmt.Errorf("iptables: jump has no table")
	case j.From == "" || j.To == "":
		return fmt.Errorf("iptables: jump needs both From and To chains (got %q -> %q)", j.From, j.To)
	case strings.ContainsAny(string(j.From)+string(j.To), " \t\n\""):
		return fmt.Errorf("iptables: chain names must not contain blanks or quotes (%q -> %q)", j.From, j.To)
	}
	return nil
}

// Version is an iptables release number plus the variant the binary
// reports ("nf_tables" or "legacy").
type Version struct {
	// Major, Minor and Patch are the release numbers, e.g. 1, 8, 9.
	Major, Minor, Patch int
	// Mode is the parenthesised variant from --version output, e.g.
	// "nf_tables"; iptables older than 1.8 print none and are legacy.
	Mode string
}

// String formats the version like iptables does ("1.8.9").
func (v Version) String() string { return fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Patch) }

// AtLeast reports whether v is the given release or newer; feature checks
// are all of this shape.
func (v Version) AtLeast(major, minor, patch int) bool {
	if v.Major != major {
		return v.Major > major
	}
	if v.Minor != minor {
		return v.Minor > minor
	}
	return v.Patch >= patch
}

// Features are the version-dependent capabilities the renderer and the
// executor care about.
type Features struct {
	// RandomFully means MASQUERADE accepts --random-fully (iptables >=
	// 1.6.2); kube-proxy adds it to avoid SNAT port collisions.
	RandomFully bool
	// WaitSupported means iptables-restore takes -w SECONDS (>= 1.6.2).
	// Without it Exec takes the xtables lock itself around the restore.
	WaitSupported bool
}

// featuresFor derives Features from a version, using the same thresholds
// as upstream kube-proxy.
func featuresFor(v Version) Features {
	return Features{
		RandomFully:   v.AtLeast(1, 6, 2),
		WaitSupported: v.AtLeast(1, 6, 2),
	}
}

// Kernel is the seam between the proxier and iptables. Implementations are
// goroutine-safe. The proxier's hot path uses only Save and Restore (one
// exec each); the chain and jump helpers exist for bootstrap and cleanup.
type Kernel interface {
	// Backend reports which iptables variant this Kernel drives.
	Backend() Backend
	// Version reports the iptables release used for family.
	Version(ctx context.Context, family Family) (Version, error)
	// Features reports the capabilities derived from Version.
	Features(ctx context.Context, family Family) (Features, error)

	// Save returns iptables-save text for the given tables (all tables
	// that exist when none are named). The text is returned raw: it may
	// contain "#" comment lines and packet counters.
	Save(ctx context.Context, family Family, tables ...Table) ([]byte, error)
	// Restore feeds payload to iptables-restore in a single call. Each
	// table block commits atomically; see the package documentation for
	// what happens when a later block fails.
	Restore(ctx context.Context, family Family, payload []byte, opts RestoreOptions) error

	// EnsureChain creates chain if missing and reports whether it existed.
	EnsureChain(ctx context.Context, family Family, table Table, chain Chain) (existed bool, err error)
	// ChainExists reports whether chain exists in table.
	ChainExists(ctx context.Context, family Family, table Table, chain Chain) (bool, error)
	// FlushChain removes every rule from chain; ErrChainNotFound if it
	// does not exist.
	FlushChain(ctx context.Context, family Family, table Table, chain Chain) error
	// DeleteChain deletes chain; a missing chain is not an error. Like the
	// kernel it refuses (ErrInvalidRuleset) a chain that still has rules
	// or is referenced: flush it and remove the jumps first.
	DeleteChain(ctx context.Context, family Family, table Table, chain Chain) error

	// EnsureJump adds jump unless an identical rule is already present,
	// and reports whether it was.
	EnsureJump(ctx context.Context, family Family, jump Jump) (existed bool, err error)
	// DeleteJump removes jump if present; absence is not an error.
	DeleteJump(ctx context.Context, family Family, jump Jump) error
}
