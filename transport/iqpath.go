package transport

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"mellium.im/xmlstream"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"

	xstanza "github.com/xmppxtls/xtls/stanza"
)

// iqPath carries the tunnels' elements as IQ stanzas on the XMPP session,
// the path every tunnel starts on. It hides mellium's ways from the
// machines:
//
//   - It writes each IQ itself, one stanza per hold of the session's
//     output lock (Session.TokenWriter), from one writer goroutine, instead
//     of calling SendIQ: SendIQ keeps a goroutine waiting for every IQ in
//     flight and turns a context into a write deadline on the whole
//     connection, which can cut another stanza in half.
//   - It picks the IQs' ids and finds their answers among the IQ results
//     and errors that reach the Endpoint's handler (HandleWith registers it
//     for them); an answer counts only if it comes from the full JID the
//     IQ was sent to, because a server or another entity could answer with
//     a guessed id.
//   - It writes control elements before data and keeps at most writerDepth
//     data stanzas waiting for the writer, so that the order of what leaves
//     is decided as late as possible (sched) and the in-flight bound
//     (controller) counts what is really out.
//   - It flushes the kernel's delayed TCP ACK whenever an answer arrives
//     (quickack.go), and chooses the chunk size from the server's software
//     (probe.go).
type iqPath struct {
	e    *Endpoint
	sess Session
	ack  func() // acknowledges at once what the session's socket received, or nil

	// Owned by the loop.
	pending  map[string]*attempt // IQs sent, by id
	idPrefix string
	nextID   uint64
	sched    sched
	ctl      *controller
	queued   int // data stanzas handed to the writer and not yet written
	dead     bool
	sweepAt  time.Time
	probe    probe

	// Shared with the writer goroutine.
	wmu   sync.Mutex
	wctrl []*outIQ
	wdata []*outIQ
	wbusy bool // the writer is writing one
	wstop bool // write what is queued, then end
	wdead bool // the session cannot write: end now
	wwake chan struct{}
	wdone chan struct{}
}

// writerDepth is how many data stanzas may wait for the writer.
const writerDepth = 2

// sweepInterval is how often answers that will never matter are forgotten.
const sweepInterval = 10 * time.Second

// attempt is one IQ the path sent: an attempt of a tunnel's flight, or the
// server probe.
type attempt struct {
	c        *Conn // nil for the server probe
	f        *flight
	to       string    // the full JID it went to: only an answer from there counts
	epoch    uint32    // the tunnel's requeue epoch when it was made (reattach.go)
	handedAt time.Time // handed to the writer
	written  time.Time // left (zero until the writer says so)
	// delivered is the controller's total when the attempt was handed
	// over: what was acknowledged while it travelled is its delivery
	// rate sample.
	delivered int
}

// outIQ is one IQ waiting for the writer.
type outIQ struct {
	id        string
	to        string
	typ       stanza.IQType
	elem      xml.TokenReader
	b64       []byte // the Base64 text's buffer, pooled
	att       *attempt
	data      bool
	cancelled atomic.Bool // the tunnel gave way: do not write it
}

// answer is an IQ result or error that may answer one of ours, as the
// handler read it.
type answer struct {
	id      string
	from    jid.JID
	result  bool
	proceed xstanza.Proceed
	perr    error // the result carried no valid proceed
	se      stanza.Error
	server  string // the server probe: the server's software, lower case
	at      time.Time
}

func newIQPath(e *Endpoint, s Session) *iqPath {
	var b [3]byte
	_, _ = rand.Read(b[:])
	p := &iqPath{
		e:        e,
		sess:     s,
		pending:  make(map[string]*attempt),
		idPrefix: "x" + base64.RawURLEncoding.EncodeToString(b[:]) + "-",
		sched:    newSched(),
		ctl:      newController(e.cfg.QueueTarget, e.cfg.ChunkSize, e.cfg.SessionWindow, !e.cfg.chunkSet),
		wwake:    make(chan struct{}, 1),
		wdone:    make(chan struct{}),
	}
	if !e.cfg.NoQuickAck {
		if sc, ok := s.(interface{ Conn() net.Conn }); ok {
			p.ack = ackNow(sc.Conn())
		}
	}
	p.probe.done = e.cfg.chunkSet
	return p
}

// setChunk sets the chunk size the Endpoint wants; see
// controller.setChunkMax for grow.
func (p *iqPath) setChunk(n int, grow bool) {
	p.ctl.setChunkMax(n, grow)
	p.e.env.chunk = p.ctl.chunk
}

// touch puts c where its pending work says in the scheduler.
func (p *iqPath) touch(c *Conn, now time.Time) {
	if !p.dead && !c.onBytestream() {
		p.sched.touch(c, now, p.ctl.chunk)
	}
}

