package transport

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"

	xstanza "github.com/xmppxtls/xtls/stanza"
)

// initiator opens a tunnel from alice to bob and returns the start it sent.
func initiator(t *testing.T, cfg *Config) (*fakeSession, *Endpoint, *Conn, *sentIQ) {
	t.Helper()
	f, e := newFakeEndpoint(cfg)
	c, err := e.Open(jid.MustParse(bobJID), sid)
	require.NoError(t, err)
	t.Cleanup(func() { e.Close() })
	s := f.next(t)
	require.Equal(t, bobJID, s.to.String())
	require.IsType(t, xstanza.Start{}, s.elem)
	return f, e, c, s
}

// proceed answers a start as bob would, and waits until alice has taken it
// in.
func proceed(s *sentIQ, blockSize, window int) {
	s.ackWith(xstanza.Proceed{SID: sid, BlockSize: blockSize, Window: window}.TokenReader())
	synctest.Wait()
}

func payloadOf(t *testing.T, s *sentIQ) []byte {
	t.Helper()
	d, ok := s.elem.(xstanza.Data)
	require.True(t, ok, "not data: %s", s.raw)
	return d.Payload
}

// The initiator may send data seq 0, at most 4096 bytes, right behind the
// start, and nothing more until proceed arrives.
func TestSenderFirstFlight(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f, _, c, start := initiator(t, &Config{ChunkSize: 65535})
		require.Equal(t, xstanza.Start{SID: sid, BlockSize: 65535, Window: 128 << 10, Method: "x509"}, start.elem)
		// (proceed is sent below, after the first flight.)
		msg := bytes.Repeat([]byte("h"), 5000)
		done := make(chan struct{})
		go func() {
			defer close(done)
			_, err := c.Write(msg)
			require.NoError(t, err)
		}()
		synctest.Wait()
		d0 := f.next(t)
		require.Equal(t, uint16(0), d0.elem.(xstanza.Data).Seq)
		require.Equal(t, 4096, len(payloadOf(t, d0)))
		f.none(t)
		proceed(start, 65535, 1<<20)
		d0.ack()
		synctest.Wait()
		d1 := f.next(t)
		require.Equal(t, uint16(1), d1.elem.(xstanza.Data).Seq)
		require.Equal(t, 5000-4096, len(payloadOf(t, d1)))
		d1.ack()
		<-done
	})
}

// The responder's first data travels right behind its proceed. mellium's
// Serve handles the next stanza as soon as the start's response is closed,
// so the tunnel must be open by then, or that data is refused item-not-found
// and the TLS handshake waits for it forever.
func TestProceedOpensBeforeResponseClosed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		_, e, c, start := initiator(t, nil)
		var got string
		start.onClose = func() {
			got = deliver(t, e, stanza.SetIQ, bobJID, encodeElem(xstanza.Data{SID: sid, Seq: 0, Payload: []byte("server hello")}))
		}
		start.ackWith(xstanza.Proceed{SID: sid, BlockSize: 65535, Window: 1 << 20}.TokenReader())
		<-start.closed
		require.True(t, isAck(got), "data right behind proceed: %s", got)
		buf := make([]byte, 64)
		n, err := c.Read(buf)
		require.NoError(t, err)
		require.Equal(t, "server hello", string(buf[:n]))
	})
}

// A data IQ whose result does not come within the acknowledgement timeout is
// sent again unchanged; after MaxTries the tunnel fails with a *RetryError
// naming the cause.
func TestSenderRetransmitsOnTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f, _, c, start := initiator(t, &Config{AckTimeout: 2 * time.Second, MaxTries: 3})
		proceed(start, 4096, 65536)
		_, err := c.Write([]byte("hello"))
		require.NoError(t, err)
		synctest.Wait()
		first := f.next(t)
		t0 := time.Now()
		synctest.Wait()
		f.none(t)
		second := f.next(t) // blocks until fake time reaches the timeout
		require.Equal(t, 2*time.Second, time.Since(t0))
		require.Equal(t, first.elem, second.elem)
		third := f.next(t)
		require.Equal(t, 2*time.Second+4*time.Second, time.Since(t0)) // backoff doubles
		require.Equal(t, first.elem, third.elem)
		_, err = c.Read(make([]byte, 1))
		var re *RetryError
		require.ErrorAs(t, err, &re)
		require.Equal(t, 3, re.Tries)
		require.ErrorIs(t, err, ErrAckTimeout)
		require.Equal(t, 2*time.Second+4*time.Second+8*time.Second, time.Since(t0))
		// Nobody waits for them any more: the path forgets them.
		time.Sleep(sweepInterval)
		synctest.Wait()
		for _, s := range []*sentIQ{first, second, third} {
			require.False(t, s.waiting(), s.raw)
		}
	})
}

