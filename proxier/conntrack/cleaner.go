package conntrack

import (
	"context"
	"net/netip"

	"github.com/kproxy/kproxy/proxier"
)

// Target is one Service destination whose flows are checked, with the endpoints such
// flows may be translated to. A flow addressed to the target whose reply comes from
// anywhere else is stale.
type Target struct {
	// Protocol is UDP or SCTP; other protocols are ignored by Cleaners.
	Protocol proxier.Protocol
	// IP is a cluster, external or load-balancer IP. The zero Addr makes this a node
	// port target, matching flows to Port on any destination address.
	IP netip.Addr
	// Port is the service port, or the node port for a node port target.
	Port uint16
	// Endpoints are the serving endpoints (address and target port) the Service may
	// translate this destination to. Empty means every flow to the target is stale
	// (the Service has no endpoints, or was deleted).
	Endpoints []netip.AddrPort
}

// NodePort reports whether the target matches flows by port alone.
func (t *Target) NodePort() bool { return !t.IP.IsValid() }

// Cleaner deletes stale conntrack entries. Implementations must be safe for use by one
// proxier at a time; the IPVS and iptables backends each own one.
type Cleaner interface {
	// Clean deletes every flow of family whose original destination is one of targets
	// and whose reply source is not one of that target's endpoints, and returns how
	// many flows it deleted. A partial failure returns the count so far and an error.
	Clean(ctx context.Context, family proxier.IPFamily, targets []Target) (int, error)
}
