package controller

import (
	"context"
	"errors"

	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/kproxy/kproxy/proxier"
)

// The reconcilers are level-based: each reads the object's current version from the
// cache and replaces what the model holds for it, so missed or repeated events cannot
// leave the model wrong. Invalid objects are reported and not retried: only a new
// version of the object can fix them.
//
// They wait for the primer: it applies a list it took from the cache, and a reconcile
// that ran between that list and its application (say, of a deletion) would otherwise
// be undone by the older copy, with no further event to repair it.

// gate is closed once the primer has applied its list.
type gate <-chan struct{}

// wait blocks until the gate opens; false means ctx ended first.
func (g gate) wait(ctx context.Context) bool {
	select {
	case <-g:
		return true
	case <-ctx.Done():
		return false
	}
}

type serviceReconciler struct {
	client  client.Reader
	builder *proxier.Builder
	report  Reporter
	primed  gate
}

func (r *serviceReconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	if !r.primed.wait(ctx) {
		return reconcile.Result{}, nil
	}
	svc := &v1.Service{}
	if err := r.client.Get(ctx, req.NamespacedName, svc); err != nil {
		if apierrors.IsNotFound(err) {
			r.builder.DeleteService(proxier.ServiceName{Namespace: req.Namespace, Name: req.Name})
			r.report.Forget(kindService, req.Namespace, req.Name)
			return reconcile.Result{}, nil
		}
		return reconcile.Result{}, err
	}
	applyService(ctx, r.builder, r.report, svc)
	return reconcile.Result{}, nil
}

func applyService(ctx context.Context, b *proxier.Builder, rep Reporter, svc *v1.Service) {
	if !ours(svc) {
		b.DeleteService(proxier.ServiceName{Namespace: svc.Namespace, Name: svc.Name})
		return
	}
	reportIfInvalid(ctx, rep, svc, b.UpsertService(svc))
}

type sliceReconciler struct {
	client  client.Reader
	builder *proxier.Builder
	report  Reporter
	primed  gate
}

func (r *sliceReconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	if !r.primed.wait(ctx) {
		return reconcile.Result{}, nil
	}
	s := &discovery.EndpointSlice{}
	if err := r.client.Get(ctx, req.NamespacedName, s); err != nil {
		if apierrors.IsNotFound(err) {
			r.builder.DeleteEndpointSlice(req.Namespace, req.Name)
			r.report.Forget(kindSlice, req.Namespace, req.Name)
			return reconcile.Result{}, nil
		}
		return reconcile.Result{}, err
	}
	applySlice(ctx, r.builder, r.report, s)
	return reconcile.Result{}, nil
}

func applySlice(ctx context.Context, b *proxier.Builder, rep Reporter, s *discovery.EndpointSlice) {
	if !ours(s) {
		b.DeleteEndpointSlice(s.Namespace, s.Name)
		return
	}
	reportIfInvalid(ctx, rep, s, b.UpsertEndpointSlice(s))
}

type nodeReconciler struct {
	client  client.Reader
	builder *proxier.Builder
	report  Reporter
	primed  gate
}

func (r *nodeReconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	if !r.primed.wait(ctx) {
		return reconcile.Result{}, nil
	}
	n := &v1.Node{}
	if err := r.client.Get(ctx, req.NamespacedName, n); err != nil {
		// A deleted Node keeps its last known addresses: the node is going away and
		// its rules with it; forgetting them now would only break draining traffic.
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	reportIfInvalid(ctx, r.report, n, r.builder.SetNode(n))
	return reconcile.Result{}, nil
}

func reportIfInvalid(ctx context.Context, rep Reporter, obj client.Object, err error) {
	var inv *proxier.InvalidObjectError
	if errors.As(err, &inv) {
		rep.Invalid(ctx, obj, inv)
	}
}
