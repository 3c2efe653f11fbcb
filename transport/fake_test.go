package transport

import (
	"bytes"
	"encoding/xml"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"mellium.im/xmlstream"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"

	xstanza "github.com/xmppxtls/xtls/stanza"
)

// fakeSession is a Session whose IQs the test sees and answers: sender rules
// are tested against it one stanza at a time. The transport writes its IQs
// through TokenWriter; the test's answers reach the Endpoint's handler, as
// mellium's Serve would hand them over.
type fakeSession struct {
	local jid.JID
	e     *Endpoint     // set by newEndpoint
	out   chan struct{} // the output lock (a channel, so that synctest sees its waiters)
	sent  chan *sentIQ
}

func newFake(local string) *fakeSession {
	return &fakeSession{local: jid.MustParse(local), out: make(chan struct{}, 1), sent: make(chan *sentIQ, 1024)}
}

// newEndpoint returns an Endpoint over a new fake session for alice.
func newFakeEndpoint(cfg *Config) (*fakeSession, *Endpoint) {
	f := newFake(aliceJID)
	f.e = NewEndpoint(f, cfg)
	return f, f.e
}

// sentIQ is one IQ the transport sent, with its payload decoded.
type sentIQ struct {
	f      *fakeSession
	id     string
	to     jid.JID
	elem   xstanza.Element
	raw    string
	closed chan struct{} // closed once the answer has been handled
	// onClose, if set before the response is given, runs once the answer
	// has been handled: the next stanza Serve handles.
	onClose func()
}

func (f *fakeSession) LocalAddr() jid.JID { return f.local }

// TokenWriter takes the output lock and collects one stanza; Close decodes
// it and queues it for the test, then releases the lock, so that f.sent
// holds IQs in the order they were written.
func (f *fakeSession) TokenWriter() xmlstream.TokenWriteFlushCloser {
	f.out <- struct{}{}
	w := &stanzaWriter{f: f}
	w.enc = xml.NewEncoder(&w.buf)
	return w
}

type stanzaWriter struct {
	f     *fakeSession
	buf   bytes.Buffer
	enc   *xml.Encoder
	start xml.StartElement
	n     int
}

func (w *stanzaWriter) EncodeToken(tok xml.Token) error {
	if w.n == 0 {
		w.start = xml.CopyToken(tok).(xml.StartElement)
	}
	w.n++
	return w.enc.EncodeToken(xml.CopyToken(tok))
}

func (w *stanzaWriter) Flush() error { return w.enc.Flush() }

func (w *stanzaWriter) Close() error {
	defer func() { <-w.f.out }()
	if w.n == 0 {
		return nil
	}
	_ = w.enc.Flush()
	iq, _ := stanza.NewIQ(w.start)
	raw := w.buf.String()
	d := xml.NewDecoder(strings.NewReader(raw))
	_, _ = d.Token() // the iq
	elem, err := xstanza.Decode(d)
	if err != nil {
		if strings.Contains(raw, "disco#info") {
			return nil // the server probe: not for the tests here
		}
		panic("transport sent a malformed element: " + err.Error() + ": " + raw)
	}
	w.f.sent <- &sentIQ{f: w.f, id: iq.ID, to: iq.To, elem: elem, raw: raw, closed: make(chan struct{})}
	return nil
}

// next returns the next IQ the transport sent.
func (f *fakeSession) next(t testing.TB) *sentIQ {
	t.Helper()
	select {
	case s := <-f.sent:
		return s
	default:
	}
	s, ok := <-f.sent
	require.True(t, ok)
	return s
}

// none asserts that nothing has been sent (call after synctest.Wait).
func (f *fakeSession) none(t testing.TB) {
	t.Helper()
	select {
	case s := <-f.sent:
		t.Fatalf("unexpected IQ: %s", s.raw)
	default:
	}
}

// waiting reports whether the Endpoint still waits for an answer to s.
func (s *sentIQ) waiting() (ok bool) {
	s.f.e.call(func(time.Time) { _, ok = s.f.e.path.pending[s.id] })
	return ok
}

// respond hands the Endpoint's handler an answer to s from from, as Serve
// would, then runs onClose.
func (s *sentIQ) respond(from jid.JID, typ stanza.IQType, payload xml.TokenReader) {
	iq := stanza.IQ{ID: s.id, From: from, To: s.f.local, Type: typ}
	var toks []xml.Token
	if payload != nil {
		for {
			tok, err := payload.Token()
			if err != nil {
				break
			}
			toks = append(toks, xml.CopyToken(tok))
		}
	}
	var start xml.StartElement
	if len(toks) > 0 {
		start = toks[0].(xml.StartElement)
		toks = toks[1:]
	}
	h := &handlerIO{TokenReader: &tokens{toks: toks}}
	h.enc = xml.NewEncoder(&h.out)
	if err := s.f.e.HandleIQ(iq, h, &start); err != nil {
		panic(err)
	}
	if s.onClose != nil {
		s.onClose()
	}
	close(s.closed)
}

// ack answers with an empty result from the addressee.
func (s *sentIQ) ack() { s.respond(s.to, stanza.ResultIQ, nil) }

// ackWith answers with a result carrying payload.
func (s *sentIQ) ackWith(p xml.TokenReader) { s.respond(s.to, stanza.ResultIQ, p) }

// fail answers with an IQ error.
func (s *sentIQ) fail(typ stanza.ErrorType, cond stanza.Condition) {
	s.respond(s.to, stanza.ErrorIQ, stanza.Error{Type: typ, Condition: cond}.TokenReader())
}

// handlerIO is the TokenReadEncoder a handler gets: it reads the IQ's
// payload content and records what the handler writes.
type handlerIO struct {
	xml.TokenReader
	out bytes.Buffer
	enc *xml.Encoder
}

func (h *handlerIO) EncodeToken(t xml.Token) error { return h.enc.EncodeToken(t) }
func (h *handlerIO) Encode(v any) error            { return h.enc.Encode(v) }
func (h *handlerIO) EncodeElement(v any, s xml.StartElement) error {
	return h.enc.EncodeElement(v, s)
}

// deliver hands an IQ carrying payload (XML text) to e's handler as if from
// from, and returns the response written ("" if none).
func deliver(t testing.TB, e *Endpoint, typ stanza.IQType, from string, payload string) string {
	t.Helper()
	d := xml.NewDecoder(strings.NewReader(payload))
	tok, err := d.Token()
	require.NoError(t, err)
	start := tok.(xml.StartElement)
	h := &handlerIO{TokenReader: d}
	h.enc = xml.NewEncoder(&h.out)
	iq := stanza.IQ{ID: "in1", Type: typ, From: jid.MustParse(from), To: e.local}
	require.NoError(t, e.HandleIQ(iq, h, &start))
	require.NoError(t, h.enc.Flush())
	return h.out.String()
}

// encodeElem returns the XML text of an XTLS element.
func encodeElem(e xstanza.Element) string {
	var b bytes.Buffer
	enc := xml.NewEncoder(&b)
	_, _ = e.WriteXML(enc)
	_ = enc.Flush()
	return b.String()
}

// Responses as the handler writes them.
const (
	respAck = `<iq type="result" to="%s" id="in1"></iq>`
)

func isAck(s string) bool {
	return strings.Contains(s, `type="result"`) && !strings.Contains(s, "<error")
}
func errCond(s string) string {
	i := strings.Index(s, `xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"`)
	if i < 0 {
		return ""
	}
	j := strings.LastIndex(s[:i], "<")
	return strings.TrimSpace(s[j+1 : i])
}
