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
// implements it. SendIQ sends an IQ and waits for its response; LocalAddr is
// the session's full JID; TokenWriter takes the session's output lock, which
// the transport uses only to learn that stanzas it sent have been completely
// written.
type Session interface {
	SendIQ(ctx context.Context, r xml.TokenReader) (xmlstream.TokenReadCloser, error)
	LocalAddr() jid.JID
	TokenWriter() xmlstream.TokenWriteFlushCloser
}

// sessionState is implemented by *xmpp.Session; when the Session has it, the
// Endpoint notices a session whose Serve loop has ended and fails what is in
// flight instead of waiting for acknowledgement timeouts.
type sessionState interface {
	State() xmpp.SessionState
}

// watchInterval is how often an Endpoint with tunnels checks that its session
// is still alive.
const watchInterval = 100 * time.Millisecond

type tunnelKey struct {
	peer, sid string
}

// Endpoint multiplexes tunnels over one XMPP session.
type Endpoint struct {
	sess     Session
	local    jid.JID
	localStr string
	cfg      Config
	log      *slog.Logger

	budget  budget       // payload bytes in flight, all tunnels together
	chunk   atomic.Int64 // Config.ChunkSize, or what SetChunkSize set
	largest atomic.Int64 // serialized size of the largest data IQ sent, roughly
	lastAns atomic.Int64 // when the last answer to one of our IQs came (Unix ns)
	stats   stats

	scratchMu sync.Mutex
	scratch   []byte // decoded payload of the data element being handled

	mu       sync.Mutex
	tunnels  map[tunnelKey]*Conn
	accept   func(*Conn) error
	err      error         // set once the session is gone
	done     chan struct{} // closed with err
	watching bool
	wg       sync.WaitGroup // the session watcher
}

// NewEndpoint returns an Endpoint for s. cfg may be nil for the defaults.
// Register its handlers with Handle and run s.Serve as usual.
func NewEndpoint(s Session, cfg *Config) *Endpoint {
	c := cfg.withDefaults()
	local := s.LocalAddr()
	e := &Endpoint{
		sess:     s,
		local:    local,
		localStr: local.String(),
		cfg:      c,
		log:      c.Logger,
		tunnels:  make(map[tunnelKey]*Conn),
		done:     make(chan struct{}),
	}
	e.budget.init(c.ChunkSize, c.SessionWindow)
	e.chunk.Store(int64(c.ChunkSize))
	return e
}

// Config returns the Endpoint's configuration with defaults applied; its
// ChunkSize is the current one (see SetChunkSize).
func (e *Endpoint) Config() Config {
	c := e.cfg
	c.ChunkSize = e.ChunkSize()
	return c
}

// ChunkSize returns the largest payload the Endpoint puts in one data
// element (within each peer's block-size): Config.ChunkSize, or what
// SetChunkSize set since.
func (e *Endpoint) ChunkSize() int { return int(e.chunk.Load()) }

// SetChunkSize changes the largest payload the Endpoint puts in one data
// element, for every tunnel, open or to come, from its next data element
// on; n is bounded as Config.ChunkSize is. It is for a chunk size that
// depends on what is learnt about the server once the session runs (see
// Config.ChunkSize): xtls's Handler asks the server's software and sets it.
// The session budget's thresholds follow (they count in blocks).
func (e *Endpoint) SetChunkSize(n int) {
	n = clamp(n, 1, xstanza.MaxBlockSize)
	e.chunk.Store(int64(n))
	e.budget.setChunk(n)
}

// LocalAddr returns the session's full JID.
func (e *Endpoint) LocalAddr() jid.JID { return e.local }

// Handle returns a mux option that registers the Endpoint for the XTLS
// elements (IQ set and get).
func (e *Endpoint) Handle() mux.Option {
	return HandleWith(e)
}

// HandleWith is like Handle but registers h, which must pass the XTLS IQs to
// the Endpoint's HandleIQ (a wrapper that also advertises a disco feature,
// for instance).
func HandleWith(h mux.IQHandler) mux.Option {
	return func(m *mux.ServeMux) {
		for _, typ := range []stanza.IQType{stanza.SetIQ, stanza.GetIQ} {
			for _, local := range []string{"start", "data", "credit", "close", ""} {
				mux.IQ(typ, xml.Name{Space: xstanza.NS, Local: local}, h)(m)
			}
		}
	}
}

