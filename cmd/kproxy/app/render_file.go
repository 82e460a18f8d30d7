package app

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"

	utilyaml "k8s.io/apimachinery/pkg/util/yaml"

	"github.com/kproxy/kproxy/controller/offline"
	"github.com/kproxy/kproxy/proxier"
)

// clusterFile is a YAML file of API objects, read the way offline.Source reads it, plus
// where each object is so problems can name the document.
type clusterFile struct {
	path  string
	nodes []string
	// docs maps "Kind namespace/name" to the index offline.Decode gives its document.
	docs map[string]int
}

// loadClusterFile reads path; it fails only when the file cannot be read.
func loadClusterFile(path string) (*clusterFile, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	f := &clusterFile{path: path, docs: map[string]int{}}
	objs, _ := offline.Decode(path, bytes.NewReader(data))
	for _, n := range objs.Nodes {
		if !slices.Contains(f.nodes, n.Name) {
			f.nodes = append(f.nodes, n.Name)
		}
	}
	f.indexDocuments(data)
	return f, nil
}

// build loads the file into a Builder and returns its State and the problems found,
// in document order.
func (f *clusterFile) build(opts proxier.BuilderOptions) (*proxier.State, []string, error) {
	type problem struct {
		index int
		msg   string
	}
	var problems []problem
	b := proxier.NewBuilder(opts)
	src := offline.New(offline.Options{Path: f.path, Builder: b, OnError: func(err error) {
		var de *offline.DocumentError
		var inv *proxier.InvalidObjectError
		switch {
		case errors.As(err, &de):
			problems = append(problems, problem{de.Index, err.Error()})
		case errors.As(err, &inv):
			id := inv.Kind + " " + inv.Name
			if inv.Namespace != "" {
				id = inv.Kind + " " + inv.Namespace + "/" + inv.Name
			}
			idx, ok := f.docs[id]
			if !ok {
				problems = append(problems, problem{-1, err.Error()})
				break
			}
			problems = append(problems, problem{idx, fmt.Sprintf("%s: document %d (%s): ignored: %v", f.path, idx, id, inv.Errs.ToAggregate())})
		default:
			problems = append(problems, problem{-1, err.Error()})
		}
	}})
	if err := src.Load(); err != nil {
		return nil, nil, err
	}
	st, _ := b.Snapshot()
	slices.SortStableFunc(problems, func(a, b problem) int {
		if (a.index < 0) != (b.index < 0) {
			return cmp.Compare(b.index, a.index) // unplaced problems last
		}
		return cmp.Compare(a.index, b.index)
	})
	out := make([]string, len(problems))
	for i, p := range problems {
		out[i] = p.msg
	}
	return st, out, nil
}

// docPeek is what indexing needs from a document.
type docPeek struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Namespace string `json:"namespace"`
		Name      string `json:"name"`
	} `json:"metadata"`
	Items []json.RawMessage `json:"items"`
}

// indexDocuments numbers the documents as offline.Decode does (skipping empty ones and
// counting each item of a v1 List as one document) and records each object's number.
// A List whose numbering cannot be reproduced (one offline.Decode rejects as a whole)
// maps all its objects to its first number.
func (f *clusterFile) indexDocuments(data []byte) {
	reader := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	index := 0
	for {
		doc, err := reader.Read()
		if err != nil { // io.EOF, or a broken stream offline.Decode reports
			return
		}
		if len(bytes.TrimSpace(doc)) == 0 || onlyComments(doc) {
			continue
		}
		objs, errs := offline.Decode(f.path, bytes.NewReader(doc))
		n := len(objs.Services) + len(objs.EndpointSlices) + len(objs.Nodes) + len(errs)
		local := map[string]int{}
		if next := peekDocument(doc, index, local); next-index != n {
			for k := range local {
				local[k] = index
			}
		}
		for k, v := range local {
			f.docs[k] = v
		}
		index += n
	}
}

// peekDocument records the objects of doc from index on and returns the next index.
func peekDocument(doc []byte, index int, into map[string]int) int {
	var p docPeek
	if utilyaml.Unmarshal(doc, &p) != nil {
		return index + 1
	}
	if p.Kind == "List" && p.APIVersion == "v1" {
		for _, item := range p.Items {
			index = peekDocument(item, index, into)
		}
		return index
	}
	id := p.Kind + " " + p.Metadata.Name
	if p.Metadata.Namespace != "" {
		id = p.Kind + " " + p.Metadata.Namespace + "/" + p.Metadata.Name
	}
	into[id] = index
	return index + 1
}

func onlyComments(doc []byte) bool {
	for _, line := range bytes.Split(doc, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if len(line) > 0 && line[0] != '#' {
			return false
		}
	}
	return true
}
