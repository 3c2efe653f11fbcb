package transport

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestSendFlow(t *testing.T) {
	var f sendFlow
	require.True(t, f.raise(1000))
	require.Equal(t, uint64(1000), f.available())
	f.take(600)
	require.Equal(t, uint64(400), f.available())
	require.False(t, f.raise(1000), "the same limit again grants nothing")
	require.False(t, f.raise(900), "a lower limit is ignored")
	require.Equal(t, uint64(400), f.available())
	require.True(t, f.raise(1500))
	require.Equal(t, uint64(900), f.available())
	require.False(t, f.newlyBlocked())
	f.take(900)
	require.True(t, f.newlyBlocked())
	require.False(t, f.newlyBlocked(), "reported once per limit")
	f.raise(1600)
	f.take(100)
	require.True(t, f.newlyBlocked())
	require.Panics(t, func() { f.take(1) })
}

func TestRecvFlow(t *testing.T) {
	var f recvFlow
	f.init(1000, 1000)
	require.NoError(t, f.receive(600))
	require.NoError(t, f.receive(400))
	require.Error(t, f.receive(1), "beyond the limit")
	f.consume(499)
	_, due := f.update()
	require.False(t, due, "less than half a window read")
	f.consume(1)
	limit, due := f.update()
	require.True(t, due)
	require.Equal(t, uint64(1500), limit)
	f.sent(limit)
	_, due = f.update()
	require.False(t, due)
	require.NoError(t, f.receive(500))
	require.Error(t, f.receive(1))
	f.sent(1200) // an older limit sent again changes nothing
	require.Equal(t, uint64(1500), f.limit)
	f.grow(4000)
	f.consume(500)
	limit, due = f.update()
	require.True(t, due)
	require.Equal(t, uint64(1000+4000), limit)
	require.Panics(t, func() { f.consume(501) })
}

// A seq below the next expected one is a duplicate only if it was really
// received: within the last 256, and no further back than the blocks
// delivered (docs/protocol.md D5): on a fresh tunnel 65535 is no
// duplicate but a violation.
func TestReorderClassify(t *testing.T) {
	for i, tc := range []struct {
		next, seq uint16
		delivered int
		want      seqClass
	}{
		0:  {0, 0, 256, seqNext},
		1:  {0, 1, 256, seqAhead},
		2:  {0, 255, 256, seqAhead},
		3:  {0, 256, 256, seqInvalid},
		4:  {0, 65535, 256, seqSeen},
		5:  {0, 65280, 256, seqSeen},
		6:  {0, 65279, 256, seqInvalid},
		7:  {65530, 4, 256, seqAhead},
		8:  {3, 65535, 256, seqSeen},
		9:  {65535, 0, 256, seqAhead},
		10: {0, 65535, 0, seqInvalid},
		11: {10, 0, 10, seqSeen},
		12: {10, 65535, 10, seqInvalid},
		13: {10, 5, 10, seqSeen},
	} {
		r := reorder{next: tc.next, delivered: tc.delivered}
		require.Equal(t, tc.want, r.classify(tc.seq), "case %d", i)
	}
}

// Blocks arriving shuffled, duplicated, within the span, come out in order.
func TestReorderRandomized(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	r := reorder{next: 65000, delivered: 256} // cross the wrap
	var out []uint16
	next := r.next
	for round := 0; round < 200; round++ {
		n := 1 + rng.IntN(255)
		perm := rng.Perm(n)
		for _, k := range perm {
			seq := next + uint16(k)
			for dup := 0; dup < 1+rng.IntN(2); dup++ {
				switch r.classify(seq) {
				case seqNext:
					out = append(out, seq)
					for {
						b, ok := r.advance()
						if !ok {
							break
						}
						out = append(out, uint16(b[0])|uint16(b[1])<<8)
					}
				case seqAhead:
					r.put(seq, []byte{byte(seq), byte(seq >> 8)})
				case seqSeen:
				default:
					t.Fatalf("seq %d classified invalid with next %d", seq, r.next)
				}
			}
		}
		next += uint16(n)
		require.Equal(t, next, r.next)
		require.Zero(t, r.n)
	}
	for i := 1; i < len(out); i++ {
		require.Equal(t, out[i-1]+1, out[i])
	}
}

// Auto-tuning doubles the window when the reader drains it faster than
// about two round trips per window, never past the maximum, and leaves it
// alone for a slow reader or before any round trip was measured.
func TestRecvFlowAutoTune(t *testing.T) {
	t0 := time.Unix(1000, 0)
	const rtt = 100 * time.Millisecond
	tests := []struct {
		name    string
		rtt     time.Duration
		elapsed time.Duration // time to read the whole window
		want    []uint64      // window after each of three epochs
	}{
		{"fast reader grows to the max", rtt, 50 * time.Millisecond, []uint64{2000, 4000, 4000}},
		{"slow reader stays", rtt, time.Second, []uint64{1000, 1000, 1000}},
		{"no round trip measured", 0, time.Millisecond, []uint64{1000, 1000, 1000}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var f recvFlow
			f.init(1000, 4000)
			now := t0
			f.autoTune(now, tc.rtt, nil) // the first call starts the epoch
			var got []uint64
			for range 3 {
				n := int(f.window)
				require.NoError(t, f.receive(n))
				f.consume(n)
				now = now.Add(tc.elapsed)
				f.autoTune(now, tc.rtt, nil)
				limit, due := f.update()
				require.True(t, due)
				f.sent(limit)
				got = append(got, f.window)
			}
			require.Equal(t, tc.want, got)
		})
	}
	// A window that only half drained is not judged yet.
	var f recvFlow
	f.init(1000, 4000)
	f.autoTune(t0, rtt, nil)
	require.NoError(t, f.receive(400))
	f.consume(400)
	f.autoTune(t0.Add(time.Millisecond), rtt, nil)
	require.Equal(t, uint64(1000), f.window)
}
