package xtls

import (
	"sync"
	"testing"
	"testing/synctest"

	"github.com/stretchr/testify/require"
)

// A control record waiting for the gate goes before every APP record
// waiting, whichever came first; records never enter TLS together.
func TestWriteGateControlFirst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var g writeGate
		var mu sync.Mutex
		var order []string
		inside := 0
		enter := func(name string, control bool) {
			g.enter(control)
			mu.Lock()
			inside++
			require.Equal(t, 1, inside, "two records in TLS at once")
			order = append(order, name)
			inside--
			mu.Unlock()
			g.leave()
		}
		g.enter(false) // an APP record in TLS, blocked there
		var wg sync.WaitGroup
		for _, w := range []struct {
			name    string
			control bool
		}{{"app1", false}, {"app2", false}, {"offer", true}, {"app3", false}, {"refuse", true}} {
			wg.Go(func() { enter(w.name, w.control) })
			synctest.Wait() // each one waits before the next comes
		}
		require.Empty(t, order)
		g.leave()
		wg.Wait()
		require.ElementsMatch(t, []string{"offer", "refuse"}, order[:2], "order %v", order)
		require.ElementsMatch(t, []string{"app1", "app2", "app3"}, order[2:], "order %v", order)
	})
}
