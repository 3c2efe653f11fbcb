// Package s5b speaks the IQs of SOCKS5 Bytestreams (XEP-0065) that a client
// needs to move bytes through its server's bytestream proxy: finding the
// proxy, asking it for its network address, and activating a bytestream.
// The SOCKS5 bytes themselves are package internal/socks5's; [Dial] joins
// the two.
//
// A mediated bytestream between a requester and a target, both logged in,
// goes like this (section 6 of XEP-0065; how the two ends agree on the
// stream ID and the proxy is up to them):
//
//	proxies, err := s5b.FindProxies(ctx, session, server)  // disco#items, then disco#info of each
//	hosts, err := s5b.GetStreamHosts(ctx, session, proxies[0])
//	// the target first, then the requester:
//	conn, err := s5b.Dial(ctx, hosts[0], sid, requester, target)
//	// the requester, once both are connected:
//	err = s5b.Activate(ctx, session, proxies[0], sid, target)
//	// conn now carries bytes between the two ends, raw.
//
// Answers are checked to come from the entity asked (mellium matches an IQ
// answer by its id alone), and an IQ error comes back as a [stanza.Error],
// so errors.Is(err, stanza.Error{Condition: stanza.ItemNotFound}) works.
package s5b // import "github.com/xmppxtls/xtls/internal/s5b"

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"encoding/xml"
	"fmt"
	"net"
	"strconv"

	"mellium.im/xmlstream"
	"mellium.im/xmpp"
	"mellium.im/xmpp/disco"
	"mellium.im/xmpp/disco/items"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"

	"github.com/xmppxtls/xtls/internal/sendctx"
	"github.com/xmppxtls/xtls/internal/socks5"
)

// NS is the namespace of XEP-0065.
const NS = "http://jabber.org/protocol/bytestreams"

// DefaultPort is the port of a streamhost that names none (XEP-0065).
const DefaultPort = 1080

// StreamHost is where a proxy accepts SOCKS5 connections, as its answer to a
// streamhost query gives it.
type StreamHost struct {
	JID  jid.JID
	Host string
	Port uint16
}

// Addr returns "host:port", for net.Dial.
func (h StreamHost) Addr() string {
	return net.JoinHostPort(h.Host, strconv.Itoa(int(h.Port)))
}

// WrongSenderError is an answer that came from another entity than the one
// asked.
type WrongSenderError struct {
	Asked, Answered jid.JID
}

// Error says who was asked and who answered.
func (e *WrongSenderError) Error() string {
	return fmt.Sprintf("s5b: asked %s, answered by %s", e.Asked, e.Answered)
}

// DstAddr returns the SOCKS5 destination (DST.ADDR) of the bytestream sid
// between requester and target, both full JIDs: the hexadecimal SHA-1 of
// sid, the requester's JID and the target's JID, concatenated.
func DstAddr(sid string, requester, target jid.JID) string {
	sum := sha1.Sum([]byte(sid + requester.String() + target.String()))
	return hex.EncodeToString(sum[:])
}

// FindProxies returns the items of server's disco#items (an empty node)
// whose disco#info has the identity proxy/bytestreams, in the server's order.
// An item whose disco#info fails is left out.
func FindProxies(ctx context.Context, s *xmpp.Session, server jid.JID) ([]jid.JID, error) {
	if err := sendctx.Check(ctx); err != nil {
		return nil, err
	}
	var candidates []jid.JID
	iter := disco.FetchItems(ctx, items.Item{JID: server}, s)
	for iter.Next() {
		candidates = append(candidates, iter.Item().JID)
	}
	err := iter.Err()
	if cerr := iter.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("s5b: disco#items of %s: %w", server, err)
	}
	var proxies []jid.JID
	for _, c := range candidates {
		if err := sendctx.Check(ctx); err != nil {
			return nil, fmt.Errorf("s5b: disco#info of %s: %w", c, err)
		}
		info, err := disco.GetInfo(ctx, "", c, s)
		if err != nil {
			if ctx.Err() != nil {
				return nil, fmt.Errorf("s5b: disco#info of %s: %w", c, err)
			}
			continue
		}
		for _, id := range info.Identity {
			if id.Category == disco.ProxyBytestreams.Category && id.Type == disco.ProxyBytestreams.Type {
				proxies = append(proxies, c)
				break
			}
		}
	}
	return proxies, nil
}

