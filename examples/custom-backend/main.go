// Command custom-backend shows the shape a CNI or an eBPF data plane starts from when it
// embeds kproxy: it implements proxier.Proxier, and instead of programming a kernel it
// writes the endpoints each service port may reach, as one JSON document per sync.
//
// The model comes from a YAML file (-f) or a cluster (--kubeconfig); the backend code is
// the same either way.
//
//	go run ./examples/custom-backend -f controller/offline/testdata/cluster.yaml --node node-a --once
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/kproxy/kproxy/controller"
	"github.com/kproxy/kproxy/controller/offline"
	"github.com/kproxy/kproxy/proxier"
)

// ServiceView is what the exporter prints for one service port.
type ServiceView struct {
	Name       string   `json:"name"`
	ClusterIPs []string `json:"clusterIPs"`
	Port       uint16   `json:"port"`
	NodePort   uint16   `json:"nodePort,omitempty"`
	// Cluster and Local are the endpoints traffic under each policy may reach from
	// this node, after kproxy's endpoint selection.
	Cluster []string `json:"cluster"`
	Local   []string `json:"local,omitempty"`
	// Reject is set when the port has no usable endpoint anywhere.
	Reject bool `json:"reject,omitempty"`
}

// Exporter is the custom backend: a proxier.Proxier that owns no kernel state.
type Exporter struct {
	Out io.Writer
	// Once stops the program after the first sync (for scripts and tests).
	Once   bool
	synced chan struct{}
}

// Sync prints the desired state. A real data plane would diff it against its maps here,
// using changes to touch only the service ports that changed.
func (e *Exporter) Sync(_ context.Context, s *proxier.State, changes proxier.ChangeSet) error {
	views := make([]ServiceView, 0, s.Len())
	for _, sp := range s.ServicePorts() {
		sel := proxier.CategorizeEndpoints(sp, &s.Node)
		v := ServiceView{Name: sp.Name.String(), Port: sp.Port, NodePort: sp.NodePort, Reject: !sel.HasAny,
			Cluster: addrs(sel.Cluster), Local: addrs(sel.Local)}
		for _, ip := range sp.ClusterIPs {
			v.ClusterIPs = append(v.ClusterIPs, ip.String())
		}
		views = append(views, v)
	}
	doc := map[string]any{"generation": s.Generation, "full": changes.Full, "node": s.Node.Name, "services": views}
	enc := json.NewEncoder(e.Out)
	enc.SetIndent("", "  ")
	if err := enc.Encode(doc); err != nil {
		return err
	}
	if e.Once && e.synced != nil {
		close(e.synced)
		e.synced = nil
	}
	return nil
}

// Cleanup has nothing to remove.
func (e *Exporter) Cleanup(context.Context) error { return nil }

func addrs(eps []*proxier.Endpoint) []string {
	out := make([]string, 0, len(eps))
	for _, ep := range eps {
		out = append(out, ep.String())
	}
	return out
}

func main() {
	file := flag.String("f", "", "read Services, EndpointSlices and the Node from this YAML file instead of a cluster")
	// --kubeconfig is registered by controller-runtime's config loader.
	node := flag.String("node", "", "the node this backend runs on (required)")
	once := flag.Bool("once", false, "exit after the first sync")
	flag.Parse()
	log := funcr.New(func(prefix, args string) { fmt.Fprintln(os.Stderr, prefix, args) }, funcr.Options{})
	if err := run(*file, *node, *once, log); err != nil {
		fmt.Fprintln(os.Stderr, "custom-backend:", err)
		os.Exit(1)
	}
}

func run(file, node string, once bool, log logr.Logger) error {
	if node == "" {
		return errors.New("--node is required")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	exp := &Exporter{Out: os.Stdout, Once: once, synced: make(chan struct{})}
	if once {
		var cancel context.CancelFunc
		ctx, cancel = context.WithCancel(ctx)
		defer cancel()
		go func() {
			select {
			case <-exp.synced:
				cancel()
			case <-ctx.Done():
			}
		}()
	}
	runner := proxier.RunnerOptions{MinSyncPeriod: 0, Logger: log}
	if file != "" {
		b := proxier.NewBuilder(proxier.BuilderOptions{NodeName: node})
		src := offline.New(offline.Options{Path: file, Builder: b, Logger: log})
		errc := make(chan error, 1)
		go func() { errc <- src.Start(ctx) }()
		go func() { errc <- proxier.NewRunner(b, exp, runner).Start(ctx) }()
		if err := <-errc; err != nil {
			return err
		}
		return nil
	}
	cfg, err := ctrl.GetConfig()
	if err != nil {
		return err
	}
	mgr, err := ctrl.NewManager(cfg, manager.Options{Cache: controller.CacheOptions(node),
		Metrics: metricsserver.Options{BindAddress: "0"}, Logger: log})
	if err != nil {
		return err
	}
	if _, err := controller.Setup(mgr, controller.Options{NodeName: node, Proxier: exp, Runner: runner}); err != nil {
		return err
	}
	return mgr.Start(ctx)
}
