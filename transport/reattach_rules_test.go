package transport

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"

	xstanza "github.com/xmppxtls/xtls/stanza"
)

var reKey = bytes.Repeat([]byte{7}, 32)

const bob2JID = "bob@example.net/b2"

// bobReattach is bob's re-attach of tunnel sid from old to new (bob is the
// initiator of the tunnels responder makes).
func bobReattach(sid, old, new string, counter uint64) string {
	return encodeElem(xstanza.Reattach{SID: sid, Old: old, Counter: counter,
		Proof: reattachProof(reKey, true, sid, old, new, counter)})
}

// The receiver's checks in their order (docs/protocol.md §8.2.3): a
// re-attach that is malformed, from another account, for another tunnel,
// with a proof that does not verify (a wrong key, another sid, our own
// role reflected, another new JID) or a counter already used is refused
// and changes nothing; the right one binds the tunnel to the new JID.
func TestReattachRefusals(t *testing.T) {
	_, e, c := responder(t, &Config{Reattach: time.Minute})
	c.AllowReattach(reKey)
	wrongKey := encodeElem(xstanza.Reattach{SID: sid, Old: bobJID, Counter: 1,
		Proof: reattachProof(bytes.Repeat([]byte{8}, 32), true, sid, bobJID, bob2JID, 1)})
	reflected := encodeElem(xstanza.Reattach{SID: sid, Old: bobJID, Counter: 1,
		Proof: reattachProof(reKey, false, sid, bobJID, bob2JID, 1)})
	for _, tc := range []struct {
		name, from, elem string
		cond             stanza.Condition
	}{
		{"malformed", bob2JID, `<reattach xmlns="urn:xmpp:xtls:0" sid="s1" old="bob@example.net/b" counter="0" proof="x"/>`, stanza.BadRequest},
		{"third party", "mallory@example.net/m", bobReattach(sid, bobJID, "mallory@example.net/m", 1), stanza.ItemNotFound},
		{"third party claiming its own old JID", "mallory@example.net/m", bobReattach(sid, "mallory@example.net/x", "mallory@example.net/m", 1), stanza.ItemNotFound},
		{"unknown sid", bob2JID, bobReattach("s9", bobJID, bob2JID, 1), stanza.ItemNotFound},
		{"wrong key", bob2JID, wrongKey, stanza.NotAuthorized},
		{"proof for another new JID", bob2JID, bobReattach(sid, bobJID, "bob@example.net/b3", 1), stanza.NotAuthorized},
		{"our own role reflected", bob2JID, reflected, stanza.NotAuthorized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := deliver(t, e, stanza.SetIQ, tc.from, tc.elem)
			require.Equal(t, string(tc.cond), errCond(resp), resp)
			require.Equal(t, bobJID, c.Peer().String(), "nothing changed")
			require.Zero(t, c.Reattachments())
		})
	}
	// Another tunnel's proof (same key, another sid) does not fit this one.
	resp := deliver(t, e, stanza.SetIQ, bob2JID, encodeElem(xstanza.Reattach{SID: sid, Old: bobJID, Counter: 1,
		Proof: reattachProof(reKey, true, "s2", bobJID, bob2JID, 1)}))
	require.Equal(t, "not-authorized", errCond(resp), resp)

	// The right one.
	resp = deliver(t, e, stanza.SetIQ, bob2JID, bobReattach(sid, bobJID, bob2JID, 2))
	require.True(t, isAck(resp), resp)
	require.Equal(t, bob2JID, c.Peer().String())
	require.Equal(t, 1, c.Reattachments())
	// Data now comes from the new JID; the old one no longer has a tunnel.
	require.True(t, isAck(deliver(t, e, stanza.SetIQ, bob2JID, data(0, "hello"))))
	require.Equal(t, "item-not-found", errCond(deliver(t, e, stanza.SetIQ, bobJID, data(1, "x"))))
	require.Equal(t, "hello", readAll(t, c, 5))

	// The same re-attach again (its result was lost) is answered again;
	// an older counter, or the same counter with another old JID, is a
	// replay.
	require.True(t, isAck(deliver(t, e, stanza.SetIQ, bob2JID, bobReattach(sid, bobJID, bob2JID, 2))))
	require.Equal(t, 1, c.Reattachments())
	require.Equal(t, "not-authorized", errCond(deliver(t, e, stanza.SetIQ, bob2JID, bobReattach(sid, bobJID, bob2JID, 1))))
	require.Equal(t, "not-authorized", errCond(deliver(t, e, stanza.SetIQ, "bob@example.net/b3", bobReattach(sid, bob2JID, "bob@example.net/b3", 2))))
	require.Equal(t, bob2JID, c.Peer().String())
}

// A tunnel that was not allowed to be re-attached cannot be, even with a
// proof under the right key: the receiver has no key.
func TestReattachNotAllowed(t *testing.T) {
	_, e, c := responder(t, &Config{Reattach: time.Minute})
	resp := deliver(t, e, stanza.SetIQ, bob2JID, bobReattach(sid, bobJID, bob2JID, 1))
	require.Equal(t, "item-not-found", errCond(resp), resp)
	require.Equal(t, bobJID, c.Peer().String())
}

