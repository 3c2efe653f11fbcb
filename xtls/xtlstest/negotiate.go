package xtlstest

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"

	"mellium.im/xmpp"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"
	"mellium.im/xmpp/stream"
)

// negotiator is the client side of the stream negotiation: it writes a
// stream header, reads the network's header and declares the session ready,
// authenticated and secure, with no stream features. The network's header
// carries the full JID in its 'to' attribute, so Session.LocalAddr returns
// it.
func negotiator(addr jid.JID) xmpp.Negotiator {
	return func(ctx context.Context, in, out *stream.Info, s *xmpp.Session, _ interface{}) (xmpp.SessionState, io.ReadWriter, interface{}, error) {
		_, err := fmt.Fprintf(s.Conn(), `<?xml version='1.0'?><stream:stream xmlns='%s' xmlns:stream='%s' version='1.0' to='%s' from='%s'>`,
			stanza.NSClient, stream.NS, attrEscape(addr.Domain().String()), attrEscape(addr.String()))
		if err != nil {
			return 0, nil, nil, err
		}
		out.XMLNS = stanza.NSClient
		out.To = addr.Domain()
		out.From = addr

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
					return 0, nil, nil, errors.New("xtlstest: expected a stream header from the network")
				}
				if err := in.FromStartElement(t); err != nil {
					return 0, nil, nil, err
				}
				return xmpp.Ready | xmpp.Authn | xmpp.Secure, nil, nil, nil
			default:
				return 0, nil, nil, fmt.Errorf("xtlstest: unexpected %T before the stream header", tok)
			}
		}
	}
}

// serverHeader is the stream header the network sends to the session with
// the given address.
func serverHeader(addr jid.JID, id string) []byte {
	return fmt.Appendf(nil, `<?xml version='1.0'?><stream:stream xmlns='%s' xmlns:stream='%s' version='1.0' id='%s' from='%s' to='%s'>`,
		stanza.NSClient, stream.NS, id, attrEscape(addr.Domain().String()), attrEscape(addr.String()))
}

const streamEnd = `</stream:stream>`

// streamError serializes a stream error.
func streamError(e stream.Error) []byte {
	b, err := xml.Marshal(e)
	if err != nil {
		// A stream.Error always marshals.
		panic(err)
	}
	return b
}
