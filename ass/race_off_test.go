//go:build !race

package ass

const raceEnabled = false
