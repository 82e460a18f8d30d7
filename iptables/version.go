package iptables

import (
	"fmt"
	"regexp"
	"strconv"
)

// versionRE matches "iptables v1.8.9 (nf_tables)" and "ip6tables v1.6.1".
var versionRE = regexp.MustCompile(`v([0-9]+)\.([0-9]+)\.([0-9]+)(?:\s+\((\w+)\))?`)

// ParseVersion parses the output of "iptables --version". Versions before
// 1.8 print no variant; they are legacy.
func ParseVersion(out string) (Version, error) {
	m := versionRE.FindStringSubmatch(out)
	if m == nil {
		return Version{}, fmt.Errorf("iptables: no version in %q", out)
	}
	var v Version
	var err error
	for i, dst := range []*int{&v.Major, &v.Minor, &v.Patch} {
		if *dst, err = strconv.Atoi(m[i+1]); err != nil {
			return Version{}, fmt.Errorf("iptables: bad version in %q: %w", out, err)
		}
	}
	v.Mode = m[4]
	if v.Mode == "" {
		v.Mode = "legacy"
	}
	return v, nil
}
