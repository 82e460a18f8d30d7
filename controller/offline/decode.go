package offline

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"

	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"
)

// Objects is the content of one file, by kind.
type Objects struct {
	Services       []*v1.Service
	EndpointSlices []*discovery.EndpointSlice
	Nodes          []*v1.Node
}

// DocumentError is a problem with one YAML document of a file.
type DocumentError struct {
	File string
	// Index is the document's 0-based position in the file (items of a List count
	// as documents of their own, in order).
	Index int
	// Object names the object ("Service default/web") when it could be read that far.
	Object string
	Err    error
}

// Error names the file, the document and, when known, the object.
func (e *DocumentError) Error() string {
	if e.Object != "" {
		return fmt.Sprintf("%s: document %d (%s): %v", e.File, e.Index, e.Object, e.Err)
	}
	return fmt.Sprintf("%s: document %d: %v", e.File, e.Index, e.Err)
}

// Unwrap returns the decoding or validation error, for errors.Is and errors.As.
func (e *DocumentError) Unwrap() error { return e.Err }

// ErrUnsupportedKind is wrapped by DocumentError for objects other than Services,
// EndpointSlices, Nodes and Lists of them.
var ErrUnsupportedKind = errors.New("unsupported kind: only Service, EndpointSlice, Node and List are read")

// strict rejects unknown and duplicate fields, so a typo in a hand-written file is an
// error naming the field rather than a silently ignored setting.
var strict = serializer.NewCodecFactory(scheme.Scheme, serializer.EnableStrict).UniversalDeserializer()

// Decode reads every document of a YAML stream. It returns the objects it could decode
// and one *DocumentError per document it could not; a stream that is not YAML at all
// yields a single error.
func Decode(file string, r io.Reader) (*Objects, []error) {
	out := &Objects{}
	var errs []error
	reader := utilyaml.NewYAMLReader(bufio.NewReader(r))
	index := 0
	for {
		doc, err := reader.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			errs = append(errs, &DocumentError{File: file, Index: index, Err: err})
			break
		}
		if len(bytes.TrimSpace(doc)) == 0 || isOnlyComments(doc) {
			continue
		}
		index = out.add(file, index, doc, &errs)
	}
	return out, errs
}

// add decodes one document (a List expands to its items) and returns the next index.
func (o *Objects) add(file string, index int, doc []byte, errs *[]error) int {
	obj, _, err := strict.Decode(doc, nil, nil)
	if err != nil {
		*errs = append(*errs, &DocumentError{File: file, Index: index, Object: peekName(doc), Err: err})
		return index + 1
	}
	switch t := obj.(type) {
	case *v1.Service:
		o.Services = append(o.Services, t)
	case *discovery.EndpointSlice:
		o.EndpointSlices = append(o.EndpointSlices, t)
	case *v1.Node:
		o.Nodes = append(o.Nodes, t)
	case *v1.List:
		for _, item := range t.Items {
			raw := item.Raw
			if raw == nil && item.Object != nil {
				raw, _ = runtime.Encode(scheme.Codecs.LegacyCodec(v1.SchemeGroupVersion), item.Object)
			}
			index = o.add(file, index, raw, errs)
		}
		return index
	default:
		*errs = append(*errs, &DocumentError{File: file, Index: index, Object: peekName(doc),
			Err: fmt.Errorf("%w (got %T)", ErrUnsupportedKind, obj)})
	}
	return index + 1
}

// peekName reads kind, namespace and name leniently, to say which object a document
// that failed strict decoding was meant to be.
func peekName(doc []byte) string {
	var meta struct {
		Kind     string `json:"kind"`
		Metadata struct {
			Namespace string `json:"namespace"`
			Name      string `json:"name"`
		} `json:"metadata"`
	}
	if utilyaml.Unmarshal(doc, &meta) != nil || meta.Kind == "" {
		return ""
	}
	id := meta.Metadata.Name
	if meta.Metadata.Namespace != "" {
		id = meta.Metadata.Namespace + "/" + id
	}
	return meta.Kind + " " + id
}

func isOnlyComments(doc []byte) bool {
	for _, line := range bytes.Split(doc, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if len(line) > 0 && line[0] != '#' {
			return false
		}
	}
	return true
}
