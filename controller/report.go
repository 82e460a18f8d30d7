package controller

import (
	"context"
	"sync"

	"github.com/go-logr/logr"
	"golang.org/x/time/rate"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kproxy/kproxy/proxier"
	"github.com/kproxy/kproxy/proxier/metrics"
)

const (
	kindService = "Service"
	kindSlice   = "EndpointSlice"
	// maxEventNote is the API's limit on an Event's note.
	maxEventNote = 1024
)

// Reporter tells operators about objects left out of the model.
type Reporter interface {
	// Invalid reports obj, which the model skipped for the reasons in err.
	Invalid(ctx context.Context, obj client.Object, err *proxier.InvalidObjectError)
	// Forget drops what was remembered about a deleted object.
	Forget(kind, namespace, name string)
}

// ReporterOptions configures the default Reporter.
type ReporterOptions struct {
	// Recorder emits Events; nil disables them.
	Recorder events.EventRecorder
	// Client finds the Service an invalid EndpointSlice belongs to, so the Event lands
	// where `kubectl describe service` shows it. May be nil.
	Client  client.Reader
	Metrics *metrics.Metrics
	Logger  logr.Logger
	// EventsPerSecond and EventBurst bound the Event rate, so a flood of bad objects
	// cannot flood the API server. Defaults 5 and 50.
	EventsPerSecond float64
	EventBurst      int
}

// NewReporter returns the default Reporter: one log line, one Event and one metric
// increment per version of each invalid object, however often it is reconciled.
func NewReporter(opts ReporterOptions) Reporter {
	if opts.EventsPerSecond <= 0 {
		opts.EventsPerSecond = 5
	}
	if opts.EventBurst <= 0 {
		opts.EventBurst = 50
	}
	return &reporter{opts: opts, seen: map[objectKey]string{},
		limiter: rate.NewLimiter(rate.Limit(opts.EventsPerSecond), opts.EventBurst)}
}

type objectKey struct{ kind, namespace, name string }

type reporter struct {
	opts    ReporterOptions
	limiter *rate.Limiter
	mu      sync.Mutex
	seen    map[objectKey]string // resourceVersion last reported
}

func (r *reporter) Invalid(ctx context.Context, obj client.Object, err *proxier.InvalidObjectError) {
	key := objectKey{err.Kind, obj.GetNamespace(), obj.GetName()}
	r.mu.Lock()
	if r.seen[key] == obj.GetResourceVersion() && obj.GetResourceVersion() != "" {
		r.mu.Unlock()
		return
	}
	r.seen[key] = obj.GetResourceVersion()
	r.mu.Unlock()

	r.opts.Logger.Info("Ignoring invalid object; other services are unaffected",
		"kind", err.Kind, "namespace", obj.GetNamespace(), "name", obj.GetName(), "reason", err.Reason(), "error", err.Errs.ToAggregate().Error())
	if r.opts.Metrics != nil {
		r.opts.Metrics.InvalidObject(err.Kind, err.Reason())
	}
	if r.opts.Recorder == nil || !r.limiter.Allow() {
		return
	}
	regarding, related := r.eventTargets(ctx, obj, err)
	note := err.Error()
	if len(note) > maxEventNote {
		note = note[:maxEventNote-3] + "..."
	}
	r.opts.Recorder.Eventf(regarding, related, corev1.EventTypeWarning, "Invalid"+err.Kind, "ProgramProxyRules", "%s", note)
}

// eventTargets attaches an EndpointSlice's Event to its Service when that exists, so
// the warning shows up where operators look.
func (r *reporter) eventTargets(ctx context.Context, obj client.Object, err *proxier.InvalidObjectError) (regarding, related client.Object) {
	if err.Kind != kindSlice || err.Service.Name == "" || r.opts.Client == nil {
		return obj, nil
	}
	svc := &corev1.Service{}
	if r.opts.Client.Get(ctx, types.NamespacedName{Namespace: err.Service.Namespace, Name: err.Service.Name}, svc) != nil {
		return obj, nil
	}
	return svc, obj
}

func (r *reporter) Forget(kind, namespace, name string) {
	r.mu.Lock()
	delete(r.seen, objectKey{kind, namespace, name})
	r.mu.Unlock()
}
