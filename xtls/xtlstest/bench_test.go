package xtlstest_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/xmppxtls/xtls/xtls/xtlstest"
)

// BenchmarkIQFlood measures IQ sets with an 8 KiB text payload from Alice to
// Bob, answered at once by Bob's mux, with 16 requests in flight: two mellium
// sessions and the router between them.
func BenchmarkIQFlood(b *testing.B) {
	const size, inFlight = 8 << 10, 16
	n := xtlstest.NewNetwork()
	a := connect(b, n, alice.String(), nil)
	c := connect(b, n, bob.String(), echo())
	text := bytes.Repeat([]byte("ABCDEFGHabcdefgh0123456789+/"), size/28+1)[:size]

	b.SetBytes(size)
	b.ResetTimer()
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, inFlight)
	for range inFlight {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(b.N) {
				if _, err := request(context.Background(), a.Session, bob, text); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	close(errs)
	for err := range errs {
		require.NoError(b, err)
	}
	closeAll(b, n, a, c)
}

// BenchmarkRouter measures the router alone: raw stanzas written straight to
// Alice's connection and read, unparsed, from Bob's.
func BenchmarkRouter(b *testing.B) {
	for _, size := range []int{100, 8 << 10, 64 << 10} {
		b.Run(fmt.Sprint(size), func(b *testing.B) {
			n := xtlstest.NewNetwork()
			defer n.Close()
			sa, err := n.Session(context.Background(), alice)
			require.NoError(b, err)
			sb, err := n.Session(context.Background(), bob)
			require.NoError(b, err)
			body := bytes.Repeat([]byte("x"), size)
			st := fmt.Appendf(nil, "<message xmlns='jabber:client' to='%s' id='m'><body>%s</body></message>", bob, body)
			// What Bob reads per stanza: the stanza plus the stamped from.
			want := int64(b.N) * int64(len(st)+len(" from='"+alice.String()+"'"))

			b.SetBytes(int64(len(st)))
			b.ResetTimer()
			done := make(chan error, 1)
			go func() {
				_, err := io.CopyN(io.Discard, sb.Conn(), want)
				done <- err
			}()
			for range b.N {
				if _, err := sa.Conn().Write(st); err != nil {
					b.Fatal(err)
				}
			}
			require.NoError(b, <-done)
			b.StopTimer()
			sa.Close()
			sb.Close()
		})
	}
}
