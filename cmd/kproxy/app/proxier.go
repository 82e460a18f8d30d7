package app

import (
	"context"
	"errors"
	"fmt"

	"github.com/go-logr/logr"
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
}

// newProxier builds the backend for the configured mode.
func newProxier(ctx context.Context, c *v1alpha1.KubeProxyConfiguration, d proxierDeps) (proxier.Proxier, error) {
	switch c.Mode {
	case config.ModeIPTables:
		return newIPTablesProxier(ctx, c, d)
	default:
		if err := checkModeImplemented(c.Mode); err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("proxy mode %q is not supported", c.Mode)
	}
}

// cleanup removes what every backend owns, whatever the configured mode, as
// kube-proxy --cleanup does: a node switching proxies or modes starts clean.
func cleanup(ctx context.Context, log logr.Logger) error {
	var errs []error
	if err := cleanupIPTables(ctx, log); err != nil {
		errs = append(errs, err)
	}
	log.Info("IPVS cleanup is not implemented yet: IPVS virtual servers and the kube-ipvs0 interface, if any, are left in place")
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("cleanup: %w", err)
	}
	log.Info("Cleanup done")
	return nil
}