// The peer's server answers that the peer is gone: a tunnel that may be
// re-attached is suspended (not failed); what it had sent goes again, to
// the new JID, once the peer's re-attach comes; past Config.Reattach a
// suspended tunnel fails with a *DetachedError that still says why.
func TestReattachSuspendsOnPeerGone(t *testing.T) {
	f, e, c := responder(t, &Config{Reattach: time.Minute, KeepAlive: -1})
	c.AllowReattach(reKey)
	_, err := c.Write([]byte("abc"))
	require.NoError(t, err)
	d := f.next(t)
	require.IsType(t, xstanza.Data{}, d.elem)
	d.fail(stanza.Cancel, stanza.ServiceUnavailable)
	require.True(t, c.Suspended())
	require.NoError(t, c.Err())

	// The peer comes back as b2: the block goes again, there.
	resp := deliver(t, e, stanza.SetIQ, bob2JID, bobReattach(sid, bobJID, bob2JID, 1))
	require.True(t, isAck(resp), resp)
	again := f.next(t)
	require.Equal(t, bob2JID, again.to.String())
	require.Equal(t, xstanza.Data{SID: sid, Seq: 0, Payload: []byte("abc")}, again.elem)
	again.ack()
	require.False(t, c.Suspended())

	// Gone again, and never back: the bound ends it.
	_, err = c.Write([]byte("def"))
	require.NoError(t, err)
	f.next(t).fail(stanza.Cancel, stanza.RecipientUnavailable)
	require.True(t, c.Suspended())
	e.call(func(now time.Time) {
		c.t.onTimer(now.Add(time.Minute))
		e.markDirty(c)
	})
	_, err = c.Read(make([]byte, 1))
	var de *DetachedError
	require.ErrorAs(t, err, &de)
	require.ErrorIs(t, err, ErrNotReattached)
	require.ErrorIs(t, err, ErrPeerGone)
}

// Without AllowReattach, or with Config.Reattach zero, the peer's server
// saying it is gone breaks the tunnel at once, as before.
func TestNoReattachFailsAtOnce(t *testing.T) {
	for _, tc := range []struct {
		name  string
		cfg   Config
		allow bool
	}{
		{"not allowed", Config{Reattach: time.Minute}, false},
		{"no bound", Config{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, _, c := responder(t, &tc.cfg)
			if tc.allow {
				c.AllowReattach(reKey)
			}
			_, err := c.Write([]byte("abc"))
			require.NoError(t, err)
			f.next(t).fail(stanza.Cancel, stanza.ServiceUnavailable)
			_, err = c.Read(make([]byte, 1))
			require.ErrorIs(t, err, ErrPeerGone)
			require.NotErrorIs(t, err, ErrNotReattached)
		})
	}
}

// Our session ends and a new one of the same account replaces it: the
// tunnel sends the peer a re-attach from the new JID whose proof binds the
// sid, both JIDs and the counter, and goes on once it is taken; a session
// of another account is refused.
func TestReattachOurSession(t *testing.T) {
	f, e, c := responder(t, &Config{Reattach: time.Minute, KeepAlive: -1})
	c.AllowReattach(reKey)
	_, err := c.Write([]byte("abc"))
	require.NoError(t, err)
	first := f.next(t) // data 0, never answered: the session ends
	require.IsType(t, xstanza.Data{}, first.elem)
	e.SessionEnded(nil)
	require.True(t, e.Detached())
	require.True(t, c.Suspended())

	require.ErrorIs(t, e.Reattach(newFake("mallory@example.net/a2")), ErrOtherAccount)
	f2 := newFake("alice@example.net/a2")
	f2.e = e
	require.NoError(t, e.Reattach(f2))
	require.Equal(t, "alice@example.net/a2", c.LocalAddr().String())
	ra := f2.next(t)
	require.Equal(t, bobJID, ra.to.String())
	want := xstanza.Reattach{SID: sid, Old: aliceJID, Counter: 1,
		Proof: reattachProof(reKey, false, sid, aliceJID, "alice@example.net/a2", 1)}
	require.Equal(t, want, ra.elem)
	f2.none(t) // nothing else before the peer has taken it
	ra.ack()
	again := f2.next(t)
	require.Equal(t, xstanza.Data{SID: sid, Seq: 0, Payload: []byte("abc")}, again.elem)
	again.ack()
	require.False(t, c.Suspended())
	require.Equal(t, 1, c.Reattachments())
	// The answer to the old session's IQ, should it come, changes nothing.
	first.ack()
	require.NoError(t, c.Err())
}

// The peer refuses our re-attach (it forgot the tunnel): the tunnel fails
// with a *ReattachError.
func TestReattachRefusedByPeer(t *testing.T) {
	f2, c := reattachedResponder(t)
	f2.next(t).fail(stanza.Cancel, stanza.ItemNotFound)
	_, err := c.Read(make([]byte, 1))
	require.ErrorIs(t, err, ErrReattachRefused)
	require.ErrorIs(t, err, stanza.Error{Condition: stanza.ItemNotFound})
}

