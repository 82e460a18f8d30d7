package main

import (
	"net/netip"
	"strings"
)

// parsePrefixes reads a comma-separated list of CIDRs, one per family, as kube-proxy's
// --cluster-cidr takes them.
func parsePrefixes(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, part := range strings.Split(s, ",") {
		p, err := netip.ParsePrefix(strings.TrimSpace(part))
		if err != nil {
			return nil, err
		}
		out = append(out, p.Masked())
	}
	return out, nil
}
