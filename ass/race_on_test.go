//go:build race

package ass

// raceEnabled shrinks the heaviest tests under the race detector, which
// slows this code about tenfold.
const raceEnabled = true