// Every IQ is written whole, one stanza per hold of the session's output
// lock, with no context that mellium could turn into a write deadline on the
// connection (its SendIQ does, and a late deadline cut another stanza in
// half, ending the session: "XMPP session closed: i/o timeout" under load).
// The fake session's writer panics on anything but one whole IQ with one
// element; here it sees start, data, credit and close go out.
func TestIQsWrittenWhole(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f, e, c, start := initiator(t, &Config{Window: 65536})
		proceed(start, 4096, 65536)
		_, err := c.Write([]byte("hello"))
		require.NoError(t, err)
		s := f.next(t)
		require.Equal(t, []byte("hello"), payloadOf(t, s))
		s.ack()
		require.True(t, isAck(deliver(t, e, stanza.SetIQ, bobJID, data(0, strings.Repeat("x", 65536/2+1)))))
		buf := make([]byte, 65536)
		_, err = c.Read(buf)
		require.NoError(t, err)
		synctest.Wait()
		cr := f.next(t)
		require.IsType(t, xstanza.Credit{}, cr.elem)
		cr.ack()
		go c.CloseWrite()
		cl := f.next(t)
		require.Equal(t, xstanza.Close{SID: sid}, cl.elem)
		cl.ackWith(xstanza.Closed{SID: sid}.TokenReader())
	})
}

// A copy sent again does not stop the first copy's wait: on a slow path its
// answer is usually on the way, and it settles the block; the other copies
// then stop waiting and nothing more is sent.
func TestSenderLateAnswerCounts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// (No keep-alive: the minute of silence below would send one.)
		f, _, c, start := initiator(t, &Config{AckTimeout: 2 * time.Second, KeepAlive: -1})
		proceed(start, 4096, 65536)
		_, err := c.Write([]byte("hello"))
		require.NoError(t, err)
		first := f.next(t)
		second := f.next(t)
		require.Equal(t, first.elem, second.elem)
		require.True(t, first.waiting(), "the first copy stopped waiting")
		first.ack()
		synctest.Wait()
		f.none(t)
		time.Sleep(time.Minute)
		f.none(t)
		require.NoError(t, c.Err())
		// The second copy's answer, had it come, would have changed
		// nothing; the path has forgotten it.
		require.False(t, second.waiting())
	})
}

// An error of type wait makes the IQ go again after a short backoff; errors
// of other types break the tunnel, wrapped as they came.
func TestSenderErrors(t *testing.T) {
	for i, tc := range []struct {
		typ  stanza.ErrorType
		cond stanza.Condition
	}{
		0: {stanza.Cancel, stanza.ServiceUnavailable},
		1: {stanza.Modify, stanza.BadRequest},
		2: {stanza.Auth, stanza.Forbidden},
		3: {stanza.Cancel, stanza.ItemNotFound},
	} {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f, _, c, start := initiator(t, nil)
				proceed(start, 4096, 65536)
				_, err := c.Write([]byte("hello"))
				require.NoError(t, err)
				s := f.next(t)
				s.fail(stanza.Wait, stanza.ResourceConstraint)
				t0 := time.Now()
				// The response is closed at once, not after the backoff:
				// mellium's Serve is parked until it is.
				<-s.closed
				require.Zero(t, time.Since(t0))
				again := f.next(t)
				require.Equal(t, 100*time.Millisecond, time.Since(t0))
				require.Equal(t, s.elem, again.elem)
				again.fail(tc.typ, tc.cond)
				_, err = c.Read(make([]byte, 1))
				require.ErrorIs(t, err, stanza.Error{Type: tc.typ, Condition: tc.cond})
				var pe *PeerError
				require.ErrorAs(t, err, &pe)
				require.Equal(t, "data", pe.Element)
				_, err = c.Write([]byte("x"))
				require.ErrorIs(t, err, stanza.Error{Condition: tc.cond})
			})
		})
	}
}

