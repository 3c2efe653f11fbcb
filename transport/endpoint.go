package transport

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"mellium.im/xmlstream"
	"mellium.im/xmpp"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/mux"
	"mellium.im/xmpp/stanza"

	xstanza "github.com/xmppxtls/xtls/stanza"
)

// Session is the part of an XMPP session a transport needs; *xmpp.Session
// implements it. LocalAddr is the session's full JID. TokenWriter takes the
// session's output lock: the transport writes each of its IQs through it,
// one stanza per lock, and learns their answers from its handlers
// (Endpoint.HandleIQ), so that no goroutine waits for any IQ.
type Session interface {
	LocalAddr() jid.JID
	TokenWriter() xmlstream.TokenWriteFlushCloser
}

// sessionState is implemented by *xmpp.Session; when the Session has it, the
// Endpoint notices a session whose Serve loop has ended and fails what is in
// flight instead of waiting for acknowledgement timeouts.
type sessionState interface {
	State() xmpp.SessionState
}

// xmppClosed is the session state in which it can no longer carry tunnels.
const xmppClosed = xmpp.InputStreamClosed | xmpp.OutputStreamClosed

// watchInterval is how often an Endpoint with tunnels checks that its session
// is still alive.
const watchInterval = 100 * time.Millisecond

type tunnelKey struct {
	peer, sid string
}

// Endpoint multiplexes tunnels over one XMPP session.
//
// Its state, and every tunnel's, is owned by one goroutine, the loop (see
// the package documentation): the other goroutines — the session's Serve
// running the handlers, the application's Read, Write and Close, the
// path's writer — post events to it and, where they need an answer, wait
// for that answer, which the loop gives without waiting for anything.
type Endpoint struct {
	localAddr atomic.Pointer[jid.JID] // the session's full JID (Reattach changes it)
	curPath   atomic.Pointer[iqPath]  // e.path, for the Serve goroutine
	cfg       Config
	log       *slog.Logger

	policy  atomic.Pointer[func(jid.JID) error] // SetPeerPolicy
	chunk   atomic.Int64                        // Config.ChunkSize, or what SetChunkSize set
	largest atomic.Int64                        // serialized size of the largest data IQ sent, roughly
	stats   stats

	scratchMu sync.Mutex
	scratch   []byte // decoded payload of the data element being handled

	// The event queue. Once the loop has ended (stopped), events run on
	// the goroutine that posts them, one at a time (deadMu).
	qmu      sync.Mutex
	queue    []func(now time.Time)
	stopped  bool
	deadMu   sync.Mutex
	wake     chan struct{} // capacity 1
	loopDone chan struct{}

	// Owned by the loop.
	sess     Session
	local    jid.JID
	localStr string
	env      env
	path     *iqPath
	// detached is set while the session is gone and tunnels wait to be
	// re-attached (reattach_endpoint.go); lostErr is why it went.
	detached bool
	lostErr  error
	tunnels  map[tunnelKey]*Conn
	limits   limits
	accept   func(*Conn) error
	err      error // set once the session is gone or the Endpoint closed
	closing  bool  // Close: the loop ends once the aborts are written
	dirty    []*Conn
	timers   timerHeap
	timer    *time.Timer
	watchAt  time.Time // next check of the session's state (zero: none)
	bsConns  []*Conn   // tunnels with a bytestream attached

	bsWG      sync.WaitGroup // the bytestreams' goroutines
	writersWG sync.WaitGroup // the IQ paths' writers (one per session)
}

// NewEndpoint returns an Endpoint for s. cfg may be nil for the defaults.
// Register its handlers with Handle and run s.Serve as usual. The Endpoint
// runs two goroutines until it is closed or its session ends: its loop and
// the writer of its IQ path.
func NewEndpoint(s Session, cfg *Config) *Endpoint {
	c := cfg.withDefaults()
	local := s.LocalAddr()
	e := &Endpoint{
		sess:     s,
		local:    local,
		localStr: local.String(),
		cfg:      c,
		log:      c.Logger,
		wake:     make(chan struct{}, 1),
		loopDone: make(chan struct{}),
		tunnels:  make(map[tunnelKey]*Conn),
		timer:    time.NewTimer(time.Hour),
	}
	e.timer.Stop()
	e.localAddr.Store(&local)
	e.chunk.Store(int64(c.ChunkSize))
	e.env = env{cfg: &e.cfg, log: c.Logger, chunk: c.ChunkSize, grant: e.grant, peerHeard: e.lastHeard}
	e.setPath(newIQPath(e, s))
	go e.run()
	return e
}

