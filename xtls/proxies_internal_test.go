package xtls

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"
)

// Callers that want the same key while its query is under way wait for
// it instead of asking again; an answer is kept for its TTL, one cut short
// by the caller's context is not, and the next caller asks again.
func TestAnswersAskOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var a answers[int]
		var asked atomic.Int32
		// asker answers v once release is closed.
		asker := func(release chan struct{}, v int) func(context.Context) (int, error) {
			return func(ctx context.Context) (int, error) {
				asked.Add(1)
				select {
				case <-release:
					return v, nil
				case <-ctx.Done():
					return 0, ctx.Err()
				}
			}
		}
		release := make(chan struct{})
		ask := asker(release, 7)
		var wg sync.WaitGroup
		for range 5 {
			wg.Go(func() {
				v, err := a.get(context.Background(), "k", ask)
				require.NoError(t, err)
				require.Equal(t, 7, v)
			})
		}
		synctest.Wait()
		require.EqualValues(t, 1, asked.Load(), "asked while a query was under way")
		close(release)
		wg.Wait()
		_, _ = a.get(context.Background(), "k", ask)
		require.EqualValues(t, 1, asked.Load(), "a fresh answer is asked again")

		time.Sleep(proxyTTL) // fake time: the answer is stale
		_, _ = a.get(context.Background(), "k", ask)
		require.EqualValues(t, 2, asked.Load())

		// Cut short: not kept, and a waiter then asks itself.
		block := make(chan struct{})
		slow := asker(block, 1)
		ctx, cancel := context.WithCancel(context.Background())
		first := make(chan error, 1)
		go func() { _, err := a.get(ctx, "j", slow); first <- err }()
		synctest.Wait()
		second := make(chan int, 1)
		go func() { v, _ := a.get(context.Background(), "j", slow); second <- v }()
		synctest.Wait()
		cancel()
		require.True(t, errors.Is(<-first, context.Canceled))
		synctest.Wait()
		close(block)
		require.Equal(t, 1, <-second)
		require.EqualValues(t, 4, asked.Load(), "the waiter asked once itself")
	})
}