// A response counts only if it comes from the peer's full JID: mellium
// matches responses by id alone.
func TestSenderIgnoresResponseFromAnotherJID(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f, _, c, start := initiator(t, nil)
		proceed(start, 4096, 65536)
		_, err := c.Write([]byte("hello"))
		require.NoError(t, err)
		s := f.next(t)
		s.respond(jid.MustParse("mallory@evil.example/m"), stanza.ErrorIQ,
			stanza.Error{Type: stanza.Cancel, Condition: stanza.ItemNotFound}.TokenReader())
		again := f.next(t)
		require.Equal(t, s.elem, again.elem)
		again.respond(jid.MustParse("bob@example.net/B"), stanza.ResultIQ, nil) // other resource
		third := f.next(t)
		require.Equal(t, s.elem, third.elem)
		third.ack()
		synctest.Wait()
		require.NoError(t, c.Err())
		f.none(t)
	})
}

// While the peer's credit is exhausted, written bytes are coalesced into
// full blocks instead of leaving as a large and a tiny element per write.
func TestSenderCoalescesWhileBlocked(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f, e, c, start := initiator(t, &Config{ChunkSize: 4096})
		proceed(start, 4096, 4096)
		go func() {
			for range 10 {
				_, err := c.Write(bytes.Repeat([]byte("r"), 1000))
				if err != nil {
					return
				}
			}
		}()
		synctest.Wait()
		for {
			s, ok := tryNext(f)
			if !ok {
				break
			}
			s.ack()
			synctest.Wait()
		}
		// Credit now exhausted: the writer's bytes pile up in whole blocks.
		// Each grant of one block's credit then sends one full block, not a
		// large and a tiny element per 1000-byte write.
		limit := uint64(4096)
		for remaining := 10000 - 4096; remaining > 0; remaining -= 4096 {
			limit += 4096
			require.True(t, isAck(deliver(t, e, stanza.SetIQ, bobJID, encodeElem(xstanza.Credit{SID: sid, Limit: limit}))))
			synctest.Wait()
			s := f.next(t)
			require.Equal(t, min(4096, remaining), len(payloadOf(t, s)))
			s.ack()
			synctest.Wait()
			f.none(t)
		}
	})
}

func tryNext(f *fakeSession) (*sentIQ, bool) {
	select {
	case s := <-f.sent:
		return s, true
	default:
		return nil, false
	}
}

// A sender never has a seq at or beyond oldest unacknowledged + 256 out.
func TestSenderSeqSpan(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f, _, c, start := initiator(t, &Config{ChunkSize: 16})
		proceed(start, 4096, 1<<20)
		go c.Write(bytes.Repeat([]byte("s"), 16*300))
		synctest.Wait()
		var out []*sentIQ
		for {
			s, ok := tryNext(f)
			if !ok {
				break
			}
			out = append(out, s)
		}
		require.Equal(t, 256, len(out))
		out[1].ack() // not the oldest: the span does not move
		synctest.Wait()
		f.none(t)
		out[0].ack()
		synctest.Wait()
		s := f.next(t)
		require.Equal(t, uint16(256), s.elem.(xstanza.Data).Seq)
		s = f.next(t)
		require.Equal(t, uint16(257), s.elem.(xstanza.Data).Seq)
		synctest.Wait()
		f.none(t)
	})
}

