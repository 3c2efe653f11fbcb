package transport

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"slices"
	"time"

	"mellium.im/xmpp/stanza"
)

// Re-attachment, the machine's part (contract 5, docs/protocol.md §8.2): a
// tunnel whose path to the peer is lost — our session ended, or the
// peer's server answers that the peer is gone, or the peer fell silent —
// is suspended instead of failing, if it may be re-attached
// (Conn.AllowReattach). A suspended tunnel sends nothing but a re-attach;
// everything it had sent and not seen answered waits to go again, in the
// same sequence space, once the tunnel is bound to the peer again: when
// our re-attach is accepted, or the peer's is. If that does not happen
// within Config.Reattach, it fails with a *DetachedError.

// reattachState is a tunnel's re-attachment.
type reattachState struct {
	key       []byte    // the secret both ends derived; nil: never re-attached
	suspended bool      // the path to the peer is lost
	until     time.Time // a suspended tunnel fails then
	cause     error     // why it was suspended
	since     time.Time // when
	due       bool      // a re-attach is to be sent (to dueTo, or the peer)
	dueTo     string
	inFlight  *flight // our re-attach, until it is answered
	sent      uint64  // the counter of our latest re-attach
	seen      uint64  // the counter of the peer's latest accepted one
	seenProof []byte  // its proof: the same one again is answered again
	count     int     // re-attachments done, either way
	// epoch counts the requeues: an answer to an attempt made before the
	// latest is stale (the flight goes again), even from the same full
	// JID: a server that binds the same resource again may still answer
	// for the old session, service-unavailable say.
	epoch uint32
	// peerSide: the suspension began on the peer's side (it is gone, or
	// silent), not with our session: the peer's JID is probed now and
	// then (probeAt), since word of its leaving may arrive after its
	// re-attach from the same full JID (presence and IQs of two sessions
	// keep no order), and a probe it answers ends the suspension.
	peerSide bool
	probeAt  time.Time
}

// probeEvery is how often a tunnel suspended on the peer's side probes it.
const probeEvery = time.Second

// reattachable reports whether the tunnel may be re-attached: it has a key
// and is established.
func (t *tunnel) reattachable() bool {
	return t.re.key != nil && t.wasOpen && t.state == stOpen && t.env.cfg.Reattach > 0
}

// suspend suspends the tunnel because its path to the peer is lost
// (cause), if it may be re-attached; it reports whether it did (or had).
// Every flight not yet answered waits to go again once the tunnel is
// bound again.
func (t *tunnel) suspend(now time.Time, cause error) bool {
	if t.re.suspended {
		return true
	}
	if !t.reattachable() {
		return false
	}
	t.re.suspended = true
	t.re.cause = cause
	t.re.peerSide = !errors.Is(cause, ErrSessionClosed)
	t.re.probeAt = now.Add(probeEvery)
	t.re.since = now
	t.re.until = now.Add(t.env.cfg.Reattach)
	t.probing, t.probeDue = false, false
	t.holdUntil = time.Time{}
	t.requeue()
	t.env.log.Info("xtls: tunnel suspended until it is re-attached", "peer", t.peer, "sid", t.sid, "cause", cause, "for", t.env.cfg.Reattach)
	return true
}

// requeue puts every flight sent and not answered back in line, with its
// tries counted afresh: what it met was the lost path, not the peer. Data
// goes again in seq order, after the control elements.
func (t *tunnel) requeue() {
	t.re.epoch++
	again := func(f *flight) {
		f.writtenAt, f.notBefore = time.Time{}, time.Time{}
		f.tries = 0
		f.counted = false
		if !f.queued {
			f.queued = true
			t.retrans = append(t.retrans, f)
		}
	}
	for _, f := range slices.Clone(t.ctrl) {
		switch {
		case f.settled:
		case f.probe, f.kind == kReattach, f.kind == kStart:
			t.settle(f)
		default:
			again(f)
		}
	}
	t.eachData(func(f *flight, _ int) {
		if !f.settled {
			again(f)
		}
	})
	t.retrans = slices.DeleteFunc(t.retrans, func(f *flight) bool { return f.settled })
	slices.SortStableFunc(t.retrans, func(a, b *flight) int {
		ka, kb := a.kind == kData, b.kind == kData
		switch {
		case ka != kb && !ka:
			return -1
		case ka != kb:
			return 1
		case ka:
			return int(a.seq-t.oldest) - int(b.seq-t.oldest)
		}
		return 0
	})
}

// reattachFrom has the tunnel send a re-attach (to to, or to the peer if
// empty): our session changed, or the peer may be at another full JID.
// A re-attach already waiting for its answer is left to it.
func (t *tunnel) reattachFrom(now time.Time, to string) {
	if !t.re.suspended && !t.suspend(now, ErrSessionClosed) {
		return
	}
	t.re.peerSide = false // our session changed: our re-attach tells
	if t.re.inFlight != nil && !t.re.inFlight.settled {
		t.env.log.Debug("xtls: re-attach in flight already", "peer", t.peer, "sid", t.sid)
		return
	}
	t.re.due, t.re.dueTo = true, to
}

