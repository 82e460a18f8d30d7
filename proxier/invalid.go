package proxier

import (
	"fmt"

	"k8s.io/apimachinery/pkg/util/validation/field"
)

// InvalidObjectError says why a Service, EndpointSlice or Node was left out of the model.
// The rest of the model is unaffected: one bad object never stops other services from
// being programmed. Callers report it (log, Event, metric) and carry on.
type InvalidObjectError struct {
	// Kind is "Service", "EndpointSlice" or "Node".
	Kind      string
	Namespace string
	Name      string
	// Service is the Service the object belongs to, when known, so an Event can be
	// attached to it; for a Service it is the Service itself.
	Service ServiceName
	// Errs lists every problem found, each with the field path it concerns.
	Errs field.ErrorList
}

// Error names the object and every field problem.
func (e *InvalidObjectError) Error() string {
	id := e.Name
	if e.Namespace != "" {
		id = e.Namespace + "/" + e.Name
	}
	return fmt.Sprintf("%s %s ignored: %v", e.Kind, id, e.Errs.ToAggregate())
}

// Reason returns a short machine-readable reason, the error type of the first problem
// ("FieldValueInvalid", "FieldValueRequired", ...), for metric labels and Event reasons.
func (e *InvalidObjectError) Reason() string {
	if len(e.Errs) == 0 {
		return "Invalid"
	}
	return string(e.Errs[0].Type)
}