// GetStreamHosts asks proxy where it accepts SOCKS5 connections. A proxy
// usually names one streamhost; one without a host is left out.
func GetStreamHosts(ctx context.Context, s *xmpp.Session, proxy jid.JID) ([]StreamHost, error) {
	var q query
	if err := exchange(ctx, s, stanza.IQ{Type: stanza.GetIQ, To: proxy}, query{}.TokenReader(), &q); err != nil {
		return nil, fmt.Errorf("s5b: streamhost query to %s: %w", proxy, err)
	}
	var hosts []StreamHost
	for _, h := range q.StreamHosts {
		if h.Host == "" {
			continue
		}
		port := uint16(DefaultPort)
		if h.Port != "" {
			p, err := strconv.ParseUint(h.Port, 10, 16)
			if err != nil || p == 0 {
				return nil, fmt.Errorf("s5b: %s announced port %q", proxy, h.Port)
			}
			port = uint16(p)
		}
		j, err := jid.Parse(h.JID)
		if err != nil {
			return nil, fmt.Errorf("s5b: %s announced streamhost %q: %w", proxy, h.JID, err)
		}
		hosts = append(hosts, StreamHost{JID: j, Host: h.Host, Port: port})
	}
	return hosts, nil
}

// Dial connects to the streamhost with SOCKS5 for the bytestream sid
// between requester and target (full JIDs). Both ends dial it, the target
// first; the connection carries data once the requester has called
// [Activate].
func Dial(ctx context.Context, h StreamHost, sid string, requester, target jid.JID) (net.Conn, error) {
	conn, err := socks5.Dial(ctx, h.Addr(), DstAddr(sid, requester, target), 0)
	if err != nil {
		return nil, fmt.Errorf("s5b: streamhost %s at %s: %w", h.JID, h.Addr(), err)
	}
	return conn, nil
}

// Activate asks proxy to join the two connections of the bytestream sid
// from this session's JID (the requester) to target. Both ends must be
// connected to the proxy already.
func Activate(ctx context.Context, s *xmpp.Session, proxy jid.JID, sid string, target jid.JID) error {
	q := query{SID: sid, Activate: target.String()}
	if err := exchange(ctx, s, stanza.IQ{Type: stanza.SetIQ, To: proxy}, q.TokenReader(), nil); err != nil {
		return fmt.Errorf("s5b: activating %s at %s: %w", sid, proxy, err)
	}
	return nil
}

// query is the <query/> element of XEP-0065, as far as a client of a proxy
// uses it.
type query struct {
	XMLName     xml.Name          `xml:"http://jabber.org/protocol/bytestreams query"`
	SID         string            `xml:"sid,attr,omitempty"`
	StreamHosts []streamHostAttrs `xml:"streamhost"`
	Activate    string            `xml:"activate,omitempty"`
}

// streamHostAttrs is a <streamhost/> as it comes: checked by GetStreamHosts.
type streamHostAttrs struct {
	JID  string `xml:"jid,attr"`
	Host string `xml:"host,attr"`
	Port string `xml:"port,attr"`
}

// TokenReader returns the query as a request: its sid and activate child,
// if set (streamhosts are never sent by a client of a proxy).
func (q query) TokenReader() xml.TokenReader {
	start := xml.StartElement{Name: xml.Name{Space: NS, Local: "query"}}
	if q.SID != "" {
		start.Attr = append(start.Attr, xml.Attr{Name: xml.Name{Local: "sid"}, Value: q.SID})
	}
	var inner xml.TokenReader
	if q.Activate != "" {
		inner = xmlstream.Wrap(xmlstream.Token(xml.CharData(q.Activate)), xml.StartElement{Name: xml.Name{Local: "activate"}})
	}
	return xmlstream.Wrap(inner, start)
}

// exchange sends the IQ iq with payload and waits for its answer. It checks
// that the answer comes from iq.To, returns an IQ error as a stanza.Error,
// and decodes the answer's payload into v unless v is nil.
func exchange(ctx context.Context, s *xmpp.Session, iq stanza.IQ, payload xml.TokenReader, v any) (err error) {
	if err := sendctx.Check(ctx); err != nil {
		return err
	}
	resp, err := s.SendIQ(ctx, iq.Wrap(payload))
	if err != nil {
		return err
	}
	defer func() {
		if cerr := resp.Close(); err == nil {
			err = cerr
		}
	}()
	tok, err := resp.Token()
	if err != nil {
		return err
	}
	start, ok := tok.(xml.StartElement)
	if !ok {
		return fmt.Errorf("answer starts with %T", tok)
	}
	answer, err := stanza.NewIQ(start)
	if err != nil {
		return err
	}
	if !answer.From.Equal(iq.To) {
		return &WrongSenderError{Asked: iq.To, Answered: answer.From}
	}
	if _, err := stanza.UnmarshalIQError(resp, start); err != nil {
		return err
	}
	if v == nil {
		return nil
	}
	d := xml.NewTokenDecoder(xmlstream.Inner(resp))
	for {
		tok, err := d.Token()
		if err != nil {
			return fmt.Errorf("answer without a payload: %w", err)
		}
		if se, ok := tok.(xml.StartElement); ok {
			return d.DecodeElement(v, &se)
		}
	}
}
