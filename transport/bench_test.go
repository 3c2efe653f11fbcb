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

// BenchmarkCappedLink is the no-tuning target: one tunnel with default
// settings over a path with a 10 MB/s cap on the stanza bytes a client sends
// (xtlstest.Bandwidth, as a server's shaper would apply it), at round trips
// of 0, 10 and 100 ms. It reports payload MB/s and "%cap", the share of the
// cap the stanzas used while the data moved (the target is 80 % at 100 ms),
// counting both directions: the acknowledgements add about 2 %. Payload is
// at most ~3/4 of the stanza bytes: Base64.
func BenchmarkCappedLink(b *testing.B) {
	const capBytes = 10_000_000
	for _, rtt := range []time.Duration{0, 10 * time.Millisecond, 100 * time.Millisecond} {
		b.Run(fmt.Sprintf("rtt=%v", rtt), func(b *testing.B) {
			w := newWorld(b, nil, xtlstest.Latency(rtt/2, 0), xtlstest.Bandwidth(capBytes))
			a := w.join(b, alice, nil)
			p := w.join(b, bob, nil)
			c1, c2 := pipe(b, a, p)
			defer c1.Close()
			defer c2.Close()
			const chunk = 16 << 20
			buf := make([]byte, 64<<10)
			done := make(chan error)
			go func() {
				_, err := io.CopyBuffer(io.Discard, c2, make([]byte, 64<<10))
				done <- err
			}()
			before := w.n.Stats()
			start := time.Now()
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
			d := time.Since(start)
			after := w.n.Stats()
			b.ReportMetric(float64(after.Bytes-before.Bytes)/d.Seconds()/capBytes*100, "%cap")
		})
	}
}
