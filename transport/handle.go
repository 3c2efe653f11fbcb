package transport

import (
	"encoding/xml"
	"errors"

	"mellium.im/xmlstream"
	"mellium.im/xmpp/stanza"

	xstanza "github.com/xmppxtls/xtls/stanza"
)

// reply is what a handler answers to an IQ.
type reply int

const (
	replyAck        reply = iota // empty result
	replyNotFound                // item-not-found (cancel)
	replyBadRequest              // bad-request (modify); the tunnel has been torn down
)

// HandleIQ implements mux.IQHandler for the XTLS elements. It runs on the
// session's Serve goroutine, answers every IQ at once and never blocks; it
// writes IQ errors itself and returns nil, because an error returned to
// mellium's Serve would end the whole session.
func (e *Endpoint) HandleIQ(iq stanza.IQ, t xmlstream.TokenReadEncoder, start *xml.StartElement) error {
	if start.Name.Space != xstanza.NS {
		return nil
	}
	if iq.Type != stanza.SetIQ {
		if iq.Type == stanza.GetIQ {
			cond := stanza.BadRequest
			switch start.Name.Local {
			case "start", "data", "credit", "close":
			default:
				cond = stanza.FeatureNotImplemented
			}
			e.answerErr(iq, t, errType(cond), cond, "")
		}
		return nil
	}
	switch start.Name.Local {
	case "start":
		e.handleStart(iq, t, start)
	case "data":
		e.handleData(iq, t, start)
	case "credit":
		e.handleCredit(iq, t, start)
	case "close":
		e.handleClose(iq, t, start)
	default:
		e.answerErr(iq, t, stanza.Cancel, stanza.FeatureNotImplemented, "")
	}
	return nil
}

func errType(c stanza.Condition) stanza.ErrorType {
	switch c {
	case stanza.BadRequest:
		return stanza.Modify
	case stanza.ResourceConstraint:
		return stanza.Wait
	}
	return stanza.Cancel
}

func (e *Endpoint) answer(iq stanza.IQ, t xmlstream.TokenReadEncoder, payload xml.TokenReader) {
	if _, err := xmlstream.Copy(t, iq.Result(payload)); err != nil {
		e.log.Debug("xtls: writing result failed", "to", iq.From, "err", err)
	}
}

func (e *Endpoint) answerErr(iq stanza.IQ, t xmlstream.TokenReadEncoder, typ stanza.ErrorType, cond stanza.Condition, text string) {
	se := stanza.Error{Type: typ, Condition: cond}
	if text != "" {
		se.Text = map[string]string{"": text}
	}
	if _, err := xmlstream.Copy(t, iq.Error(se)); err != nil {
		e.log.Debug("xtls: writing error failed", "to", iq.From, "err", err)
	}
}

func (e *Endpoint) answerReply(iq stanza.IQ, t xmlstream.TokenReadEncoder, r reply, why string) {
	switch r {
	case replyAck:
		e.answer(iq, t, nil)
	case replyNotFound:
		e.answerErr(iq, t, stanza.Cancel, stanza.ItemNotFound, "")
	case replyBadRequest:
		e.answerErr(iq, t, stanza.Modify, stanza.BadRequest, why)
	}
}

func rawAttr(start *xml.StartElement, local string) string {
	for _, a := range start.Attr {
		if a.Name.Space == "" && a.Name.Local == local {
			return a.Value
		}
	}
	return ""
}

// target finds the tunnel an element addresses. It answers and returns nil
// when the sid is malformed (bad-request) or no tunnel with that peer and sid
// exists (item-not-found, logged).
func (e *Endpoint) target(iq stanza.IQ, t xmlstream.TokenReadEncoder, start *xml.StartElement) *Conn {
	sid := rawAttr(start, "sid")
	if !xstanza.ValidSID(sid) {
		e.answerErr(iq, t, stanza.Modify, stanza.BadRequest, "malformed sid")
		return nil
	}
	from := iq.From.String()
	c := e.lookup(from, sid)
	if c == nil {
		e.log.Info("xtls: element for unknown tunnel", "element", start.Name.Local, "from", from, "sid", sid)
		e.answerErr(iq, t, stanza.Cancel, stanza.ItemNotFound, "")
	}
	return c
}

func (e *Endpoint) handleData(iq stanza.IQ, t xmlstream.TokenReadEncoder, start *xml.StartElement) {
	c := e.target(iq, t, start)
	if c == nil {
		return
	}
	_, seq, err := xstanza.DataHeader(start)
	if err != nil {
		e.violation(iq, t, c, err.Error())
		return
	}
	e.scratchMu.Lock()
	defer e.scratchMu.Unlock()
	if cap(e.scratch) < xstanza.MaxBlockSize+2 {
		e.scratch = make([]byte, 0, xstanza.MaxBlockSize+2)
	}
	p, err := xstanza.DecodePayload(t, c.blockSize, e.scratch)
	if err != nil {
		e.violation(iq, t, c, err.Error())
		return
	}
	r, why, finish := c.onDataFinish(seq, p)
	e.answerReply(iq, t, r, why)
	if finish {
		c.finish(nil)
	}
}

