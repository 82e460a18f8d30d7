package iptables

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"strings"
	"time"

	"github.com/go-logr/logr"
)

// DetectOptions configures DetectBackend.
type DetectOptions struct {
	// Force skips detection and returns this backend (still checking that
	// its binaries are installed). Use it when the operator knows better.
	Force Backend
	// Netns, when set, inspects the rules of that named network namespace
	// (or namespace file path) instead of the caller's.
	Netns string
	// Timeout bounds each *-save call. iptables-nft 1.8.0-1.8.3 could loop
	// forever, which is why kube-proxy's wrapper runs it under a timeout.
	// Zero means 5 seconds.
	Timeout time.Duration
	// Logger receives the evidence at V(2).
	Logger logr.Logger
}

// DetectReason says which rule of the heuristic decided.
type DetectReason string

const (
	// ReasonForced means DetectOptions.Force was set.
	ReasonForced DetectReason = "forced"
	// ReasonOnlyInstalled means only one variant's binaries exist.
	ReasonOnlyInstalled DetectReason = "only-installed"
	// ReasonKubeletHint means kubelet's KUBE-IPTABLES-HINT or
	// KUBE-KUBELET-CANARY chain was found in that variant (mangle table).
	ReasonKubeletHint DetectReason = "kubelet-hint"
	// ReasonRuleCount means one variant holds strictly more rules.
	ReasonRuleCount DetectReason = "rule-count"
	// ReasonDefault means neither variant decided (typically both empty)
	// and nft, the default of current distributions, was picked.
	ReasonDefault DetectReason = "default"
)

// Detection is the outcome of DetectBackend, with its evidence so that the
// choice can be logged and reported.
type Detection struct {
	// Backend is the chosen variant.
	Backend Backend
	// Reason is the rule that decided.
	Reason DetectReason
	// NFTRules and LegacyRules count rule lines ("-A ...") across IPv4 and
	// IPv6 in each variant; -1 when counting was not needed.
	NFTRules, LegacyRules int
	// Missing lists the *-save binaries that could not be found.
	Missing []string
}

// kubeletHintRE matches the chains kubelet (1.17+) creates in the mangle
// table; their presence says which variant the node's kubelet uses.
var kubeletHintRE = regexp.MustCompile(`(?m)^:(KUBE-IPTABLES-HINT|KUBE-KUBELET-CANARY)\b`)

// DetectBackend decides between iptables-nft and iptables-legacy the way
// kube-proxy's image (the iptables-wrapper script) does:
//
//  1. a forced backend wins;
//  2. if only one variant is installed, use it;
//  3. kubelet's hint chains in the mangle table: nft is checked first
//     (cheap: "iptables-nft-save -t mangle"), then legacy, where all
//     tables are dumped because "-t mangle" would create the table;
//  4. otherwise count the rule lines of both variants, IPv4 plus IPv6,
//     and take legacy only if it holds strictly more;
//  5. otherwise nft.
//
// Failures of individual *-save calls count as "no rules", as in the
// script; only a complete absence of binaries is an error.
func DetectBackend(ctx context.Context, opts DetectOptions) (Detection, error) {
	log := opts.Logger
	timeout := opts.Timeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	ns, err := newNetnsRunner(opts.Netns)
	if err != nil {
		return Detection{}, err
	}

	det := Detection{NFTRules: -1, LegacyRules: -1}
	paths := map[string]string{}
	for _, b := range []Backend{BackendNFT, BackendLegacy} {
		for _, f := range []Family{IPv4, IPv6} {
			name := binaryName(b, f, "-save")
			if p, err := exec.LookPath(name); err == nil {
				paths[name] = p
			} else {
				det.Missing = append(det.Missing, name)
			}
		}
	}
	have := func(b Backend) bool { return paths[binaryName(b, IPv4, "-save")] != "" }

	if opts.Force != "" {
		if !opts.Force.valid() {
			return Detection{}, fmt.Errorf("iptables: unknown backend %q (want %q or %q)", opts.Force, BackendNFT, BackendLegacy)
		}
		if !have(opts.Force) {
			return Detection{}, fmt.Errorf("%w: %s", ErrBinaryNotFound, binaryName(opts.Force, IPv4, "-save"))
		}
		det.Backend, det.Reason = opts.Force, ReasonForced
		return det, nil
	}
	switch {
	case !have(BackendNFT) && !have(BackendLegacy):
		return Detection{}, fmt.Errorf("%w: none of %s", ErrBinaryNotFound, strings.Join(det.Missing, ", "))
	case !have(BackendLegacy):
		det.Backend, det.Reason = BackendNFT, ReasonOnlyInstalled
		return det, nil
	case !have(BackendNFT):
		det.Backend, det.Reason = BackendLegacy, ReasonOnlyInstalled
		return det, nil
	}

	// save runs one *-save binary, ignoring failures like the script does.
	save := func(b Backend, f Family, args ...string) []byte {
		p := paths[binaryName(b, f, "-save")]
		if p == "" {
			return nil
		}
		cctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		r := &cmdRunner{ns: ns, backend: b, log: log}
		out, err := r.run(cctx, OpSave, p, args, nil)
		if err != nil {
			log.V(2).Info("ignoring failed iptables-save during backend detection", "cmd", p, "err", err)
			return nil
		}
		return out
	}
	decide := func(b Backend, r DetectReason) (Detection, error) {
		det.Backend, det.Reason = b, r
		log.V(2).Info("detected iptables backend", "backend", b, "reason", r,
			"nftRules", det.NFTRules, "legacyRules", det.LegacyRules, "missing", det.Missing)
		return det, ctx.Err()
	}

	for _, f := range []Family{IPv4, IPv6} {
		if kubeletHintRE.Match(save(BackendNFT, f, "-t", string(TableMangle))) {
			return decide(BackendNFT, ReasonKubeletHint)
		}
	}
	var legacyOut [2][]byte
	for i, f := range []Family{IPv4, IPv6} {
		legacyOut[i] = save(BackendLegacy, f)
		if kubeletHintRE.Match(legacyOut[i]) {
			return decide(BackendLegacy, ReasonKubeletHint)
		}
	}

	det.LegacyRules = countRules(legacyOut[0]) + countRules(legacyOut[1])
	det.NFTRules = 0
	for _, f := range []Family{IPv4, IPv6} {
		det.NFTRules += countRules(save(BackendNFT, f))
	}
	switch {
	case det.LegacyRules > det.NFTRules:
		return decide(BackendLegacy, ReasonRuleCount)
	case det.NFTRules > det.LegacyRules:
		return decide(BackendNFT, ReasonRuleCount)
	default:
		return decide(BackendNFT, ReasonDefault)
	}
}

// binaryName returns the variant-specific binary name, e.g.
// binaryName(BackendNFT, IPv6, "-restore") == "ip6tables-nft-restore".
func binaryName(b Backend, f Family, suffix string) string {
	prefix := "iptables"
	if f == IPv6 {
		prefix = "ip6tables"
	}
	return prefix + "-" + string(b) + suffix
}

// countRules counts rule lines (lines starting with "-") in
// iptables-save output, as the wrapper script's grep '^-' does.
func countRules(save []byte) int {
	n := bytes.Count(save, []byte("\n-"))
	if bytes.HasPrefix(save, []byte("-")) {
		n++
	}
	return n
}
