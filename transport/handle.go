package transport

import (
	"encoding/xml"
	"errors"
	"time"

	"mellium.im/xmlstream"
	"mellium.im/xmpp/stanza"

	xstanza "github.com/xmppxtls/xtls/stanza"
)

// HandleIQ implements mux.IQHandler for the XTLS elements and for the
// answers to the Endpoint's own IQs. It runs on the session's Serve
// goroutine: it reads the element, asks the loop for the verdict (which the
// loop gives at once, without I/O), writes the answer and returns; it never
// waits for anything else. It writes IQ errors itself and returns nil,
// because an error returned to mellium's Serve would end the whole session.
func (e *Endpoint) HandleIQ(iq stanza.IQ, t xmlstream.TokenReadEncoder, start *xml.StartElement) error {
	switch iq.Type {
	case stanza.ResultIQ, stanza.ErrorIQ:
		e.curPath.Load().handleAnswer(iq, t, start)
		return nil
	}
	if start.Name.Space != xstanza.NS {
		return nil
	}
	if iq.Type != stanza.SetIQ {
		if iq.Type == stanza.GetIQ {
			cond := stanza.BadRequest
			switch start.Name.Local {
			case "start", "data", "credit", "close", "reattach":
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
	case "reattach":
		e.handleReattach(iq, t, start)
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

// element asks the loop for the verdict on an element for the tunnel
// (iq's from, sid): with no such tunnel it is item-not-found (logged);
// otherwise verdict decides, on the loop. It returns the tunnel, if any.
//
// It returns the tunnel if the tunnel is over once the answer is written:
// call answered then.
func (e *Endpoint) element(iq stanza.IQ, name, sid string, verdict func(c *Conn, now time.Time) (reply, string)) (finish *Conn, r reply, why string) {
	from := iq.From.String()
	found := false
	e.call(func(now time.Time) {
		c := e.tunnels[tunnelKey{from, sid}]
		if c == nil {
			r = replyNotFound
			return
		}
		found = true
		if !c.t.opening() {
			c.t.heard(now)
		}
		e.peerHeard(c.t.bare, now)
		r, why = verdict(c, now)
		if c.t.finishPending {
			finish = c
		}
		e.markDirty(c)
	})
	if !found {
		e.log.Info("xtls: element for unknown tunnel", "element", name, "from", from, "sid", sid)
	}
	return finish, r, why
}

// answered tells the loop that the answer to an element for c, which ends
// the tunnel, has been written: the tunnel is gone when answered returns.
func (e *Endpoint) answered(c *Conn) {
	e.call(func(time.Time) {
		c.t.answered()
		e.markDirty(c)
	})
}

func (e *Endpoint) handleData(iq stanza.IQ, t xmlstream.TokenReadEncoder, start *xml.StartElement) {
	sid, ok := e.sidOf(iq, t, start)
	if !ok {
		return
	}
	_, seq, malformed := xstanza.DataHeader(start)
	// The loop reads the payload out of the scratch buffer while this
	// goroutine waits: one copy, into the tunnel's buffer.
	e.scratchMu.Lock()
	defer e.scratchMu.Unlock()
	if cap(e.scratch) < xstanza.MaxBlockSize+2 {
		e.scratch = make([]byte, 0, xstanza.MaxBlockSize+2)
	}
	var p []byte
	if malformed == nil {
		p, malformed = xstanza.DecodePayload(t, e.cfg.BlockSize, e.scratch)
	}
	c, r, why := e.element(iq, "data", sid, func(c *Conn, now time.Time) (reply, string) {
		return c.t.onData(seq, p, malformed)
	})
	e.answerReply(iq, t, r, why)
	if c != nil {
		e.answered(c)
	}
}

// sidOf returns the element's sid, or answers bad-request and returns
// false if it is malformed (no tunnel is affected).
func (e *Endpoint) sidOf(iq stanza.IQ, t xmlstream.TokenReadEncoder, start *xml.StartElement) (string, bool) {
	sid := rawAttr(start, "sid")
	if !xstanza.ValidSID(sid) {
		e.answerErr(iq, t, stanza.Modify, stanza.BadRequest, "malformed sid")
		return "", false
	}
	return sid, true
}

func (e *Endpoint) handleCredit(iq stanza.IQ, t xmlstream.TokenReadEncoder, start *xml.StartElement) {
	sid, ok := e.sidOf(iq, t, start)
	if !ok {
		return
	}
	cr, err := xstanza.DecodeCredit(start, t)
	_, r, why := e.element(iq, "credit", sid, func(c *Conn, now time.Time) (reply, string) {
		return c.t.onCredit(cr.Limit, err)
	})
	e.answerReply(iq, t, r, why)
}

func (e *Endpoint) handleClose(iq stanza.IQ, t xmlstream.TokenReadEncoder, start *xml.StartElement) {
	sid, ok := e.sidOf(iq, t, start)
	if !ok {
		return
	}
	cl, err := xstanza.DecodeClose(start, t)
	c, r, why := e.element(iq, "close", sid, func(c *Conn, now time.Time) (reply, string) {
		return c.t.onClose(stanza.Condition(cl.Error), cl.Reason, err)
	})
	if r == replyAck {
		e.answer(iq, t, xstanza.Closed{SID: sid}.TokenReader())
	} else {
		e.answerReply(iq, t, r, why)
	}
	// The tunnel is gone (Done) only once our closed is written: an
	// application that ends its session when Done fires must not take the
	// answer with it.
	if c != nil {
		e.answered(c)
	}
}

// handleStart decides on a peer's start at once: it refuses it, or creates
// the tunnel (on the loop), lets the accept function take it (here, on the
// Serve goroutine: it must not block), writes the proceed, and only then
// lets the tunnel send.
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
	var refused error
	if policy := e.policy.Load(); policy != nil {
		refused = (*policy)(iq.From)
	}
	var (
		c       *Conn
		refuse  *stanza.Error
		text    string
		crossed bool
		accept  func(*Conn) error
		pr      xstanza.Proceed
	)
	e.call(func(now time.Time) {
		old := e.tunnels[key]
		if old != nil && old.t.lingering() {
			// A tunnel we closed, kept only to answer the peer's close:
			// the peer's new start ends it, as its close would have.
			old.t.finish(nil)
			e.forget(old)
			old = nil
		}
		switch {
		case e.err != nil:
			refuse = &stanza.Error{Type: stanza.Cancel, Condition: stanza.ServiceUnavailable}
			return
		case old != nil && !old.t.opening():
			refuse, text = &stanza.Error{Type: stanza.Modify, Condition: stanza.BadRequest}, "sid in use"
			return
		case old != nil && e.localStr < peer:
			// Two starts with the same sid crossed. The one from the
			// entity whose full JID sorts first (i;octet) wins.
			refuse = &stanza.Error{Type: stanza.Cancel, Condition: stanza.Conflict}
			return
		case old != nil:
			// The crossing went the peer's way: its tunnel is ours, and
			// nothing of our own start may follow its proceed.
			c = newConn(e, iq.From, st.SID, false)
			old.t.fail(&CrossedError{Conn: c})
			e.forget(old)
			w, lerr := e.admit(c.t.bare)
			if lerr != nil {
				// Cannot happen: the crossed tunnel's slot was just freed.
				refuse, text = &stanza.Error{Type: stanza.Wait, Condition: stanza.ResourceConstraint}, lerr.Error()
				return
			}
			c.t.setWindow(w)
			c.t.accept(st)
			c.admitted = true
			e.addTunnel(c, now)
			crossed = true
		case e.accept == nil:
			refuse = &stanza.Error{Type: stanza.Cancel, Condition: stanza.NotAcceptable}
			return
		case refused != nil:
			se, ok := refused.(stanza.Error)
			if !ok {
				se = stanza.Error{Type: stanza.Cancel, Condition: stanza.NotAcceptable}
			}
			refuse = &se
			return
		default:
			c = newConn(e, iq.From, st.SID, false)
			w, lerr := e.admit(c.t.bare)
			if lerr != nil {
				refuse, text = &stanza.Error{Type: stanza.Wait, Condition: stanza.ResourceConstraint}, lerr.Error()
				c = nil
				return
			}
			c.t.setWindow(w)
			c.admitted = true
			accept = e.accept
			c.t.accept(st)
			e.addTunnel(c, now)
		}
		pr = c.t.proceed()
	})
	if refuse != nil {
		e.answerErr(iq, t, refuse.Type, refuse.Condition, text)
		return
	}
	if !crossed {
		if err := accept(c); err != nil {
			e.post(func(time.Time) {
				c.t.finish(nil)
				e.markDirty(c)
			})
			se, ok := err.(stanza.Error)
			if !ok {
				se = stanza.Error{Type: stanza.Cancel, Condition: stanza.NotAcceptable}
			}
			e.answerErr(iq, t, se.Type, se.Condition, "")
			return
		}
	}
	e.answer(iq, t, pr.TokenReader())
	e.post(func(time.Time) { // only now: nothing of c may precede its proceed
		c.t.release()
		e.markDirty(c)
	})
}