func (e *Endpoint) handleCredit(iq stanza.IQ, t xmlstream.TokenReadEncoder, start *xml.StartElement) {
	c := e.target(iq, t, start)
	if c == nil {
		return
	}
	cr, err := xstanza.DecodeCredit(start, t)
	if err != nil {
		e.violation(iq, t, c, err.Error())
		return
	}
	r, why := c.onCredit(cr.Limit)
	e.answerReply(iq, t, r, why)
}

func (e *Endpoint) handleClose(iq stanza.IQ, t xmlstream.TokenReadEncoder, start *xml.StartElement) {
	c := e.target(iq, t, start)
	if c == nil {
		return
	}
	cl, err := xstanza.DecodeClose(start, t)
	if err != nil {
		e.violation(iq, t, c, err.Error())
		return
	}
	r, why, finish := c.onClose(stanza.Condition(cl.Error))
	if r == replyAck {
		e.answer(iq, t, xstanza.Closed{SID: cl.SID}.TokenReader())
		// The tunnel is gone (Done) only once our closed is written: an
		// application that ends its session when Done fires must not
		// take the answer with it.
		if finish {
			c.finish(nil)
		}
		return
	}
	e.answerReply(iq, t, r, why)
}

// violation tears c down for a protocol violation and answers bad-request.
func (e *Endpoint) violation(iq stanza.IQ, t xmlstream.TokenReadEncoder, c *Conn, why string) {
	e.log.Warn("xtls: protocol violation, tunnel torn down", "peer", c.peerStr, "sid", c.sid, "reason", why)
	c.failWith(&ProtocolError{Reason: why}, false)
	e.answerErr(iq, t, stanza.Modify, stanza.BadRequest, why)
}

func (e *Endpoint) handleStart(iq stanza.IQ, t xmlstream.TokenReadEncoder, start *xml.StartElement) {
	st, err := xstanza.DecodeStart(start, t)
	if err != nil {
		if errors.Is(err, xstanza.ErrUnknownMethod) {
			e.answerErr(iq, t, stanza.Cancel, stanza.FeatureNotImplemented, err.Error())
		} else {
			e.answerErr(iq, t, stanza.Modify, stanza.BadRequest, err.Error())
		}
		return
	}
	if iq.From.Resourcepart() == "" {
		e.answerErr(iq, t, stanza.Cancel, stanza.NotAcceptable, "tunnels run between full JIDs")
		return
	}
	peer := iq.From.String()
	key := tunnelKey{peer, st.SID}

	e.mu.Lock()
	if e.err != nil {
		e.mu.Unlock()
		e.answerErr(iq, t, stanza.Cancel, stanza.ServiceUnavailable, "")
		return
	}
	if old := e.tunnels[key]; old != nil {
		if !old.startPending() {
			e.mu.Unlock()
			e.answerErr(iq, t, stanza.Modify, stanza.BadRequest, "sid in use")
			return
		}
		// Two starts with the same sid crossed. The one from the entity
		// whose full JID sorts first (i;octet) wins.
		if e.localStr < peer {
			e.mu.Unlock()
			e.answerErr(iq, t, stanza.Cancel, stanza.Conflict, "")
			return
		}
		c := newConn(e, iq.From, st.SID, false)
		c.accepted(st)
		e.tunnels[key] = c
		e.mu.Unlock()
		old.crossedBy(c) // waits until old's stanza in writing, if any, is out
		e.answer(iq, t, c.proceed().TokenReader())
		c.start() // only now: nothing of c may precede its proceed
		return
	}
	if len(e.tunnels) >= e.cfg.MaxTunnels {
		e.mu.Unlock()
		e.answerErr(iq, t, stanza.Wait, stanza.ResourceConstraint, "tunnel limit reached")
		return
	}
	accept := e.accept
	if accept == nil {
		e.mu.Unlock()
		e.answerErr(iq, t, stanza.Cancel, stanza.NotAcceptable, "")
		return
	}
	c := newConn(e, iq.From, st.SID, false)
	c.accepted(st)
	e.tunnels[key] = c
	e.watchLocked()
	e.mu.Unlock()
	if err := accept(c); err != nil {
		e.remove(c)
		c.discard()
		se, ok := err.(stanza.Error)
		if !ok {
			se = stanza.Error{Type: stanza.Cancel, Condition: stanza.NotAcceptable}
		}
		e.answerErr(iq, t, se.Type, se.Condition, "")
		return
	}
	e.answer(iq, t, c.proceed().TokenReader())
	c.start() // only now: nothing of c may precede its proceed
}
