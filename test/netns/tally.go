package netns

import (
	"maps"
	"slices"
	"strconv"
	"strings"
)

// Labels returns the pods' labels, in order: the names a Reply's server carries, for
// comparing who answered with who should have.
func Labels(pods []*Pod) []string {
	out := make([]string, 0, len(pods))
	for _, p := range pods {
		out = append(out, p.Label)
	}
	return out
}

// FormatTally prints how often each server answered ("local-0×3, remote-0×1"), sorted
// by label, or "nobody"; test failures read better than a map.
func FormatTally(seen map[string]int) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(seen)) {
		parts = append(parts, k+"×"+strconv.Itoa(seen[k]))
	}
	if len(parts) == 0 {
		return "nobody"
	}
	return strings.Join(parts, ", ")
}
