//go:build race

package ipvs

// raceEnabled relaxes timing assertions under the race detector.
const raceEnabled = true