// Close flushes: the data goes out and is acknowledged, then the close,
// answered by closed; Close returns nil and later calls fail with
// net.ErrClosed.
func TestSenderCloseFlushes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f, e, c, start := initiator(t, nil)
		proceed(start, 4096, 65536)
		_, err := c.Write([]byte("bye"))
		require.NoError(t, err)
		c.SetWriteDeadline(time.Now()) // tls.Conn does this before Close
		closed := make(chan error)
		go func() { closed <- c.Close() }()
		s := f.next(t)
		require.Equal(t, []byte("bye"), payloadOf(t, s))
		synctest.Wait()
		f.none(t) // no close before the data is acknowledged
		s.ack()
		cl := f.next(t)
		require.Equal(t, xstanza.Close{SID: sid}, cl.elem)
		cl.ackWith(xstanza.Closed{SID: sid}.TokenReader())
		synctest.Wait()
		// The peer's direction is still open: its close is answered closed.
		resp := deliver(t, e, stanza.SetIQ, bobJID, encodeElem(xstanza.Close{SID: sid}))
		require.Contains(t, resp, "<closed")
		require.NoError(t, <-closed)
		_, err = c.Read(nil)
		require.ErrorIs(t, err, net.ErrClosed)
		_, err = c.Write([]byte("x"))
		require.ErrorIs(t, err, net.ErrClosed)
		require.NoError(t, c.Close())
		// Gone: data for it now finds no tunnel.
		require.Equal(t, "item-not-found", errCond(deliver(t, e, stanza.SetIQ, bobJID, data(0, "x"))))
	})
}

// Data the peer sends after our Close is refused with item-not-found.
func TestCloseStopsReading(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f, e, c, start := initiator(t, nil)
		proceed(start, 4096, 65536)
		go c.Close()
		cl := f.next(t)
		cl.ackWith(xstanza.Closed{SID: sid}.TokenReader())
		synctest.Wait()
		select {
		case <-c.Done():
			t.Fatal("gone before the peer closed")
		default:
		}
		require.Equal(t, "item-not-found", errCond(deliver(t, e, stanza.SetIQ, bobJID, data(0, "late"))))
		// The refusal ends the peer's direction for good (it will not
		// close it), so the tunnel is gone now, not after Linger.
		select {
		case <-c.Done():
		default:
			t.Fatal("tunnel lingers after refusing the peer's data")
		}
	})
}

// CloseWrite closes one direction; the other goes on until the peer closes
// it, then Read returns io.EOF.
func TestSenderHalfClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f, e, c, start := initiator(t, nil)
		proceed(start, 4096, 65536)
		_, err := c.Write([]byte("request"))
		require.NoError(t, err)
		done := make(chan error)
		go func() { done <- c.CloseWrite() }()
		s := f.next(t)
		s.ack()
		cl := f.next(t)
		require.Equal(t, xstanza.Close{SID: sid}, cl.elem)
		cl.ackWith(xstanza.Closed{SID: sid}.TokenReader())
		require.NoError(t, <-done)
		_, err = c.Write([]byte("more"))
		require.ErrorIs(t, err, ErrWriteClosed)
		require.True(t, isAck(deliver(t, e, stanza.SetIQ, bobJID, data(0, "response"))))
		require.Contains(t, deliver(t, e, stanza.SetIQ, bobJID, encodeElem(xstanza.Close{SID: sid})), "<closed")
		got, err := io.ReadAll(c)
		require.NoError(t, err)
		require.Equal(t, "response", string(got))
		select {
		case <-c.Done():
		default:
			t.Fatal("tunnel not gone after both directions closed")
		}
	})
}

// A close the path delivered twice after the peer had closed too finds the
// peer's tunnel gone on its second copy: item-not-found then answers a
// close whose first copy was acknowledged, so CloseWrite succeeds.
func TestDuplicatedCloseAfterPeerClosed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f, e, c, start := initiator(t, nil)
		proceed(start, 4096, 65536)
		require.Contains(t, deliver(t, e, stanza.SetIQ, bobJID, encodeElem(xstanza.Close{SID: sid})), "<closed")
		done := make(chan error)
		go func() { done <- c.CloseWrite() }()
		cl := f.next(t)
		require.Equal(t, xstanza.Close{SID: sid}, cl.elem)
		cl.fail(stanza.Cancel, stanza.ItemNotFound)
		require.NoError(t, <-done)
		select {
		case <-c.Done():
		default:
			t.Fatal("tunnel not gone after both directions closed")
		}
	})
}

