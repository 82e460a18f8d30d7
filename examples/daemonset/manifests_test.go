package daemonset

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/spf13/pflag"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/kproxy/kproxy/cmd/kproxy/app/config"
	"github.com/kproxy/kproxy/test/envtest"
)

// manifestFiles are applied in this order, as the guide applies them.
var manifestFiles = []string{"rbac.yaml", "configmap.yaml", "daemonset.yaml"}

// doc is one YAML document of a manifest file.
type doc struct {
	file string
	raw  []byte
	obj  *unstructured.Unstructured
}

func (d doc) String() string {
	return d.file + ": " + d.obj.GetKind() + " " + d.obj.GetNamespace() + "/" + d.obj.GetName()
}

// readDocs splits a manifest file into its documents, rejecting duplicate keys and
// documents without an object (a stray "---" with comments only is skipped).
func readDocs(t *testing.T, file string) []doc {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var docs []doc
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for {
		raw, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		js, err := yaml.YAMLToJSONStrict(raw)
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		if bytes.Equal(bytes.TrimSpace(js), []byte("null")) {
			continue
		}
		obj := &unstructured.Unstructured{}
		if err := obj.UnmarshalJSON(js); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		docs = append(docs, doc{file: file, raw: raw, obj: obj})
	}
	return docs
}

func allDocs(t *testing.T) []doc {
	t.Helper()
	var all []doc
	for _, f := range manifestFiles {
		all = append(all, readDocs(t, f)...)
	}
	return all
}

// typed converts a manifest document into its Go type.
func typed[T any](t *testing.T, docs []doc, kind string) *T {
	t.Helper()
	for _, d := range docs {
		if d.obj.GetKind() == kind {
			out := new(T)
			if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(d.obj.Object, out, true); err != nil {
				t.Fatalf("%s: %v", d, err)
			}
			return out
		}
	}
	t.Fatalf("no %s in %v", kind, manifestFiles)
	return nil
}

func TestManifestInventory(t *testing.T) {
	var got []string
	for _, d := range allDocs(t) {
		got = append(got, d.obj.GetAPIVersion()+" "+d.obj.GetKind()+" "+d.obj.GetNamespace()+"/"+d.obj.GetName())
	}
	want := []string{
		"v1 ServiceAccount kube-system/kproxy",
		"rbac.authorization.k8s.io/v1 ClusterRole /kproxy",
		"rbac.authorization.k8s.io/v1 ClusterRoleBinding /kproxy",
		"v1 ConfigMap kube-system/kproxy",
		"apps/v1 DaemonSet kube-system/kproxy",
	}
	if !slices.Equal(got, want) {
		t.Errorf("manifests hold\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

// wantPermissions is the ServiceAccount's complete set of permissions, per resource
// ("resource.group"; core resources without a group). Changing it is a review point:
// kproxy must not be able to do more than it needs.
var wantPermissions = map[string][]string{
	"services":                        {"list", "watch"},
	"endpointslices.discovery.k8s.io": {"list", "watch"},
	"nodes":                           {"get", "list", "watch"},
	"events.events.k8s.io":            {"create", "patch"},
}

// permissions flattens RBAC rules to resource -> sorted verbs, failing on anything a
// table of resources and verbs cannot express (wildcards, resource names, URLs).
func permissions(t *testing.T, rules []rbacv1.PolicyRule) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, r := range rules {
		if len(r.ResourceNames) > 0 || len(r.NonResourceURLs) > 0 {
			t.Errorf("rule %+v: resourceNames and nonResourceURLs are not expected", r)
		}
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				key := res
				if g != "" {
					key += "." + g
				}
				for _, v := range r.Verbs {
					if v == "*" || g == "*" || res == "*" {
						t.Errorf("rule %+v uses a wildcard", r)
					}
					if !slices.Contains(out[key], v) {
						out[key] = append(out[key], v)
					}
				}
			}
		}
	}
	for k := range out {
		sort.Strings(out[k])
	}
	return out
}

