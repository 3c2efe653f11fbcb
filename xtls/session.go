package xtls

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"mellium.im/xmpp"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"
	"mellium.im/xmpp/stream"
)

// An end-to-end XML stream runs inside a tunnel: a stream header each way,
// then ordinary stanzas, as in XEP-0246. The servers in between see only IQs
// carrying Base64. NewSession hands it out as a real mellium *xmpp.Session,
// so SendMessage, SendIQ and Serve with the application's own mux work as
// they do on the outer session.
//
// Routing comes from the tunnel, not from the stanzas: a stanza that arrives
// through the tunnel is given from = the peer's full JID (as the outer IQs
// proved it) and to = ours. One that claims any other from, or is addressed
// to anyone but us, is dropped and logged, so a peer cannot speak for a third
// party through the tunnel. The tunnel stays up.

// DefaultMaxStanzaSize bounds a stanza inside the tunnel unless
// WithMaxStanzaSize says otherwise.
const DefaultMaxStanzaSize = 1 << 20

// SessionOption configures NewSession.
type SessionOption func(*sessionConfig)

type sessionConfig struct {
	maxStanza int
}

// WithMaxStanzaSize bounds the serialized size of a stanza the peer sends
// through the tunnel; a larger one ends the inner stream with an
// *InnerStreamError (the outer XMPP session is not affected).
func WithMaxStanzaSize(n int) SessionOption {
	return func(c *sessionConfig) { c.maxStanza = n }
}

// InnerStreamError ends an end-to-end stream whose peer broke the rules:
// malformed XML, a stanza over the size limit, a bad stream header. Only that
// tunnel is closed; the outer session goes on.
type InnerStreamError struct {
	Peer   jid.JID
	Reason string
	Err    error
}

