package transport

import (
	"errors"
	"slices"
	"time"

	"mellium.im/xmpp/stanza"

	xstanza "github.com/xmppxtls/xtls/stanza"
)

// The send side of the tunnel machine: what goes out next, and what the
// answers to it change.

var errSpoofed = errors.New("xtls/transport: response from another JID ignored")

// next returns the next flight to send, or nil. In order: an abort, the
// start, flights to send again, credit, new data, our close. room bounds
// the payload of a new data block (the path's in-flight bound). The flight's
// tries count the attempt now being made; the path reports when it has
// left (onWritten) and what answered it.
func (t *tunnel) next(now time.Time, room int) *flight {
	f := t.pick(now, room)
	if f != nil {
		f.tries++
		f.writtenAt = time.Time{}
		f.notBefore = time.Time{}
		f.queued = false
	}
	return f
}

func (t *tunnel) pick(now time.Time, room int) *flight {
	if t.held {
		return nil
	}
	if t.abortCond != "" {
		if t.abortSent {
			return nil
		}
		t.abortSent = true
		// An abort is sent once and its answer does not matter.
		return &flight{kind: kAbort, cond: t.abortCond, why: t.abortWhy}
	}
	if t.re.suspended {
		return t.pickReattach(now)
	}
	if t.senderDone() {
		return nil
	}
	if t.initiator && !t.startSent {
		t.startSent = true
		return t.newCtrl(kStart)
	}
	for i := 0; i < len(t.retrans); i++ {
		f := t.retrans[i]
		switch {
		case f.settled:
		case f.kind == kCredit && (f.probe || f.limit < t.rflow.limit || t.peerClosed || t.readStopped):
			t.settle(f) // superseded: a higher limit has been sent
		case now.Before(f.notBefore):
			continue
		default:
			t.retrans = slices.Delete(t.retrans, i, i+1)
			return f
		}
		t.retrans = slices.Delete(t.retrans, i, i+1)
		i--
	}
	if t.probeDue && t.state == stOpen {
		// A keep-alive: the limit the peer already has (a credit at or
		// below one received is acknowledged and ignored, C5).
		t.probeDue = false
		t.probing = true
		f := t.newCtrl(kCredit)
		f.limit = t.rflow.limit
		f.probe = true
		return f
	}
	if t.creditDue && t.state == stOpen {
		t.creditDue = false
		if !t.peerClosed && !t.readStopped {
			t.rflow.autoTune(now, t.rtt.srtt, t.grant)
			if limit, ok := t.rflow.update(); ok {
				t.rflow.sent(limit)
				f := t.newCtrl(kCredit)
				f.limit = limit
				return f
			}
		}
	}
	if f := t.nextData(room); f != nil {
		return f
	}
	if t.closeReady() {
		t.closeSent = true
		return t.newCtrl(kClose)
	}
	return nil
}

// pending reports what the tunnel has to send now: control (or sent again:
// it needs no room) and the payload size of its next new data block.
func (t *tunnel) pending(now time.Time) (ctrl bool, data int) {
	if t.held {
		return false, 0
	}
	if t.abortCond != "" {
		return !t.abortSent, 0
	}
	if t.re.suspended {
		return t.reattachPending(now), 0
	}
	if t.senderDone() {
		return false, 0
	}
	ctrl = t.initiator && !t.startSent || (t.creditDue || t.probeDue) && t.state == stOpen || t.closeReady()
	for _, f := range t.retrans {
		if !f.settled && !now.Before(f.notBefore) {
			ctrl = true
			break
		}
	}
	return ctrl, t.dataReady()
}

// grant asks the receiver's memory budgets for more bytes of window.
func (t *tunnel) grant(more int) bool {
	return t.env.grant == nil || t.env.grant(t.bare, more)
}

func (t *tunnel) newCtrl(k kind) *flight {
	f := &flight{kind: k}
	t.ctrl = append(t.ctrl, f)
	return f
}

// settle marks f answered or superseded; a control flight is forgotten.
func (t *tunnel) settle(f *flight) {
	f.settled = true
	if f.kind != kData {
		if i := slices.Index(t.ctrl, f); i >= 0 {
			t.ctrl = slices.Delete(t.ctrl, i, i+1)
		}
	}
}

