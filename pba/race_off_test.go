//go:build !race

package pba

const raceEnabled = false
