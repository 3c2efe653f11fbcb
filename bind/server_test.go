package bind_test

import (
	"context"
	"encoding/xml"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"mellium.im/xmpp"
	"mellium.im/xmpp/jid"
)

// answer is the server's answer to the n-th bind request (from 0), which
// asked for res (nil: no <resource/> element): an IQ of type result or error
// with the request's id, as XML.
type answer func(n int, res *string, id string) string

// bound answers with local@domain/res, or with r when the request named none.
func bound(r string) answer {
	return func(_ int, res *string, id string) string {
		if res != nil && *res != "" {
			r = *res
		}
		return result(id, "juliet@example.com/"+r)
	}
}

func result(id, j string) string {
	return fmt.Sprintf(`<iq type='result' id='%s'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><jid>%s</jid></bind></iq>`, id, j)
}

func refusal(id, cond string) string {
	return fmt.Sprintf(`<iq type='error' id='%s'><error type='cancel'><%s xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>`, id, cond)
}

// server is the receiving side of a client-to-server stream after
// authentication, reduced to what resource binding needs: a stream header,
// a features list with <bind/>, and answers to bind requests. It records
// the resource each request asked for.
type server struct {
	ln   net.Listener
	ans  answer
	done chan struct{}

	mu       sync.Mutex
	requests []*string
}

// newServer listens on 127.0.0.1 and serves one client until it closes its
// stream or the test ends.
func newServer(t testing.TB, ans answer) *server {
	t.Helper()
	s, err := startServer(ans)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// startServer listens on 127.0.0.1 and serves one client until it closes
// its stream or Close is called.
func startServer(ans answer) (*server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &server{ln: ln, ans: ans, done: make(chan struct{})}
	go s.serve()
	return s, nil
}

// Addr is where the server listens.
func (s *server) Addr() string { return s.ln.Addr().String() }

// Close stops the server and waits for it.
func (s *server) Close() {
	s.ln.Close()
	<-s.done
}

// Requests returns what each bind request asked for ("<none>" for no
// <resource/> element).
func (s *server) Requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, r := range s.requests {
		if r == nil {
			out = append(out, "<none>")
		} else {
			out = append(out, *r)
		}
	}
	return out
}

func (s *server) serve() {
	defer close(s.done)
	conn, err := s.ln.Accept()
	if err != nil {
		return
	}
	defer conn.Close()
	d := xml.NewDecoder(conn)
	if _, err := nextStart(d); err != nil {
		return
	}
	io.WriteString(conn, `<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0' id='s1' from='example.com'>`+
		`<stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></stream:features>`)
	for n := 0; ; n++ {
		start, err := nextStart(d)
		if err != nil {
			io.WriteString(conn, `</stream:stream>`)
			return
		}
		var req struct {
			ID   string `xml:"id,attr"`
			Bind struct {
				Resource *string `xml:"resource"`
			} `xml:"urn:ietf:params:xml:ns:xmpp-bind bind"`
		}
		if err := d.DecodeElement(&req, &start); err != nil {
			return
		}
		s.mu.Lock()
		s.requests = append(s.requests, req.Bind.Resource)
		s.mu.Unlock()
		io.WriteString(conn, s.ans(n, req.Bind.Resource, req.ID))
	}
}

// nextStart returns the next start element; the end of the client's stream
// is an error.
func nextStart(d *xml.Decoder) (xml.StartElement, error) {
	for {
		tok, err := d.Token()
		if err != nil {
			return xml.StartElement{}, err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			return t, nil
		case xml.EndElement:
			return xml.StartElement{}, io.EOF
		}
	}
}

// login negotiates a session for origin with the server, as a client that
// has already secured and authenticated its stream, with the given
// features. The session is served until the test ends.
func (s *server) login(t testing.TB, origin string, features ...xmpp.StreamFeature) (*xmpp.Session, error) {
	conn, err := net.Dial("tcp", s.Addr())
	if err != nil {
		return nil, err
	}
	sess, err := negotiate(conn, jid.MustParse(origin), features...)
	if err != nil {
		return nil, err
	}
	end := serve(sess)
	t.Cleanup(end)
	return sess, nil
}

// negotiate negotiates a session on conn for origin, as a client that has
// already secured and authenticated its stream, with the given features.
// conn is closed if it fails.
func negotiate(conn net.Conn, origin jid.JID, features ...xmpp.StreamFeature) (*xmpp.Session, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sess, err := xmpp.NewSession(ctx, origin.Domain(), origin, conn, xmpp.Secure|xmpp.Authn,
		xmpp.NewNegotiator(func(*xmpp.Session, *xmpp.StreamConfig) xmpp.StreamConfig {
			return xmpp.StreamConfig{Features: features}
		}))
	if err != nil {
		conn.Close()
		return nil, err
	}
	return sess, nil
}

// serve runs Serve in the background and returns a function that ends the
// session: it closes our stream, waits for the server's end and closes
// the connection.
func serve(sess *xmpp.Session) (end func()) {
	done := make(chan struct{})
	go func() {
		sess.Serve(nil)
		close(done)
	}()
	return func() {
		sess.Close()
		<-done
		sess.Conn().Close()
	}
}
