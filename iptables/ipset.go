package iptables

import "context"

// IPSetKernel is the seam between the proxier and the kernel's ipsets. The proxier
// calls it with diffs only: after the first sync, a sync touches just the entries that
// changed. Implementations: NetlinkIPSets (the kernel, optionally inside a network
// namespace) and FakeIPSets.
type IPSetKernel interface {
	// List returns the sets whose names want accepts, with their entries in
	// canonical form (see CanonicalIPSetEntry). Sets are read in one dump.
	List(ctx context.Context, want func(name string) bool) ([]*IPSet, error)
	// Create creates an empty set with set's name, type and family (its Entries
	// are ignored). Creating a set that exists with the same type is not an error.
	Create(ctx context.Context, set *IPSet) error
	// Add adds entries to set; entries already present are not an error.
	Add(ctx context.Context, set *IPSet, entries []string) error
	// Del removes entries from set; missing entries are not an error.
	Del(ctx context.Context, set *IPSet, entries []string) error
	// Destroy deletes a set; a missing set is not an error, a set still referenced
	// by a rule is.
	Destroy(ctx context.Context, name string) error
}

// ownedIPSets are the names of the sets the renderer creates. The list is explicit on
// purpose: a "KUBE-" prefix would also claim kube-router's network-policy sets
// (KUBE-SRC-..., KUBE-DST-...) and the sets of an IPVS-mode kube-proxy, which are
// still referenced by chains kproxy does not own and so could never be destroyed.
var ownedIPSets = map[string]bool{loopbackSetV4: true, loopbackSetV6: true}

// OwnedIPSet reports whether an ipset found in the kernel belongs to the iptables
// proxier: a full sync destroys owned sets of its family that the ruleset no longer
// uses, and Cleanup destroys all owned sets of its family. A renderer that adds a set
// under a new name must add the name here, or a restarted proxier will not recognise
// it as its own.
func OwnedIPSet(name string) bool {
	return ownedIPSets[name]
}