// SetAcceptFunc sets the function that decides on the peer's starts. It is
// called on the session's Serve goroutine and must not block: it returns nil
// to accept c (and hands it to whoever will use it), or an error to refuse:
// a stanza.Error is sent as it is, any other error as not-acceptable. Without
// an accept function every start is refused with not-acceptable.
func (e *Endpoint) SetAcceptFunc(f func(c *Conn) error) {
	e.mu.Lock()
	e.accept = f
	e.mu.Unlock()
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
	e.mu.Lock()
	if e.err != nil {
		e.mu.Unlock()
		return nil, e.err
	}
	if _, ok := e.tunnels[c.key]; ok {
		e.mu.Unlock()
		return nil, ErrSIDInUse
	}
	e.tunnels[c.key] = c
	e.watchLocked()
	e.mu.Unlock()
	c.start()
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
// Opens fail and starts are refused. It does not close the session.
func (e *Endpoint) Close() error {
	e.mu.Lock()
	if e.err != nil {
		e.mu.Unlock()
		return nil
	}
	conns := e.conns()
	e.mu.Unlock()
	for _, c := range conns {
		c.Abort(stanza.Gone, "endpoint closed")
	}
	e.shutdown(ErrSessionClosed, false)
	for _, c := range conns {
		c.wait(e.cfg.CloseTimeout)
	}
	e.wg.Wait()
	return nil
}

// SessionEnded tells the Endpoint that its session's Serve loop has
// returned (err is what it returned): every tunnel fails at once with an
// error wrapping ErrSessionClosed, instead of when the watcher notices.
func (e *Endpoint) SessionEnded(err error) {
	cause := ErrSessionClosed
	if err != nil {
		cause = e.sessionError(err)
	}
	e.shutdown(cause, true)
	e.wg.Wait()
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

// iqOverhead is roughly what an IQ and a data element add to the Base64
// text.
const iqOverhead = 200

// shutdown fails every tunnel with err. dead says the session can no longer
// write, so IQ contexts may be cancelled at once.
func (e *Endpoint) shutdown(err error, dead bool) {
	e.mu.Lock()
	if e.err != nil {
		e.mu.Unlock()
		return
	}
	e.err = err
	close(e.done)
	conns := e.conns()
	e.mu.Unlock()
	for _, c := range conns {
		c.failWith(err, dead)
	}
}

func (e *Endpoint) conns() []*Conn {
	cs := make([]*Conn, 0, len(e.tunnels))
	for _, c := range e.tunnels {
		cs = append(cs, c)
	}
	return cs
}

// watchLocked starts the session watcher if the session can be watched and
// it is not running. e.mu is held.
func (e *Endpoint) watchLocked() {
	st, ok := e.sess.(sessionState)
	if !ok || e.watching {
		return
	}
	e.watching = true
	e.wg.Add(1)
	go e.watch(st)
}

// watch polls the session state while tunnels exist: mellium offers no
// notification when Serve returns, and pending IQs would otherwise wait for
// their timeouts.
func (e *Endpoint) watch(st sessionState) {
	defer e.wg.Done()
	t := time.NewTicker(watchInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-e.done:
			return
		}
		if st.State()&(xmpp.InputStreamClosed|xmpp.OutputStreamClosed) != 0 {
			e.shutdown(ErrSessionClosed, true)
			return
		}
		e.mu.Lock()
		if len(e.tunnels) == 0 {
			e.watching = false
			e.mu.Unlock()
			return
		}
		e.mu.Unlock()
	}
}

// answered records that an answer to one of our IQs came: the path is
// delivering.
func (e *Endpoint) answered() { e.lastAns.Store(time.Now().UnixNano()) }

// lastAnswer returns when the last answer to one of our IQs came.
func (e *Endpoint) lastAnswer() time.Time { return time.Unix(0, e.lastAns.Load()) }

// lookup returns the tunnel with peer and sid, or nil.
func (e *Endpoint) lookup(peer, sid string) *Conn {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.tunnels[tunnelKey{peer, sid}]
}

// remove forgets c, if it is still the tunnel under its key.
func (e *Endpoint) remove(c *Conn) {
	e.mu.Lock()
	if e.tunnels[c.key] == c {
		delete(e.tunnels, c.key)
	}
	e.mu.Unlock()
}

// syncOut returns once every stanza whose writing began before the call has
// been completely written and flushed: it takes and releases the session's
// output lock. Only then may the context of an IQ be cancelled (see the
// package documentation).
func (e *Endpoint) syncOut() {
	w := e.sess.TokenWriter()
	_ = w.Close()
}

func randomSID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}
