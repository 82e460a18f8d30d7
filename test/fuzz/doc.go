// Package fuzz holds the bad-input fuzz tests of the model and the iptables renderer.
//
// FuzzModelRender decodes its input bytes into a small cluster (a Node, Services and
// EndpointSlices, valid and invalid) through a structured generator, so the fuzzer
// explores meaningful shapes instead of YAML noise. Each cluster goes through
// proxier.Builder and iptables.Render for both families, and the test checks that
// nothing panics, that the model keeps its invariants, that the payload restores into
// the validating fake and (for the seed corpus and a sample of fuzzed inputs) into real
// iptables-restore --test inside a network namespace the test creates, and that the
// packet tracer sends cluster-IP and external packets exactly where
// proxier.CategorizeEndpoints says they may go.
//
// FuzzDecode feeds raw bytes through controller/offline.Decode and the same model and
// renderer, for the YAML path kproxy render and kproxy trace use.
//
// The seed corpus under testdata/fuzz is generated from the scenarios in seeds_test.go
// (go test ./test/fuzz -run TestSeedCorpus -update-seeds rewrites it) and runs with
// every plain go test.
package fuzz
