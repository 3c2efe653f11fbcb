package transport

import (
	"bytes"
	"crypto/hmac"
	"encoding/xml"
	"errors"
	"time"

	"mellium.im/xmlstream"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"

	xstanza "github.com/xmppxtls/xtls/stanza"
)

// Re-attachment, the Endpoint's part (docs/protocol.md §8.2). When the
// session ends, tunnels that may be re-attached are suspended and the
// Endpoint waits with them (detached) for the application to give it a new
// session of the same account (Reattach); then each tunnel sends the peer,
// from the new full JID, a re-attach with a proof that only the tunnel's
// two TLS endpoints can make, and goes on where it stopped once the peer
// has taken it. When the peer's session ends, its tunnels here are
// suspended likewise until its re-attach comes.

// ErrOtherAccount is returned by Reattach for a session of another account
// (bare JID) than the Endpoint's.
var ErrOtherAccount = errors.New("xtls/transport: the new session is of another account")

// AllowReattach lets the tunnel be re-attached (Config.Reattach says for
// how long it waits): when its path to the peer is lost it is suspended
// rather than failed, and it is continued from a new session (ours or the
// peer's) by a re-attach whose proof is keyed with key. key must be a
// secret only the tunnel's two ends know, the same at both ends (xtls
// derives it from the TLS exporter); the peer must have allowed it too. A
// nil key forbids re-attachment again.
func (c *Conn) AllowReattach(key []byte) {
	k := bytes.Clone(key) // nil stays nil
	c.ep.call(func(time.Time) { c.t.re.key = k })
}

// Reattachments returns how many times the tunnel has been re-attached:
// bound to a new session of ours, or of the peer's. It is cheap (no wait
// for the loop): xtls looks at it on every Write.
func (c *Conn) Reattachments() int { return int(c.reattached.Load()) }

// noteReattached publishes c's count of re-attachments (on the loop).
func (c *Conn) noteReattached() { c.reattached.Store(int32(c.t.re.count)) }

// Suspended reports whether the tunnel waits to be re-attached now.
func (c *Conn) Suspended() (s bool) {
	c.ep.call(func(time.Time) { s = c.t.re.suspended && !c.t.gone() })
	return s
}

// Detached reports whether the Endpoint's session is gone and its
// suspended tunnels wait for Reattach.
func (e *Endpoint) Detached() (d bool) {
	e.call(func(time.Time) { d = e.detached })
	return d
}

// lose handles the end of the session (cause): tunnels that may be
// re-attached are suspended and the Endpoint waits with them (detached);
// the others fail. With none to wait for, the Endpoint shuts down.
func (e *Endpoint) lose(cause error, now time.Time) {
	if e.err != nil || e.detached {
		return
	}
	e.path.kill()
	held := false
	for _, c := range e.conns() {
		if c.t.suspend(now, cause) {
			held = true
		} else {
			c.t.fail(cause)
		}
		e.markDirty(c)
	}
	if !held {
		e.shutdown(cause, true)
		return
	}
	e.detached = true
	e.lostErr = cause
	e.watchAt = time.Time{}
	e.log.Info("xtls: session lost; tunnels wait to be re-attached", "err", cause, "for", e.cfg.Reattach)
}

// endDetached shuts a detached Endpoint down once no tunnel waits.
func (e *Endpoint) endDetached() {
	if e.detached && len(e.tunnels) == 0 {
		e.detached = false
		e.shutdown(e.lostErr, true)
	}
}

