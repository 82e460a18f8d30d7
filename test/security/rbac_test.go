package security

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"

	authzv1 "k8s.io/api/authorization/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/kproxy/kproxy/test/envtest"
)

// kproxy's ServiceAccount as the API server authenticates it: its user and groups.
var (
	saUser   = "system:serviceaccount:kube-system:kproxy"
	saGroups = []string{"system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"}
)

// resource is one API resource (or subresource) a verb is checked on.
type resource struct{ group, resource, subresource string }

// granted is every permission kproxy's ServiceAccount must have, exactly:
// Services and EndpointSlices are only listed and watched (informers; never read one by
// one, never written), Nodes are got, listed and watched (RBAC cannot narrow list and
// watch to one name; kproxy's cache asks only for its own node with a field selector),
// and events.k8s.io Events are created and patched.
var granted = map[resource][]string{
	{"", "services", ""}:                       {"list", "watch"},
	{"discovery.k8s.io", "endpointslices", ""}: {"list", "watch"},
	{"", "nodes", ""}:                          {"get", "list", "watch"},
	{"events.k8s.io", "events", ""}:            {"create", "patch"},
}

// TestClusterRoleGrantsExactlyWhatKproxyNeeds applies examples/daemonset/rbac.yaml to a
// real apiserver and asks its authorizer (SubjectAccessReview), for every verb on every
// resource kproxy touches or must never touch, whether the ServiceAccount may: the
// answer must be yes exactly for the granted verbs. examples/daemonset checks the
// manifest's text and samples real requests; this is the exhaustive matrix, covering
// writes to Services, EndpointSlices, Nodes and their status, and any access to
// Secrets, as the API server really decides them (aggregated and default roles
// included).
func TestClusterRoleGrantsExactlyWhatKproxyNeeds(t *testing.T) {
	env := sharedEnv(t)
	applyManifest(t, env, "examples/daemonset/rbac.yaml")

	verbs := []string{"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"}
	checked := []resource{
		{"", "services", ""}, {"", "services", "status"}, {"", "services", "proxy"},
		{"discovery.k8s.io", "endpointslices", ""}, {"", "endpoints", ""},
		{"", "nodes", ""}, {"", "nodes", "status"}, {"", "nodes", "proxy"},
		{"events.k8s.io", "events", ""}, {"", "events", ""},
		{"", "secrets", ""}, {"", "configmaps", ""}, {"", "pods", ""}, {"", "serviceaccounts", "token"},
		{"coordination.k8s.io", "leases", ""}, {"rbac.authorization.k8s.io", "clusterroles", ""},
	}
	ctx := context.Background()
	for _, r := range checked {
		for _, v := range verbs {
			sar := &authzv1.SubjectAccessReview{Spec: authzv1.SubjectAccessReviewSpec{
				User: saUser, Groups: saGroups,
				ResourceAttributes: &authzv1.ResourceAttributes{Group: r.group, Resource: r.resource, Subresource: r.subresource, Verb: v},
			}}
			if err := env.Client.Create(ctx, sar); err != nil {
				t.Fatal(err)
			}
			want := slices.Contains(granted[r], v)
			if sar.Status.Allowed != want {
				t.Errorf("%s %s (group %q, subresource %q): allowed=%v, want %v (%s)", v, r.resource, r.group, r.subresource,
					sar.Status.Allowed, want, sar.Status.Reason)
			}
		}
	}
}

// applyManifest creates (or leaves, when they exist) every object of a manifest file
// of the repository.
func applyManifest(t *testing.T, env *envtest.Env, path string) {
	t.Helper()
	root, err := envtest.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(root, path))
	if err != nil {
		t.Fatal(err)
	}
	for _, doc := range bytes.Split(data, []byte("\n---")) {
		obj := &unstructured.Unstructured{}
		if err := yaml.Unmarshal(doc, &obj.Object); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if len(obj.Object) == 0 {
			continue
		}
		if err := env.Client.Create(context.Background(), obj); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatalf("%s: creating %s %s: %v", path, obj.GetKind(), obj.GetName(), err)
		}
	}
}