// reattachPending reports whether a suspended tunnel has a re-attach to
// send now.
func (t *tunnel) reattachPending(now time.Time) bool {
	if t.re.due || t.probeNow(now) {
		return true
	}
	for _, f := range t.retrans {
		if f.kind == kReattach && !f.settled && !now.Before(f.notBefore) {
			return true
		}
	}
	return false
}

// pickReattach returns a suspended tunnel's re-attach, if one is due.
func (t *tunnel) pickReattach(now time.Time) *flight {
	for i, f := range t.retrans {
		if f.kind == kReattach && !f.settled && !now.Before(f.notBefore) {
			t.retrans = slices.Delete(t.retrans, i, i+1)
			return f
		}
	}
	if t.probeNow(now) {
		t.re.probeAt = now.Add(probeEvery)
		f := t.newCtrl(kCredit)
		f.limit = t.rflow.limit
		f.probe = true
		return f
	}
	if !t.re.due {
		return nil
	}
	t.re.due = false
	t.re.sent++
	f := t.newCtrl(kReattach)
	f.counter = t.re.sent
	f.to = t.re.dueTo
	t.re.inFlight = f
	t.env.log.Debug("xtls: re-attach sent", "peer", t.peer, "to", f.to, "sid", t.sid, "counter", f.counter)
	return f
}

// probeNow reports whether a tunnel suspended on the peer's side probes
// the peer now: it is time, and no probe waits for its answer.
func (t *tunnel) probeNow(now time.Time) bool {
	if !t.re.peerSide || now.Before(t.re.probeAt) {
		return false
	}
	for _, f := range t.ctrl {
		if f.probe && !f.settled {
			return false
		}
	}
	return true
}

// onTimerSuspended handles the time passing for a suspended tunnel: the
// bound, and the timeouts of its re-attach (sent again) and probes
// (forgotten).
func (t *tunnel) onTimerSuspended(now time.Time) {
	if !now.Before(t.re.until) {
		t.fail(&DetachedError{Cause: t.re.cause, For: t.env.cfg.Reattach})
		return
	}
	peer := t.peerProgress()
	for _, f := range slices.Clone(t.ctrl) {
		if t.timedOut(f, 0, now, peer) {
			t.retry(f, ErrAckTimeout, 0, now)
		}
	}
}

// onProbeAnswered handles the result to a probe of a suspended tunnel: the
// peer is there, at the full JID the tunnel is bound to.
func (t *tunnel) onProbeAnswered(f *flight, now time.Time) {
	t.settle(f)
	if t.re.suspended && t.re.peerSide {
		t.resume(now, true)
	}
}

// onReattached handles the result to our re-attach f: the peer took it,
// and moved says whether the peer answered from another full JID than the
// one the tunnel was bound to.
func (t *tunnel) onReattached(f *flight, now time.Time, moved bool) {
	if f.settled {
		return
	}
	t.settle(f)
	t.resume(now, moved)
}

// onReattachError handles an error answering our re-attach f. If the
// peer's old full JID is gone too (both ends lost their sessions), the
// tunnel waits: for the peer's own re-attach, or to learn the peer's new
// full JID (Endpoint.PeerAvailable). Any other error is the peer's
// refusal: the tunnel fails, unless another re-attach has bound it since.
func (t *tunnel) onReattachError(f *flight, se stanza.Error) {
	t.settle(f)
	if !t.re.suspended {
		return // bound again meanwhile: the refusal is stale
	}
	if pe := (&PeerError{Element: "reattach", Err: se}); pe.gone() {
		return
	}
	t.fail(&ReattachError{Err: se})
}

// resume ends a suspension: the tunnel is bound to the peer again, and
// what it had sent and not seen answered goes again now. moved says the
// peer is now at another full JID: if the tunnel had not noticed that it
// left, what went to the old one goes again.
func (t *tunnel) resume(now time.Time, moved bool) {
	t.ro.late = true
	if !t.re.suspended {
		if moved {
			t.re.count++
			t.requeue()
		}
		return
	}
	t.re.count++
	t.re.suspended = false
	t.re.until = time.Time{}
	t.re.due = false
	t.heard(now)
	t.env.log.Info("xtls: tunnel re-attached", "peer", t.peer, "sid", t.sid, "after", now.Sub(t.re.since).Round(time.Millisecond))
}

// proofLabel begins every re-attach proof's input.
const proofLabel = "xmpp-xtls reattach"

// reattachProof is the proof of a re-attach (docs/protocol.md §8.2.2):
// HMAC-SHA256 under the tunnel's re-attach key of the label, the sender's
// role, the sid, the sender's old and new full JIDs, each followed by a
// zero byte, and the counter as 8 bytes big-endian.
func reattachProof(key []byte, initiator bool, sid, old, new string, counter uint64) []byte {
	m := hmac.New(sha256.New, key)
	role := "responder"
	if initiator {
		role = "initiator"
	}
	for _, s := range []string{proofLabel, role, sid, old, new} {
		m.Write([]byte(s))
		m.Write([]byte{0})
	}
	var c [8]byte
	binary.BigEndian.PutUint64(c[:], counter)
	m.Write(c[:])
	return m.Sum(nil)
}
