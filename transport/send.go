package transport

import (
	"context"
	"encoding/xml"
	"errors"
	"io"
	"sync"
	"time"

	"mellium.im/xmlstream"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"

	xstanza "github.com/xmppxtls/xtls/stanza"
)

type kind int

const (
	kStart kind = iota
	kData
	kCredit
	kClose
	kAbort
)

func (k kind) String() string {
	return [...]string{"start", "data", "credit", "close", "close"}[k]
}

// flight is one IQ of the tunnel, kept until it is acknowledged so that it
// can be sent again unchanged.
type flight struct {
	kind    kind
	seq     uint16
	payload []byte
	limit   uint64
	cond    stanza.Condition
	tries   int
	// ctx ends when the flight is settled (answered, superseded, or the
	// tunnel is gone): its attempts stop waiting then.
	ctx    context.Context
	settle context.CancelFunc
}

// newFlight returns a flight of the tunnel.
func (c *Conn) newFlight(k kind) *flight {
	ctx, cancel := context.WithCancel(c.ctx)
	return &flight{kind: k, ctx: ctx, settle: cancel}
}

// maxBackoff caps the acknowledgement timeout after repeated timeouts.
const maxBackoff = 60 * time.Second

var (
	errSpoofed     = errors.New("xtls/transport: response from another JID ignored")
	errBadResponse = errors.New("xtls/transport: malformed response")
)

// sendLoop is the tunnel's sender: it decides what goes out next and issues
// one IQ at a time, each once the previous one has been written, so that a
// tunnel's stanzas leave in order (start first, then data by seq). It owns no
// state of its own; everything is under c.mu.
func (c *Conn) sendLoop() {
	defer c.wg.Done()
	defer close(c.senderDone)
	for {
		c.mu.Lock()
		f := c.nextFlightLocked()
		if f == nil {
			exit := c.senderExitLocked()
			c.mu.Unlock()
			if exit {
				return
			}
			<-c.sendWake
			continue
		}
		f.tries++
		c.ep.stats.iqsSent.Add(1)
		if f.kind == kData {
			if f.tries == 1 {
				c.ep.stats.dataSent.Add(1)
			} else {
				c.ep.stats.retransmits.Add(1)
			}
		}
		written := make(chan struct{})
		c.issuing = written
		c.mu.Unlock()

		c.wg.Add(1)
		go c.transmit(f, written)
		<-written

		c.mu.Lock()
		c.issuing = nil
		c.mu.Unlock()
	}
}

func (c *Conn) senderExitLocked() bool {
	if c.abortCond != "" && !c.abortSent {
		return false
	}
	return c.state == stateGone || c.closeAcked && (c.peerClosed || c.readStopped)
}

// nextFlightLocked picks the next IQ to send, in priority order: an abort,
// the start, retransmissions, credit, new data, our close.
func (c *Conn) nextFlightLocked() *flight {
	if c.abortCond != "" {
		if c.abortSent {
			return nil
		}
		c.abortSent = true
		f := c.newFlight(kAbort)
		f.cond = c.abortCond
		return f
	}
	if c.senderExitLocked() {
		return nil
	}
	if c.initiator && !c.startSent {
		c.startSent = true
		return c.newFlight(kStart)
	}
	for len(c.retrans) > 0 {
		f := c.retrans[0]
		c.retrans[0] = nil
		c.retrans = c.retrans[1:]
		switch {
		case f.kind == kCredit && (f.limit < c.rflow.limit || c.peerClosed || c.readStopped):
			f.settle() // superseded: a higher limit has been sent
			continue
		case f.kind == kData && c.unacked[f.seq&255] != f:
			continue // acknowledged meanwhile
		}
		return f
	}
	if c.creditDue && c.state == stateOpen {
		c.creditDue = false
		if !c.peerClosed && !c.readStopped {
			c.rflow.autoTune(time.Now(), c.rtt.srtt)
			if limit, ok := c.rflow.update(); ok {
				c.rflow.sent(limit)
				f := c.newFlight(kCredit)
				f.limit = limit
				return f
			}
		}
	}
	if f := c.nextDataLocked(); f != nil {
		return f
	}
	if c.writeClosed && !c.closeSent && c.state == stateOpen && len(c.sendQ) == 0 && c.nUnacked == 0 {
		c.closeSent = true
		return c.newFlight(kClose)
	}
	return nil
}