// Done fires only once the answer to the peer's close is written: an
// application that ends its session when the tunnel is gone must not cut
// off that answer (the peer would send its close again and fail).
func TestDoneAfterClosedAnswered(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f, e, c, start := initiator(t, nil)
		proceed(start, 4096, 65536)
		done := make(chan error)
		go func() { done <- c.CloseWrite() }()
		cl := f.next(t)
		cl.ackWith(xstanza.Closed{SID: sid}.TokenReader())
		require.NoError(t, <-done)

		d := xml.NewDecoder(strings.NewReader(encodeElem(xstanza.Close{SID: sid})))
		tok, err := d.Token()
		require.NoError(t, err)
		st := tok.(xml.StartElement)
		h := &doneProbe{handlerIO: handlerIO{TokenReader: d}, done: c.Done()}
		h.enc = xml.NewEncoder(&h.out)
		iq := stanza.IQ{ID: "in1", Type: stanza.SetIQ, From: jid.MustParse(bobJID), To: e.local}
		require.NoError(t, e.HandleIQ(iq, h, &st))
		require.True(t, h.sawClosed, "no closed answer: %s", h.out.String())
		require.False(t, h.goneBeforeAnswer, "Done fired before the closed answer was written")
		// The handler tells the loop once its answer is written and
		// returns: the loop ends the tunnel then, on its own goroutine.
		synctest.Wait()
		select {
		case <-c.Done():
		default:
			t.Fatal("tunnel not gone after both directions closed")
		}
	})
}

// doneProbe records whether a tunnel's Done had fired when the closed
// answer was written.
type doneProbe struct {
	handlerIO
	done             <-chan struct{}
	sawClosed        bool
	goneBeforeAnswer bool
}

func (p *doneProbe) EncodeToken(t xml.Token) error {
	if st, ok := t.(xml.StartElement); ok && st.Name.Local == "closed" {
		p.sawClosed = true
		select {
		case <-p.done:
			p.goneBeforeAnswer = true
		default:
		}
	}
	return p.handlerIO.EncodeToken(t)
}

// Data that arrived in order before a tunnel failed was accepted: Read
// returns it first, then the error (here the peer's abort).
func TestReadDeliversAcceptedDataBeforeFailure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		_, e, c, start := initiator(t, nil)
		proceed(start, 4096, 65536)
		require.True(t, isAck(deliver(t, e, stanza.SetIQ, bobJID, data(0, "last words"))))
		// Held behind a gap: never deliverable.
		require.True(t, isAck(deliver(t, e, stanza.SetIQ, bobJID, data(2, "lost"))))
		require.Contains(t, deliver(t, e, stanza.SetIQ, bobJID, encodeElem(xstanza.Close{SID: sid, Error: "not-acceptable"})), "<closed")
		got, err := io.ReadAll(c)
		require.Equal(t, "last words", string(got))
		var ae *AbortError
		require.ErrorAs(t, err, &ae)
		require.Equal(t, stanza.Condition("not-acceptable"), ae.Condition)
	})
}

// Once the peer has closed its direction, Read ends with io.EOF even if our
// direction fails afterwards (here: our data refused because the peer's
// tunnel is gone); the failure is Write's to report. TLS above relies on
// it to tell a clean end, or a missing close_notify, from a broken tunnel.
func TestReadEOFSurvivesLaterWriteFailure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f, e, c, start := initiator(t, nil)
		proceed(start, 4096, 65536)
		require.True(t, isAck(deliver(t, e, stanza.SetIQ, bobJID, data(0, "partial"))))
		require.Contains(t, deliver(t, e, stanza.SetIQ, bobJID, encodeElem(xstanza.Close{SID: sid})), "<closed")
		_, err := c.Write([]byte("too late"))
		require.NoError(t, err)
		f.next(t).fail(stanza.Cancel, stanza.ItemNotFound)
		synctest.Wait()
		_, err = c.Write([]byte("more"))
		require.ErrorIs(t, err, stanza.Error{Condition: stanza.ItemNotFound})
		got, err := io.ReadAll(c)
		require.NoError(t, err)
		require.Equal(t, "partial", string(got))
	})
}

