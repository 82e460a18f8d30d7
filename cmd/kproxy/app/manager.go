package app

import (
	"fmt"

	"github.com/go-logr/logr"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/events"
	v1alpha1 "k8s.io/kube-proxy/config/v1alpha1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/kproxy/kproxy/controller"
	"github.com/kproxy/kproxy/proxier/healthcheck"
)

// newManager returns the controller-runtime manager kproxy runs in: kproxy's trimmed
// cache for this node, informer resync every configSyncPeriod, no leader election (every
// node runs its own proxy) and none of the manager's own HTTP servers: kproxy serves
// health and metrics itself, with kube-proxy's bind semantics (addServers).
func newManager(cfg *rest.Config, c *v1alpha1.KubeProxyConfiguration, nodeName string, log logr.Logger) (manager.Manager, error) {
	cache := controller.CacheOptions(nodeName)
	resync := c.ConfigSyncPeriod.Duration
	cache.SyncPeriod = &resync
	mgr, err := ctrl.NewManager(cfg, manager.Options{
		Cache:                  cache,
		LeaderElection:         false,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Logger:                 log,
	})
	if err != nil {
		return nil, fmt.Errorf("creating the controller manager: %w", err)
	}
	return mgr, nil
}

// addServers adds the /healthz-/livez server and the metrics server to mgr, unless
// their address is empty.
func addServers(mgr manager.Manager, c *v1alpha1.KubeProxyConfiguration, health *healthcheck.ProxyHealth, log logr.Logger) error {
	if c.HealthzBindAddress != "" {
		if err := mgr.Add(&healthcheck.Server{
			Name: "healthz", Addr: c.HealthzBindAddress, Handler: health.Handler(),
			HardFail: c.BindAddressHardFail, Logger: log.WithName("healthz"),
		}); err != nil {
			return err
		}
	}
	if c.MetricsBindAddress != "" {
		mux := healthcheck.NewMetricsMux(healthcheck.MetricsMuxOptions{
			Gatherer: ctrlmetrics.Registry, ProxyMode: string(c.Mode), Profiling: c.EnableProfiling,
		})
		if err := mgr.Add(&healthcheck.Server{
			Name: "metrics", Addr: c.MetricsBindAddress, Handler: mux,
			HardFail: c.BindAddressHardFail, Logger: log.WithName("metrics"),
		}); err != nil {
			return err
		}
	}
	return nil
}

// newServiceHealth returns the healthCheckNodePort servers, listening where NodePorts
// are served.
func newServiceHealth(c *v1alpha1.KubeProxyConfiguration, health *healthcheck.ProxyHealth, rec events.EventRecorder, log logr.Logger) *healthcheck.ServiceHealth {
	npa := nodePortAddresses(c)
	return healthcheck.NewServiceHealth(healthcheck.ServiceHealthOptions{
		NodePortAddresses: npa.cidrs,
		PrimaryNodeIPs:    npa.primary,
		ProxyHealthy:      health.Healthy,
		Recorder:          rec,
		Logger:            log.WithName("service-health"),
	})
}
