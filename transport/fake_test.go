package transport

import (
	"bytes"
	"context"
	"encoding/xml"
	"io"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	"mellium.im/xmlstream"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"

	xstanza "github.com/xmppxtls/xtls/stanza"
)

// fakeSession is a Session whose IQs the test sees and answers: sender rules
// are tested against it one stanza at a time.
type fakeSession struct {
	local jid.JID
	out   sync.Mutex
	sent  chan *sentIQ
}

func newFake(local string) *fakeSession {
	return &fakeSession{local: jid.MustParse(local), sent: make(chan *sentIQ, 1024)}
}

// sentIQ is one IQ the transport sent, with its payload decoded.
type sentIQ struct {
	to      jid.JID
	elem    xstanza.Element
	raw     string
	resp    chan xml.TokenReader
	ctxDone <-chan struct{}
	closed  chan struct{} // closed when the transport closes the response
	// onClose, if set before the response is given, runs when the
	// transport closes the response, before Close returns: the next
	// stanza Serve handles.
	onClose func()
}

func (f *fakeSession) LocalAddr() jid.JID { return f.local }

func (f *fakeSession) TokenWriter() xmlstream.TokenWriteFlushCloser {
	f.out.Lock()
	return &unlockWriter{m: &f.out}
}

type unlockWriter struct{ m *sync.Mutex }

func (w *unlockWriter) EncodeToken(xml.Token) error { return nil }
func (w *unlockWriter) Flush() error                { return nil }
func (w *unlockWriter) Close() error                { w.m.Unlock(); return nil }

func (f *fakeSession) SendIQ(ctx context.Context, r xml.TokenReader) (xmlstream.TokenReadCloser, error) {
	f.out.Lock()
	var buf bytes.Buffer
	enc := xml.NewEncoder(&buf)
	var start xml.StartElement
	for i := 0; ; i++ {
		tok, err := r.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			f.out.Unlock()
			return nil, err
		}
		if i == 0 {
			start = tok.(xml.StartElement)
		}
		_ = enc.EncodeToken(xml.CopyToken(tok))
	}
	_ = enc.Flush()
	iq, _ := stanza.NewIQ(start)
	raw := buf.String()
	d := xml.NewDecoder(strings.NewReader(raw))
	_, _ = d.Token() // the iq
	elem, err := xstanza.Decode(d)
	if err != nil {
		f.out.Unlock()
		panic("transport sent a malformed element: " + err.Error() + ": " + raw)
	}
	s := &sentIQ{to: iq.To, elem: elem, raw: raw, resp: make(chan xml.TokenReader, 1), ctxDone: ctx.Done(), closed: make(chan struct{})}
	// Queued before the output is released, so that f.sent holds IQs in
	// the order they were written: the next IQ's writer may start as soon
	// as this one's last token has been read.
	f.sent <- s
	f.out.Unlock()
	select {
	case r := <-s.resp:
		return &respCloser{TokenReader: r, closed: s.closed, onClose: s.onClose}, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// respCloser is a response as mellium hands it over: Serve stays parked
// until it is closed.
type respCloser struct {
	xml.TokenReader
	closed  chan struct{}
	onClose func()
	once    sync.Once
}

func (r *respCloser) Close() error {
	r.once.Do(func() {
		if r.onClose != nil {
			r.onClose() // what Serve does next, before Close returns
		}
		close(r.closed)
	})
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

func (s *sentIQ) respond(from jid.JID, typ stanza.IQType, payload xml.TokenReader) {
	iq := stanza.IQ{ID: "id", From: from, Type: typ}
	s.resp <- iq.Wrap(payload)
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
