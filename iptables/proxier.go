package iptables

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/go-logr/logr"

	"github.com/kproxy/kproxy/proxier"
	"github.com/kproxy/kproxy/proxier/conntrack"
	"github.com/kproxy/kproxy/proxier/metrics"
)

// Options configures an iptables Proxier for one IP family.
type Options struct {
	// Family is the rule space this proxier owns; run one Proxier per family
	// (proxier.Multi combines them).
	Family Family
	// Kernel runs iptables-save/-restore: an *ExecKernel, or a *Fake in tests.
	Kernel Kernel
	// Render shapes the rules; its Family must equal Family (zero means Family).
	Render RenderOptions
	// IPSets manages the ipsets the rendered rules match against. It may be nil
	// only if the renderer never produces sets; a sync that needs one fails.
	IPSets IPSetKernel
	// Conntrack deletes stale UDP/SCTP flows after each sync; nil disables that
	// (tests, or nodes where another component does it).
	Conntrack conntrack.Cleaner
	// Metrics may be nil.
	Metrics *metrics.Metrics
	// Logger receives one V(2) line per sync and the reasons for full rewrites.
	Logger logr.Logger
	// FullReadBackEvery makes, on iptables-nft, only every N-th periodic full sync
	// read all rules back (iptables-nft-save, seconds at 10,000 services); the others
	// list the entry points and a rotating sample of chains and fall back to the full
	// read-back on any difference (see sync_verify.go for the trade-off). Zero means
	// DefaultFullReadBackEvery; 1 reads everything back every time. iptables-legacy,
	// whose save is cheap, always reads everything back.
	FullReadBackEvery int
}

// rulesetRenderer is what the proxier needs from the renderer: the complete desired
// ruleset for a state, cheaply when only some services changed.
type rulesetRenderer interface {
	Render(state *proxier.State, changes proxier.ChangeSet) *Ruleset
}

// Proxier programs one family's iptables rules (and ipsets, and conntrack cleanup)
// to match a proxier.State. It implements proxier.Proxier.
//
// A full sync reads the kernel back (iptables-save of nat, filter and mangle, parsed
// for the owned chains only) and writes exactly the owned chains that differ, deletes
// the owned chains nobody wants any more (including those of a kube-proxy that ran
// before), and repairs missing bootstrap jumps: when nothing differs it writes nothing,
// which makes the periodic resync cheap and is how an external flush gets repaired. A
// partial sync diffs the new ruleset against the last one applied and writes only the
// changed chains. Either way everything goes to the kernel in one iptables-restore
// call.
//
// On iptables-nft two things keep large rulesets cheap: a cold table (one no rule
// outside the owned chains leads into yet: a first start, or after a flush) is
// written in several blocks of that one call, which avoids a quadratic cost in
// iptables-nft-restore (see writeSplitTable); and the periodic full sync reads
// everything back only every Options.FullReadBackEvery-th time, checking the entry
// points and a rotating sample of chains in between (see sync_verify.go).
type Proxier struct {
	mu        sync.Mutex // serialises Sync and Cleanup
	family    Family
	kernel    Kernel
	renderer  rulesetRenderer
	ipsets    IPSetKernel
	conntrack conntrack.Cleaner
	metrics   *metrics.Metrics
	log       logr.Logger

	// applied is the ruleset the kernel is known to hold, nil when unknown (before
	// the first sync, after a failure, after Cleanup): then the next sync is full.
	applied *Ruleset
	// syncedState is the State of the last successful sync; unlike applied it
	// survives failures, so services deleted meanwhile still get their conntrack
	// entries cleaned.
	syncedState *proxier.State
	// appliedSets is the owned ipsets' content, nil when unknown.
	appliedSets map[string]*IPSet
	// noLocal caches, per service port, which policies lack local endpoints.
	noLocal map[proxier.ServicePortName]noLocalEndpoints
	// canaryWritten records that the canary was in place after a sync, so its
	// absence means somebody flushed our tables.
	canaryWritten bool
	last          SyncStats

	// splitNames and splitMinRules let a cold table's restore be cut into blocks
	// (iptables-nft only; see writeSplitTable).
	splitNames, splitMinRules int
	// saver lists chosen chains for sampled verification (iptables-nft only), nil
	// when the kernel cannot; readBackEvery, sampledRuns and sampleCursor pace it
	// (see sync_verify.go).
	saver         chainSaver
	readBackEvery int
	sampledRuns   int
	sampleCursor  int
}

var _ proxier.Proxier = (*Proxier)(nil)

// SyncStats describes the last Sync, for logs, tests and benchmarks.
type SyncStats struct {
	// Full is true for a sync that read the kernel back: everything, or only a
	// sample when Sampled is set.
	Full bool
	// Restores counts iptables-restore calls (0 or 1).
	Restores int
	// PayloadBytes is the size of the restore payload.
	PayloadBytes int
	// ChainsWritten and ChainsDeleted count chains rewritten and removed.
	ChainsWritten, ChainsDeleted int
	// JumpsAdded and JumpsRemoved count bootstrap jumps repaired.
	JumpsAdded, JumpsRemoved int
	// SavedLines is how many iptables-save lines a full sync parsed.
	SavedLines int
	// Sampled is how many chains a full sync listed to verify a sample instead of
	// reading everything back (zero when it read everything back); see
	// Options.FullReadBackEvery.
	Sampled int
	// ConntrackCleared counts deleted conntrack entries.
	ConntrackCleared int
	// Render, Read (iptables-save and parse), IPSets (list and update), Restore,
	// Conntrack and Total break down where the time went.
	Render, Read, IPSets, Restore, Conntrack, Total time.Duration
}

// New validates opts and returns a Proxier. Nothing is read or written until the
// first Sync.
func New(ctx context.Context, opts Options) (*Proxier, error) {
	if opts.Render.Family != opts.Family {
		if opts.Render.Family != 0 {
			return nil, fmt.Errorf("iptables: render family %v differs from proxier family %v", opts.Render.Family, opts.Family)
		}
		opts.Render.Family = opts.Family
	}
	if err := opts.Render.Validate(); err != nil {
		return nil, fmt.Errorf("iptables: invalid render options: %w", err)
	}
	return newProxier(opts, NewRenderer(opts.Render))
}

// newProxier builds a Proxier around any renderer (tests use hand-made rulesets).
func newProxier(opts Options, r rulesetRenderer) (*Proxier, error) {
	if !validFamily(opts.Family) {
		return nil, fmt.Errorf("iptables: invalid family %v", opts.Family)
	}
	if opts.Kernel == nil {
		return nil, errors.New("iptables: Options.Kernel is required")
	}
	p := &Proxier{
		family:        opts.Family,
		kernel:        opts.Kernel,
		renderer:      r,
		ipsets:        opts.IPSets,
		conntrack:     opts.Conntrack,
		metrics:       opts.Metrics,
		log:           opts.Logger.WithValues("family", opts.Family),
		noLocal:       map[proxier.ServicePortName]noLocalEndpoints{},
		readBackEvery: opts.FullReadBackEvery,
	}
	if p.readBackEvery <= 0 {
		p.readBackEvery = DefaultFullReadBackEvery
	}
	if opts.Kernel.Backend() == BackendNFT {
		p.splitNames, p.splitMinRules = defaultSplitNames, defaultSplitMinRules
		if s, ok := opts.Kernel.(chainSaver); ok {
			p.saver = s
		}
	}
	return p, nil
}

// LastSync returns statistics of the most recent Sync.
func (p *Proxier) LastSync() SyncStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.last
}
