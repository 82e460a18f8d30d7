//go:build !race

package iptables

// raceEnabled reports that the race detector slows everything down, so timing
// assertions are skipped.
const raceEnabled = false