func (e *InnerStreamError) Error() string {
	s := fmt.Sprintf("xtls: end-to-end stream with %s: %s", e.Peer, e.Reason)
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap returns the underlying error, if any.
func (e *InnerStreamError) Unwrap() error { return e.Err }

// NewSession negotiates an end-to-end XML stream over the established
// tunnel c and returns a mellium session for it, bound to our full JID with
// the peer's full JID as its remote address. Run Serve on it as on any
// session. Closing the session (Session.Close, or the peer's) ends the
// stream in both directions, then the TLS connection and the tunnel.
func NewSession(ctx context.Context, c *Conn, opts ...SessionOption) (*xmpp.Session, error) {
	cfg := sessionConfig{maxStanza: DefaultMaxStanzaSize}
	for _, o := range opts {
		o(&cfg)
	}
	st := c.State()
	e := newE2EConn(c, st.Peer, st.Local, cfg.maxStanza, c.h.log)
	s, err := xmpp.NewSession(ctx, st.Peer, st.Local, e, 0, e2eNegotiator(st.Local, st.Peer, st.Initiator))
	if err != nil {
		c.Close()
		return nil, err
	}
	return s, nil
}

// DialSession dials peer (see Handler.Dial) and negotiates an end-to-end
// stream in the tunnel (see NewSession).
func DialSession(ctx context.Context, h *Handler, peer jid.JID, opts ...DialOption) (*xmpp.Session, error) {
	c, err := h.Dial(ctx, peer, opts...)
	if err != nil {
		return nil, err
	}
	return NewSession(ctx, c)
}

// AcceptSession accepts the next tunnel from ln (a Handler's Listener) and
// negotiates an end-to-end stream in it (see NewSession).
func AcceptSession(ctx context.Context, ln net.Listener) (*xmpp.Session, error) {
	nc, err := ln.Accept()
	if err != nil {
		return nil, err
	}
	c, ok := nc.(*Conn)
	if !ok {
		nc.Close()
		return nil, errors.New("xtls: AcceptSession needs the Listener of an xtls Handler")
	}
	return NewSession(ctx, c)
}

// e2eNegotiator exchanges stream headers: the initiator writes first, the
// responder reads first. The peer's header must name the two ends as the
// tunnel does.
func e2eNegotiator(local, peer jid.JID, initiator bool) xmpp.Negotiator {
	return func(ctx context.Context, in, out *stream.Info, s *xmpp.Session, _ interface{}) (xmpp.SessionState, io.ReadWriter, interface{}, error) {
		write := func() error {
			_, err := fmt.Fprintf(s.Conn(), `<?xml version='1.0'?><stream:stream xmlns='%s' xmlns:stream='%s' version='1.0' from='%s' to='%s'>`,
				stanza.NSClient, stream.NS, escapeAttr(local.String()), escapeAttr(peer.String()))
			return err
		}
		if initiator {
			if err := write(); err != nil {
				return 0, nil, nil, err
			}
		}
		r := s.TokenReader()
		defer r.Close()
		for {
			if err := ctx.Err(); err != nil {
				return 0, nil, nil, err
			}
			tok, err := r.Token()
			if err != nil {
				return 0, nil, nil, err
			}
			switch t := tok.(type) {
			case xml.ProcInst, xml.CharData:
				continue
			case xml.StartElement:
				if t.Name.Space != stream.NS || t.Name.Local != "stream" {
					return 0, nil, nil, &InnerStreamError{Peer: peer, Reason: "expected a stream header"}
				}
				if err := in.FromStartElement(t); err != nil {
					return 0, nil, nil, &InnerStreamError{Peer: peer, Reason: "bad stream header", Err: err}
				}
				// The tunnel says who the two ends are, whatever the header
				// claims.
				in.From, in.To = peer, local
				out.From, out.To, out.XMLNS = local, peer, stanza.NSClient
				if !initiator {
					if err := write(); err != nil {
						return 0, nil, nil, err
					}
				}
				return xmpp.Ready | xmpp.Authn | xmpp.Secure, nil, nil, nil
			default:
				return 0, nil, nil, &InnerStreamError{Peer: peer, Reason: fmt.Sprintf("unexpected %T before the stream header", tok)}
			}
		}
	}
}

var streamEnd = []byte("</stream:stream>")

// e2eConn sits between mellium and the TLS connection. It re-serializes the
// peer's XML stream token by token, filling in and checking the routing of
// each stanza, and it closes the TLS connection once both streams have
// ended.
type e2eConn struct {
	c          *Conn
	peer       jid.JID
	local      jid.JID
	maxStanza  int64
	log        *slog.Logger
	dec        *xml.Decoder
	depth      int
	stack      []xml.Name
	stanzaFrom int64 // input offset where the current stanza began

	rmu     sync.Mutex // serialises Read
	out     bytes.Buffer
	readErr error

	emu       sync.Mutex
	broken    error // the peer broke the stream: abort once ours is closed
	sentEnd   bool
	gotEnd    bool
	closeOnce sync.Once
}

func newE2EConn(c *Conn, peer, local jid.JID, maxStanza int, log *slog.Logger) *e2eConn {
	e := &e2eConn{c: c, peer: peer, local: local, maxStanza: int64(maxStanza), log: log}
	e.dec = xml.NewDecoder(c)
	e.dec.Strict = true
	return e
}

// Read hands mellium the peer's stream, re-serialized and checked.
func (e *e2eConn) Read(p []byte) (int, error) {
	e.rmu.Lock()
	defer e.rmu.Unlock()
	for e.out.Len() == 0 {
		if e.readErr != nil {
			return 0, e.readErr
		}
		if err := e.next(); err != nil {
			e.readErr = err
			if ise := (*InnerStreamError)(nil); errors.As(err, &ise) {
				// mellium's Serve returns this error after writing a
				// stream error and closing our stream; Write then aborts
				// the tunnel.
				e.log.Warn("xtls: end-to-end stream broken, tunnel closed", "peer", e.peer.String(), "err", err)
				e.emu.Lock()
				e.broken = err
				e.emu.Unlock()
			}
		}
	}
	return e.out.Read(p)
}

// next processes the next token of the peer's stream into e.out.
func (e *e2eConn) next() error {
	tok, err := e.dec.RawToken()
	if err != nil {
		if err == io.EOF {
			if e.depth > 0 {
				return &InnerStreamError{Peer: e.peer, Reason: "stream cut short"}
			}
			return io.EOF
		}
		var se *xml.SyntaxError
		if errors.As(err, &se) {
			return &InnerStreamError{Peer: e.peer, Reason: "malformed XML", Err: err}
		}
		return err
	}
	if e.depth >= 2 && e.dec.InputOffset()-e.stanzaFrom > e.maxStanza {
		return &InnerStreamError{Peer: e.peer, Reason: fmt.Sprintf("stanza larger than %d bytes", e.maxStanza)}
	}
	switch t := tok.(type) {
	case xml.StartElement:
		if e.depth == 1 {
			e.stanzaFrom = e.dec.InputOffset()
			if isStanza(t) {
				var ok bool
				if t, ok = e.route(t); !ok {
					return e.skip(t)
				}
			}
		}
		e.depth++
		e.stack = append(e.stack, t.Name)
		writeStart(&e.out, t)
	case xml.EndElement:
		if e.depth == 0 || e.stack[len(e.stack)-1] != t.Name {
			return &InnerStreamError{Peer: e.peer, Reason: "mismatched end element " + qname(t.Name)}
		}
		e.depth--
		e.stack = e.stack[:len(e.stack)-1]
		fmt.Fprintf(&e.out, "</%s>", qname(t.Name))
		if e.depth == 0 {
			e.ended(false)
		}
	case xml.CharData:
		xml.EscapeText(&e.out, t)
	case xml.ProcInst:
		if e.depth == 0 && t.Target == "xml" {
			return nil // the XML declaration before the header
		}
		return &InnerStreamError{Peer: e.peer, Reason: "processing instruction in the stream"}
	case xml.Comment, xml.Directive:
		return &InnerStreamError{Peer: e.peer, Reason: "comment or directive in the stream (RFC 6120 forbids them)"}
	}
	return nil
}

// isStanza reports whether a depth-1 element is a stanza of the stream's
// default namespace.
func isStanza(t xml.StartElement) bool {
	if t.Name.Space != "" {
		return false
	}
	switch t.Name.Local {
	case "message", "presence", "iq":
		return true
	}
	return false
}

// route checks a stanza's from and to against the tunnel and fills them in.
func (e *e2eConn) route(t xml.StartElement) (xml.StartElement, bool) {
	attrs := make([]xml.Attr, 0, len(t.Attr)+2)
	for _, a := range t.Attr {
		if a.Name.Space != "" {
			attrs = append(attrs, a)
			continue
		}
		switch a.Name.Local {
		case "from":
			if j, err := jid.Parse(a.Value); a.Value != "" && (err != nil || !j.Equal(e.peer)) {
				e.log.Warn("xtls: stanza with a forged from dropped", "peer", e.peer.String(), "from", a.Value)
				return t, false
			}
		case "to":
			if j, err := jid.Parse(a.Value); a.Value != "" && (err != nil || !j.Equal(e.local) && !j.Equal(e.local.Bare())) {
				e.log.Warn("xtls: stanza addressed to someone else dropped", "peer", e.peer.String(), "to", a.Value)
				return t, false
			}
		default:
			attrs = append(attrs, a)
		}
	}
	t.Attr = append(attrs,
		xml.Attr{Name: xml.Name{Local: "from"}, Value: e.peer.String()},
		xml.Attr{Name: xml.Name{Local: "to"}, Value: e.local.String()})
	return t, true
}

// skip discards the rest of the element that began with start.
func (e *e2eConn) skip(start xml.StartElement) error {
	for depth := 1; depth > 0; {
		tok, err := e.dec.RawToken()
		if err != nil {
			if err == io.EOF {
				return &InnerStreamError{Peer: e.peer, Reason: "stream cut short"}
			}
			return &InnerStreamError{Peer: e.peer, Reason: "malformed XML", Err: err}
		}
		if e.dec.InputOffset()-e.stanzaFrom > e.maxStanza {
			return &InnerStreamError{Peer: e.peer, Reason: fmt.Sprintf("stanza larger than %d bytes", e.maxStanza)}
		}
		switch tok.(type) {
		case xml.StartElement:
			depth++
		case xml.EndElement:
			depth--
		}
	}
	return nil
}

// Write passes our stream to the TLS connection.
func (e *e2eConn) Write(p []byte) (int, error) {
	n, err := e.c.Write(p)
	if bytes.Equal(p, streamEnd) {
		e.emu.Lock()
		broken := e.broken
		e.emu.Unlock()
		if broken != nil {
			e.closeOnce.Do(func() { e.c.Tunnel().Abort(stanza.PolicyViolation, broken.Error()) })
			return n, err
		}
		if err == nil {
			e.ended(true)
		}
	}
	return n, err
}

// ended records the end of one stream; when both have ended the TLS
// connection is closed (close_notify, then the tunnel's close).
func (e *e2eConn) ended(ours bool) {
	e.emu.Lock()
	if ours {
		e.sentEnd = true
	} else {
		e.gotEnd = true
	}
	both := e.sentEnd && e.gotEnd
	e.emu.Unlock()
	if both {
		e.closeOnce.Do(func() { e.c.Close() })
	}
}

// Close closes the TLS connection.
func (e *e2eConn) Close() error {
	var err error
	e.closeOnce.Do(func() { err = e.c.Close() })
	return err
}

func (e *e2eConn) LocalAddr() net.Addr                { return e.c.LocalAddr() }
func (e *e2eConn) RemoteAddr() net.Addr               { return e.c.RemoteAddr() }
func (e *e2eConn) SetDeadline(t time.Time) error      { return e.c.SetDeadline(t) }
func (e *e2eConn) SetReadDeadline(t time.Time) error  { return e.c.SetReadDeadline(t) }
func (e *e2eConn) SetWriteDeadline(t time.Time) error { return e.c.SetWriteDeadline(t) }

func qname(n xml.Name) string {
	if n.Space == "" {
		return n.Local
	}
	return n.Space + ":" + n.Local
}

// writeStart serializes a raw start element, prefixes as they came.
func writeStart(b *bytes.Buffer, t xml.StartElement) {
	b.WriteByte('<')
	b.WriteString(qname(t.Name))
	for _, a := range t.Attr {
		b.WriteByte(' ')
		b.WriteString(qname(a.Name))
		b.WriteString(`="`)
		xml.EscapeText(b, []byte(a.Value))
		b.WriteByte('"')
	}
	b.WriteByte('>')
}

func escapeAttr(s string) string {
	var b bytes.Buffer
	xml.EscapeText(&b, []byte(s))
	return b.String()
}