// nextDataLocked cuts the next block from the queued bytes if credit, the
// seq span and the tunnel's state allow. While credit is short of a block,
// written bytes stay queued and are coalesced into full blocks; a partial
// block goes out only when nothing is in flight (so that a small credit can
// never deadlock the two ends).
func (c *Conn) nextDataLocked() *flight {
	if len(c.sendQ) == 0 {
		return nil
	}
	switch c.state {
	case stateOpening:
		// The optimistic first flight: data seq 0 right behind the start.
		if !c.initiator || c.firstFlight || !c.startSent {
			return nil
		}
	case stateOpen:
	default:
		return nil
	}
	if c.nUnacked > 0 && c.nextSeq-c.oldest >= xstanza.SeqSpan {
		return nil
	}
	n := min(len(c.sendQ), c.chunkLocked())
	if avail := c.sflow.available(); uint64(n) > avail {
		if avail == 0 || c.nUnacked > 0 {
			if c.sflow.newlyBlocked() {
				c.ep.log.Debug("xtls: sender blocked by peer's credit", "peer", c.peerStr, "sid", c.sid, "limit", c.sflow.limit)
			}
			return nil
		}
		n = int(avail)
	}
	if !c.ep.budget.reserve(c, n) {
		return nil // the session's budget is spent; our turn will come
	}
	c.reserved += n
	var p []byte
	if n == len(c.sendQ) && n >= cap(c.sendQ)/2 {
		p, c.sendQ = c.sendQ, nil
	} else {
		p = append(getBuf(n), c.sendQ[:n]...)
		rest := copy(c.sendQ, c.sendQ[n:])
		c.sendQ = c.sendQ[:rest]
		if rest == 0 {
			putBuf(c.sendQ)
			c.sendQ = nil
		}
	}
	c.sflow.take(n)
	f := c.newFlight(kData)
	f.seq, f.payload = c.nextSeq, p
	if c.nUnacked == 0 {
		c.oldest = c.nextSeq
	}
	c.unacked[f.seq&255] = f
	c.nUnacked++
	c.nextSeq++
	if c.state == stateOpening {
		c.firstFlight = true
	}
	signal(c.writeWake)
	return f
}

// transmit sends one attempt of f and handles its response. written is
// closed once the stanza is completely encoded (its position in the
// session's output is then fixed), or once SendIQ has given up on it.
//
// An attempt whose answer is late makes the flight go again but keeps
// waiting itself: mellium would drop a response that comes after the wait
// has ended, and on a slow path (a server's shaper) the first copy's answer
// is usually on its way. Whichever attempt is answered first settles the
// flight and ends the others' waits; each attempt knows its own send time,
// so every answer is a valid round-trip sample.
func (c *Conn) transmit(f *flight, written chan struct{}) {
	defer c.wg.Done()
	ctx := newSendCtx(c.ctx)
	stopTunnel := context.AfterFunc(c.ctx, ctx.cancel)
	defer stopTunnel()
	// Once the flight is settled this attempt stops waiting, but only once
	// its stanza is out: cancelling a send's context while it writes would
	// cut the stanza in half (mellium turns it into a write deadline).
	stop := context.AfterFunc(f.ctx, func() {
		<-written
		c.ep.syncOut()
		ctx.cancel()
	})
	defer stop()

	c.mu.Lock()
	rto := c.rtt.timeout(f.tries)
	if f.kind == kStart {
		// A start is not sent again on a timeout (the peer may have
		// created the tunnel), so it waits longer: an overloaded responder
		// must not fail a Dial that its context would still allow.
		rto = max(rto, c.ep.cfg.StartTimeout)
	}
	c.mu.Unlock()
	var (
		timer  *time.Timer
		once   sync.Once
		b64    []byte
		sentAt time.Time
	)
	markWritten := func() {
		once.Do(func() {
			sentAt = time.Now()
			if b64 != nil {
				putBuf(b64)
			}
			close(written)
			timer = time.AfterFunc(rto, func() { c.ackTimeout(f, sentAt) })
		})
	}
	var payload xml.TokenReader
	switch f.kind {
	case kStart:
		payload = xstanza.Start{SID: c.sid, BlockSize: c.blockSize, Window: int(c.rflow.window)}.TokenReader()
	case kData:
		n := b64len(len(f.payload))
		b64 = getBuf(n)
		if size := int64(n + iqOverhead); size > c.ep.largest.Load() {
			c.ep.largest.Store(size)
		}
		payload = xstanza.Data{SID: c.sid, Seq: f.seq, Payload: f.payload}.TokenReaderBuf(b64)
	case kCredit:
		payload = xstanza.Credit{SID: c.sid, Limit: f.limit}.TokenReader()
	case kClose:
		payload = xstanza.Close{SID: c.sid}.TokenReader()
	case kAbort:
		payload = xstanza.Close{SID: c.sid, Error: string(f.cond)}.TokenReader()
	}
	r := &iqReader{
		start:   stanza.IQ{To: c.peer, Type: stanza.SetIQ}.StartElement(),
		payload: payload,
		done:    markWritten,
	}
	resp, err := c.ep.sess.SendIQ(ctx, r)
	// Answered or failed: this attempt's context must not be cancelled
	// because the flight is now settled (see sendCtx).
	stop()
	markWritten()
	if timer != nil {
		timer.Stop()
	}
	if err != nil {
		if c.ctx.Err() == nil && f.ctx.Err() == nil {
			// Sending failed: the session cannot write any more.
			c.ep.shutdown(c.ep.sessionError(err), true)
		}
		return
	}
	c.response(f, resp, time.Since(sentAt))
}

