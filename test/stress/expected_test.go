package stress

import (
	"context"
	"errors"
	"fmt"

	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kproxy/kproxy/iptables"
	"github.com/kproxy/kproxy/proxier"
)

// expectedRuleset lists the final API state straight from the apiserver (not from any
// cache), builds the model from it with a fresh Builder and renders it: the rules a
// kproxy that just started would write, which a kproxy that lived through the storm
// must also hold.
func expectedRuleset(ctx context.Context, c client.Reader, opts iptables.RenderOptions) (*iptables.Ruleset, *proxier.State, error) {
	b := proxier.NewBuilder(proxier.BuilderOptions{NodeName: nodeName})
	node := &v1.Node{}
	if err := c.Get(ctx, client.ObjectKey{Name: nodeName}, node); err != nil {
		return nil, nil, err
	}
	if err := b.SetNode(node); err != nil {
		return nil, nil, fmt.Errorf("node: %w", err)
	}
	var svcs v1.ServiceList
	if err := c.List(ctx, &svcs); err != nil {
		return nil, nil, err
	}
	for i := range svcs.Items {
		if err := b.UpsertService(&svcs.Items[i]); err != nil && !invalid(err) {
			return nil, nil, err
		}
	}
	var eps discovery.EndpointSliceList
	if err := c.List(ctx, &eps); err != nil {
		return nil, nil, err
	}
	for i := range eps.Items {
		if err := b.UpsertEndpointSlice(&eps.Items[i]); err != nil && !invalid(err) {
			return nil, nil, err
		}
	}
	b.MarkInitialized()
	state, _ := b.Snapshot()
	return iptables.Render(state, opts), state, nil
}

// invalid reports a rejected object: the agent rejects the same ones, so both sides
// leave them out alike.
func invalid(err error) bool {
	var inv *proxier.InvalidObjectError
	return errors.As(err, &inv)
}
