package transport

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"mellium.im/xmpp/stanza"

	xstanza "github.com/xmppxtls/xtls/stanza"
)

// These tests drive the tunnel machine directly: no Endpoint, no
// goroutines, no clock but the one they pass in.

// mt is one tunnel machine under test, with its clock and what it sent.
type mt struct {
	t   *tunnel
	env env
	now time.Time
}

var epoch = time.Unix(1_000_000, 0)

func newMT(cfg *Config, initiator bool) *mt {
	c := cfg.withDefaults()
	m := &mt{now: epoch}
	m.env = env{cfg: &c, log: c.Logger, chunk: c.ChunkSize}
	m.t = newTunnel(&m.env, bobJID, sid, initiator)
	m.t.bare = "bob@example.net"
	return m
}

// opened returns an initiator whose start the peer answered with proceed.
func opened(cfg *Config, blockSize, window int) *mt {
	m := newMT(cfg, true)
	st := m.next()
	m.t.onWritten(st, m.now)
	m.t.onProceed(st, xstanza.Proceed{SID: sid, BlockSize: blockSize, Window: window}, nil)
	return m
}

func (m *mt) next() *flight           { return m.t.next(m.now, 1<<30) }
func (m *mt) write(s string) int      { return m.t.write([]byte(s)) }
func (m *mt) sent(f *flight)          { m.t.onWritten(f, m.now) }
func (m *mt) ack(f *flight) int       { return m.t.onResult(f, time.Millisecond) }
func (m *mt) advance(d time.Duration) { m.now = m.now.Add(d); m.t.onTimer(m.now) }
func (m *mt) fail(f *flight, typ stanza.ErrorType, cond stanza.Condition) {
	m.t.onError(f, stanza.Error{Type: typ, Condition: cond}, m.now)
}

// wantData asserts that the next flight is data seq with payload p, and
// marks it written.
func (m *mt) wantData(t *testing.T, seq uint16, p string) *flight {
	t.Helper()
	f := m.next()
	require.NotNil(t, f, "nothing to send; want data %d", seq)
	require.Equal(t, kData, f.kind, "want data %d", seq)
	require.Equal(t, seq, f.seq)
	require.Equal(t, p, string(f.payload))
	m.sent(f)
	return f
}

func (m *mt) wantNothing(t *testing.T) {
	t.Helper()
	if f := m.next(); f != nil {
		t.Fatalf("unexpected %s (seq %d)", f.kind, f.seq)
	}
}

func (m *mt) read(t *testing.T) (string, error) {
	t.Helper()
	buf := make([]byte, 1<<16)
	n, err := m.t.read(buf)
	return string(buf[:n]), err
}

