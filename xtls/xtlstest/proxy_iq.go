package xtlstest

import (
	"bytes"
	"encoding/xml"
	"maps"
	"slices"
	"strconv"
	"strings"

	"mellium.im/xmpp/jid"

	"github.com/xmppxtls/xtls/internal/s5b"
)

const nsDiscoItems = "http://jabber.org/protocol/disco#items"

// Proxy returns the proxy that Proxy65 started for domain, or nil.
func (n *Network) Proxy(domain string) *Proxy {
	d, err := jid.New("", domain, "")
	if err != nil {
		return nil
	}
	return n.proxyOf(d)
}

// proxyOf returns the proxy of the server of domain, or nil.
func (n *Network) proxyOf(domain jid.JID) *Proxy {
	return n.proxyAt("proxy." + domain.Domainpart())
}

// proxyAt returns the proxy whose JID is addr, or nil.
func (n *Network) proxyAt(addr string) *Proxy {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return n.proxies[addr]
}

// startProxies starts the proxies that c names and that do not run yet,
// unless the network is closed, and empties the list. It panics if one
// cannot start. The caller holds n.cfgMu, or has not shared n yet.
func (n *Network) startProxies(c *config) {
	specs := c.proxies
	c.proxies = nil
	n.mu.RLock()
	closed := n.closed
	n.mu.RUnlock()
	if closed {
		return
	}
	for _, spec := range specs {
		if d, err := jid.New("", spec.domain, ""); err == nil && n.proxyOf(d) != nil {
			continue
		}
		p, err := startProxy(spec)
		if err != nil {
			panic(err)
		}
		n.mu.Lock()
		if n.proxies == nil {
			n.proxies = make(map[string]*Proxy)
		}
		n.proxies[p.jid.String()] = p
		n.mu.Unlock()
	}
}

// closeProxies closes every proxy and waits for their goroutines.
func (n *Network) closeProxies() {
	n.mu.RLock()
	all := slices.Collect(maps.Values(n.proxies))
	n.mu.RUnlock()
	for _, p := range all {
		p.close()
	}
}

// serveIQ answers the IQ request st of s, with header h and serialized as
// raw, if a service of the network handles it: any request to a proxy, or a
// disco#items query to the server of a domain that has one (its own, with
// or without 'to', or another, as through federation). It reports whether
// it answered.
func (n *Network) serveIQ(cfg *config, s *session, h stanzaHeader, st Stanza, raw []byte) bool {
	if p := n.proxyAt(st.To.String()); p != nil {
		from := p.jid.String()
		q, err := readQuery(raw)
		if err != nil {
			n.bounce(cfg, s, from, h.id, "modify", "bad-request")
			return true
		}
		result, typ, cond := p.answerIQ(h.typ, st.From, q)
		if cond != "" {
			n.bounce(cfg, s, from, h.id, typ, cond)
		} else {
			n.answer(cfg, s, "result", from, h.id, result)
		}
		return true
	}

	server := st.To
	if h.to == "" {
		server = s.addr.Domain()
	}
	if h.typ != "get" || server.Localpart() != "" || server.Resourcepart() != "" {
		return false
	}
	p := n.proxyOf(server)
	if p == nil {
		return false
	}
	if q, err := readQuery(raw); err != nil || q.XMLName != (xml.Name{Space: nsDiscoItems, Local: "query"}) {
		return false
	}
	n.answer(cfg, s, "result", server.String(), h.id,
		`<query xmlns='`+nsDiscoItems+`'><item jid='`+attrEscape(p.jid.String())+`' name='SOCKS5 Bytestreams Service'/></query>`)
	return true
}

// answerIQ answers an IQ request of type typ with payload q from the
// address from: the serialized payload of a result, or the type and
// condition of an error.
func (p *Proxy) answerIQ(typ string, from jid.JID, q query) (result, errType, cond string) {
	switch {
	case typ == "get" && q.XMLName == xml.Name{Space: nsDiscoInfo, Local: "query"}:
		return `<query xmlns='` + nsDiscoInfo + `'>` +
			`<identity category='proxy' type='bytestreams' name='SOCKS5 Bytestreams Service'/>` +
			`<feature var='` + nsDiscoInfo + `'/><feature var='` + s5b.NS + `'/></query>`, "", ""
	case typ == "get" && q.XMLName == xml.Name{Space: nsDiscoItems, Local: "query"}:
		return `<query xmlns='` + nsDiscoItems + `'/>`, "", ""
	case q.XMLName != xml.Name{Space: s5b.NS, Local: "query"}:
		return "", "cancel", "service-unavailable"
	case typ == "get":
		return `<query xmlns='` + s5b.NS + `'><streamhost jid='` + attrEscape(p.jid.String()) +
			`' host='127.0.0.1' port='` + strconv.Itoa(p.port) + `'/></query>`, "", ""
	case q.SID == "" || q.Activate == nil:
		return "", "modify", "bad-request"
	}
	target, err := jid.Parse(strings.TrimSpace(*q.Activate))
	if err != nil {
		return "", "modify", "jid-malformed"
	}
	act := Activation{SID: q.SID, Requester: from, Target: target, DstAddr: s5b.DstAddr(q.SID, from, target)}
	if cond := p.activate(act); cond != "" {
		return "", "cancel", cond
	}
	return "", "", ""
}

// query is the payload of an IQ request, as far as the services read it.
type query struct {
	XMLName  xml.Name
	SID      string  `xml:"sid,attr"`
	Activate *string `xml:"http://jabber.org/protocol/bytestreams activate"`
}

// readQuery decodes the payload of the IQ raw, which the network has
// checked to be well-formed.
func readQuery(raw []byte) (query, error) {
	d := xml.NewDecoder(bytes.NewReader(raw))
	depth := 0
	for {
		tok, err := d.Token()
		if err != nil {
			return query{}, err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if depth++; depth == 2 {
				var q query
				err := d.DecodeElement(&q, &t)
				return q, err
			}
		case xml.EndElement:
			depth--
		}
	}
}