func checkPermissions(t *testing.T, where string, got map[string][]string) {
	t.Helper()
	for res, verbs := range wantPermissions {
		if !slices.Equal(got[res], verbs) {
			t.Errorf("%s: %s verbs = %v, want exactly %v", where, res, got[res], verbs)
		}
	}
	for res, verbs := range got {
		if _, ok := wantPermissions[res]; !ok {
			t.Errorf("%s: unexpected permission on %s: %v", where, res, verbs)
		}
	}
}

func TestRBACVerbsExactly(t *testing.T) {
	docs := allDocs(t)
	role := typed[rbacv1.ClusterRole](t, docs, "ClusterRole")
	checkPermissions(t, "rbac.yaml", permissions(t, role.Rules))
	if role.AggregationRule != nil {
		t.Error("the ClusterRole must not aggregate other roles")
	}

	sa := typed[corev1.ServiceAccount](t, docs, "ServiceAccount")
	binding := typed[rbacv1.ClusterRoleBinding](t, docs, "ClusterRoleBinding")
	wantSubject := rbacv1.Subject{Kind: "ServiceAccount", Name: sa.Name, Namespace: sa.Namespace}
	if len(binding.Subjects) != 1 || binding.Subjects[0] != wantSubject {
		t.Errorf("binding subjects = %+v, want only %+v", binding.Subjects, wantSubject)
	}
	wantRef := rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name}
	if binding.RoleRef != wantRef {
		t.Errorf("binding roleRef = %+v, want %+v", binding.RoleRef, wantRef)
	}
	ds := typed[appsv1.DaemonSet](t, docs, "DaemonSet")
	if ds.Namespace != sa.Namespace || ds.Spec.Template.Spec.ServiceAccountName != sa.Name {
		t.Errorf("DaemonSet %s/%s runs as %q, want ServiceAccount %s/%s",
			ds.Namespace, ds.Name, ds.Spec.Template.Spec.ServiceAccountName, sa.Namespace, sa.Name)
	}
}

// kproxyContainer returns the DaemonSet's kproxy container.
func kproxyContainer(t *testing.T, ds *appsv1.DaemonSet) corev1.Container {
	t.Helper()
	for _, c := range ds.Spec.Template.Spec.Containers {
		if c.Name == "kproxy" {
			return c
		}
	}
	t.Fatal("the DaemonSet has no kproxy container")
	return corev1.Container{}
}

