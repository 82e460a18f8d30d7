package controller_test

import (
	"context"
	"fmt"
	"reflect"
	"slices"

	v1 "k8s.io/api/core/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/kproxy/kproxy/controller"
	"github.com/kproxy/kproxy/proxier"
)

// An agent that already runs a controller-runtime Manager for its own controllers
// embeds kproxy by registering kproxy's controllers on it, with its own Proxier: here
// one that only reports what it would program. Setup adds Service, EndpointSlice and
// Node controllers plus the sync loop; none of them needs leader election, so they run
// on every node. (This example needs an API server, so it is only compiled.)
func ExampleSetup() {
	const node = "node-a"
	mgr, err := ctrl.NewManager(ctrl.GetConfigOrDie(), manager.Options{
		// kproxy's trimmed cache: only this node's Node, and only the Services and
		// EndpointSlices meant for the default proxy.
		Cache:   controller.CacheOptions(node),
		Metrics: metricsserver.Options{BindAddress: "0"},
	})
	if err != nil {
		panic(err)
	}
	// ... the agent's own controllers are registered on mgr here ...

	agent, err := controller.Setup(mgr, controller.Options{
		NodeName: node,
		Proxier: proxier.ProxierFunc(func(_ context.Context, s *proxier.State, changes proxier.ChangeSet) error {
			for _, sp := range s.ServicePorts() {
				if changes.Has(sp.Name) {
					sel := proxier.CategorizeEndpoints(sp, &s.Node)
					fmt.Printf("%s: %d endpoints for cluster traffic\n", sp.Name, len(sel.Cluster))
				}
			}
			return nil
		}),
		Runner: proxier.RunnerOptions{MinSyncPeriod: 0},
	})
	if err != nil {
		panic(err)
	}
	_ = agent.Builder // snapshots of the model, for read-only consumers

	if err := mgr.Start(ctrl.SetupSignalHandler()); err != nil {
		panic(err)
	}
}

// CacheOptions keeps the Manager's cache small: Services and EndpointSlices meant for
// the default proxy, and only this node's Node. An embedder merges its own objects into
// the result; objects it does not list are cached as usual.
func ExampleCacheOptions() {
	opts := controller.CacheOptions("node-a")
	opts.ByObject[&v1.ConfigMap{}] = cache.ByObject{
		Namespaces: map[string]cache.Config{"my-agent": {}},
	}

	var lines []string
	for obj, by := range opts.ByObject {
		line := reflect.TypeOf(obj).Elem().Name() + ":"
		if by.Label != nil {
			line += " labels " + by.Label.String()
		}
		if by.Field != nil {
			line += " fields " + by.Field.String()
		}
		for ns := range by.Namespaces {
			line += " namespace " + ns
		}
		if by.Transform != nil {
			line += " (trimmed)"
		}
		lines = append(lines, line)
	}
	slices.Sort(lines)
	for _, l := range lines {
		fmt.Println(l)
	}
	// Output:
	// ConfigMap: namespace my-agent
	// EndpointSlice: labels !service.kubernetes.io/headless,!service.kubernetes.io/service-proxy-name (trimmed)
	// Node: fields metadata.name=node-a (trimmed)
	// Service: labels !service.kubernetes.io/headless,!service.kubernetes.io/service-proxy-name (trimmed)
}
