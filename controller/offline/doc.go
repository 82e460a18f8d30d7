// Package offline feeds kproxy's model from a YAML file instead of an API server:
// Services, EndpointSlices and a Node in standard Kubernetes YAML, as `kubectl get -o
// yaml` prints them (several documents, or a List). It is what `kproxy render`, `kproxy
// trace` and the demo use, and lets kproxy run without a cluster.
//
// Errors name the file, the document's index and the field. A document that cannot be
// decoded, or an object the model rejects, is skipped; the others keep working.
package offline
