package transport

import (
	"errors"
	"io"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"

	xstanza "github.com/xmppxtls/xtls/stanza"
)

// An idle tunnel asks, after KeepAlive of silence, whether its peer is
// there (a credit it already has); an answer is proof of life, and so is
// any traffic; after KeepAlive and KeepAliveTimeout of silence the tunnel
// fails with a *PeerGoneError and tells the peer why.
func TestKeepAlive(t *testing.T) {
	m := opened(&Config{KeepAlive: 30 * time.Second, KeepAliveTimeout: 30 * time.Second}, 4096, 65536)
	m.t.heard(m.now)
	require.Equal(t, m.now.Add(30*time.Second), m.t.deadline())
	m.advance(30*time.Second - time.Nanosecond)
	m.wantNothing(t)
	m.advance(time.Nanosecond)
	probe := m.next()
	require.NotNil(t, probe)
	require.Equal(t, kCredit, probe.kind)
	require.Equal(t, m.t.rflow.limit, probe.limit, "a limit the peer has: it changes nothing")
	m.sent(probe)
	m.wantNothing(t)
	// Answered after 10 s: alive; the next probe is 30 s after the answer.
	m.advance(10 * time.Second)
	m.t.heard(m.now)
	m.ack(probe)
	require.Equal(t, m.now.Add(30*time.Second), m.t.deadline())
	// Traffic is proof of life: no probe while it flows.
	for range 10 {
		m.advance(20 * time.Second)
		m.t.heard(m.now)
		m.t.onData(m.t.ro.next, []byte("x"), nil)
		m.wantNothing(t)
	}
	// Silence: a probe at 30 s, nothing in answer, gone at 60 s.
	m.advance(30 * time.Second)
	probe = m.next()
	require.True(t, probe.probe)
	m.sent(probe)
	m.advance(29 * time.Second)
	require.False(t, m.t.gone())
	m.wantNothing(t) // a probe is not sent again
	m.advance(time.Second)
	require.True(t, m.t.gone())
	require.ErrorIs(t, m.t.err, ErrPeerGone)
	var pg *PeerGoneError
	require.ErrorAs(t, m.t.err, &pg)
	ab := m.next()
	require.Equal(t, kAbort, ab.kind)
	require.Equal(t, xstanza.ReasonPeerGone, ab.why)
}

// A one-way receiver learns that its sender is gone: here the sender's
// server answers the receiver's keep-alive for it (service-unavailable).
func TestReceiverLearnsSenderGone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f, e, c := responder(t, nil)
		require.True(t, isAck(deliver(t, e, stanza.SetIQ, bobJID, data(0, "first"))))
		require.Equal(t, "first", readAll(t, c, 5))
		t0 := time.Now()
		errc := make(chan error, 1)
		go func() {
			_, err := c.Read(make([]byte, 1))
			errc <- err
		}()
		probe := f.next(t)
		require.Equal(t, 30*time.Second, time.Since(t0))
		require.IsType(t, xstanza.Credit{}, probe.elem)
		probe.fail(stanza.Cancel, stanza.ServiceUnavailable)
		err := <-errc
		require.ErrorIs(t, err, ErrPeerGone)
		require.Contains(t, err.Error(), "went away")
	})
	// And when nothing answers at all, within KeepAlive + KeepAliveTimeout.
	synctest.Test(t, func(t *testing.T) {
		f, e, c := responder(t, nil)
		require.True(t, isAck(deliver(t, e, stanza.SetIQ, bobJID, data(0, "first"))))
		t0 := time.Now()
		_, err := io.ReadAll(c)
		require.ErrorIs(t, err, ErrPeerGone)
		require.Equal(t, 60*time.Second, time.Since(t0))
		require.IsType(t, xstanza.Credit{}, f.next(t).elem)
		require.Equal(t, xstanza.Close{SID: sid, Error: "remote-server-timeout", Reason: xstanza.ReasonPeerGone}, f.next(t).elem)
	})
}

// The application can say a peer is gone (its presence became
// unavailable): its tunnels fail at once.
func TestPeerGone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		_, e, c := responder(t, nil)
		e.PeerGone(jid.MustParse(bobJID), "unavailable presence")
		_, err := c.Read(make([]byte, 1))
		require.ErrorIs(t, err, ErrPeerGone)
		require.Contains(t, err.Error(), "unavailable presence")
	})
}

// An abort says why, and the far end puts it in words; refused data says
// the peer closed the tunnel.
func TestErrorsThatCross(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f, e, c := responder(t, nil)
		require.Contains(t, deliver(t, e, stanza.SetIQ, bobJID, encodeElem(xstanza.Close{SID: sid, Error: "gone", Reason: xstanza.ReasonShutdown})), "<closed")
		_, err := c.Read(make([]byte, 1))
		var ae *AbortError
		require.ErrorAs(t, err, &ae)
		require.True(t, ae.Remote)
		require.Equal(t, xstanza.ReasonShutdown, ae.Why)
		require.Contains(t, err.Error(), "the peer aborted the tunnel: it is shutting down")
		_ = f
	})
	synctest.Test(t, func(t *testing.T) {
		f, _, c, start := initiator(t, nil)
		proceed(start, 4096, 65536)
		c.AbortBecause(stanza.Gone, xstanza.ReasonShutdown, "SIGTERM")
		require.Equal(t, xstanza.Close{SID: sid, Error: "gone", Reason: xstanza.ReasonShutdown}, f.next(t).elem)
	})
	synctest.Test(t, func(t *testing.T) {
		f, _, c, start := initiator(t, nil)
		proceed(start, 4096, 65536)
		_, err := c.Write([]byte("after the reader left"))
		require.NoError(t, err)
		f.next(t).fail(stanza.Cancel, stanza.ItemNotFound)
		_, err = c.Write([]byte("x"))
		require.ErrorIs(t, err, ErrPeerClosed)
		require.False(t, errors.Is(err, ErrPeerGone))
		require.Contains(t, err.Error(), "the peer closed the tunnel")
		require.ErrorIs(t, err, stanza.Error{Condition: stanza.ItemNotFound}, "the stanza error is still there")
	})
}
