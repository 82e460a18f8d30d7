package controller

import (
	"errors"
	"fmt"

	"github.com/go-logr/logr"
	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	"github.com/kproxy/kproxy/proxier"
	"github.com/kproxy/kproxy/proxier/metrics"
)

// Options configures Setup.
type Options struct {
	// NodeName is the node this agent runs on. Required.
	NodeName string
	// Proxier programs the data plane. When nil, no Runner is started and the model
	// is only kept up to date, for embedders that read snapshots from Builder.
	Proxier proxier.Proxier
	// Runner configures the sync loop (periods, backoff, observers).
	Runner proxier.RunnerOptions
	// Builder configures the model; its NodeName is taken from NodeName.
	Builder proxier.BuilderOptions
	// WaitForNodeAddresses delays the first sync until this node's Node object exists
	// and lists at least one address, as kube-proxy does, so NodePorts are never
	// programmed against an empty address list.
	WaitForNodeAddresses bool
	// Metrics, when set, receives the invalid-object counter (and should also be in
	// Runner.Observers to get sync metrics).
	Metrics *metrics.Metrics
	// Reporter replaces the default reporting of invalid objects (a log line, an Event
	// and a metric, once per object version).
	Reporter Reporter
	Logger   logr.Logger
}

// Agent is what Setup registered: the model, and the runner when a Proxier was given.
type Agent struct {
	// Builder holds the model; embedders may take snapshots from it.
	Builder *proxier.Builder
	// Runner is nil when Options.Proxier was nil.
	Runner *proxier.Runner
}

// Setup registers kproxy's controllers on mgr, plus a runnable that primes the model
// once the cache has synced and, when opts.Proxier is set, the Runner that syncs it.
// mgr's cache should be configured with CacheOptions (or a superset) to keep memory
// small at scale; correctness does not depend on it.
func Setup(mgr manager.Manager, opts Options) (*Agent, error) {
	if opts.NodeName == "" {
		return nil, errors.New("controller: Options.NodeName is required")
	}
	log := opts.Logger
	if log.GetSink() == nil {
		log = mgr.GetLogger().WithName("kproxy")
	}
	bopts := opts.Builder
	bopts.NodeName = opts.NodeName
	b := proxier.NewBuilder(bopts)
	if opts.Metrics != nil {
		opts.Metrics.SetPendingSource(b.PendingChanges)
	}
	rep := opts.Reporter
	if rep == nil {
		rep = NewReporter(ReporterOptions{
			Recorder: mgr.GetEventRecorder("kproxy"),
			Client:   mgr.GetClient(),
			Metrics:  opts.Metrics,
			Logger:   log.WithName("invalid"),
		})
	}
	c := mgr.GetClient()
	primed := make(chan struct{})

	if err := ctrl.NewControllerManagedBy(mgr).Named("kproxy-service").
		For(&v1.Service{}).
		Complete(&serviceReconciler{client: c, builder: b, report: rep, primed: primed}); err != nil {
		return nil, fmt.Errorf("registering the Service controller: %w", err)
	}
	if err := ctrl.NewControllerManagedBy(mgr).Named("kproxy-endpointslice").
		For(&discovery.EndpointSlice{}).
		Complete(&sliceReconciler{client: c, builder: b, report: rep, primed: primed}); err != nil {
		return nil, fmt.Errorf("registering the EndpointSlice controller: %w", err)
	}
	thisNode := predicate.NewPredicateFuncs(func(o clientObject) bool { return o.GetName() == opts.NodeName })
	if err := ctrl.NewControllerManagedBy(mgr).Named("kproxy-node").
		For(&v1.Node{}, builder.WithPredicates(thisNode)).
		Complete(&nodeReconciler{client: c, builder: b, report: rep, primed: primed}); err != nil {
		return nil, fmt.Errorf("registering the Node controller: %w", err)
	}

	agent := &Agent{Builder: b}
	if err := mgr.Add(&primer{
		cache: mgr.GetCache(), builder: b, report: rep, nodeName: opts.NodeName,
		waitForNode: opts.WaitForNodeAddresses, log: log, done: primed,
	}); err != nil {
		return nil, err
	}
	if opts.Proxier != nil {
		ropts := opts.Runner
		if ropts.Logger.GetSink() == nil {
			ropts.Logger = log.WithName("runner")
		}
		agent.Runner = proxier.NewRunner(b, opts.Proxier, ropts)
		if err := mgr.Add(agent.Runner); err != nil {
			return nil, err
		}
	}
	return agent, nil
}