// Abort sends a close with the condition and fails both ends at once.
func TestSenderAbort(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f, _, c, start := initiator(t, nil)
		proceed(start, 4096, 65536)
		c.Abort(stanza.PolicyViolation, "first byte is not TLS")
		s := f.next(t)
		require.Equal(t, xstanza.Close{SID: sid, Error: "policy-violation"}, s.elem)
		_, err := c.Read(make([]byte, 1))
		var ae *AbortError
		require.ErrorAs(t, err, &ae)
		require.False(t, ae.Remote)
		require.Contains(t, err.Error(), "first byte is not TLS")
	})
}

// A refused start comes back from Established, Read and Write as the
// peer's stanza error.
func TestStartRefused(t *testing.T) {
	for _, cond := range []stanza.Condition{stanza.ServiceUnavailable, stanza.NotAcceptable, stanza.Conflict, stanza.BadRequest} {
		t.Run(string(cond), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f, _, c, start := initiator(t, nil)
				c.Write([]byte("ClientHello"))
				d0 := f.next(t)
				start.fail(stanza.Cancel, cond)
				d0.fail(stanza.Cancel, stanza.ItemNotFound) // no tunnel: the start's error decides
				err := c.Established(context.Background())
				require.ErrorIs(t, err, stanza.Error{Condition: cond})
				_, err = c.Read(make([]byte, 1))
				require.ErrorIs(t, err, stanza.Error{Condition: cond})
			})
		})
	}
}

// A start refused with a wait error goes again; the first flight that found
// no tunnel then goes again too.
func TestStartWaitRetried(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f, _, c, start := initiator(t, nil)
		c.Write([]byte("ClientHello"))
		d0 := f.next(t)
		d0.fail(stanza.Cancel, stanza.ItemNotFound)
		start.fail(stanza.Wait, stanza.ResourceConstraint)
		start2 := f.next(t)
		require.Equal(t, start.elem, start2.elem)
		proceed(start2, 4096, 65536)
		again := f.next(t)
		require.Equal(t, d0.elem, again.elem)
		again.ack()
		require.NoError(t, c.Established(context.Background()))
	})
}

// An initiator that gets a malformed proceed aborts the tunnel.
func TestMalformedProceed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f, _, c, start := initiator(t, nil)
		start.ackWith(xstanza.Proceed{SID: sid, BlockSize: 100, Window: 65536}.TokenReader())
		s := f.next(t)
		require.Equal(t, xstanza.Close{SID: sid, Error: "bad-request"}, s.elem)
		err := c.Established(context.Background())
		require.ErrorIs(t, err, stanza.Error{Condition: stanza.BadRequest})
	})
}

// Deadlines behave as net.Conn documents: os.ErrDeadlineExceeded, pending
// calls unblocked, extendable, and the tunnel stays usable.
func TestDeadlines(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f, e, c, start := initiator(t, &Config{ChunkSize: 4096})
		proceed(start, 4096, 4096)
		t0 := time.Now()
		c.SetReadDeadline(t0.Add(time.Second))
		_, err := c.Read(make([]byte, 1))
		require.ErrorIs(t, err, os.ErrDeadlineExceeded)
		var ne net.Error
		require.ErrorAs(t, err, &ne)
		require.True(t, ne.Timeout())
		require.Equal(t, time.Second, time.Since(t0))

		// A pending Read is released by moving the deadline into the past,
		// and extended by moving it later.
		c.SetReadDeadline(time.Time{})
		res := make(chan error)
		go func() { _, err := c.Read(make([]byte, 1)); res <- err }()
		synctest.Wait()
		c.SetReadDeadline(time.Now().Add(time.Hour))
		synctest.Wait()
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		t1 := time.Now()
		require.ErrorIs(t, <-res, os.ErrDeadlineExceeded)
		require.Equal(t, 2*time.Second, time.Since(t1))

		// Writes: 4096 of credit and one block queued, then Write blocks.
		c.SetReadDeadline(time.Time{})
		c.SetWriteDeadline(time.Now().Add(3 * time.Second))
		n, err := c.Write(make([]byte, 20000))
		require.ErrorIs(t, err, os.ErrDeadlineExceeded)
		require.Equal(t, 4096+4096, n)
		s := f.next(t)
		s.ack()
		// Still usable: data arrives and is read.
		c.SetWriteDeadline(time.Time{})
		require.True(t, isAck(deliver(t, e, stanza.SetIQ, bobJID, data(0, "ok"))))
		require.Equal(t, "ok", readAll(t, c, 2))
	})
}