// sendCtx is the context of one SendIQ call: done when the tunnel ends or
// the flight is settled by another attempt, and never merely because the
// call has returned. mellium arms a goroutine for each send that, once the
// send's context is done, sets a write deadline in the past on the whole
// connection; the send cancels that goroutine when it is over, but on a
// busy machine the goroutine may first run after both have happened and
// then pick the deadline, cutting whatever stanza the session is writing
// at that moment and so ending the session ("i/o timeout"). Cancelling
// every context right after its answer, as context.WithCancel's defer
// would, made that a matter of luck on every IQ.
type sendCtx struct {
	context.Context // the tunnel's, for Deadline and Value
	done            chan struct{}
	once            sync.Once
}

func newSendCtx(parent context.Context) *sendCtx {
	return &sendCtx{Context: parent, done: make(chan struct{})}
}

func (c *sendCtx) Done() <-chan struct{} { return c.done }

func (c *sendCtx) Err() error {
	select {
	case <-c.done:
		return context.Canceled
	default:
		return nil
	}
}

func (c *sendCtx) cancel() { c.once.Do(func() { close(c.done) }) }

func b64len(n int) int { return (n + 2) / 3 * 4 }

// ackTimeout runs when an attempt of f sent at sentAt has had no answer
// within the timeout it had then. f goes again (or, after MaxTries, the
// tunnel fails) only once the attempt has had no answer for a full current
// timeout, counted from the later of its sending and the session's latest
// answer (as TCP restarts its retransmission timer on each acknowledgement:
// an IQ waiting behind others a slow path is still delivering is not
// lost), and from the moment it left if the session's output held it up.
// The timeout is recomputed each time, so round trips measured meanwhile
// count.
func (c *Conn) ackTimeout(f *flight, sentAt time.Time) {
	for {
		if f.ctx.Err() != nil {
			return
		}
		c.mu.Lock()
		rto := c.rtt.timeout(f.tries)
		c.mu.Unlock()
		due := sentAt.Add(rto)
		if last := c.ep.lastAnswer().Add(rto); last.After(due) {
			due = last
		}
		if d := time.Until(due); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-t.C:
				continue
			case <-f.ctx.Done():
				t.Stop()
				return
			}
		}
		t0 := time.Now()
		c.ep.syncOut()
		if time.Since(t0) >= rto/2 {
			sentAt = time.Now()
			continue
		}
		break
	}
	if f.ctx.Err() == nil {
		c.retry(f, ErrAckTimeout, 0)
	}
}

// iqReader yields an IQ-set around payload and calls done as it hands out
// the IQ's end: by then every earlier token has been encoded.
type iqReader struct {
	start   xml.StartElement
	payload xml.TokenReader
	step    int
	done    func()
}

func (r *iqReader) Token() (xml.Token, error) {
	switch r.step {
	case 0:
		r.step = 1
		return r.start, nil
	case 1:
		tok, err := r.payload.Token()
		if err != nil && err != io.EOF {
			return nil, err
		}
		if err == io.EOF {
			r.step = 2
		}
		if tok != nil {
			return tok, nil
		}
		fallthrough
	case 2:
		r.step = 3
		r.done()
		return r.start.End(), nil
	}
	return nil, io.EOF
}