// setPath makes p the IQ path and starts its writer.
func (e *Endpoint) setPath(p *iqPath) {
	e.path = p
	e.curPath.Store(p)
	e.env.chunk = p.ctl.chunk // the first blocks are smaller (controller.go)
	e.writersWG.Add(1)
	go func() {
		defer e.writersWG.Done()
		p.writeLoop()
	}()
}

// Config returns the Endpoint's configuration with defaults applied; its
// ChunkSize is the current one (see SetChunkSize).
func (e *Endpoint) Config() Config {
	c := e.cfg
	c.ChunkSize = e.ChunkSize()
	return c
}

// ChunkSize returns the largest payload the Endpoint puts in one data
// element (within each peer's block-size, and less while its path is found
// to be slow): Config.ChunkSize, what SetChunkSize set since, or what the
// server probe chose (TuneChunk).
func (e *Endpoint) ChunkSize() int { return int(e.chunk.Load()) }

// SetChunkSize changes the largest payload the Endpoint puts in one data
// element, for every tunnel, open or to come, from its next data element
// on; n is bounded as Config.ChunkSize is.
func (e *Endpoint) SetChunkSize(n int) {
	n = clamp(n, 1, xstanza.MaxBlockSize)
	e.chunk.Store(int64(n))
	e.post(func(now time.Time) { e.path.setChunk(n, false) })
}

// LocalAddr returns the session's full JID.
// After Reattach it is the new session's.
func (e *Endpoint) LocalAddr() jid.JID { return *e.localAddr.Load() }

// Handle returns a mux option that registers the Endpoint for the XTLS
// elements (IQ set and get) and for the answers to its own IQs (see
// HandleWith).
func (e *Endpoint) Handle() mux.Option {
	return HandleWith(e)
}

// HandleWith is like Handle but registers h, which must pass the IQs it
// gets to the Endpoint's HandleIQ (a wrapper that also advertises a disco
// feature, for instance).
//
// Besides the XTLS elements in IQ sets and gets, it registers h for every
// IQ result and error that no more specific pattern of the mux claims (the
// patterns with an empty name): the Endpoint sends its IQs without waiting
// for them (mellium's SendIQ would keep a goroutine per IQ in flight) and
// finds their answers there, by id. Answers to IQs sent with mellium's
// SendIQ never reach it: Serve hands those to their callers first. A mux may
// hold only one handler per pattern: an application that registers its own
// handler for IQ results or errors with an empty name cannot also use this.
func HandleWith(h mux.IQHandler) mux.Option {
	return func(m *mux.ServeMux) {
		for _, typ := range []stanza.IQType{stanza.SetIQ, stanza.GetIQ} {
			for _, local := range []string{"start", "data", "credit", "close", "reattach", ""} {
				mux.IQ(typ, xml.Name{Space: xstanza.NS, Local: local}, h)(m)
			}
		}
		mux.IQ(stanza.ResultIQ, xml.Name{}, h)(m)
		mux.IQ(stanza.ErrorIQ, xml.Name{}, h)(m)
	}
}

// SetAcceptFunc sets the function that decides on the peer's starts. It is
// called on the session's Serve goroutine and must not block: it returns nil
// to accept c (and hands it to whoever will use it), or an error to refuse:
// a stanza.Error is sent as it is, any other error as not-acceptable. Without
// an accept function every start is refused with not-acceptable.
func (e *Endpoint) SetAcceptFunc(f func(c *Conn) error) {
	e.call(func(time.Time) { e.accept = f })
}

// SetPeerPolicy sets a function that decides, before any limit is looked
// at, whether a peer may open tunnels at all (docs/protocol.md S6 comes
// before S7: a peer refused by policy learns not-acceptable, final, not
// resource-constraint, which invites it to try again). It runs on the
// session's Serve goroutine and must not block; it returns nil to go on, a
// stanza.Error to send as it is, or any other error to send not-acceptable.
func (e *Endpoint) SetPeerPolicy(f func(peer jid.JID) error) {
	if f == nil {
		e.policy.Store(nil)
		return
	}
	e.policy.Store(&f)
}

// Open starts a tunnel to peer (a full JID) and returns at once, before the
// peer has answered: up to 4096 bytes written now travel as the optimistic
// first flight right behind the start. Established waits for the answer; Read
// and Write wait for it as needed and fail with the refusal if the peer
// refuses. An empty sid means a random one (96 bits).
func (e *Endpoint) Open(peer jid.JID, sid string) (*Conn, error) {
	if peer.Resourcepart() == "" {
		return nil, ErrNotFullJID
	}
	if sid == "" {
		sid = randomSID()
	} else if !xstanza.ValidSID(sid) {
		return nil, errors.New("xtls/transport: invalid sid")
	}
	c := newConn(e, peer, sid, true)
	var err error
	e.call(func(now time.Time) {
		switch {
		case e.err != nil:
			err = e.err
		case e.detached:
			err = e.lostErr
		case e.tunnels[c.key] != nil:
			err = ErrSIDInUse
		default:
			w, lerr := e.admit(c.t.bare)
			if lerr != nil {
				err = lerr
				return
			}
			c.t.setWindow(w)
			c.admitted = true
			e.addTunnel(c, now)
		}
	})
	if err != nil {
		return nil, err
	}
	return c, nil
}