// Close unblocks pending Read and Write with net.ErrClosed.
func TestCloseUnblocks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f, e, c, start := initiator(t, &Config{CloseTimeout: 5 * time.Second, ChunkSize: 4096})
		proceed(start, 4096, 4096)
		errs := make(chan error, 2)
		go func() { _, err := c.Read(make([]byte, 1)); errs <- err }()
		go func() { _, err := c.Write(make([]byte, 20000)); errs <- err }()
		synctest.Wait()
		s := f.next(t)
		s.ack()
		closed := make(chan error)
		go func() { closed <- c.Close() }()
		require.ErrorIs(t, <-errs, net.ErrClosed)
		require.ErrorIs(t, <-errs, net.ErrClosed)
		// The peer grants no credit: Close gives up after CloseTimeout and
		// aborts with resource-constraint.
		t0 := time.Now()
		ab := f.next(t)
		require.Equal(t, 5*time.Second, time.Since(t0))
		require.Equal(t, xstanza.Close{SID: sid, Error: "resource-constraint", Reason: xstanza.ReasonTimeout}, ab.elem)
		err := <-closed
		require.ErrorIs(t, err, stanza.Error{Condition: stanza.ResourceConstraint})
		_ = e
	})
}

// When the session ends, everything in flight fails at once instead of
// waiting for timeouts.
func TestSessionEnded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f, e, c, start := initiator(t, nil)
		proceed(start, 4096, 65536)
		c.Write([]byte("x"))
		s := f.next(t)
		e.SessionEnded(errors.New("stream closed by server"))
		_, err := c.Read(make([]byte, 1))
		require.ErrorIs(t, err, ErrSessionClosed)
		require.Contains(t, err.Error(), "stream closed by server")
		require.False(t, s.waiting(), "nothing waits for an answer once the session is gone")
		_, err = e.Open(jid.MustParse(bobJID), "s9")
		require.ErrorIs(t, err, ErrSessionClosed)
	})
}

// All tunnels of a session together never have more than SessionWindow
// bytes unacknowledged, and they take turns: none starves. (Under synctest
// no time passes between a stanza and its answer, so the in-flight bound
// does not adapt: it stays at its start value, which this SessionWindow
// bounds.)
func TestSessionWindow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const window = 8192
		f, e := newFakeEndpoint(&Config{SessionWindow: window, ChunkSize: 4096})
		t.Cleanup(func() { e.Close() })
		var conns []*Conn
		for i := range 3 {
			c, err := e.Open(jid.MustParse(bobJID), fmt.Sprintf("s%d", i))
			require.NoError(t, err)
			start := f.next(t)
			start.ackWith(xstanza.Proceed{SID: c.SID(), BlockSize: 65535, Window: 1 << 20}.TokenReader())
			require.NoError(t, c.Established(context.Background()))
			conns = append(conns, c)
		}
		// One after the other, so that the order in which they start to wait
		// for the budget is known: s0 fills it, then s1 and s2 queue.
		for _, c := range conns {
			go c.Write(make([]byte, 100<<10))
			synctest.Wait()
		}
		inflight := map[string]int{}
		var out []*sentIQ
		total := 0
		for {
			s, ok := tryNext(f)
			if !ok {
				break
			}
			d := s.elem.(xstanza.Data)
			inflight[d.SID] += len(d.Payload)
			total += len(d.Payload)
			out = append(out, s)
		}
		require.Equal(t, window, total, "the session window is full, not more")
		require.Equal(t, map[string]int{"s0": window}, inflight)
		// Each acknowledged block frees room for the next tunnel in turn:
		// first those that have just become active (s1, then s2: a chat
		// message must not wait behind a file), then each busy tunnel in
		// turn, one block each (s0, s1, ...) — turns, not the same tunnel
		// over and over.
		sent := map[string]int{}
		for _, want := range []string{"s1", "s2", "s0", "s1", "s2", "s0"} {
			d := out[0].elem.(xstanza.Data)
			sent[d.SID] += len(d.Payload)
			out[0].ack()
			out = out[1:]
			synctest.Wait()
			s := f.next(t)
			require.Equal(t, want, s.elem.(xstanza.Data).SID)
			out = append(out, s)
		}
		// Everything moves in the end.
		for len(out) > 0 {
			s := out[0]
			out = out[1:]
			d := s.elem.(xstanza.Data)
			sent[d.SID] += len(d.Payload)
			s.ack()
			synctest.Wait()
			for {
				s, ok := tryNext(f)
				if !ok {
					break
				}
				out = append(out, s)
			}
		}
		for _, c := range conns {
			require.Equal(t, 100<<10, sent[c.SID()], c.SID())
		}
	})
}