// pump hands the writer what may go now: control elements first, then
// data as the in-flight bound and the writer's queue allow, fresh tunnels
// before busy ones.
func (p *iqPath) pump(now time.Time) {
	if p.dead {
		return
	}
	s := &p.sched
	for {
		if c := s.ctrl.pop(); c != nil {
			c.sched.inCtrl = false
			if c.onBytestream() {
				continue // its bytestream sends what it has
			}
			if f := c.t.next(now, 0); f != nil {
				p.send(c, f, now)
			}
			p.touch(c, now)
			continue
		}
		if p.queued >= writerDepth || p.e.err != nil {
			return
		}
		c, fresh := s.fresh.head, true
		if c == nil {
			c, fresh = s.busy.head, false
		}
		if c == nil {
			if p.ctl.room() >= p.ctl.chunk {
				p.ctl.idle()
			}
			return
		}
		if c.onBytestream() {
			p.leave(c)
			continue
		}
		room := p.ctl.room()
		if fresh {
			// A tunnel that has just become active (a chat message) may
			// go one block beyond the bound: it must not wait behind a
			// file.
			room = p.ctl.roomFresh()
		}
		f := c.t.next(now, room)
		if f == nil {
			if _, data := c.t.pending(now); data > 0 {
				return // the bound is reached: wait for acknowledgements
			}
			p.leave(c)
			continue
		}
		p.send(c, f, now)
		if f.kind == kData {
			c.sched.deficit -= len(f.payload)
			if c.writer != nil {
				w := c.writer
				c.writer = nil
				p.e.progressWrite(c, w)
			}
		}
		if _, data := c.t.pending(now); data == 0 {
			p.leave(c)
			p.touch(c, now)
		} else if c.sched.deficit <= 0 {
			// Its turn is over: to the back of the busy tunnels.
			p.leave(c)
			c.sched.inBusy = true
			c.sched.deficit += p.ctl.chunk
			s.busy.push(c)
		}
		p.e.markDirty(c)
	}
}

// leave takes c, the head of the fresh or the busy tunnels, off its list.
func (p *iqPath) leave(c *Conn) {
	s := &p.sched
	switch {
	case c.sched.inFresh && s.fresh.head == c:
		s.fresh.pop()
		c.sched.inFresh = false
	case c.sched.inBusy && s.busy.head == c:
		s.busy.pop()
		c.sched.inBusy = false
	}
}

// remember notes that id waits for an answer.
func (p *iqPath) remember(id string, att *attempt, now time.Time) {
	p.pending[id] = att
	if p.sweepAt.IsZero() {
		p.sweepAt = now.Add(sweepInterval)
	}
}

// newID returns an id for our next IQ: unique on the session, and unlike
// mellium's (16 hex digits), so that neither takes the other's answers.
func (p *iqPath) newID() string {
	p.nextID++
	return p.idPrefix + strconv.FormatUint(p.nextID, 36)
}

// ours reports whether id may be one of our IQs'.
func (p *iqPath) ours(id string) bool {
	return len(id) > len(p.idPrefix) && id[:len(p.idPrefix)] == p.idPrefix
}

// send hands an attempt of f to the writer.
func (p *iqPath) send(c *Conn, f *flight, now time.Time) {
	t := c.t
	o := &outIQ{id: p.newID(), to: c.peerStr, typ: stanza.SetIQ}
	if f.to != "" {
		o.to = f.to
	}
	o.att = &attempt{c: c, f: f, to: o.to, epoch: t.re.epoch, handedAt: now, delivered: p.ctl.total}
	switch f.kind {
	case kStart:
		o.elem = t.startElement().TokenReader()
	case kData:
		n := len(f.payload)
		o.b64 = getBuf(b64len(n))
		o.elem = xstanza.Data{SID: t.sid, Seq: f.seq, Payload: f.payload}.TokenReaderBuf(o.b64)
		o.data = true
		p.queued++
		if !f.counted {
			// Counted once in the bound, whichever attempt: a block first
			// sent on a bytestream is counted when it comes to IQs.
			f.counted = true
			p.ctl.sent(n)
			c.inflight += n
		}
		if !f.sent {
			f.sent = true
			p.e.stats.dataSent.Add(1)
		} else {
			p.e.stats.retransmits.Add(1)
		}
		if size := int64(stanzaSize(n)); size > p.e.largest.Load() {
			p.e.largest.Store(size)
		}
	case kCredit:
		o.elem = xstanza.Credit{SID: t.sid, Limit: f.limit}.TokenReader()
	case kClose:
		o.elem = xstanza.Close{SID: t.sid}.TokenReader()
	case kAbort:
		o.elem = xstanza.Close{SID: t.sid, Error: string(f.cond), Reason: f.why}.TokenReader()
	case kReattach:
		o.elem = p.e.reattachElement(c, f).TokenReader()
	}
	if f.kind != kAbort {
		p.remember(o.id, o.att, now)
	}
	p.e.stats.iqsSent.Add(1)
	p.enqueue(o)
}

