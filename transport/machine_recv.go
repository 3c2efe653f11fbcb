package transport

import (
	"fmt"

	"mellium.im/xmpp/stanza"
)

// The receive side of the tunnel machine: the receiver rules of
// docs/protocol.md, applied to elements that have been decoded already.

// reply is what the answer to a received element is.
type reply int

const (
	replyAck        reply = iota // empty result (closed, for a close)
	replyNotFound                // item-not-found (cancel)
	replyBadRequest              // bad-request (modify); the tunnel has been torn down
)

// onData applies the receiver rules to a well-formed data element, in the
// order of the contract: a seq seen before is acknowledged again and not
// delivered twice; the next expected seq is delivered, with the blocks
// buffered behind it; a seq 1-255 ahead is buffered; anything else, and data
// beyond the granted limit, is a violation. p is copied; the caller keeps
// it. malformed, if not nil, says why the element was malformed: it tears
// the tunnel down (rule 4), but only once the tunnel is known to read (rules
// 2 and 3 come first).
//
// Data refused after our Close fails the peer's direction (item-not-found
// is final), so no close will come from it, and a tunnel whose own close was
// acknowledged need not linger for one: it is gone once the answer is
// written (finishPending).
func (t *tunnel) onData(seq uint16, p []byte, malformed error) (reply, string) {
	switch {
	case t.state == stGone:
		return replyNotFound, ""
	case t.readStopped:
		t.peerClosed = true
		t.finishPending = t.closeAcked
		return replyNotFound, ""
	case t.opening():
		// No proceed yet, so no tunnel in this direction: this is the
		// optimistic first flight of a start that crossed ours and lost.
		return replyNotFound, ""
	}
	if malformed != nil {
		return t.violation(malformed.Error())
	}
	class := t.ro.classify(seq)
	var why string
	switch {
	case class == seqSeen:
		return replyAck, ""
	case class == seqInvalid:
		why = fmt.Sprintf("seq %d outside the window (next expected %d)", seq, t.ro.next)
	case t.peerClosed:
		why = fmt.Sprintf("data seq %d after close", seq)
	default:
		if err := t.rflow.receive(len(p)); err != nil {
			why = "data beyond the credit limit: " + err.Error()
		}
	}
	if why != "" {
		return t.violation(why)
	}
	if class == seqAhead {
		t.ro.put(seq, p)
		return replyAck, ""
	}
	t.rbuf.write(p)
	for {
		b, ok := t.ro.advance()
		if !ok {
			break
		}
		t.rbuf.write(b)
		t.ro.free(b)
	}
	return replyAck, ""
}

// violation tears the tunnel down for a protocol violation by the peer.
func (t *tunnel) violation(why string) (reply, string) {
	t.env.log.Warn("xtls: protocol violation, tunnel torn down", "peer", t.peer, "sid", t.sid, "reason", why)
	t.fail(&ProtocolError{Reason: why})
	return replyBadRequest, why
}

// onCredit applies the checks of a credit element after the tunnel was
// found (C3 on): an initiator without proceed has no such direction yet;
// then a malformed element tears the tunnel down; a limit at or below one
// received is acknowledged and ignored.
func (t *tunnel) onCredit(limit uint64, malformed error) (reply, string) {
	switch {
	case t.state == stGone || t.opening():
		return replyNotFound, ""
	case malformed != nil:
		return t.violation(malformed.Error())
	}
	t.sflow.raise(limit)
	return replyAck, ""
}

// onClose applies the checks of a close element after the tunnel was found
// (X3 on): an initiator without proceed ignores it, an abort included;
// then a malformed element tears the tunnel down; an abort (cond) ends
// both directions; without, the peer's direction ends (EOF once the buffer
// is read), and the tunnel is gone, once the answer is written
// (finishPending), if ours has ended too.
func (t *tunnel) onClose(cond stanza.Condition, why string, malformed error) (reply, string) {
	switch {
	case t.state == stGone || t.opening():
		return replyNotFound, ""
	case malformed != nil:
		return t.violation(malformed.Error())
	case cond != "":
		t.env.log.Info("xtls: tunnel aborted by peer", "peer", t.peer, "sid", t.sid, "condition", cond, "why", why)
		t.fail(&AbortError{Condition: cond, Remote: true, Why: why})
		return replyAck, ""
	case t.readStopped:
		t.finishPending = true
		return replyAck, ""
	case t.ro.n > 0:
		return t.violation("close with data missing before buffered blocks")
	}
	t.peerClosed = true
	t.finishPending = t.closeAcked
	return replyAck, ""
}

// lingering reports whether the tunnel is kept only to answer the peer's
// close: we closed it with Close and our close was acknowledged.
func (t *tunnel) lingering() bool {
	return t.state != stGone && t.readStopped && t.closeAcked
}

// answered is called once the answer to a received element has been
// written: a tunnel over by then is gone only now, so that an application
// that ends its session when the tunnel is gone does not take the answer
// with it.
func (t *tunnel) answered() {
	if t.finishPending {
		t.finishPending = false
		t.finish(nil)
	}
}
