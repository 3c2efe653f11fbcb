package bind

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"io"

	"mellium.im/xmlstream"
	"mellium.im/xmpp"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"
)

// NS is the namespace of resource binding.
const NS = "urn:ietf:params:xml:ns:xmpp-bind"

// Error reports that the server did not bind the requested resource: it
// refused it (Err is the server's stanza.Error, whose condition is
// typically conflict or not-allowed) or bound another one (Bound). Match a
// condition with errors.Is(err, stanza.Error{Condition: stanza.Conflict}).
type Error struct {
	// Requested is the resourcepart asked for.
	Requested string
	// Bound is the full JID the server bound instead, if it bound one.
	Bound jid.JID
	// Err is the server's refusal, if it refused.
	Err error
}

func (e *Error) Error() string {
	var se stanza.Error
	if errors.As(e.Err, &se) && len(se.Text) > 0 {
		// stanza.Error prints only its text when it has one.
		return fmt.Sprintf("bind: the server refused the resource %q: %s (%v)", e.Requested, se.Condition, se)
	}
	if e.Err != nil {
		return fmt.Sprintf("bind: the server refused the resource %q: %v", e.Requested, e.Err)
	}
	return fmt.Sprintf("bind: the server bound %s instead of the resource %q", e.Bound, e.Requested)
}

// Unwrap returns the server's refusal, if any.
func (e *Error) Unwrap() error { return e.Err }

// Option changes what Resource does.
type Option func(*config)

type config struct {
	fallback bool
}

// Fallback makes a refused resource no error: when the server answers the
// request with conflict or not-allowed, the client binds again without a
// resource, and when the server binds another resource than the one
// requested (on the first request or the second), that resource is
// accepted. The session's LocalAddr says what was bound.
func Fallback() Option {
	return func(c *config) { c.fallback = true }
}

// Resource returns a client stream feature that binds resource (RFC 6120
// §7), or a resource the server chooses if resource is empty. See the
// package documentation for what happens when the server does not bind the
// requested resource. An invalid resourcepart (RFC 7622) fails before
// anything is sent.
func Resource(resource string, opts ...Option) xmpp.StreamFeature {
	var c config
	for _, o := range opts {
		o(&c)
	}
	return xmpp.StreamFeature{
		Name:       xml.Name{Space: NS, Local: "bind"},
		Necessary:  xmpp.Authn,
		Prohibited: xmpp.Ready,
		// A server lists its features; this one refuses, so a server
		// session with it fails to start.
		List: func(context.Context, xmlstream.TokenWriter, xml.StartElement) (bool, error) {
			return true, errClientOnly
		},
		Parse: func(_ context.Context, d *xml.Decoder, _ *xml.StartElement) (bool, interface{}, error) {
			return true, nil, d.Skip()
		},
		Negotiate: func(_ context.Context, s *xmpp.Session, _ interface{}) (xmpp.SessionState, io.ReadWriter, error) {
			j, err := negotiate(s, resource, c)
			if err != nil {
				return 0, nil, err
			}
			s.UpdateAddr(j)
			return xmpp.Ready, nil, nil
		},
	}
}

var errClientOnly = errors.New("bind: Resource is a client feature")

// negotiate asks for resource and, with Fallback, for none after a refusal.
// It returns the bound JID.
func negotiate(s *xmpp.Session, resource string, c config) (jid.JID, error) {
	if resource != "" {
		if _, err := s.LocalAddr().WithResource(resource); err != nil {
			return jid.JID{}, fmt.Errorf("bind: invalid resourcepart %q: %w", resource, err)
		}
	}
	j, err := request(s, resource)
	var se stanza.Error
	if c.fallback && resource != "" && errors.As(err, &se) &&
		(se.Condition == stanza.Conflict || se.Condition == stanza.NotAllowed) {
		j, err = request(s, "")
	}
	if err != nil {
		if errors.As(err, &se) {
			return jid.JID{}, &Error{Requested: resource, Err: se}
		}
		return jid.JID{}, err
	}
	if resource != "" && j.Resourcepart() != resource && !c.fallback {
		return jid.JID{}, &Error{Requested: resource, Bound: j}
	}
	return j, nil
}

// request sends one bind request and reads its answer: the bound JID, the
// server's stanza.Error, or another error for a broken answer.
func request(s *xmpp.Session, resource string) (jid.JID, error) {
	id, err := randomID()
	if err != nil {
		return jid.JID{}, err
	}
	var payload xml.TokenReader
	if resource != "" {
		payload = xmlstream.Wrap(xmlstream.Token(xml.CharData(resource)), xml.StartElement{Name: xml.Name{Local: "resource"}})
	}
	iq := stanza.IQ{XMLName: xml.Name{Space: stanza.NSClient, Local: "iq"}, ID: id, Type: stanza.SetIQ}
	w := s.TokenWriter()
	_, err = xmlstream.Copy(w, iq.Wrap(xmlstream.Wrap(payload, xml.StartElement{Name: xml.Name{Space: NS, Local: "bind"}})))
	if err == nil {
		err = w.Flush()
	}
	w.Close()
	if err != nil {
		return jid.JID{}, err
	}

	r := s.TokenReader()
	defer r.Close()
	d := xml.NewTokenDecoder(r)
	start, err := nextStart(d)
	if err != nil {
		return jid.JID{}, err
	}
	if start.Name.Local != "iq" || (start.Name.Space != stanza.NSClient && start.Name.Space != "") {
		return jid.JID{}, fmt.Errorf("bind: expected the answer to the bind request, got <%s>", start.Name.Local)
	}
	var resp struct {
		ID   string `xml:"id,attr"`
		Type string `xml:"type,attr"`
		Bind struct {
			JID string `xml:"jid"`
		} `xml:"urn:ietf:params:xml:ns:xmpp-bind bind"`
		Err *stanza.Error `xml:"error"`
	}
	if err := d.DecodeElement(&resp, &start); err != nil {
		return jid.JID{}, fmt.Errorf("bind: reading the answer: %w", err)
	}
	switch {
	case resp.ID != id:
		return jid.JID{}, fmt.Errorf("bind: the answer has id %q, the request had %q", resp.ID, id)
	case resp.Type == string(stanza.ErrorIQ) && resp.Err != nil:
		return jid.JID{}, *resp.Err
	case resp.Type != string(stanza.ResultIQ):
		return jid.JID{}, fmt.Errorf("bind: unexpected answer of type %q", resp.Type)
	}
	j, err := jid.Parse(resp.Bind.JID)
	if err != nil || j.Resourcepart() == "" {
		return jid.JID{}, fmt.Errorf("bind: the server bound %q, not a full JID", resp.Bind.JID)
	}
	return j, nil
}

// nextStart returns the next start element, skipping whitespace.
func nextStart(d *xml.Decoder) (xml.StartElement, error) {
	for {
		tok, err := d.Token()
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return xml.StartElement{}, fmt.Errorf("bind: waiting for the answer: %w", err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			return t, nil
		case xml.CharData:
			continue
		default:
			return xml.StartElement{}, fmt.Errorf("bind: unexpected %T while waiting for the answer", tok)
		}
	}
}

func randomID() (string, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return hex.EncodeToString(b[:]), nil
}
