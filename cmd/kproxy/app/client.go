package app

import (
	"context"
	"fmt"
	"runtime"
	"time"

	"github.com/go-logr/logr"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	componentbaseconfig "k8s.io/component-base/config/v1alpha1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// restConfig builds the API client configuration as kube-proxy does: the kubeconfig
// file with --master overriding its server, or the in-cluster configuration when both
// are empty; then the content types, QPS and burst from clientConnection.
func restConfig(cc componentbaseconfig.ClientConnectionConfiguration, master string) (*rest.Config, error) {
	var cfg *rest.Config
	var err error
	if cc.Kubeconfig == "" && master == "" {
		cfg, err = rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("no --kubeconfig or --master given and not running in a cluster: %w", err)
		}
	} else {
		cfg, err = clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
			&clientcmd.ClientConfigLoadingRules{ExplicitPath: cc.Kubeconfig},
			&clientcmd.ConfigOverrides{ClusterInfo: clientcmdapi.Cluster{Server: master}}).ClientConfig()
		if err != nil {
			return nil, fmt.Errorf("loading the API client configuration: %w", err)
		}
	}
	cfg.AcceptContentTypes = cc.AcceptContentTypes
	cfg.ContentType = cc.ContentType
	cfg.QPS = cc.QPS
	cfg.Burst = int(cc.Burst)
	cfg.UserAgent = fmt.Sprintf("kproxy/%s (%s/%s)", Version(), runtime.GOOS, runtime.GOARCH)
	return cfg, nil
}

// waitForPodCIDRs waits until this node's Node object has pod CIDRs and is not being
// deleted, as kube-proxy does for detectLocalMode NodeCIDR: local traffic detection is
// wrong without them.
func waitForPodCIDRs(ctx context.Context, c client.Reader, nodeName string, timeout, interval time.Duration, log logr.Logger) error {
	log.Info("Waiting for this node's pod CIDRs (detectLocalMode NodeCIDR)", "node", nodeName)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	err := wait.PollUntilContextCancel(ctx, interval, true, func(ctx context.Context) (bool, error) {
		n := &v1.Node{}
		if err := c.Get(ctx, client.ObjectKey{Name: nodeName}, n); err != nil {
			last = err
			return false, nil
		}
		last = nil
		if n.DeletionTimestamp != nil {
			last = fmt.Errorf("node %s is being deleted", nodeName)
			return false, nil
		}
		if len(n.Spec.PodCIDRs) == 0 && n.Spec.PodCIDR == "" {
			last = fmt.Errorf("node %s has no spec.podCIDRs", nodeName)
			return false, nil
		}
		log.Info("Node pod CIDRs", "podCIDRs", n.Spec.PodCIDRs)
		return true, nil
	})
	if err != nil {
		if last == nil {
			last = err
		}
		return fmt.Errorf("detectLocalMode NodeCIDR needs the node's pod CIDRs: gave up after %v: %w", timeout, last)
	}
	return nil
}
