// Command embed-manager is "another agent" that already runs a controller-runtime
// Manager for its own controllers (here, one that counts ConfigMaps) and embeds kproxy
// next to them: one Manager, one cache, one API connection.
//
// Embedding takes three steps:
//
//  1. merge controller.CacheOptions(node) into the Manager's cache options, so the
//     shared cache keeps only what kproxy needs of Services, EndpointSlices and Nodes;
//  2. register the agent's own controllers as usual;
//  3. call controller.Setup(mgr, controller.Options{NodeName, Proxier}) with the
//     iptables proxier (iptables.NewNodeProxier), or any proxier.Proxier.
//
// With --dry-run the Proxier only logs what it would program, so the agent runs
// without root against any cluster:
//
//	go run ./examples/embed-manager --kubeconfig ~/.kube/config --node node-a --dry-run
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	v1 "k8s.io/api/core/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/kproxy/kproxy/controller"
	"github.com/kproxy/kproxy/iptables"
	"github.com/kproxy/kproxy/proxier"
)

// options are the agent's flags (--kubeconfig is registered by controller-runtime).
type options struct {
	node        string
	dryRun      bool
	clusterCIDR string
	minSync     time.Duration
}

func main() {
	var o options
	flag.StringVar(&o.node, "node", "", "name of the node this agent runs on (required)")
	flag.BoolVar(&o.dryRun, "dry-run", false, "log what kproxy would program instead of programming iptables")
	flag.StringVar(&o.clusterCIDR, "cluster-cidr", "", "pod CIDR of the cluster (comma-separated for dual-stack), to tell pod traffic from other traffic")
	flag.DurationVar(&o.minSync, "min-sync-period", time.Second, "shortest time between two syncs of kproxy's rules")
	verbose := flag.Int("v", 0, "log verbosity")
	flag.Parse()

	log := funcr.New(func(prefix, args string) {
		if prefix != "" {
			args = prefix + " " + args
		}
		fmt.Fprintln(os.Stderr, args)
	}, funcr.Options{Verbosity: *verbose, LogTimestamp: true})
	ctrl.SetLogger(log)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o, log); err != nil {
		fmt.Fprintln(os.Stderr, "embed-manager:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, o options, log logr.Logger) error {
	if o.node == "" {
		return errors.New("--node is required")
	}
	cfg, err := ctrl.GetConfig()
	if err != nil {
		return err
	}

	// 1. One cache for everyone: kproxy's trimmed view of Services, EndpointSlices
	// and this Node, plus what the agent's own controllers need. ConfigMaps are not in
	// kproxy's options, so this entry only adds to them.
	cacheOpts := controller.CacheOptions(o.node)
	cacheOpts.ByObject[&v1.ConfigMap{}] = cache.ByObject{Transform: dropConfigMapData}
	mgr, err := ctrl.NewManager(cfg, manager.Options{
		Cache:                  cacheOpts,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Logger:                 log,
	})
	if err != nil {
		return fmt.Errorf("creating the manager: %w", err)
	}

	// 2. The agent's own controller.
	counter := &ConfigMapCounter{Client: mgr.GetClient(), Log: log.WithName("configmaps")}
	if err := ctrl.NewControllerManagedBy(mgr).Named("configmap-counter").For(&v1.ConfigMap{}).Complete(counter); err != nil {
		return fmt.Errorf("registering the ConfigMap controller: %w", err)
	}

	// 3. kproxy, on the same Manager.
	p, err := newProxier(ctx, o, log)
	if err != nil {
		return err
	}
	if _, err := controller.Setup(mgr, controller.Options{
		NodeName: o.node,
		Proxier:  p,
		Runner:   proxier.RunnerOptions{MinSyncPeriod: o.minSync, SyncPeriod: 30 * time.Second},
		Logger:   log.WithName("kproxy"),
	}); err != nil {
		return fmt.Errorf("setting up kproxy: %w", err)
	}

	log.Info("Starting", "node", o.node, "dryRun", o.dryRun)
	return mgr.Start(ctx)
}

// newProxier returns the iptables proxier of the node, or a logging one for --dry-run.
func newProxier(ctx context.Context, o options, log logr.Logger) (proxier.Proxier, error) {
	if o.dryRun {
		return dryRunProxier(log.WithName("dry-run")), nil
	}
	ro := iptables.RenderOptions{RandomFully: true}
	if o.clusterCIDR != "" {
		var cidrs []netip.Prefix
		for _, s := range strings.Split(o.clusterCIDR, ",") {
			p, err := netip.ParsePrefix(strings.TrimSpace(s))
			if err != nil {
				return nil, fmt.Errorf("--cluster-cidr: %w", err)
			}
			cidrs = append(cidrs, p.Masked())
		}
		ro.LocalDetector = iptables.LocalDetector{Mode: iptables.LocalModeClusterCIDR, CIDRs: cidrs}
	}
	return iptables.NewNodeProxier(ctx, iptables.NodeOptions{Render: ro, Logger: log.WithName("iptables")})
}

// dryRunProxier logs each sync and, for every service port that changed, the
// endpoints its traffic would be balanced to.
func dryRunProxier(log logr.Logger) proxier.Proxier {
	return proxier.ProxierFunc(func(_ context.Context, s *proxier.State, changes proxier.ChangeSet) error {
		log.Info("kproxy sync", "generation", s.Generation, "full", changes.Full, "servicePorts", s.Len())
		for _, sp := range s.ServicePorts() {
			if !changes.Has(sp.Name) {
				continue
			}
			sel := proxier.CategorizeEndpoints(sp, &s.Node)
			eps := make([]string, 0, len(sel.Cluster))
			for _, ep := range sel.Cluster {
				eps = append(eps, ep.String())
			}
			log.Info("Would program", "service", sp.Name.String(), "clusterIPs", fmt.Sprint(sp.ClusterIPs),
				"port", sp.Port, "endpoints", strings.Join(eps, ","))
		}
		return nil
	})
}

// ConfigMapCounter is the agent's own controller: on every ConfigMap change it counts
// the ConfigMaps in the cache.
type ConfigMapCounter struct {
	Client client.Client
	Log    logr.Logger
}

// Reconcile implements reconcile.Reconciler.
func (c *ConfigMapCounter) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	var list v1.ConfigMapList
	if err := c.Client.List(ctx, &list); err != nil {
		return reconcile.Result{}, err
	}
	c.Log.Info("Counted ConfigMaps", "trigger", req.String(), "count", len(list.Items))
	return reconcile.Result{}, nil
}

// dropConfigMapData keeps ConfigMaps' metadata only: counting needs nothing else.
func dropConfigMapData(obj any) (any, error) {
	if cm, ok := obj.(*v1.ConfigMap); ok {
		cm.Data, cm.BinaryData, cm.ManagedFields = nil, nil, nil
	}
	return obj, nil
}