func TestDaemonSetShape(t *testing.T) {
	docs := allDocs(t)
	ds := typed[appsv1.DaemonSet](t, docs, "DaemonSet")
	cm := typed[corev1.ConfigMap](t, docs, "ConfigMap")
	spec := ds.Spec.Template.Spec
	c := kproxyContainer(t, ds)

	if !spec.HostNetwork {
		t.Error("hostNetwork must be true: the proxy programs the node's network namespace")
	}
	if spec.PriorityClassName != "system-node-critical" {
		t.Errorf("priorityClassName = %q", spec.PriorityClassName)
	}
	if len(spec.Tolerations) != 1 || spec.Tolerations[0] != (corev1.Toleration{Operator: corev1.TolerationOpExists}) {
		t.Errorf("tolerations = %+v, want one that tolerates everything", spec.Tolerations)
	}
	if spec.NodeSelector[corev1.LabelOSStable] != "linux" || spec.NodeSelector["kproxy.io/enabled"] != "true" {
		t.Errorf("nodeSelector = %v", spec.NodeSelector)
	}
	if c.SecurityContext == nil || c.SecurityContext.Privileged == nil || !*c.SecurityContext.Privileged {
		t.Error("the kproxy container must be privileged, as kube-proxy's is")
	}
	if c.Image != "kproxy:dev" {
		t.Errorf("image = %q, want the kproxy:dev placeholder", c.Image)
	}
	u := ds.Spec.UpdateStrategy
	if u.Type != appsv1.RollingUpdateDaemonSetStrategyType || u.RollingUpdate == nil ||
		u.RollingUpdate.MaxUnavailable == nil || u.RollingUpdate.MaxUnavailable.IntValue() != 1 ||
		(u.RollingUpdate.MaxSurge != nil && u.RollingUpdate.MaxSurge.IntValue() != 0) {
		t.Errorf("updateStrategy = %+v, want RollingUpdate, maxUnavailable 1, no surge", u)
	}

	// The command line: kproxy's --config in the ConfigMap's mount, the node name.
	wantCmd := []string{"/usr/local/bin/kproxy", "--config=/var/lib/kproxy/config.conf", "--hostname-override=$(NODE_NAME)"}
	if !slices.Equal(c.Command, wantCmd) || len(c.Args) != 0 {
		t.Errorf("command = %q args = %q, want %q", c.Command, c.Args, wantCmd)
	}
	if len(c.Env) != 1 || c.Env[0].Name != "NODE_NAME" || c.Env[0].ValueFrom == nil ||
		c.Env[0].ValueFrom.FieldRef == nil || c.Env[0].ValueFrom.FieldRef.FieldPath != "spec.nodeName" {
		t.Errorf("env = %+v, want NODE_NAME from spec.nodeName", c.Env)
	}

	// Probes on kproxy's health server, which hostNetwork puts on the node's address.
	for _, p := range []struct {
		name  string
		probe *corev1.Probe
		path  string
	}{{"readiness", c.ReadinessProbe, "/healthz"}, {"liveness", c.LivenessProbe, "/livez"}} {
		if p.probe == nil || p.probe.HTTPGet == nil || p.probe.HTTPGet.Path != p.path ||
			p.probe.HTTPGet.Port.IntValue() != config.HealthzPort {
			t.Errorf("%s probe = %+v, want GET %s on port %d", p.name, p.probe, p.path, config.HealthzPort)
		}
	}

	// Volumes: the ConfigMap where --config and clientConnection.kubeconfig point, the
	// xtables lock shared with every other iptables user on the node, kernel modules.
	mounts := map[string]corev1.VolumeMount{}
	for _, m := range c.VolumeMounts {
		mounts[m.Name] = m
	}
	vols := map[string]corev1.Volume{}
	for _, v := range spec.Volumes {
		vols[v.Name] = v
	}
	cfgVol := vols["kproxy"]
	if cfgVol.ConfigMap == nil || cfgVol.ConfigMap.Name != cm.Name || mounts["kproxy"].MountPath != "/var/lib/kproxy" {
		t.Errorf("the config volume %+v / mount %+v does not put ConfigMap %s at /var/lib/kproxy", cfgVol, mounts["kproxy"], cm.Name)
	}
	for _, key := range []string{"config.conf", "kubeconfig.conf"} {
		if _, ok := cm.Data[key]; !ok {
			t.Errorf("ConfigMap %s has no %s", cm.Name, key)
		}
	}
	lock := vols["xtables-lock"]
	if lock.HostPath == nil || lock.HostPath.Path != "/run/xtables.lock" || lock.HostPath.Type == nil ||
		*lock.HostPath.Type != corev1.HostPathFileOrCreate || mounts["xtables-lock"].MountPath != "/run/xtables.lock" ||
		mounts["xtables-lock"].ReadOnly {
		t.Errorf("xtables lock: volume %+v mount %+v", lock, mounts["xtables-lock"])
	}
	mods := vols["lib-modules"]
	if mods.HostPath == nil || mods.HostPath.Path != "/lib/modules" || mounts["lib-modules"].MountPath != "/lib/modules" ||
		!mounts["lib-modules"].ReadOnly {
		t.Errorf("kernel modules: volume %+v mount %+v, want /lib/modules read-only", mods, mounts["lib-modules"])
	}

	// The guard against two proxies on one node waits on kproxy's own health port.
	if len(spec.InitContainers) != 1 || !strings.Contains(strings.Join(spec.InitContainers[0].Command, " "), "/dev/tcp/127.0.0.1/10256") ||
		spec.InitContainers[0].Image != c.Image {
		t.Errorf("init containers = %+v, want one waiting for port %d to be free, from the kproxy image", spec.InitContainers, config.HealthzPort)
	}
}

