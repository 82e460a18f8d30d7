// Command offline runs kproxy's iptables proxier without a cluster: Services,
// EndpointSlices and the Node come from a YAML file (as `kubectl get -o yaml` prints
// them), which is watched for changes. It is what `make demo` runs inside its sandbox,
// and the smallest complete embedding of the library:
//
//	Builder  <- offline.Source (the file)
//	Runner   -> iptables.NewNodeProxier (the kernel)
//
// Run it as root on a throwaway machine or inside a network namespace:
//
//	ip netns exec mynode offline -f cluster.yaml --node demo-node
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"

	"github.com/kproxy/kproxy/controller/offline"
	"github.com/kproxy/kproxy/iptables"
	"github.com/kproxy/kproxy/proxier"
)

func main() {
	file := flag.String("f", "", "YAML file with Services, EndpointSlices and this node's Node (required)")
	node := flag.String("node", "", "name of this node in the file (required)")
	minSync := flag.Duration("min-sync-period", 0, "shortest time between two syncs")
	clusterCIDR := flag.String("cluster-cidr", "", "pod CIDR of the cluster, to tell pod traffic from external traffic")
	cleanup := flag.Bool("cleanup-on-exit", false, "remove the rules on exit (kproxy itself leaves them, so traffic survives a restart)")
	verbose := flag.Int("v", 0, "log verbosity")
	flag.Parse()
	log := funcr.New(func(prefix, args string) { fmt.Fprintln(os.Stderr, prefix, args) },
		funcr.Options{Verbosity: *verbose, LogTimestamp: true})
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, options{*file, *node, *minSync, *clusterCIDR, *cleanup}, log); err != nil {
		fmt.Fprintln(os.Stderr, "offline:", err)
		os.Exit(1)
	}
}

type options struct {
	file, node    string
	minSync       time.Duration
	clusterCIDR   string
	cleanupOnExit bool
}

func run(ctx context.Context, o options, log logr.Logger) error {
	if o.file == "" || o.node == "" {
		return errors.New("-f and --node are required")
	}
	render := iptables.RenderOptions{}
	if o.clusterCIDR != "" {
		cidrs, err := parsePrefixes(o.clusterCIDR)
		if err != nil {
			return fmt.Errorf("--cluster-cidr: %w", err)
		}
		render.LocalDetector = iptables.LocalDetector{Mode: iptables.LocalModeClusterCIDR, CIDRs: cidrs}
	}
	p, err := iptables.NewNodeProxier(ctx, iptables.NodeOptions{Render: render, Logger: log.WithName("iptables")})
	if err != nil {
		return err
	}
	defer p.Close()
	b := proxier.NewBuilder(proxier.BuilderOptions{NodeName: o.node})
	src := offline.New(offline.Options{Path: o.file, Builder: b, Logger: log.WithName("offline")})
	runner := proxier.NewRunner(b, p, proxier.RunnerOptions{
		MinSyncPeriod: o.minSync,
		Observers:     []proxier.SyncObserver{syncLogger{log.WithName("sync")}},
		Logger:        log.WithName("runner"),
	})

	errc := make(chan error, 2)
	go func() { errc <- src.Start(ctx) }()
	go func() { errc <- runner.Start(ctx) }()
	for range 2 {
		if err := <-errc; err != nil {
			return err
		}
	}
	if o.cleanupOnExit {
		log.Info("Removing the rules")
		return p.Cleanup(context.Background())
	}
	log.Info("Stopped; the rules stay in place")
	return nil
}

// syncLogger prints one line per sync, so a reader of the demo sees kproxy react.
type syncLogger struct{ log logr.Logger }

func (l syncLogger) SyncQueued(time.Time) {}

func (l syncLogger) SyncDone(r proxier.SyncResult) {
	if r.Err != nil {
		l.log.Error(r.Err, "Sync failed")
		return
	}
	l.log.Info("Synced", "full", r.Changes.Full, "changedServicePorts", len(r.Changes.Services),
		"servicePorts", r.State.Len(), "took", r.Duration.Round(time.Microsecond))
}
