package scale

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	clientdiscovery "k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	crenvtest "sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/kproxy/kproxy/test/envtest"
)

// ClusterOptions configures the control plane.
type ClusterOptions struct {
	// ServiceCIDR is the apiserver's service range; default 10.96.0.0/12.
	ServiceCIDR string
	// NodePortRange is the apiserver's --service-node-port-range. The default range
	// (2,768 ports) is too small: 30% of the Services need a node port. The default here,
	// 30000-49999, stays clear of every port the harness listens on in the node.
	NodePortRange string
	// Workers is how many goroutines create objects in parallel; default 16.
	Workers int
	// Workload generates the Services.
	Workload Workload
}

// Cluster is a running control plane holding the synthetic cluster.
type Cluster struct {
	Config  *rest.Config
	Client  client.Client
	Version string

	opts ClusterOptions
	env  *crenvtest.Environment
	dir  string

	mu     sync.Mutex
	slices []*discovery.EndpointSlice // index i: Service i's slice, as last written
}

// StartCluster starts kube-apiserver and etcd (the envtest binaries of test/envtest)
// and creates the workload's namespaces. The caller must Stop it.
//
// It does not use envtest.New because that cannot widen the node-port range.
func StartCluster(opts ClusterOptions) (*Cluster, error) {
	if opts.ServiceCIDR == "" {
		opts.ServiceCIDR = "10.96.0.0/12"
	}
	if opts.NodePortRange == "" {
		opts.NodePortRange = "30000-49999"
	}
	if opts.Workers <= 0 {
		opts.Workers = 16
	}
	assets, err := envtest.Assets()
	if err != nil {
		return nil, fmt.Errorf("envtest binaries: %w", err)
	}
	te := &crenvtest.Environment{BinaryAssetsDirectory: assets}
	args := te.ControlPlane.GetAPIServer().Configure()
	args.Set("service-cluster-ip-range", opts.ServiceCIDR)
	args.Set("service-node-port-range", opts.NodePortRange)
	// Parallel creation: the defaults (400/200) queue requests behind each other.
	args.Set("max-requests-inflight", "1000")
	args.Set("max-mutating-requests-inflight", "500")
	cfg, err := te.Start()
	if err != nil {
		return nil, fmt.Errorf("starting kube-apiserver and etcd: %w", err)
	}
	c := &Cluster{Config: cfg, env: te, opts: opts}
	if err := c.init(); err != nil {
		return nil, errors.Join(err, c.Stop())
	}
	return c, nil
}

func (c *Cluster) init() error {
	c.Config.QPS, c.Config.Burst = 5000, 10000
	var err error
	if c.Client, err = client.New(c.Config, client.Options{}); err != nil {
		return fmt.Errorf("client: %w", err)
	}
	dc, err := clientdiscovery.NewDiscoveryClientForConfig(c.Config)
	if err != nil {
		return err
	}
	v, err := dc.ServerVersion()
	if err != nil {
		return fmt.Errorf("apiserver version: %w", err)
	}
	c.Version = v.GitVersion
	if c.dir, err = os.MkdirTemp("", "kproxy-scale-"); err != nil {
		return err
	}
	ctx := context.Background()
	for _, ns := range append(c.opts.Workload.NamespaceNames(), SentinelNamespace) {
		if err := c.Client.Create(ctx, &v1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			return fmt.Errorf("namespace %s: %w", ns, err)
		}
	}
	return nil
}

// Stop stops the control plane and removes its files.
func (c *Cluster) Stop() error {
	if c.dir != "" {
		defer os.RemoveAll(c.dir)
	}
	return c.env.Stop()
}

// Services is how many workload Services exist.
func (c *Cluster) Services() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.slices)
}

// Grow creates Services (and their EndpointSlices; LoadBalancers also get their ingress
// IP) until the cluster holds n workload Services. It returns how long that took.
func (c *Cluster) Grow(ctx context.Context, n int) (time.Duration, error) {
	start := time.Now()
	from := c.Services()
	if n <= from {
		return 0, nil
	}
	created := make([]*discovery.EndpointSlice, n-from)
	var next atomic.Int64
	next.Store(int64(from))
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	for range c.opts.Workers {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				sl, err := c.createService(ctx, c.opts.Workload.Service(i))
				if err != nil {
					cancel(fmt.Errorf("service %d: %w", i, err))
					return
				}
				created[i-from] = sl
			}
		})
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return 0, err
	}
	c.mu.Lock()
	c.slices = append(c.slices, created...)
	c.mu.Unlock()
	return time.Since(start), nil
}

// createService creates one Service with its slice, retrying transient apiserver errors.
func (c *Cluster) createService(ctx context.Context, s ServiceSpec) (*discovery.EndpointSlice, error) {
	svc := s.Object()
	if err := retry(ctx, func() error { return c.Client.Create(ctx, svc) }); err != nil {
		return nil, err
	}
	if svc.ResourceVersion == "" {
		// A retried create found the first attempt's object.
		if err := c.Client.Get(ctx, client.ObjectKeyFromObject(svc), svc); err != nil {
			return nil, err
		}
	}
	if s.Kind == LoadBalancer {
		svc.Status.LoadBalancer.Ingress = []v1.LoadBalancerIngress{{IP: IngressIP(s.Index).String(), IPMode: ptr.To(v1.LoadBalancerIPModeVIP)}}
		if err := retry(ctx, func() error { return c.Client.Status().Update(ctx, svc) }); err != nil {
			return nil, fmt.Errorf("load balancer status: %w", err)
		}
	}
	sl := s.Slice()
	stampTrigger(sl, time.Now())
	if err := retry(ctx, func() error { return c.Client.Create(ctx, sl) }); err != nil {
		return nil, err
	}
	return sl, nil
}