// TestConfigMapLoadsInKproxy puts the ConfigMap's configuration through kproxy's
// command line as the DaemonSet writes it (config.Options is what the binary's main
// parses, completes and validates with): it must load and validate without warnings
// and say what the ConfigMap says. (app.Main would do the same but also installs
// process-wide loggers, which would outlive this test.)
func TestConfigMapLoadsInKproxy(t *testing.T) {
	docs := allDocs(t)
	ds := typed[appsv1.DaemonSet](t, docs, "DaemonSet")
	cm := typed[corev1.ConfigMap](t, docs, "ConfigMap")
	cfgPath := filepath.Join(t.TempDir(), "config.conf")
	if err := os.WriteFile(cfgPath, []byte(cm.Data["config.conf"]), 0o644); err != nil {
		t.Fatal(err)
	}

	// The container's command, with the mount path mapped to the temporary file and
	// $(NODE_NAME) expanded as the kubelet does.
	var args []string
	for _, a := range kproxyContainer(t, ds).Command[1:] {
		a = strings.Replace(a, "/var/lib/kproxy/config.conf", cfgPath, 1)
		args = append(args, strings.ReplaceAll(a, "$(NODE_NAME)", "Node-A"))
	}
	opts := config.NewOptions()
	fs := pflag.NewFlagSet("kproxy", pflag.ContinueOnError)
	opts.AddFlags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatalf("kproxy %q: %v", args, err)
	}
	if err := opts.Complete(); err != nil {
		t.Fatal(err)
	}
	if err := opts.Validate(); err != nil {
		t.Fatal(err)
	}
	if len(opts.Warnings) > 0 {
		t.Errorf("kproxy warns about the configuration: %q", opts.Warnings)
	}
	c := opts.Config
	if opts.ConfigFile != cfgPath || c.Mode != config.ModeIPTables || c.ClusterCIDR != "10.244.0.0/16" ||
		c.HostnameOverride != "node-a" || c.ClientConnection.Kubeconfig != "/var/lib/kproxy/kubeconfig.conf" ||
		c.HealthzBindAddress != "0.0.0.0:10256" || c.DetectLocalMode != config.LocalModeClusterCIDR {
		t.Errorf("effective configuration: mode %q clusterCIDR %q hostnameOverride %q kubeconfig %q healthz %q detectLocalMode %q",
			c.Mode, c.ClusterCIDR, c.HostnameOverride, c.ClientConnection.Kubeconfig, c.HealthzBindAddress, c.DetectLocalMode)
	}

	// The kubeconfig authenticates as the Pod's ServiceAccount and talks to the API
	// server directly.
	kc, err := clientcmd.Load([]byte(cm.Data["kubeconfig.conf"]))
	if err != nil {
		t.Fatal(err)
	}
	ctx := kc.Contexts[kc.CurrentContext]
	if ctx == nil || kc.Clusters[ctx.Cluster] == nil || kc.AuthInfos[ctx.AuthInfo] == nil {
		t.Fatalf("kubeconfig current context %q does not resolve", kc.CurrentContext)
	}
	const saDir = "/var/run/secrets/kubernetes.io/serviceaccount/"
	cl, user := kc.Clusters[ctx.Cluster], kc.AuthInfos[ctx.AuthInfo]
	if cl.CertificateAuthority != saDir+"ca.crt" || user.TokenFile != saDir+"token" || !strings.HasPrefix(cl.Server, "https://") {
		t.Errorf("kubeconfig: server %q ca %q tokenFile %q", cl.Server, cl.CertificateAuthority, user.TokenFile)
	}
}

// apply server-side-applies one YAML document exactly as written, with strict field
// validation, so the API server rejects unknown or duplicate fields.
func apply(ctx context.Context, env *envtest.Env, dyn dynamic.Interface, d doc, body []byte) error {
	return applyWith(ctx, env, dyn, d, body, metav1.FieldValidationStrict)
}

func applyWith(ctx context.Context, env *envtest.Env, dyn dynamic.Interface, d doc, body []byte, validation string) error {
	gvk := d.obj.GroupVersionKind()
	m, err := env.Client.RESTMapper().RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		return err
	}
	var ri dynamic.ResourceInterface = dyn.Resource(m.Resource)
	if ns := d.obj.GetNamespace(); ns != "" {
		ri = dyn.Resource(m.Resource).Namespace(ns)
	}
	_, err = ri.Patch(ctx, d.obj.GetName(), types.ApplyPatchType, body, metav1.PatchOptions{
		FieldManager: "kproxy-test", Force: ptrTo(true), FieldValidation: validation,
	})
	return err
}