func (p *iqPath) enqueue(o *outIQ) {
	p.wmu.Lock()
	if o.data {
		p.wdata = append(p.wdata, o)
	} else {
		p.wctrl = append(p.wctrl, o)
	}
	p.wmu.Unlock()
	signal(p.wwake)
}

// cancel keeps whatever of c, an abort aside, waits for the writer from
// being written: c is gone, and its sid may be used again at once (a
// crossing tunnel whose proceed is about to be written, or a new Open), so
// nothing of c may follow what comes next with that sid. The writer checks
// the mark while it holds the session's output lock, so a stanza of c is
// either out before the next one or never.
func (p *iqPath) cancel(c *Conn) {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	for _, q := range [][]*outIQ{p.wctrl, p.wdata} {
		for _, o := range q {
			if o.att.c == c && o.att.f.kind != kAbort {
				o.cancelled.Store(true)
			}
		}
	}
}

var errCancelled = errors.New("xtls/transport: IQ cancelled")

// writeLoop is the writer goroutine: it writes the IQs handed to it one at
// a time, control elements first, each as one stanza under the session's
// output lock, and tells the loop when each has left.
func (p *iqPath) writeLoop() {
	defer close(p.wdone)
	for {
		p.wmu.Lock()
		var o *outIQ
		switch {
		case p.wdead:
		case len(p.wctrl) > 0:
			o = p.wctrl[0]
			p.wctrl[0] = nil
			p.wctrl = p.wctrl[1:]
		case len(p.wdata) > 0:
			o = p.wdata[0]
			p.wdata[0] = nil
			p.wdata = p.wdata[1:]
		}
		if o == nil {
			stop := p.wstop || p.wdead
			p.wmu.Unlock()
			if stop {
				return
			}
			<-p.wwake
			continue
		}
		p.wbusy = true
		p.wmu.Unlock()
		err := p.write(o)
		at := time.Now()
		if o.b64 != nil {
			putBuf(o.b64)
			o.b64 = nil
		}
		// Not busy before the loop hears of it: the loop ends once the
		// writer is idle, and looks only when it hears something.
		p.wmu.Lock()
		p.wbusy = false
		p.wmu.Unlock()
		p.e.post(func(now time.Time) { p.written(o, at, err) })
	}
}

// write writes o as one stanza.
func (p *iqPath) write(o *outIQ) error {
	w := p.sess.TokenWriter()
	if o.cancelled.Load() {
		_ = w.Close()
		return errCancelled
	}
	start := xml.StartElement{Name: xml.Name{Local: "iq"}, Attr: []xml.Attr{
		{Name: xml.Name{Local: "type"}, Value: string(o.typ)},
		{Name: xml.Name{Local: "to"}, Value: o.to},
		{Name: xml.Name{Local: "id"}, Value: o.id},
	}}
	err := w.EncodeToken(start)
	if err == nil {
		_, err = xmlstream.Copy(w, o.elem)
	}
	if err == nil {
		err = w.EncodeToken(start.End())
	}
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	return err
}

// written handles the writer's report that o left at at (or failed).
func (p *iqPath) written(o *outIQ, at time.Time, err error) {
	if o.data {
		p.queued--
	}
	switch {
	case errors.Is(err, errCancelled):
		delete(p.pending, o.id)
		return
	case err != nil:
		// The session cannot write any more (unless this path's session
		// was replaced already).
		if p == p.e.path {
			p.e.lose(p.e.sessionError(err), at)
		}
		return
	}
	o.att.written = at
	if c := o.att.c; c != nil {
		c.t.onWritten(o.att.f, at)
		p.e.markDirty(c)
	}
}

// handleAnswer reads an IQ result or error that reached the Endpoint's
// handler and, if it may answer one of our IQs, hands it to the loop. It
// runs on the session's Serve goroutine and reads the payload before it
// returns (the tokens live only that long).
func (p *iqPath) handleAnswer(iq stanza.IQ, t xml.TokenReader, start *xml.StartElement) {
	if !p.ours(iq.ID) {
		return
	}
	a := &answer{id: iq.ID, from: iq.From, result: iq.Type == stanza.ResultIQ, at: time.Now()}
	if p.ack != nil {
		p.ack()
	}
	if a.result {
		switch start.Name {
		case xml.Name{Space: xstanza.NS, Local: "proceed"}:
			a.proceed, a.perr = xstanza.DecodeProceed(start, t)
		case xml.Name{Space: discoInfoNS, Local: "query"}:
			a.server = serverSoftware(t)
		default:
			a.perr = errors.New("no proceed element")
		}
	} else {
		se, err := stanza.UnmarshalError(xmlstream.MultiReader(xmlstream.Token(*start), t))
		if err != nil {
			se = stanza.Error{Type: stanza.Cancel, Condition: stanza.UndefinedCondition}
		}
		a.se = se
	}
	p.e.post(func(now time.Time) { p.answer(a, now) })
}