// As TCP restarts its retransmission timer on each acknowledgement, an IQ
// that waits behind others the path is still delivering is not sent again
// while answers keep coming.
func TestSenderTimerRestartsOnProgress(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f, _, c, start := initiator(t, &Config{AckTimeout: 2 * time.Second, ChunkSize: 1024})
		proceed(start, 4096, 65536)
		_, err := c.Write(make([]byte, 3*1024))
		require.NoError(t, err)
		var out []*sentIQ
		for range 3 {
			out = append(out, f.next(t))
		}
		for _, s := range out {
			time.Sleep(1500 * time.Millisecond) // each answer within 2 s of the last
			synctest.Wait()
			f.none(t)
			s.ack()
		}
		synctest.Wait()
		f.none(t)
		require.NoError(t, c.Err())
	})
}

// The peer's answer may wait in its server's queue behind the stanzas it
// sent before (a shaper reading it at a few KB/s): while they keep
// arriving, an IQ is not sent again, but only for peerWait timeouts, so
// that a lost answer does not wait for the peer to fall silent.
func TestTimerWaitsWhilePeerStanzasArrive(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f, e, c, start := initiator(t, &Config{AckTimeout: time.Second, MinAckTimeout: time.Second})
		proceed(start, 4096, 65536)
		_, err := c.Write([]byte("hello"))
		require.NoError(t, err)
		require.Equal(t, []byte("hello"), payloadOf(t, f.next(t)))
		for i := range 9 {
			time.Sleep(400 * time.Millisecond)
			synctest.Wait()
			f.none(t)
			require.True(t, isAck(deliver(t, e, stanza.SetIQ, bobJID, data(i, "x"))))
		}
		time.Sleep(400 * time.Millisecond) // peerWait timeouts after the sending
		synctest.Wait()
		require.Equal(t, []byte("hello"), payloadOf(t, f.next(t)), "sent again")
	})
}

// SetChunkSize changes the size of the data elements a tunnel sends from
// its next element on, open tunnels included, always within the peer's
// block-size; Config reports the current value.
func TestSetChunkSize(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f, e, c, start := initiator(t, &Config{ChunkSize: 6000})
		proceed(start, 8192, 1<<20)
		sizes := func(total int) []int {
			go c.Write(bytes.Repeat([]byte("z"), total))
			var got []int
			for sum := 0; sum < total; {
				synctest.Wait()
				s := f.next(t)
				n := len(payloadOf(t, s))
				got = append(got, n)
				sum += n
				s.ack()
			}
			synctest.Wait()
			return got
		}
		require.Equal(t, []int{6000, 6000}, sizes(12000))
		e.SetChunkSize(2880)
		require.Equal(t, 2880, e.ChunkSize())
		require.Equal(t, 2880, e.Config().ChunkSize)
		require.Equal(t, []int{2880, 2880, 240}, sizes(6000))
		e.SetChunkSize(60000) // above the peer's block-size of 8192
		require.Equal(t, []int{8192, 1808}, sizes(10000))
		e.SetChunkSize(0) // bounded like Config.ChunkSize
		require.Equal(t, 1, e.ChunkSize())
	})
}