// senderDone reports whether the tunnel will send nothing more (an abort
// aside).
func (t *tunnel) senderDone() bool {
	return t.state == stGone || t.closeAcked && (t.peerClosed || t.readStopped)
}

func (t *tunnel) closeReady() bool {
	return t.writeClosed && !t.closeSent && t.state == stOpen && len(t.sendQ) == 0 && t.nUnacked == 0
}

// dataReady returns the payload size of the next data block if credit, the
// seq span and the tunnel's state allow one, or 0. While credit is short of
// a block, written bytes stay queued and are coalesced into full blocks; a
// partial block goes out only when nothing is in flight (so that a small
// credit can never deadlock the two ends).
func (t *tunnel) dataReady() int {
	if len(t.sendQ) == 0 {
		return 0
	}
	switch t.state {
	case stOpening:
		// The optimistic first flight: data seq 0 right behind the start.
		if !t.initiator || t.firstFlight || !t.startSent {
			return 0
		}
	case stOpen:
	default:
		return 0
	}
	if t.nUnacked > 0 && t.nextSeq-t.oldest >= xstanza.SeqSpan {
		return 0
	}
	n := min(len(t.sendQ), t.chunk())
	if avail := t.sflow.available(); uint64(n) > avail {
		if avail == 0 || t.nUnacked > 0 {
			return 0
		}
		n = int(avail)
	}
	return n
}

// nextData cuts the next data block if one is ready and fits in room.
func (t *tunnel) nextData(room int) *flight {
	n := t.dataReady()
	if n == 0 {
		if len(t.sendQ) > 0 && t.state == stOpen && t.sflow.newlyBlocked() {
			t.env.log.Debug("xtls: sender blocked by peer's credit", "peer", t.peer, "sid", t.sid, "limit", t.sflow.limit)
		}
		return nil
	}
	if n > room {
		return nil
	}
	var p []byte
	if n == len(t.sendQ) && n >= cap(t.sendQ)/2 {
		p, t.sendQ = t.sendQ, nil
	} else {
		p = append(getBuf(n), t.sendQ[:n]...)
		rest := copy(t.sendQ, t.sendQ[n:])
		t.sendQ = t.sendQ[:rest]
		if rest == 0 {
			putBuf(t.sendQ)
			t.sendQ = nil
		}
	}
	t.sflow.take(n)
	f := &flight{kind: kData, seq: t.nextSeq, payload: p}
	if t.nUnacked == 0 {
		t.oldest = t.nextSeq
	}
	t.unacked[f.seq&255] = f
	t.nUnacked++
	t.nextSeq++
	if t.state == stOpening {
		t.firstFlight = true
	}
	return f
}

// onWritten records that the latest attempt of f left at at: its
// acknowledgement timeout runs from then.
func (t *tunnel) onWritten(f *flight, at time.Time) {
	if !f.settled && !f.queued && f.writtenAt.IsZero() {
		f.writtenAt = at
	}
}

// onResult handles a result answering an attempt of f that left rtt
// before. It returns the payload bytes of a data block it acknowledged
// (the path's in-flight bound counts them), or 0.
func (t *tunnel) onResult(f *flight, rtt time.Duration) int {
	if f.settled || f.kind == kAbort {
		return 0
	}
	t.settle(f)
	switch f.kind {
	case kData:
		if t.unacked[f.seq&255] != f {
			return 0
		}
		t.unacked[f.seq&255] = nil
		t.nUnacked--
		for t.nUnacked > 0 && t.unacked[t.oldest&255] == nil {
			t.oldest++
		}
		if t.nUnacked == 0 {
			t.oldest = t.nextSeq
		}
		t.rtt.sample(rtt)
		// The path delivers: the blocks still unacknowledged get a full
		// timeout from this answer (due), not from the last retransmission.
		t.holdUntil = time.Time{}
		n := len(f.payload)
		putBuf(f.payload)
		f.payload = nil
		return n
	case kCredit:
		// A receiver sends little but credits: their round trips are what
		// its window auto-tuning measures with.
		t.rtt.sample(rtt)
	case kClose:
		t.closeAcked = true
		if t.peerClosed {
			t.finish(nil)
		}
	}
	return 0
}

