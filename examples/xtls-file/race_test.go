//go:build race

package main

// raceEnabled says that the race detector is on: large transfers are
// scaled down.
const raceEnabled = true
