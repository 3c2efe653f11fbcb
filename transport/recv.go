package transport

import (
	"fmt"

	"mellium.im/xmpp/stanza"
)

// The receive path runs on the session's Serve goroutine, called by the
// Endpoint's handlers; it never blocks: it takes c.mu briefly, copies the
// payload out of the handler's scratch buffer and answers.

// onDataFinish applies the receiver rules to a well-formed data element,
// in the order of the contract: a seq seen before is acknowledged again and
// not delivered twice; the next expected seq is delivered, with the blocks
// buffered behind it; a seq 1-255 ahead is buffered; anything else, and data
// beyond the granted limit, is a violation. It also reports whether the
// tunnel is over once the answer is written: data refused after our Close
// fails the peer's direction (item-not-found is final), so no close will
// come from it, and a tunnel whose own close was acknowledged need not
// linger for one.
func (c *Conn) onDataFinish(seq uint16, p []byte) (reply, string, bool) {
	c.mu.Lock()
	if c.state == stateGone {
		c.mu.Unlock()
		return replyNotFound, "", false
	}
	if c.readStopped {
		c.peerClosed = true
		finish := c.closeAcked
		c.mu.Unlock()
		return replyNotFound, "", finish
	}
	r, why := c.onDataLocked(seq, p)
	return r, why, false
}

// onDataLocked is onDataFinish for a tunnel that reads; c.mu is held and
// released.
func (c *Conn) onDataLocked(seq uint16, p []byte) (reply, string) {
	if c.initiator && c.state == stateOpening {
		// No proceed yet, so no tunnel in this direction: this is the
		// optimistic first flight of a start that crossed ours and lost.
		c.mu.Unlock()
		return replyNotFound, ""
	}
	class := c.ro.classify(seq)
	var why string
	switch {
	case class == seqSeen:
		c.mu.Unlock()
		return replyAck, ""
	case class == seqInvalid:
		why = fmt.Sprintf("seq %d outside the window (next expected %d)", seq, c.ro.next)
	case c.peerClosed:
		why = fmt.Sprintf("data seq %d after close", seq)
	default:
		if err := c.rflow.receive(len(p)); err != nil {
			why = "data beyond the credit limit: " + err.Error()
		}
	}
	if why != "" {
		c.mu.Unlock()
		c.ep.log.Warn("xtls: protocol violation, tunnel torn down", "peer", c.peerStr, "sid", c.sid, "reason", why)
		c.failWith(&ProtocolError{Reason: why}, false)
		return replyBadRequest, why
	}
	if class == seqAhead {
		c.ro.put(seq, append(getBuf(len(p)), p...))
		c.mu.Unlock()
		return replyAck, ""
	}
	c.appendReadLocked(p)
	for {
		b, ok := c.ro.advance()
		if !ok {
			break
		}
		c.readQ = append(c.readQ, b)
	}
	c.mu.Unlock()
	signal(c.readWake)
	return replyAck, ""
}

// appendReadLocked copies p to the end of the read buffer, into the last
// buffer if it has room, so that many small blocks do not each hold a
// buffer of their own.
func (c *Conn) appendReadLocked(p []byte) {
	if n := len(c.readQ); n > 0 {
		last := c.readQ[n-1]
		if cap(last)-len(last) >= len(p) {
			c.readQ[n-1] = append(last, p...)
			return
		}
	}
	c.readQ = append(c.readQ, append(getBuf(len(p)), p...))
}

// onCredit raises the send limit.
func (c *Conn) onCredit(limit uint64) (reply, string) {
	c.mu.Lock()
	if c.state != stateOpen {
		c.mu.Unlock()
		return replyNotFound, ""
	}
	raised := c.sflow.raise(limit)
	c.mu.Unlock()
	if raised {
		signal(c.sendWake)
	}
	return replyAck, ""
}

// onClose handles the peer's close: with a condition it aborts the tunnel;
// without, the peer's direction ends (EOF once the buffer is read), and the
// tunnel is gone if ours has ended too.
func (c *Conn) onClose(cond stanza.Condition) (r reply, why string, finish bool) {
	if cond != "" {
		c.ep.log.Info("xtls: tunnel aborted by peer", "peer", c.peerStr, "sid", c.sid, "condition", cond)
		c.failWith(&AbortError{Condition: cond, Remote: true}, false)
		return replyAck, "", false
	}
	c.mu.Lock()
	switch {
	case c.state == stateGone:
		c.mu.Unlock()
		return replyNotFound, "", false
	case c.readStopped:
		c.mu.Unlock()
		return replyAck, "", true
	case c.initiator && c.state == stateOpening:
		c.mu.Unlock()
		return replyNotFound, "", false
	case c.ro.n > 0:
		c.mu.Unlock()
		why := "close with data missing before buffered blocks"
		c.failWith(&ProtocolError{Reason: why}, false)
		return replyBadRequest, why, false
	}
	c.peerClosed = true
	both := c.closeAcked
	c.mu.Unlock()
	signal(c.readWake)
	signal(c.sendWake)
	return replyAck, "", both
}
