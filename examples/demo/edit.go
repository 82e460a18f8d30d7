package main

import (
	"bytes"
	"fmt"
	"os"
	"slices"

	"sigs.k8s.io/yaml"

	"github.com/kproxy/kproxy/controller/offline"
)

// removeEndpoint rewrites the cluster file without the endpoint at ip, the way an
// EndpointSlice changes when a pod goes away. The file is replaced atomically so the
// watcher never reads half of it.
func removeEndpoint(path, ip string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	objs, errs := offline.Decode(path, bytes.NewReader(data))
	if len(errs) > 0 {
		return errs[0]
	}
	removed := false
	for _, s := range objs.EndpointSlices {
		s.Endpoints = slices.DeleteFunc(s.Endpoints, func(e discoveryEndpoint) bool {
			hit := len(e.Addresses) > 0 && e.Addresses[0] == ip
			removed = removed || hit
			return hit
		})
	}
	if !removed {
		return fmt.Errorf("%s has no endpoint %s", path, ip)
	}
	var out bytes.Buffer
	for _, obj := range objects(objs) {
		b, err := yaml.Marshal(obj)
		if err != nil {
			return err
		}
		out.WriteString("---\n")
		out.Write(b)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, out.Bytes(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func objects(o *offline.Objects) []any {
	var out []any
	for _, n := range o.Nodes {
		out = append(out, n)
	}
	for _, s := range o.Services {
		out = append(out, s)
	}
	for _, s := range o.EndpointSlices {
		out = append(out, s)
	}
	return out
}
