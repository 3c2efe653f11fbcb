package transport_test

import (
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/xmppxtls/xtls/transport"
	"github.com/xmppxtls/xtls/xtls/xtlstest"
)

// BenchmarkThroughput moves data one way through a tunnel over the in-memory
// network for round-trip times of 0, 10 and 100 ms and windows of 64 KiB,
// 1 MiB and 4 MiB, reporting MB/s of payload (-benchtime sets the amount).
func BenchmarkThroughput(b *testing.B) {
	for _, rtt := range []time.Duration{0, 10 * time.Millisecond, 100 * time.Millisecond} {
		for _, win := range []int{64 << 10, 1 << 20, 4 << 20} {
			b.Run(fmt.Sprintf("rtt=%v/window=%dKiB", rtt, win>>10), func(b *testing.B) {
				w := newWorld(b, nil, xtlstest.Latency(rtt/2, 0))
				cfg := &transport.Config{Window: win}
				a := w.join(b, alice, cfg)
				p := w.join(b, bob, cfg)
				c1, c2 := pipe(b, a, p)
				const chunk = 1 << 20
				buf := make([]byte, 64<<10)
				done := make(chan error)
				go func() {
					_, err := io.CopyBuffer(io.Discard, c2, make([]byte, 64<<10))
					done <- err
				}()
				b.SetBytes(chunk)
				b.ResetTimer()
				for range b.N {
					for n := 0; n < chunk; n += len(buf) {
						if _, err := c1.Write(buf); err != nil {
							b.Fatal(err)
						}
					}
				}
				if err := c1.CloseWrite(); err != nil {
					b.Fatal(err)
				}
				if err := <-done; err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				c1.Close()
				c2.Close()
			})
		}
	}
}