// retry runs f until it succeeds, fails for good, or 5 attempts passed. Already
// existing objects (a retried create that had succeeded) count as success.
func retry(ctx context.Context, f func() error) error {
	var err error
	for attempt := range 5 {
		err = f()
		if err == nil || apierrors.IsAlreadyExists(err) && attempt > 0 {
			return nil
		}
		if !apierrors.IsServerTimeout(err) && !apierrors.IsTooManyRequests(err) && !apierrors.IsTimeout(err) &&
			!apierrors.IsServiceUnavailable(err) && !apierrors.IsInternalError(err) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Duration(attempt+1) * 200 * time.Millisecond):
		}
	}
	return err
}

// EnsureNode creates (or updates) the Node object the proxies run as: the node
// namespace's addresses as InternalIPs and its pod CIDR. Upstream kube-proxy programs
// nothing until the Node carries addresses.
func (c *Cluster) EnsureNode(ctx context.Context, name string, ips []netip.Addr, podCIDRs []netip.Prefix) error {
	n := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}
	for _, p := range podCIDRs {
		n.Spec.PodCIDRs = append(n.Spec.PodCIDRs, p.String())
	}
	if len(podCIDRs) > 0 {
		n.Spec.PodCIDR = n.Spec.PodCIDRs[0]
	}
	err := c.Client.Create(ctx, n)
	if apierrors.IsAlreadyExists(err) {
		err = c.Client.Get(ctx, client.ObjectKey{Name: name}, n)
	}
	if err != nil {
		return fmt.Errorf("node %s: %w", name, err)
	}
	n.Status.Addresses = nil
	for _, ip := range ips {
		n.Status.Addresses = append(n.Status.Addresses, v1.NodeAddress{Type: v1.NodeInternalIP, Address: ip.String()})
	}
	n.Status.Addresses = append(n.Status.Addresses, v1.NodeAddress{Type: v1.NodeHostName, Address: name})
	n.Status.Conditions = []v1.NodeCondition{{Type: v1.NodeReady, Status: v1.ConditionTrue, LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now()}}
	if err := c.Client.Status().Update(ctx, n); err != nil {
		return fmt.Errorf("node %s status: %w", name, err)
	}
	return nil
}

// Sentinel names: the Service backed by real pod servers.
const (
	SentinelNamespace = "scale-sentinel"
	SentinelName      = "sentinel"
)

// Sentinel is the Service whose traffic the harness measures. Its EndpointSlice holds
// exactly one endpoint, a real pod of the node.
type Sentinel struct {
	ClusterIP netip.Addr
	NodePort  uint16
	c         *Cluster
	slice     *discovery.EndpointSlice
	nodeName  string
}

// CreateSentinel creates the sentinel NodePort Service with its slice pointing at pod.
func (c *Cluster) CreateSentinel(ctx context.Context, nodeName string, pod netip.Addr) (*Sentinel, error) {
	svc := &v1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: SentinelNamespace, Name: SentinelName},
		Spec: v1.ServiceSpec{
			Type:  v1.ServiceTypeNodePort,
			Ports: []v1.ServicePort{{Name: "http", Port: ServicePort, TargetPort: intstr.FromInt32(TargetPort), Protocol: v1.ProtocolTCP}},
		},
	}
	if err := c.Client.Create(ctx, svc); err != nil {
		return nil, fmt.Errorf("sentinel service: %w", err)
	}
	s := &Sentinel{c: c, nodeName: nodeName, slice: newSlice(SentinelNamespace, SentinelName)}
	s.ClusterIP = netip.MustParseAddr(svc.Spec.ClusterIP)
	s.NodePort = uint16(svc.Spec.Ports[0].NodePort)
	s.setEndpoint(pod)
	if err := c.Client.Create(ctx, s.slice); err != nil {
		return nil, fmt.Errorf("sentinel slice: %w", err)
	}
	return s, nil
}

// Endpoint returns the sentinel's current endpoint.
func (s *Sentinel) Endpoint() netip.Addr {
	return netip.MustParseAddr(s.slice.Endpoints[0].Addresses[0])
}

func (s *Sentinel) setEndpoint(pod netip.Addr) {
	s.slice.Endpoints = []discovery.Endpoint{{
		Addresses:  []string{pod.String()},
		NodeName:   ptr.To(s.nodeName),
		Conditions: discovery.EndpointConditions{Ready: ptr.To(true), Serving: ptr.To(true), Terminating: ptr.To(false)},
	}}
	stampTrigger(s.slice, time.Now())
}

// MoveTo points the sentinel's slice at pod; a no-op when it already does.
func (s *Sentinel) MoveTo(ctx context.Context, pod netip.Addr) error {
	if s.Endpoint() == pod {
		return nil
	}
	s.setEndpoint(pod)
	if err := s.c.Client.Update(ctx, s.slice); err != nil {
		return fmt.Errorf("moving the sentinel to %s: %w", pod, err)
	}
	return nil
}

// kubeconfigFor writes a kubeconfig reaching the apiserver at host (a relay) and
// returns its path.
func (c *Cluster) kubeconfigFor(host, name string) (string, error) {
	cfg := rest.CopyConfig(c.Config)
	cfg.Host = "https://" + host
	path := filepath.Join(c.dir, name+".kubeconfig")
	return path, envtest.WriteKubeconfig(cfg, path)
}
