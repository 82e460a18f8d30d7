package controller

import (
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kproxy/kproxy/proxier"
)

type clientObject = client.Object

// ours reports whether an object is for this proxy: like kube-proxy, kproxy leaves
// objects labelled for another service proxy, and headless services' slices, alone.
// The cache's label selector already filters them out; this keeps an embedder's
// differently configured cache correct.
func ours(o client.Object) bool {
	l := o.GetLabels()
	return l[proxier.LabelServiceProxyName] == "" && l[proxier.LabelHeadless] == ""
}

// proxySelector is the server-side form of ours, so such objects never reach the cache.
func proxySelector() labels.Selector {
	noProxyName, _ := labels.NewRequirement(proxier.LabelServiceProxyName, selection.DoesNotExist, nil)
	noHeadless, _ := labels.NewRequirement(proxier.LabelHeadless, selection.DoesNotExist, nil)
	return labels.NewSelector().Add(*noProxyName, *noHeadless)
}