// Event sequences and what the machine must do, one case each.
var machineCases = [...]struct {
	name string
	run  func(t *testing.T)
}{
	0: {"first flight, then nothing until proceed", func(t *testing.T) {
		m := newMT(nil, true)
		require.Equal(t, 4096, m.write(string(make([]byte, 5000))))
		st := m.next()
		require.Equal(t, kStart, st.kind)
		m.sent(st)
		d0 := m.next()
		require.Equal(t, kData, d0.kind)
		require.Len(t, d0.payload, 4096)
		m.sent(d0)
		m.wantNothing(t)
		require.True(t, m.t.opening())
		m.t.onProceed(st, xstanza.Proceed{SID: sid, BlockSize: 65535, Window: 1 << 20}, nil)
		done, err := m.t.established()
		require.True(t, done)
		require.NoError(t, err)
	}},
	1: {"acknowledgement timeout: resent unchanged at the exact instant, then doubled", func(t *testing.T) {
		m := opened(&Config{AckTimeout: 2 * time.Second, MaxTries: 3}, 4096, 65536)
		m.write("hello")
		f := m.wantData(t, 0, "hello")
		require.Equal(t, m.now.Add(2*time.Second), m.t.deadline())
		m.advance(2*time.Second - time.Nanosecond)
		m.wantNothing(t)
		m.advance(time.Nanosecond)
		require.Same(t, f, m.wantData(t, 0, "hello"))
		require.Equal(t, 2, f.tries)
		require.Equal(t, m.now.Add(4*time.Second), m.t.deadline())
		m.advance(4 * time.Second)
		m.wantData(t, 0, "hello")
		m.advance(8 * time.Second)
		require.True(t, m.t.gone())
		var re *RetryError
		require.ErrorAs(t, m.t.err, &re)
		require.Equal(t, 3, re.Tries)
	}},
	2: {"the timeout restarts with every answer the path brings", func(t *testing.T) {
		m := opened(&Config{AckTimeout: 2 * time.Second}, 4096, 65536)
		m.write("a")
		m.wantData(t, 0, "a")
		m.advance(1500 * time.Millisecond)
		m.env.lastAnswer = m.now // another tunnel's answer
		m.advance(1500 * time.Millisecond)
		m.wantNothing(t)
		m.advance(500 * time.Millisecond)
		m.wantData(t, 0, "a")
	}},
	12: {"a slow path: a block waits behind the bytes ahead of it, then behind answers seconds apart", func(t *testing.T) {
		m := opened(&Config{AckTimeout: time.Second, MinAckTimeout: time.Second, ChunkSize: 2000}, 4096, 65536)
		m.env.rate = 1000 // bytes a second
		m.write(string(make([]byte, 2000)))
		first := m.wantData(t, 0, string(make([]byte, 2000)))
		m.write("x")
		m.wantData(t, 1, "x") // two seconds of data ahead of it
		m.advance(time.Second)
		// The first goes again; the second, with 2 s ahead, is not late.
		require.Same(t, first, m.next())
		m.sent(first)
		m.wantNothing(t)
		m.ack(first)
		m.env.lastAnswer = m.now
		// A shaper releases one answer every 2.5 s: a 1 s timeout would
		// send it again after each.
		m.env.answerGap = 2500 * time.Millisecond
		for range 4 {
			m.env.lastAnswer = m.now
			m.advance(2500 * time.Millisecond)
			m.wantNothing(t)
		}
		m.advance(2500 * time.Millisecond) // no answer for two gaps
		m.wantData(t, 1, "x")
	}},
	3: {"wait error: resent after a backoff, not before", func(t *testing.T) {
		m := opened(nil, 4096, 65536)
		m.write("x")
		f := m.wantData(t, 0, "x")
		m.fail(f, stanza.Wait, stanza.ResourceConstraint)
		m.wantNothing(t)
		require.Equal(t, m.now.Add(100*time.Millisecond), m.t.deadline())
		m.advance(100 * time.Millisecond)
		m.wantData(t, 0, "x")
	}},
	4: {"cancel error: the tunnel fails with the peer's error", func(t *testing.T) {
		m := opened(nil, 4096, 65536)
		m.write("x")
		f := m.wantData(t, 0, "x")
		m.fail(f, stanza.Cancel, stanza.ServiceUnavailable)
		require.True(t, m.t.gone())
		require.ErrorIs(t, m.t.writeErr(), stanza.Error{Condition: stanza.ServiceUnavailable})
	}},
	5: {"credit: exhausted, coalesced, resumed by an absolute limit", func(t *testing.T) {
		m := opened(&Config{ChunkSize: 4096}, 4096, 4096)
		m.write(string(bytes.Repeat([]byte("a"), 4096)))
		f := m.wantData(t, 0, string(bytes.Repeat([]byte("a"), 4096)))
		m.ack(f)
		m.write("bc")
		m.write("de")
		m.wantNothing(t)                // no credit
		r, _ := m.t.onCredit(4096, nil) // not above the limit: nothing
		require.Equal(t, replyAck, r)
		m.wantNothing(t)
		m.t.onCredit(4096+3, nil)
		m.wantData(t, 1, "bcd")
	}},
	6: {"seq span: never 256 ahead of the oldest unacknowledged", func(t *testing.T) {
		m := opened(&Config{ChunkSize: 1}, 4096, 1<<20)
		var fs []*flight
		for i := range 300 {
			if m.t.write([]byte{byte(i)}) == 0 {
				t.Fatal("write refused")
			}
			f := m.next()
			if f == nil {
				break
			}
			m.sent(f)
			fs = append(fs, f)
		}
		require.Len(t, fs, 256)
		m.ack(fs[1])
		m.wantNothing(t)
		m.ack(fs[0])
		m.wantData(t, 256, string([]byte{0}))
	}},
	7: {"abort: one close with the condition, sent once, nothing after", func(t *testing.T) {
		m := opened(nil, 4096, 65536)
		m.write("x")
		m.t.abort(stanza.PolicyViolation, "test")
		f := m.next()
		require.Equal(t, kAbort, f.kind)
		require.Equal(t, stanza.PolicyViolation, f.cond)
		m.wantNothing(t)
		var ae *AbortError
		require.ErrorAs(t, m.t.writeErr(), &ae)
	}},
	8: {"close: after the data is acknowledged; times out without progress", func(t *testing.T) {
		m := opened(&Config{CloseTimeout: 5 * time.Second}, 4096, 65536)
		m.write("bye")
		m.t.close(m.now)
		f := m.wantData(t, 0, "bye")
		m.wantNothing(t) // no close before the data is acknowledged
		m.ack(f)
		cl := m.next()
		require.Equal(t, kClose, cl.kind)
		m.sent(cl)
		require.False(t, m.t.closeDone())
		m.advance(5 * time.Second)
		require.True(t, m.t.closeDone())
		ab := m.next()
		require.Equal(t, kAbort, ab.kind)
		require.Equal(t, stanza.ResourceConstraint, ab.cond)
	}},
	9: {"receiver: in order, ahead of a gap, duplicates, beyond the span", func(t *testing.T) {
		m := newMT(nil, false)
		m.t.accept(xstanza.Start{SID: sid, BlockSize: 4096, Window: 65536})
		for _, s := range []struct {
			seq  uint16
			p    string
			want reply
		}{{0, "a", replyAck}, {2, "c", replyAck}, {2, "X", replyAck}, {1, "b", replyAck}, {0, "Z", replyAck}, {259, "far", replyBadRequest}} {
			r, _ := m.t.onData(s.seq, []byte(s.p), nil)
			require.Equal(t, s.want, r, "seq %d", s.seq)
		}
		got, err := m.read(t)
		require.Equal(t, "abc", got)
		require.NoError(t, err)
		_, err = m.read(t)
		var pe *ProtocolError
		require.ErrorAs(t, err, &pe)
	}},
	10: {"receiver: credit as the application reads, batched at half a window", func(t *testing.T) {
		m := newMT(&Config{BlockSize: 4096, Window: 8192}, false)
		m.t.accept(xstanza.Start{SID: sid, BlockSize: 4096, Window: 65536})
		m.t.release()
		m.t.onData(0, bytes.Repeat([]byte("x"), 4096), nil)
		buf := make([]byte, 4095)
		m.t.read(buf)
		m.wantNothing(t)
		m.t.read(buf[:1])
		f := m.next()
		require.Equal(t, kCredit, f.kind)
		require.Equal(t, uint64(4096+8192), f.limit)
	}},
	11: {"responder: held until its proceed is written", func(t *testing.T) {
		m := newMT(nil, false)
		m.t.accept(xstanza.Start{SID: sid, BlockSize: 4096, Window: 65536})
		m.write("hello")
		m.wantNothing(t)
		m.t.release()
		m.wantData(t, 0, "hello")
	}},
}