// Reattach gives the Endpoint a new session of the same account (its
// full JID may differ: a new resource), after the last one ended
// (SessionEnded) or while it still runs. Register the Endpoint's handlers
// in the new session's mux first (Handle). Every tunnel that may be
// re-attached sends its peer a re-attach from the new full JID and goes
// on once the peer takes it; tunnels that may not fail with
// ErrSessionClosed. Starts and Opens use the new session from now on.
//
// It fails with ErrOtherAccount for another account's session, and with
// the Endpoint's error once it is closed or has shut down (no tunnel was
// left to wait): then make a new Endpoint.
func (e *Endpoint) Reattach(s Session) error {
	local := s.LocalAddr()
	var err error
	e.call(func(now time.Time) {
		switch {
		case e.err != nil:
			err = e.err
			return
		case !local.Bare().Equal(e.local.Bare()):
			err = ErrOtherAccount
			return
		}
		e.path.kill()
		e.sess = s
		e.local, e.localStr = local, local.String()
		e.localAddr.Store(&local)
		p := newIQPath(e, s)
		p.setChunk(e.ChunkSize(), false)
		e.setPath(p)
		e.detached, e.lostErr = false, nil
		for _, c := range e.conns() {
			c.sched = schedState{}
			e.accountSuspension(c, now)
			if c.t.gone() {
				continue
			}
			if c.t.reattachable() || c.t.re.suspended {
				c.t.reattachFrom(now, "")
			} else {
				c.t.fail(ErrSessionClosed)
			}
			e.markDirty(c)
		}
		if _, ok := s.(sessionState); ok && len(e.tunnels) > 0 {
			e.watchAt = now.Add(watchInterval)
		}
	})
	return err
}

// PeerAvailable tells the Endpoint that peer (a full JID) is online: its
// presence became available, say. Suspended tunnels with another resource
// of the same account send it a re-attach: if both ends lost their
// sessions at once, neither knows where the other is now, and this is how
// they meet.
func (e *Endpoint) PeerAvailable(peer jid.JID) {
	if peer.Resourcepart() == "" {
		return
	}
	p, bare := peer.String(), peer.Bare().String()
	e.post(func(now time.Time) {
		if e.detached || e.err != nil {
			return
		}
		for _, c := range e.tunnels {
			if c.t.bare == bare && c.peerStr != p && c.t.re.suspended && !c.t.gone() {
				c.t.reattachFrom(now, p)
				e.markDirty(c)
			}
		}
	})
}

// accountSuspension brings the path's bookkeeping in line with c's
// requeues and suspension (on every update): after a requeue nothing of c
// waits for the writer any more and what it had in flight no longer counts
// against the session's bound; a suspended tunnel leaves its bytestream.
func (e *Endpoint) accountSuspension(c *Conn, now time.Time) {
	if c.epoch != c.t.re.epoch {
		// The machine put back in line what it had sent (requeue): it
		// goes again, counted afresh in the bound, and nothing of the
		// earlier attempts waits for the writer. With the peer at the
		// same full JID nothing else would tell.
		c.epoch = c.t.re.epoch
		e.path.cancel(c)
		if c.inflight > 0 {
			e.path.ctl.dropped(c.inflight)
			c.inflight = 0
		}
	}
	if c.t.re.suspended && c.bs != nil {
		c.bs.quit(now, e.cfg.CloseTimeout) // c.bs is nil afterwards
	}
}

// reattachElement is c's re-attach f, with its proof.
func (e *Endpoint) reattachElement(c *Conn, f *flight) xstanza.Reattach {
	return xstanza.Reattach{
		SID: c.sid, Old: c.boundLocal, Counter: f.counter,
		Proof: reattachProof(c.t.re.key, c.initiator, c.sid, c.boundLocal, e.localStr, f.counter),
	}
}

// reattachAnswered handles the answer a to c's re-attach f.
func (e *Endpoint) reattachAnswered(c *Conn, f *flight, a *answer, now time.Time) {
	defer e.markDirty(c)
	e.log.Debug("xtls: re-attach answered", "from", a.from, "sid", c.sid, "result", a.result, "error", a.se.Condition, "settled", f.settled)
	if !a.result {
		c.t.onError(f, a.se, now) // a wait error: again, after a backoff
		return
	}
	if f.settled || c.t.gone() {
		return
	}
	// The peer knows us by our session's JID now, and answered from
	// where it is.
	c.boundLocal = e.localStr
	moved := e.rebind(c, a.from)
	c.t.onReattached(f, now, moved)
	c.noteReattached()
}