// Dial opens a tunnel to peer and waits until the peer has accepted it or ctx
// ends (then the tunnel is aborted). If the peer started a tunnel with the
// same sid at the same moment and the crossing went its way, Dial returns
// that tunnel.
func (e *Endpoint) Dial(ctx context.Context, peer jid.JID, sid string) (*Conn, error) {
	c, err := e.Open(peer, sid)
	if err != nil {
		return nil, err
	}
	err = c.Established(ctx)
	var ce *CrossedError
	if errors.As(err, &ce) {
		return ce.Conn, nil
	}
	if err != nil {
		c.Abort(stanza.UndefinedCondition, "dial: "+err.Error())
		return nil, err
	}
	return c, nil
}

// Close aborts every tunnel (condition gone) and stops the Endpoint: later
// Opens fail and starts are refused. It waits, within Config.CloseTimeout,
// for the aborts to be written. It does not close the session.
func (e *Endpoint) Close() error {
	e.call(func(now time.Time) {
		if e.err != nil {
			return
		}
		for _, c := range e.conns() {
			c.t.abort(stanza.Gone, "endpoint closed")
			e.markDirty(c)
		}
		e.closing = true
		e.shutdown(ErrSessionClosed, false)
	})
	e.waitStopped()
	return nil
}

// PeerGone tells the Endpoint that peer is gone: its presence became
// unavailable, say. Its tunnels (with a bare JID: those with any of its
// resources) fail at once with a *PeerGoneError saying why, instead of
// when their keep-alive notices.
func (e *Endpoint) PeerGone(peer jid.JID, why string) {
	p := peer.String()
	bare := peer.Resourcepart() == ""
	e.call(func(now time.Time) {
		for k, c := range e.tunnels {
			if k.peer == p || bare && c.t.bare == p {
				// A tunnel that may be re-attached waits for the peer to
				// come back; the others fail.
				if cause := (&PeerGoneError{Why: why}); !c.t.suspend(now, cause) {
					c.t.fail(cause)
				}
				e.markDirty(c)
			}
		}
	})
}

// SessionEnded tells the Endpoint that its session's Serve loop has
// returned (err is what it returned): every tunnel fails at once with an
// error wrapping ErrSessionClosed, instead of when the watcher notices —
// but for tunnels that may be re-attached (Conn.AllowReattach, with
// Config.Reattach set): those wait for a new session (Reattach), and the
// Endpoint with them. Call it before Reattach, for the session that ended.
func (e *Endpoint) SessionEnded(err error) {
	var cause error = ErrSessionClosed
	if err != nil {
		cause = e.sessionError(err)
	}
	var held bool
	e.call(func(now time.Time) {
		e.lose(cause, now)
		held = e.detached
	})
	if !held {
		e.waitStopped()
	}
}

// waitStopped waits, within Config.CloseTimeout, for the loop and the
// writer to end.
func (e *Endpoint) waitStopped() {
	t := time.NewTimer(e.cfg.CloseTimeout)
	defer t.Stop()
	bsDone := make(chan struct{})
	go func() { e.bsWG.Wait(); e.writersWG.Wait(); close(bsDone) }()
	for _, ch := range []<-chan struct{}{e.loopDone, bsDone} {
		select {
		case <-ch:
		case <-t.C:
			e.log.Warn("xtls: transport still writing after close")
			return
		}
	}
}

// sessionError reports the end of the session with what Serve or a write
// returned. If the tunnels had sent large stanzas, it says how large: a
// server ends the stream of a client that sends a stanza over its size
// limit, and mellium does not always report that stream error as such (a
// reset connection is common).
type sessionError struct {
	err     error
	largest int // serialized size of the largest data IQ sent, roughly
}

func (e *Endpoint) sessionError(err error) *sessionError {
	return &sessionError{err: err, largest: int(e.largest.Load())}
}

func (e *sessionError) Error() string {
	s := ErrSessionClosed.Error() + ": " + e.err.Error()
	if e.largest > largeStanza {
		s += fmt.Sprintf(" (the largest stanza sent was about %d bytes: servers end the stream of a client whose stanza exceeds their size limit; lower ChunkSize)", e.largest)
	}
	return s
}

func (e *sessionError) Unwrap() []error { return []error{ErrSessionClosed, e.err} }

// largeStanza is the stanza size above which a session's end mentions it.
const largeStanza = 10000

func randomSID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}