// response handles the response to f: a result or error counts only if it
// comes from the peer's full JID (mellium matches responses by id alone).
// The response is read and closed before anything is done about it: Serve
// is parked until it is closed, and a backoff must not stall the session.
func (c *Conn) response(f *flight, resp xmlstream.TokenReadCloser, rtt time.Duration) {
	tok, err := resp.Token()
	start, ok := tok.(xml.StartElement)
	if err != nil || !ok {
		resp.Close()
		c.retry(f, errBadResponse, 0)
		return
	}
	c.ep.answered()
	from, typ := rawAttr(&start, "from"), rawAttr(&start, "type")
	var (
		p    xstanza.Proceed
		perr error
		se   stanza.Error
	)
	switch typ {
	case string(stanza.ResultIQ):
		if f.kind == kStart {
			p, perr = readProceed(resp)
		}
	case string(stanza.ErrorIQ):
		var err error
		if se, err = stanza.UnmarshalError(resp); err != nil {
			se = stanza.Error{Type: stanza.Cancel, Condition: stanza.UndefinedCondition}
		}
	}
	fromPeer := from == c.peerStr
	if !fromPeer {
		j, err := jid.Parse(from)
		fromPeer = err == nil && j.Equal(c.peer)
	}
	// A proceed opens the tunnel before the response is closed: closing it
	// lets the session's Serve go on, and the peer's first data, sent right
	// behind its proceed, must find the tunnel open.
	var opened, openedNow bool
	if fromPeer && typ == string(stanza.ResultIQ) && f.kind == kStart && perr == nil && p.SID == c.sid {
		opened, openedNow = true, c.open(p)
	}
	resp.Close()

	if !fromPeer {
		c.ep.log.Warn("xtls: response from another JID ignored", "expected", c.peerStr, "from", from, "element", f.kind.String())
		c.retry(f, errSpoofed, 0)
		return
	}
	switch typ {
	case string(stanza.ResultIQ):
		if f.kind == kStart {
			if opened {
				if openedNow {
					c.afterOpen()
				}
				return
			}
			c.established(p, perr)
			return
		}
		c.acked(f, rtt)
	case string(stanza.ErrorIQ):
		c.rejected(f, se)
	default:
		c.retry(f, errBadResponse, 0)
	}
}

// acked handles a result to an attempt of f sent rtt ago.
func (c *Conn) acked(f *flight, rtt time.Duration) {
	defer f.settle()
	switch f.kind {
	case kData:
		c.mu.Lock()
		if c.unacked[f.seq&255] != f {
			c.mu.Unlock()
			return
		}
		c.unacked[f.seq&255] = nil
		c.nUnacked--
		for c.nUnacked > 0 && c.unacked[c.oldest&255] == nil {
			c.oldest++
		}
		if c.nUnacked == 0 {
			c.oldest = c.nextSeq
		}
		now := time.Now()
		c.rtt.sample(rtt)
		n := len(f.payload)
		c.reserved -= n
		putBuf(f.payload)
		f.payload = nil
		c.mu.Unlock()
		c.ep.budget.acked(n, rtt, now)
		signal(c.sendWake)
	case kCredit:
		// A receiver sends little but credits: their round trips are what
		// its window auto-tuning measures with.
		c.mu.Lock()
		c.rtt.sample(rtt)
		c.mu.Unlock()
	case kClose:
		c.mu.Lock()
		c.closeAcked = true
		closeOnce(c.closed)
		both := c.peerClosed
		c.mu.Unlock()
		if both {
			c.finish(nil)
		}
		signal(c.sendWake)
	}
}

// established handles the result to our start: the peer's proceed.
func (c *Conn) established(p xstanza.Proceed, err error) {
	if err == nil && p.SID != c.sid {
		err = errors.New("proceed for another sid")
	}
	if err != nil {
		c.Abort(stanza.BadRequest, "malformed proceed: "+err.Error())
		return
	}
	if c.open(p) {
		c.afterOpen()
	}
}

// open moves an opening tunnel to open with the peer's proceed, and reports
// whether it did. It only takes the lock: it may run while the session's
// Serve waits for the response to be closed.
func (c *Conn) open(p xstanza.Proceed) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state != stateOpening {
		return false
	}
	c.state = stateOpen
	c.wasOpen = true
	c.peerBlockSize = p.BlockSize
	c.sflow.raise(uint64(p.Window))
	c.retrans = append(c.retrans, c.deferred...)
	c.deferred = nil
	close(c.estab)
	return true
}

// afterOpen does what may wait once the tunnel is open: fail it with an
// error that came while it was opening, or wake the sender and waiters.
func (c *Conn) afterOpen() {
	c.mu.Lock()
	perr := c.pendingErr
	c.mu.Unlock()
	if perr != nil {
		c.failWith(perr, false)
		return
	}
	signal(c.sendWake)
	c.wakeAll()
}

