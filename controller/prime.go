package controller

import (
	"context"
	"fmt"
	"time"

	"github.com/go-logr/logr"
	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kproxy/kproxy/proxier"
)

// primer loads everything the cache holds into the model once it has synced, then
// marks the model initialized. The reconcilers would get there too, one queued object
// at a time; without the primer the first sync could run on a half-read model and
// briefly reject traffic for services whose slices were still in the queue.
type primer struct {
	cache       cache.Cache
	builder     *proxier.Builder
	report      Reporter
	nodeName    string
	waitForNode bool
	log         logr.Logger
	// done is closed once the list is applied, releasing the reconcilers.
	done chan<- struct{}
}

func (p *primer) NeedLeaderElection() bool { return false }

func (p *primer) Start(ctx context.Context) error {
	start := time.Now()
	if !p.cache.WaitForCacheSync(ctx) {
		return nil // cancelled
	}
	var svcs v1.ServiceList
	if err := p.cache.List(ctx, &svcs); err != nil {
		return fmt.Errorf("listing Services from the cache: %w", err)
	}
	var slices discovery.EndpointSliceList
	if err := p.cache.List(ctx, &slices); err != nil {
		return fmt.Errorf("listing EndpointSlices from the cache: %w", err)
	}
	for i := range svcs.Items {
		applyService(ctx, p.builder, p.report, &svcs.Items[i])
	}
	for i := range slices.Items {
		applySlice(ctx, p.builder, p.report, &slices.Items[i])
	}
	if err := p.loadNode(ctx); err != nil {
		return err
	}
	p.log.Info("Model primed from the API server", "services", len(svcs.Items), "endpointSlices", len(slices.Items),
		"elapsed", time.Since(start).Round(time.Millisecond))
	close(p.done)
	p.builder.MarkInitialized()
	return nil
}

// loadNode reads this node, waiting for it to list an address when asked to: kube-proxy
// does not program rules for a node whose IPs it does not know yet.
func (p *primer) loadNode(ctx context.Context) error {
	logged := false
	for {
		n := &v1.Node{}
		err := p.cache.Get(ctx, client.ObjectKey{Name: p.nodeName}, n)
		if err == nil {
			reportIfInvalid(ctx, p.report, n, p.builder.SetNode(n))
		}
		if !p.waitForNode || (err == nil && hasAddress(n)) {
			return nil
		}
		if !logged {
			p.log.Info("Waiting for this node's Node object to list its addresses before programming rules", "node", p.nodeName)
			logged = true
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
}

func hasAddress(n *v1.Node) bool {
	for _, a := range n.Status.Addresses {
		if a.Type == v1.NodeInternalIP || a.Type == v1.NodeExternalIP {
			return true
		}
	}
	return false
}