// rebind binds c to the peer's full JID to, and reports whether it
// changed.
func (e *Endpoint) rebind(c *Conn, to jid.JID) bool {
	s := to.String()
	if s == c.peerStr {
		return false
	}
	// What went to the old JID was put back in line when the tunnel was
	// suspended or goes again now (resume): accountSuspension recounts it.
	if e.tunnels[c.key] == c {
		delete(e.tunnels, c.key)
	}
	c.peer, c.peerStr = to, s
	c.key = tunnelKey{s, c.sid}
	c.t.peer = s
	c.peerAddr.Store(&to)
	e.tunnels[c.key] = c
	return true
}

// handleReattach decides on a peer's re-attach, in the order
// docs/protocol.md §8.2.3 gives: a malformed element is bad-request; a
// tunnel with that sid and the sender's account that may be re-attached
// must exist (item-not-found otherwise, whatever else is wrong, so that a
// third party learns nothing); the proof must verify and the counter be
// above the last one taken (not-authorized); the sender's new full JID
// must not hold another tunnel with that sid (conflict). Then the tunnel
// is bound to the sender's new full JID and goes on. The same re-attach
// again (its result was lost) is answered again and changes nothing.
func (e *Endpoint) handleReattach(iq stanza.IQ, t xmlstream.TokenReadEncoder, start *xml.StartElement) {
	r, err := xstanza.DecodeReattach(start, t)
	if err != nil {
		e.answerErr(iq, t, stanza.Modify, stanza.BadRequest, err.Error())
		return
	}
	from := iq.From
	var cond stanza.Condition
	e.call(func(now time.Time) {
		cond = e.reattach(r, from, now)
	})
	if cond != "" {
		e.log.Info("xtls: re-attach refused", "from", from, "sid", r.SID, "condition", cond)
		e.answerErr(iq, t, errType(cond), cond, "")
		return
	}
	e.answer(iq, t, nil)
}

// reattach is the loop's verdict on a peer's re-attach r from from: the
// condition to refuse it with, or "" once it is taken.
func (e *Endpoint) reattach(r xstanza.Reattach, from jid.JID, now time.Time) stanza.Condition {
	if e.err != nil || from.Resourcepart() == "" {
		return stanza.ItemNotFound
	}
	bare := from.Bare().String()
	old, _ := jid.Parse(r.Old)
	if !old.Bare().Equal(from.Bare()) {
		return stanza.ItemNotFound
	}
	// The tunnel bound to the old full JID; or, if the peer moved before
	// (crossing re-attaches), the only one with this sid and account.
	c := e.tunnels[tunnelKey{r.Old, r.SID}]
	if c == nil {
		for _, x := range e.tunnels {
			if x.sid == r.SID && x.t.bare == bare {
				if c != nil {
					return stanza.ItemNotFound // ambiguous
				}
				c = x
			}
		}
	}
	if c == nil || c.t.gone() || c.t.re.key == nil || !c.t.wasOpen {
		return stanza.ItemNotFound
	}
	want := reattachProof(c.t.re.key, !c.initiator, r.SID, r.Old, from.String(), r.Counter)
	if !hmac.Equal(want, r.Proof) {
		return stanza.NotAuthorized
	}
	if r.Counter == c.t.re.seen && hmac.Equal(r.Proof, c.t.re.seenProof) && c.peerStr == from.String() {
		return "" // the same again
	}
	if r.Counter <= c.t.re.seen {
		return stanza.NotAuthorized // replayed
	}
	if x := e.tunnels[tunnelKey{from.String(), r.SID}]; x != nil && x != c {
		return stanza.Conflict
	}
	c.t.re.seen, c.t.re.seenProof = r.Counter, r.Proof
	// It addressed us where we are: the peer knows us by this JID now.
	c.boundLocal = e.localStr
	e.rebind(c, from)
	// The peer's session changed, even if its full JID did not (a server
	// may bind the same resource again): what went to the old one is
	// lost, and goes again.
	c.t.resume(now, true)
	c.noteReattached()
	c.t.heard(now)
	e.peerHeard(c.t.bare, now)
	e.markDirty(c)
	return ""
}