func TestMachine(t *testing.T) {
	for i, tc := range machineCases {
		t.Run(fmt.Sprintf("%d_%s", i, tc.name), tc.run)
	}
}

// wire is one element or answer on its way between the two machines.
type wire struct {
	toB    bool // towards the responder
	answer bool
	f      *flight // the sender's flight
	// element
	kind    kind
	seq     uint16
	payload []byte
	limit   uint64
	cond    stanza.Condition
	// answer
	result bool
	se     stanza.Error
}

// pairRun drives an initiator and a responder that move data both ways over
// a path that loses, duplicates and reorders elements and answers at
// random, with the clock advancing, and checks that each side reads exactly
// what the other wrote.
func pairRun(t *testing.T, seed uint64, loss, dup float64, reorder bool) {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	// A block lost four times in a row backs off past the default
	// CloseTimeout; this test is about exact delivery, not about giving up.
	cfg := &Config{BlockSize: 4096, Window: 8192, MaxWindow: 8192, ChunkSize: 1000, MaxTries: 1 << 20, AckTimeout: time.Second, MinAckTimeout: time.Second, Linger: time.Second, CloseTimeout: time.Hour}
	a, b := newMT(cfg, true), newMT(cfg, false)
	b.env.chunk = 777
	b.now = a.now
	var inflight []*wire
	// Open: the start and its proceed cross without faults.
	st := a.next()
	a.sent(st)
	b.t.accept(a.t.startElement())
	b.t.release()
	a.t.onProceed(st, b.t.proceed(), nil)

	const total = 60_000
	src := [2][]byte{make([]byte, total), make([]byte, total)}
	for i := range src {
		for j := range src[i] {
			src[i][j] = byte(rng.Uint32())
		}
	}
	var got [2]bytes.Buffer
	written := [2]int{}
	closed := [2]bool{}
	eof := [2]bool{}
	ms := [2]*mt{a, b}
	resent := 0

	emit := func(w *wire) {
		if rng.Float64() < loss {
			return
		}
		inflight = append(inflight, w)
		if rng.Float64() < dup {
			c := *w
			inflight = append(inflight, &c)
		}
	}
	deliver := func(w *wire) {
		to := b
		if !w.toB {
			to = a
		}
		if w.answer {
			to.env.lastAnswer = to.now // as the path records every answer
			switch {
			case !w.result:
				to.t.onError(w.f, w.se, to.now)
			default:
				to.t.onResult(w.f, time.Millisecond)
			}
			return
		}
		var r reply
		switch w.kind {
		case kData:
			r, _ = to.t.onData(w.seq, w.payload, nil)
		case kCredit:
			r, _ = to.t.onCredit(w.limit, nil)
		case kClose, kAbort:
			r, _ = to.t.onClose(w.cond, "", nil)
			to.t.answered()
		}
		if w.kind == kAbort {
			return
		}
		ans := &wire{toB: !w.toB, answer: true, f: w.f, result: r == replyAck}
		if r == replyNotFound {
			ans.se = stanza.Error{Type: stanza.Cancel, Condition: stanza.ItemNotFound}
		}
		require.NotEqual(t, replyBadRequest, r, "a faithful peer never violates the protocol")
		emit(ans)
	}
	for step := 0; step < 2_000_000; step++ {
		if eof[0] && eof[1] && a.t.gone() && b.t.gone() {
			break
		}
		i := rng.IntN(2)
		m := ms[i]
		switch op := rng.IntN(20); {
		case op < 2: // the application writes
			if written[i] < total {
				n := min(total-written[i], 1+rng.IntN(3000))
				written[i] += m.t.write(src[i][written[i] : written[i]+n])
			} else if !closed[i] {
				closed[i] = true
				require.NoError(t, m.t.closeWrite(m.now))
			}
		case op < 4: // the application reads
			buf := make([]byte, 1+rng.IntN(5000))
			n, err := m.t.read(buf)
			got[i].Write(buf[:n])
			if err == io.EOF {
				eof[i] = true
			} else {
				require.NoError(t, err)
			}
		case op < 6: // the machine sends
			if f := m.next(); f != nil {
				if f.tries > 1 {
					resent++
				}
				m.sent(f)
				emit(&wire{toB: i == 0, f: f, kind: f.kind, seq: f.seq, payload: append([]byte(nil), f.payload...), limit: f.limit, cond: f.cond})
			}
		case op < 19: // the path delivers something
			if len(inflight) == 0 {
				continue
			}
			j := 0
			if reorder {
				j = rng.IntN(len(inflight))
			}
			w := inflight[j]
			inflight = append(inflight[:j], inflight[j+1:]...)
			deliver(w)
		default: // time passes: sometimes longer than a timeout
			d := time.Duration(rng.IntN(400)) * time.Millisecond
			for _, x := range ms {
				x.now = x.now.Add(d)
				x.t.onTimer(x.now)
			}
		}
		if a.t.err != nil || b.t.err != nil {
			for k, x := range ms {
				tt := x.t
				t.Logf("%d: state=%d sendQ=%d nUnacked=%d closeSent=%v closeAcked=%v peerClosed=%v writeClosed=%v ctrl=%d retrans=%d credit avail=%d rbuf=%d eof=%v written=%d inflight=%d step=%d", k, tt.state, len(tt.sendQ), tt.nUnacked, tt.closeSent, tt.closeAcked, tt.peerClosed, tt.writeClosed, len(tt.ctrl), len(tt.retrans), tt.sflow.available(), tt.rbuf.len(), eof[k], written[k], len(inflight), step)
			}
		}
		require.NoError(t, a.t.err)
		require.NoError(t, b.t.err)
	}
	require.True(t, eof[0] && eof[1], "not finished")
	if loss > 0 {
		require.NotZero(t, resent, "losses, yet nothing was sent again")
	}
	require.Equal(t, src[1], got[0].Bytes(), "a read what b wrote")
	require.Equal(t, src[0], got[1].Bytes(), "b read what a wrote")
}

// Delivery is exact under any interleaving of loss, duplication and
// reordering of elements and answers, as quic-go tests its frame sorter.
func TestMachineRandomized(t *testing.T) {
	for _, tc := range []struct {
		name      string
		loss, dup float64
		reorder   bool
	}{
		{"clean", 0, 0, false},
		{"loss", 0.1, 0, false},
		{"duplication", 0, 0.2, false},
		{"reordering", 0, 0, true},
		{"everything", 0.1, 0.1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for seed := range uint64(8) {
				pairRun(t, seed, tc.loss, tc.dup, tc.reorder)
			}
		})
	}
}