func readProceed(r xml.TokenReader) (xstanza.Proceed, error) {
	for {
		tok, err := r.Token()
		if err != nil {
			return xstanza.Proceed{}, errors.New("no proceed element")
		}
		if st, ok := tok.(xml.StartElement); ok {
			return xstanza.DecodeProceed(&st, r)
		}
	}
}

// rejected handles an IQ error. Errors of type wait are retried after a
// backoff; any other breaks the tunnel, wrapped as it came.
func (c *Conn) rejected(f *flight, se stanza.Error) {
	if se.Type == stanza.Wait {
		c.retry(f, se, c.waitBackoff(f))
		return
	}
	defer f.settle()
	if f.kind == kAbort {
		return
	}
	c.mu.Lock()
	if c.state == stateGone {
		c.mu.Unlock()
		return
	}
	if f.kind == kClose && f.tries > 1 && se.Condition == stanza.ItemNotFound {
		// A retransmitted close whose first copy arrived: the peer has
		// already forgotten the tunnel.
		c.mu.Unlock()
		c.acked(f, 0)
		return
	}
	if c.state == stateOpening && f.kind == kData {
		// The start has not been answered yet; the start's answer decides.
		if se.Condition == stanza.ItemNotFound {
			c.deferred = append(c.deferred, f) // arrived before the tunnel existed
		} else if c.pendingErr == nil {
			c.pendingErr = &PeerError{Element: f.kind.String(), Err: se}
		}
		c.mu.Unlock()
		return
	}
	c.mu.Unlock()
	c.failWith(&PeerError{Element: f.kind.String(), Err: se}, false)
}

func (c *Conn) waitBackoff(f *flight) time.Duration {
	d := 100 * time.Millisecond << min(f.tries-1, 10)
	c.mu.Lock()
	defer c.mu.Unlock()
	return min(d, c.rtt.timeout(1))
}

// retry queues f to be sent again after backoff, unless it has been tried
// too often: then the tunnel fails. A start is sent again only after a wait
// error: a start that simply found no answer is not repeated, because the
// peer may have created the tunnel.
func (c *Conn) retry(f *flight, cause error, backoff time.Duration) {
	if f.kind == kAbort {
		return
	}
	c.mu.Lock()
	if c.state == stateGone {
		c.mu.Unlock()
		return
	}
	var se stanza.Error
	tooMany := f.tries >= c.ep.cfg.MaxTries || f.kind == kStart && !errors.As(cause, &se)
	c.mu.Unlock()
	c.ep.log.Debug("xtls: IQ not acknowledged", "peer", c.peerStr, "sid", c.sid, "element", f.kind.String(), "tries", f.tries, "cause", cause)
	if tooMany {
		c.failWith(&RetryError{Element: f.kind.String(), Tries: f.tries, Last: cause}, false)
		return
	}
	if backoff > 0 {
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-c.gone:
			t.Stop()
			return
		}
	}
	c.mu.Lock()
	if c.state == stateGone {
		c.mu.Unlock()
		return
	}
	if f.kind == kStart {
		c.startSent = true
	}
	c.retrans = append(c.retrans, f)
	c.mu.Unlock()
	signal(c.sendWake)
}

// rttEstimator is RFC 6298's smoothed round-trip time and its variation.
type rttEstimator struct {
	srtt, rttvar time.Duration
	has          bool
	initial, min time.Duration
}

func (r *rttEstimator) init(cfg Config) {
	r.initial = cfg.AckTimeout
	r.min = cfg.MinAckTimeout
}

func (r *rttEstimator) sample(d time.Duration) {
	if d <= 0 {
		return
	}
	if !r.has {
		r.srtt, r.rttvar, r.has = d, d/2, true
		return
	}
	diff := r.srtt - d
	if diff < 0 {
		diff = -diff
	}
	r.rttvar = (3*r.rttvar + diff) / 4
	r.srtt = (7*r.srtt + d) / 8
}

// timeout is the acknowledgement timeout for the given try, doubled for each
// earlier try (Karn's backoff).
func (r *rttEstimator) timeout(try int) time.Duration {
	t := r.initial
	if r.has {
		t = max(r.min, r.srtt+4*r.rttvar)
	}
	for i := 1; i < try && t < maxBackoff; i++ {
		t *= 2
	}
	return min(t, maxBackoff)
}
