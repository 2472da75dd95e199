//go:build race

package qcow2

// raceEnabled: the race detector slows the exhaustive tests down ~10x;
// they then run a smaller share of their cases.
const raceEnabled = true
