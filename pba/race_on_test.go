//go:build race

package pba

const raceEnabled = true
