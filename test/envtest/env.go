package envtest

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client"
	crenvtest "sigs.k8s.io/controller-runtime/pkg/envtest"
)

// Options configures Start.
type Options struct {
	// ServiceCIDR is the apiserver's --service-cluster-ip-range. envtest's default is
	// a /24, too small for scale tests. Default 10.96.0.0/12.
	ServiceCIDR string
	// NoEndpointReconciler keeps the API server from publishing its own address as the
	// endpoint of the default/kubernetes Service (--endpoint-reconciler-type=none).
	// A stopping API server withdraws that endpoint, racing its own shutdown; tests
	// that stop it (StopAPIServer) and expect nothing to change set this.
	NoEndpointReconciler bool
}

// Env is a running control plane.
type Env struct {
	Config *rest.Config
	Client client.Client
	// Kubeconfig is a kubeconfig file for the apiserver, for binaries under test.
	Kubeconfig string
	// Version is the apiserver's reported git version.
	Version string
	env     *crenvtest.Environment
	dir     string
}

// Start runs a control plane for the test and stops it in t.Cleanup. It fails the test
// when the binaries cannot be found or built; it never skips.
func Start(t testing.TB, opts Options) *Env {
	t.Helper()
	e, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := e.Stop(); err != nil {
			t.Logf("stopping envtest: %v", err)
		}
	})
	t.Logf("envtest: real kube-apiserver %s at %s", e.Version, e.Config.Host)
	return e
}

// New runs a control plane; the caller must Stop it. For TestMain, where no testing.TB
// exists yet.
func New(opts Options) (*Env, error) {
	if opts.ServiceCIDR == "" {
		opts.ServiceCIDR = "10.96.0.0/12"
	}
	assets, err := Assets()
	if err != nil {
		return nil, fmt.Errorf("envtest binaries: %w", err)
	}
	dir, err := os.MkdirTemp("", "kproxy-envtest-")
	if err != nil {
		return nil, err
	}
	te := &crenvtest.Environment{BinaryAssetsDirectory: assets}
	api := te.ControlPlane.GetAPIServer()
	api.Configure().Set("service-cluster-ip-range", opts.ServiceCIDR)
	// Close open watches when stopping instead of waiting up to a minute for clients
	// (a proxy under test) to let go: a stop then takes well under envtest's 20 s.
	api.Configure().Set("shutdown-watch-termination-grace-period", "2s")
	if opts.NoEndpointReconciler {
		api.Configure().Set("endpoint-reconciler-type", "none")
	}
	// A certificate folder of our own outlives Stop (envtest deletes one it made
	// itself), so StartAPIServer serves the same certificates: clients holding the
	// old kubeconfig reconnect without noticing.
	api.CertDir = filepath.Join(dir, "apiserver")
	if err := os.Mkdir(api.CertDir, 0o700); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	cfg, err := te.Start()
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("starting kube-apiserver and etcd: %w", err)
	}
	e := &Env{Config: cfg, env: te, dir: dir}
	if err := e.init(); err != nil {
		_ = e.Stop()
		return nil, err
	}
	return e, nil
}

// StopAPIServer stops only the kube-apiserver, gracefully (SIGTERM), as an API server
// outage looks to a node: etcd and everything stored keep running. Connections to it
// are refused until StartAPIServer.
func (e *Env) StopAPIServer() error {
	return e.env.ControlPlane.APIServer.Stop()
}

// StartAPIServer starts the kube-apiserver StopAPIServer stopped again, on the same
// address and port, with the same serving certificates and client CA, against the same
// etcd, and waits until it is healthy: Config and Kubeconfig stay valid.
func (e *Env) StartAPIServer() error {
	return e.env.ControlPlane.APIServer.Start()
}

func (e *Env) init() error {
	e.Config.QPS, e.Config.Burst = 1000, 2000
	var err error
	if e.Client, err = client.New(e.Config, client.Options{}); err != nil {
		return fmt.Errorf("client: %w", err)
	}
	dc, err := discovery.NewDiscoveryClientForConfig(e.Config)
	if err != nil {
		return fmt.Errorf("discovery client: %w", err)
	}
	v, err := dc.ServerVersion()
	if err != nil {
		return fmt.Errorf("apiserver version: %w", err)
	}
	e.Version = v.GitVersion
	e.Kubeconfig = filepath.Join(e.dir, "kubeconfig")
	return WriteKubeconfig(e.Config, e.Kubeconfig)
}

// Stop stops the control plane and removes its files.
func (e *Env) Stop() error {
	defer os.RemoveAll(e.dir)
	return e.env.Stop()
}

// WriteKubeconfig writes a kubeconfig file that reaches the API server cfg points at.
func WriteKubeconfig(cfg *rest.Config, path string) error {
	kc := clientcmdapi.NewConfig()
	kc.Clusters["envtest"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos["envtest"] = &clientcmdapi.AuthInfo{ClientCertificateData: cfg.CertData, ClientKeyData: cfg.KeyData, Token: cfg.BearerToken}
	kc.Contexts["envtest"] = &clientcmdapi.Context{Cluster: "envtest", AuthInfo: "envtest"}
	kc.CurrentContext = "envtest"
	return clientcmd.WriteToFile(*kc, path)
}

var (
	assetsOnce sync.Once
	assetsDir  string
	assetsErr  error
)

// Assets returns the folder holding kube-apiserver and etcd: KUBEBUILDER_ASSETS when
// set, else the cache hack/envtest-assets.sh fills (building on first use).
func Assets() (string, error) {
	assetsOnce.Do(func() {
		if d := os.Getenv("KUBEBUILDER_ASSETS"); d != "" {
			assetsDir = d
			return
		}
		assetsDir, assetsErr = runHack("envtest-assets.sh", "envtest")
	})
	return assetsDir, assetsErr
}

// KubeProxyBinary returns upstream kube-proxy built from the same Kubernetes release,
// for side-by-side comparisons.
func KubeProxyBinary() (string, error) {
	dir, err := runHack("envtest-assets.sh", "kube-proxy")
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, "kube-proxy"), nil
}

// runHack runs a script from the repository's hack folder and returns the last line of
// its output.
func runHack(script string, args ...string) (string, error) {
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	var out, errb bytes.Buffer
	cmd := exec.Command("bash", append([]string{filepath.Join(root, "hack", script)}, args...)...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return "", &ScriptError{Script: script, Err: err, Stderr: errb.String()}
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	return lines[len(lines)-1], nil
}

// ScriptError is a failed hack script, with what it printed.
type ScriptError struct {
	Script string
	Err    error
	Stderr string
}

// Error includes what the script printed on stderr, which says what was missing.
func (e *ScriptError) Error() string {
	return "hack/" + e.Script + ": " + e.Err.Error() + "\n" + e.Stderr
}

// Unwrap returns the exec error.
func (e *ScriptError) Unwrap() error { return e.Err }

// RepoRoot finds the module root by walking up from the working directory.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", os.ErrNotExist
		}
		dir = parent
	}
}
