package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	v1alpha1 "k8s.io/kube-proxy/config/v1alpha1"
	"sigs.k8s.io/yaml"
)

// codecs decodes only kubeproxy.config.k8s.io/v1alpha1, strictly: unknown and duplicate
// fields are errors.
var codecs = func() serializer.CodecFactory {
	s := runtime.NewScheme()
	if err := v1alpha1.AddToScheme(s); err != nil {
		panic(err) // static registration; cannot fail
	}
	return serializer.NewCodecFactory(s, serializer.EnableStrict)
}()

// FileError is a configuration file that cannot be used as it is written.
type FileError struct {
	Path string
	// Problems lists every problem found, each naming the field it concerns when it
	// concerns one (for instance `unknown field "iptables.foo"`).
	Problems []string
}

// Error names the file and every problem.
func (e *FileError) Error() string {
	return fmt.Sprintf("config file %q: %s", e.Path, strings.Join(e.Problems, "; "))
}

// Load reads a KubeProxyConfiguration file (YAML or JSON), rejects unknown or duplicate
// fields, and applies kube-proxy's defaults.
func Load(path string) (*v1alpha1.KubeProxyConfiguration, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading config file: %w", err)
	}
	c, err := Decode(data)
	if err != nil {
		var fe *FileError
		if errors.As(err, &fe) {
			fe.Path = path
		}
		return nil, err
	}
	return c, nil
}

// Decode parses a KubeProxyConfiguration document strictly and applies kube-proxy's
// defaults. Errors are *FileError with an empty Path.
func Decode(data []byte) (*v1alpha1.KubeProxyConfiguration, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, &FileError{Problems: []string{"file is empty; want a kubeproxy.config.k8s.io/v1alpha1 KubeProxyConfiguration"}}
	}
	obj, gvk, err := codecs.UniversalDeserializer().Decode(data, nil, nil)
	if err != nil {
		if strict, ok := runtime.AsStrictDecodingError(err); ok {
			var problems []string
			for _, e := range strict.Errors() {
				problems = append(problems, e.Error())
			}
			return nil, &FileError{Problems: problems}
		}
		return nil, &FileError{Problems: []string{strings.TrimSpace(err.Error())}}
	}
	c, ok := obj.(*v1alpha1.KubeProxyConfiguration)
	if !ok {
		return nil, &FileError{Problems: []string{fmt.Sprintf("got %v, want kubeproxy.config.k8s.io/v1alpha1 KubeProxyConfiguration", gvk)}}
	}
	SetDefaults(c)
	return c, nil
}

// Marshal encodes a configuration as kubeproxy.config.k8s.io/v1alpha1 YAML with sorted
// keys, the form kube-proxy's --write-config-to produces.
func Marshal(c *v1alpha1.KubeProxyConfiguration) ([]byte, error) {
	out := c.DeepCopy()
	out.APIVersion = v1alpha1.SchemeGroupVersion.String()
	out.Kind = "KubeProxyConfiguration"
	return yaml.Marshal(out)
}

// WriteFile writes a configuration as Marshal encodes it.
func WriteFile(path string, c *v1alpha1.KubeProxyConfiguration) error {
	data, err := Marshal(c)
	if err != nil {
		return fmt.Errorf("encoding configuration: %w", err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		return fmt.Errorf("writing configuration: %w", err)
	}
	return nil
}