func ptrTo[T any](v T) *T { return &v }

// applyAll applies every manifest document and returns the environment.
func applyAll(t *testing.T) (*envtest.Env, dynamic.Interface) {
	t.Helper()
	env := envtest.Start(t, envtest.Options{})
	ctx := context.Background()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: metav1.NamespaceSystem}}
	if err := env.Client.Create(ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range allDocs(t) {
		if err := apply(ctx, env, dyn, d, d.raw); err != nil {
			t.Fatalf("applying %s: %v", d, err)
		}
	}
	return env, dyn
}

func TestManifestsApplyStrictly(t *testing.T) {
	env, dyn := applyAll(t)
	ctx := context.Background()

	// Applying again changes nothing and still passes.
	for _, d := range allDocs(t) {
		if err := apply(ctx, env, dyn, d, d.raw); err != nil {
			t.Errorf("re-applying %s: %v", d, err)
		}
	}

	// The API server's stored ClusterRole grants exactly the table.
	var role rbacv1.ClusterRole
	if err := env.Client.Get(ctx, client.ObjectKey{Name: "kproxy"}, &role); err != nil {
		t.Fatal(err)
	}
	checkPermissions(t, "stored ClusterRole", permissions(t, role.Rules))

	// The same requests reject a misspelt field and a duplicated one, so the checks
	// above mean something. Duplicates are only errors with strict field validation.
	ds := readDocs(t, "daemonset.yaml")[0]
	for _, c := range []struct{ name, from, to, want string }{
		{"unknown field", "      hostNetwork: true\n", "      hostNetwrk: true\n", "hostNetwrk"},
		{"duplicate field", "      hostNetwork: true\n", "      hostNetwork: true\n      hostNetwork: true\n", `"hostNetwork" already set`},
	} {
		body := bytes.Replace(ds.raw, []byte(c.from), []byte(c.to), 1)
		if bytes.Equal(body, ds.raw) {
			t.Fatalf("%s: daemonset.yaml has no %q", c.name, c.from)
		}
		err := apply(ctx, env, dyn, ds, body)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("applying a DaemonSet with a %s: got %v, want an error naming %q", c.name, err, c.want)
		}
		if c.name == "duplicate field" {
			if err := applyWith(ctx, env, dyn, ds, body, metav1.FieldValidationIgnore); err != nil {
				t.Errorf("without strict validation the duplicate should pass, so Strict is what catches it: %v", err)
			}
		}
	}
}

// TestGuideKeepsKubeProxyOff checks the guide's patch for kube-proxy's DaemonSet: valid
// JSON for a DaemonSet, and node affinity that excludes exactly the nodes kproxy's
// DaemonSet selects.
func TestGuideKeepsKubeProxyOff(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?s)kubectl -n kube-system patch daemonset kube-proxy -p '([^']*)'`).FindSubmatch(readme)
	if m == nil {
		t.Fatal("README.md has no `kubectl -n kube-system patch daemonset kube-proxy -p '...'` command")
	}
	var patch appsv1.DaemonSet
	if err := yaml.UnmarshalStrict(m[1], &patch); err != nil {
		t.Fatalf("the patch is not a valid DaemonSet fragment: %v\n%s", err, m[1])
	}
	a := patch.Spec.Template.Spec.Affinity
	if a == nil || a.NodeAffinity == nil || a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution == nil {
		t.Fatalf("the patch sets no required node affinity: %s", m[1])
	}
	terms := a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms
	ds := typed[appsv1.DaemonSet](t, allDocs(t), "DaemonSet")
	const key = "kproxy.io/enabled"
	want := corev1.NodeSelectorRequirement{Key: key, Operator: corev1.NodeSelectorOpNotIn, Values: []string{ds.Spec.Template.Spec.NodeSelector[key]}}
	if len(terms) != 1 || len(terms[0].MatchExpressions) != 1 || len(terms[0].MatchFields) != 0 ||
		!reflect.DeepEqual(terms[0].MatchExpressions[0], want) {
		t.Errorf("kube-proxy's node affinity terms = %+v, want only %+v", terms, want)
	}
}