// onProceed handles the result to our start: the peer's proceed, or perr
// if it was malformed.
func (t *tunnel) onProceed(f *flight, p xstanza.Proceed, perr error) {
	if f.settled {
		return
	}
	t.settle(f)
	if t.state != stOpening {
		return
	}
	if perr == nil && p.SID != t.sid {
		perr = errors.New("proceed for another sid")
	}
	if perr != nil {
		t.abort(stanza.BadRequest, "malformed proceed: "+perr.Error())
		return
	}
	t.state = stOpen
	t.wasOpen = true
	t.peerBlockSize = p.BlockSize
	t.sflow.raise(uint64(p.Window))
	for _, f := range t.deferred {
		f.queued = true
		t.retrans = append(t.retrans, f)
	}
	t.deferred = nil
	if t.pendingErr != nil {
		t.fail(t.pendingErr)
	}
}

// onError handles an IQ error answering f. Errors of type wait make f go
// again after a backoff; any other breaks the tunnel, wrapped as it came.
func (t *tunnel) onError(f *flight, se stanza.Error, now time.Time) {
	if f.settled || f.kind == kAbort {
		return
	}
	if se.Type == stanza.Wait {
		t.retry(f, se, t.waitBackoff(f), now)
		return
	}
	if t.state == stGone {
		t.settle(f)
		return
	}
	if f.kind == kClose && se.Condition == stanza.ItemNotFound && (f.tries > 1 || t.peerClosed) {
		// A close sent again whose first copy arrived, or one the path
		// delivered twice (a stream resumption may) after the peer had
		// closed too: the peer has already forgotten the tunnel, and our
		// close is sent only once all our data is acknowledged.
		t.onResult(f, 0)
		return
	}
	if t.state == stOpening && f.kind == kData {
		// The start has not been answered yet; its answer decides.
		if se.Condition == stanza.ItemNotFound {
			// It arrived before the tunnel existed (the start was refused
			// with a wait error and goes again): it goes again once open.
			f.queued = true
			f.writtenAt = time.Time{}
			t.deferred = append(t.deferred, f)
		} else if t.pendingErr == nil {
			t.settle(f)
			t.pendingErr = &PeerError{Element: f.kind.String(), Err: se}
		}
		return
	}
	if f.kind == kReattach {
		t.onReattachError(f, se)
		return
	}
	if f.probe && t.re.suspended {
		t.settle(f) // the peer is not there yet: the next probe asks again
		return
	}
	pe := &PeerError{Element: f.kind.String(), Err: se}
	if pe.gone() && t.suspend(now, pe) {
		// The peer's session is gone, and the tunnel may be re-attached:
		// it waits for the peer to come back (f goes again then).
		return
	}
	t.settle(f)
	t.fail(pe)
}

// onSpoofed handles a response to f from another JID than the peer's: it
// is ignored, and f counts as lost.
func (t *tunnel) onSpoofed(f *flight, now time.Time) {
	t.env.log.Warn("xtls: response from another JID ignored", "expected", t.peer, "element", f.kind.String())
	t.retry(f, errSpoofed, 0, now)
}

func (t *tunnel) waitBackoff(f *flight) time.Duration {
	d := 100 * time.Millisecond << min(f.tries-1, 10)
	return min(d, t.rtt.timeout(1))
}

// retry queues f to be sent again after backoff, unless it has been tried
// too often: then the tunnel fails. A start goes again only after a wait
// error: one that simply found no answer is not repeated, because the peer
// may have created the tunnel.
func (t *tunnel) retry(f *flight, cause error, backoff time.Duration, now time.Time) {
	if f.kind == kAbort || f.settled || f.queued || t.state == stGone {
		return
	}
	if f.probe {
		// A keep-alive is not sent again: the silence it meets is
		// counted (onTimer).
		t.settle(f)
		return
	}
	var se stanza.Error
	tooMany := f.tries >= t.env.cfg.MaxTries || f.kind == kStart && !errors.As(cause, &se)
	t.env.log.Debug("xtls: IQ not acknowledged", "peer", t.peer, "sid", t.sid, "element", f.kind.String(), "tries", f.tries, "cause", cause)
	if tooMany {
		t.settle(f)
		t.fail(&RetryError{Element: f.kind.String(), Tries: f.tries, Last: cause})
		return
	}
	f.queued = true
	f.writtenAt = time.Time{}
	if backoff > 0 {
		f.notBefore = now.Add(backoff)
	}
	t.retrans = append(t.retrans, f)
}