// heard records an answer that came at at: the path is delivering. The
// gaps between answers while IQs wait for theirs say how long an answer may
// take to come on this path (a shaper's queue releases one stanza at a
// time), which no acknowledgement timeout may undercut.
func (p *iqPath) heard(at time.Time) {
	env := &p.e.env
	if !at.After(env.lastAnswer) {
		return
	}
	if !env.lastAnswer.IsZero() && len(p.pending) > 1 {
		gap := at.Sub(env.lastAnswer)
		env.answerGap = max(gap, env.answerGap-env.answerGap/16)
	}
	env.lastAnswer = at
}

// answer hands an answer to the flight it answers.
func (p *iqPath) answer(a *answer, now time.Time) {
	att := p.pending[a.id]
	if att == nil {
		return
	}
	p.heard(a.at)
	if att.c == nil {
		delete(p.pending, a.id)
		p.probeAnswered(a)
		return
	}
	c := att.c
	if a.from.String() != att.to {
		// Not from the peer: ignored, and the flight counts as lost. Its
		// id stays known, so the peer's own answer still counts.
		c.t.onSpoofed(att.f, now)
		p.e.markDirty(c)
		return
	}
	delete(p.pending, a.id)
	if att.f.kind == kReattach {
		p.e.reattachAnswered(c, att.f, a, now)
		return
	}
	if att.f.probe && c.t.re.suspended && att.epoch == c.t.re.epoch && a.result {
		c.t.heard(now)
		c.t.onProbeAnswered(att.f, now)
		c.noteReattached()
		p.e.markDirty(c)
		return
	}
	if att.to != c.peerStr || att.epoch != c.t.re.epoch {
		// Sent before the tunnel was suspended or re-attached (to where
		// the peer was then): the flight goes again, or has gone.
		return
	}
	c.t.heard(now)
	sentAt := att.written
	if sentAt.IsZero() {
		sentAt = att.handedAt
	}
	rtt := a.at.Sub(sentAt)
	switch {
	case !a.result:
		c.t.onError(att.f, a.se, now)
	case att.f.kind == kStart:
		c.t.onProceed(att.f, a.proceed, a.perr)
	default:
		if n := c.t.onResult(att.f, rtt); n > 0 {
			c.inflight -= n
			p.ctl.acked(n, rtt, a.at, att.delivered)
			p.e.env.chunk = p.ctl.chunk
			p.e.env.rate = p.ctl.rate
		}
	}
	p.e.markDirty(c)
}

// onTimer forgets, now and then, IQs whose flights no longer wait for them.
func (p *iqPath) onTimer(now time.Time) {
	if p.sweepAt.IsZero() || now.Before(p.sweepAt) {
		return
	}
	for id, att := range p.pending {
		if att.c != nil && (att.f.settled || att.c.t.gone()) {
			delete(p.pending, id)
		}
	}
	p.sweepAt = time.Time{}
	if len(p.pending) > 0 {
		p.sweepAt = now.Add(sweepInterval)
	}
}

// deadline is when the path next needs onTimer.
func (p *iqPath) deadline() time.Time { return p.sweepAt }

// idle reports whether the path has nothing left to write.
func (p *iqPath) idle() bool {
	if p.dead {
		return true
	}
	if p.sched.ctrl.head != nil {
		return false
	}
	p.wmu.Lock()
	defer p.wmu.Unlock()
	return len(p.wctrl) == 0 && len(p.wdata) == 0 && !p.wbusy
}

// kill stops the path at once: the session cannot write, and nothing
// waits for an answer any more.
func (p *iqPath) kill() {
	p.dead = true
	clear(p.pending)
	p.sweepAt = time.Time{}
	p.wmu.Lock()
	p.wdead = true
	p.wctrl, p.wdata = nil, nil
	p.wmu.Unlock()
	signal(p.wwake)
}

// stopWriter lets the writer end once its queue is empty.
func (p *iqPath) stopWriter() {
	p.wmu.Lock()
	p.wstop = true
	p.wmu.Unlock()
	signal(p.wwake)
}
