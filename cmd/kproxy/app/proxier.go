package app

import (
	"context"
	"errors"
	"fmt"

	"github.com/go-logr/logr"
	"k8s.io/client-go/rest"
	v1alpha1 "k8s.io/kube-proxy/config/v1alpha1"

	"github.com/kproxy/kproxy/cmd/kproxy/app/config"
	"github.com/kproxy/kproxy/cmd/kproxy/app/nodesetup"
	"github.com/kproxy/kproxy/proxier"
	"github.com/kproxy/kproxy/proxier/metrics"
)

// proxierDeps are what building a backend needs besides the configuration.
type proxierDeps struct {
	metrics *metrics.Metrics
	setter  *nodesetup.Setter
	log     logr.Logger
	// restCfg and nodeName reach this node's Node object, whose pod CIDRs the IPVS
	// backend reads for detectLocalMode NodeCIDR.
	restCfg  *rest.Config
	nodeName string
}

// newProxier builds the backend for the configured mode, after removing what the
// other mode left on the node.
func newProxier(ctx context.Context, c *v1alpha1.KubeProxyConfiguration, d proxierDeps) (proxier.Proxier, error) {
	cleanOtherMode(ctx, c, d.log)
	switch c.Mode {
	case config.ModeIPTables:
		return newIPTablesProxier(ctx, c, d)
	case config.ModeIPVS:
		return newIPVSProxier(ctx, c, d)
	default:
		return nil, fmt.Errorf("proxy mode %q is not supported", c.Mode)
	}
}

// cleanOtherMode removes what a proxy in the other mode left behind, as kube-proxy
// did when a node switched between iptables and IPVS: the stale rules of one would
// keep rejecting or masquerading traffic the other now serves.
//
// Starting in iptables mode removes IPVS mode's virtual servers, kube-ipvs0, ipsets
// and glue, but only when IPVS mode left something (the glue's chains share names with
// iptables mode's own, which a restart must keep). Starting in ipvs mode,
// ipvs.NewNodeProxier removes the iptables-mode chains itself, keeping the ones the
// glue shares. Failures are logged, not fatal: the proxy works regardless.
func cleanOtherMode(ctx context.Context, c *v1alpha1.KubeProxyConfiguration, log logr.Logger) {
	if c.Mode != config.ModeIPTables {
		return
	}
	cleaned, err := cleanIPVSLeftovers(ctx, c, log)
	switch {
	case err != nil:
		log.Error(err, "Failed to remove what IPVS mode left on this node")
	case cleaned:
		log.Info("Removed what IPVS mode left on this node")
	}
}

// cleanup removes what every backend owns, whatever the configured mode, as
// kube-proxy --cleanup does: a node switching proxies or modes starts clean. IPVS mode
// goes first: its glue chains jump to KUBE-MARK-MASQ, which iptables mode's cleanup
// would otherwise have to leave in place; the IPVS cleanup in turn leaves that chain
// to iptables mode's when iptables-mode chains still jump to it.
func cleanup(ctx context.Context, c *v1alpha1.KubeProxyConfiguration, log logr.Logger) error {
	var errs []error
	if err := cleanupIPVS(ctx, c, log); err != nil {
		errs = append(errs, err)
	}
	if err := cleanupIPTables(ctx, log); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("cleanup: %w", err)
	}
	log.Info("Cleanup done")
	return nil
}
