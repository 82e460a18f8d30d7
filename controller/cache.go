package controller

import (
	"strings"

	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kproxy/kproxy/proxier"
)

// CacheOptions returns cache options that keep only what kproxy needs: Services and
// EndpointSlices not meant for another proxy, and only this node's Node, with
// managed fields, unused annotations and node status noise dropped before they are
// stored. At tens of thousands of services this is most of the agent's memory.
//
// The cache hands out its own copies without deep-copying them: kproxy only reads
// objects. An embedder whose own controllers mutate objects they get from the cache
// must deep-copy them first, or leave UnsafeDisableDeepCopy unset in the result.
func CacheOptions(nodeName string) cache.Options {
	sel := proxySelector()
	return cache.Options{
		DefaultTransform: cache.TransformStripManagedFields(),
		ByObject: map[client.Object]cache.ByObject{
			&v1.Service{}:              {Label: sel, Transform: trimService, UnsafeDisableDeepCopy: ptr.To(true)},
			&discovery.EndpointSlice{}: {Label: sel, Transform: trimSlice, UnsafeDisableDeepCopy: ptr.To(true)},
			&v1.Node{}: {Field: fields.OneTermEqualSelector("metadata.name", nodeName), Transform: trimNode,
				UnsafeDisableDeepCopy: ptr.To(true)},
		},
	}
}

// keepAnnotation says which annotations kproxy reads; everything else is dropped from
// the cache.
func keepAnnotation(k string) bool {
	return k == proxier.AnnotationTriggerTime || strings.HasPrefix(k, "kproxy.io/")
}

func trimMeta(o client.Object) {
	o.SetManagedFields(nil)
	if a := o.GetAnnotations(); len(a) > 0 {
		kept := map[string]string{}
		for k, v := range a {
			if keepAnnotation(k) {
				kept[k] = v
			}
		}
		if len(kept) == 0 {
			kept = nil
		}
		o.SetAnnotations(kept)
	}
	o.SetOwnerReferences(nil)
}

func trimService(obj any) (any, error) {
	if svc, ok := obj.(*v1.Service); ok {
		trimMeta(svc)
		svc.Spec.Selector = nil // endpoints come from EndpointSlices
		svc.Status.Conditions = nil
	}
	return obj, nil
}

func trimSlice(obj any) (any, error) {
	if s, ok := obj.(*discovery.EndpointSlice); ok {
		trimMeta(s)
		for i := range s.Endpoints {
			s.Endpoints[i].TargetRef = nil
			s.Endpoints[i].DeprecatedTopology = nil
		}
	}
	return obj, nil
}

func trimNode(obj any) (any, error) {
	if n, ok := obj.(*v1.Node); ok {
		trimMeta(n)
		n.Status = v1.NodeStatus{Addresses: n.Status.Addresses}
		n.Spec.Taints = nil
	}
	return obj, nil
}