// reattachedResponder returns responder's tunnel, allowed to re-attach,
// after alice's session ended and alice/a2 replaced it; its re-attach is
// the next IQ on the returned session.
func reattachedResponder(t *testing.T) (*fakeSession, *Conn) {
	t.Helper()
	_, e, c := responder(t, &Config{Reattach: time.Minute, KeepAlive: -1})
	c.AllowReattach(reKey)
	e.SessionEnded(nil)
	f2 := newFake("alice@example.net/a2")
	f2.e = e
	require.NoError(t, e.Reattach(f2))
	return f2, c
}

// Both ends lost their sessions: our re-attach to the peer's old JID meets
// service-unavailable, and the tunnel waits until the peer's new full JID
// is known (PeerAvailable), then re-attaches there.
func TestReattachMeetsThroughPresence(t *testing.T) {
	f2, c := reattachedResponder(t)
	e := c.ep
	f2.next(t).fail(stanza.Cancel, stanza.ServiceUnavailable)
	require.True(t, c.Suspended())
	require.NoError(t, c.Err())
	e.PeerAvailable(jid.MustParse("carol@example.net/c")) // another account: nothing
	e.PeerAvailable(jid.MustParse(bob2JID))
	ra := f2.next(t)
	require.Equal(t, bob2JID, ra.to.String())
	require.Equal(t, uint64(2), ra.elem.(xstanza.Reattach).Counter)
	ra.ack()
	require.False(t, c.Suspended())
	require.Equal(t, bob2JID, c.Peer().String())
}

// The proof's test vectors of docs/protocol.md §8.2.2.
func TestReattachProofVectors(t *testing.T) {
	key := make([]byte, 32)
	for i := range key {
		key[i] = byte(i)
	}
	for _, tc := range []struct {
		initiator     bool
		sid, old, new string
		counter       uint64
		want          string
	}{
		{true, "s1", "alice@example.net/phone", "alice@example.net/laptop", 1, "7b5a284f1b0fd9f0fadb2376700a1b3b8f64e780d84cd121980d17de6c237e97"},
		{false, "s1", "bob@example.org/b", "bob@example.org/b2", 7, "5f8070e4efff98e73ecc91e1f4601425b4345b0592be8f05f7e412b12a255f25"},
	} {
		require.Equal(t, tc.want, hex.EncodeToString(reattachProof(key, tc.initiator, tc.sid, tc.old, tc.new, tc.counter)))
	}
}

// A block far below the next expected seq (300 blocks, beyond the 256 of
// §5.4) is a violation on a tunnel that was never re-attached, and a late
// copy (acknowledged and dropped) on one that was: servers keep no order
// between two sessions of an account.
func TestReattachLateCopies(t *testing.T) {
	for _, reattached := range []bool{false, true} {
		t.Run(fmt.Sprint("reattached=", reattached), func(t *testing.T) {
			_, e, c := responder(t, &Config{Reattach: time.Minute, KeepAlive: -1})
			c.AllowReattach(reKey)
			from := bobJID
			if reattached {
				require.True(t, isAck(deliver(t, e, stanza.SetIQ, bob2JID, bobReattach(sid, bobJID, bob2JID, 1))))
				from = bob2JID
			}
			for i := range 300 {
				require.True(t, isAck(deliver(t, e, stanza.SetIQ, from, data(i, "x"))))
			}
			require.Equal(t, strings.Repeat("x", 300), readAll(t, c, 300))
			resp := deliver(t, e, stanza.SetIQ, from, data(0, "x"))
			if reattached {
				require.True(t, isAck(resp), resp)
				require.NoError(t, c.Err())
			} else {
				require.Equal(t, "bad-request", errCond(resp), resp)
			}
		})
	}
}

// Word that the peer left may come after its re-attach from the same full
// JID (a server binds the same resource again; presence and IQs of two
// sessions keep no order). The tunnel it suspends probes the peer every
// second, and the peer's answer ends the suspension.
func TestReattachStaleGoneProbes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f, e, c := responder(t, &Config{Reattach: time.Minute, KeepAlive: -1})
		c.AllowReattach(reKey)
		require.True(t, isAck(deliver(t, e, stanza.SetIQ, bobJID, bobReattach(sid, bobJID, bobJID, 1))))
		e.PeerGone(jid.MustParse(bobJID), "its presence became unavailable") // stale
		require.True(t, c.Suspended())
		synctest.Wait()
		f.none(t)
		time.Sleep(probeEvery)
		synctest.Wait()
		p := f.next(t)
		require.Equal(t, bobJID, p.to.String())
		require.IsType(t, xstanza.Credit{}, p.elem)
		p.fail(stanza.Cancel, stanza.ServiceUnavailable) // not there (yet)
		require.True(t, c.Suspended())
		time.Sleep(probeEvery)
		synctest.Wait()
		f.next(t).ack()
		require.False(t, c.Suspended())
		require.NoError(t, c.Err())
	})
}
