//go:build !race

package itp

// raceSlowdown scales wall-clock limits of tests under the race detector.
const raceSlowdown = 1
