package xtls_test

import (
	"crypto/sha256"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// exchange sends n pseudo-random bytes each way at once, half-closing after,
// and checks SHA-256 on arrival.
func exchange(t testing.TB, c1, c2 net.Conn, n int64) {
	t.Helper()
	var wg sync.WaitGroup
	one := func(from, to net.Conn, seed byte) {
		defer wg.Done()
		want := sha256.New()
		errc := make(chan error, 1)
		go func() {
			src := io.LimitReader(rand.NewChaCha8([32]byte{seed}), n)
			_, err := io.Copy(from, io.TeeReader(src, want))
			errc <- err
		}()
		got := sha256.New()
		_, err := io.CopyN(got, to, n)
		require.NoError(t, err)
		require.NoError(t, <-errc)
		require.Equal(t, want.Sum(nil), got.Sum(nil))
	}
	wg.Add(2)
	go one(c1, c2, 1)
	go one(c2, c1, 2)
	wg.Wait()
}

// syncWriter serialises writes to a strings.Builder for a logger.
type syncWriter struct {
	mu sync.Mutex
	b  *strings.Builder
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *syncWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// newLogger returns a logger and what it has written so far.
func newLogger() (*slog.Logger, func() string) {
	w := &syncWriter{b: new(strings.Builder)}
	return slog.New(slog.NewTextHandler(w, nil)), w.String
}
