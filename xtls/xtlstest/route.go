package xtlstest

import (
	"bytes"
	"encoding/xml"
	"hash/fnv"
	"math/rand/v2"
	"strings"
	"time"

	"mellium.im/xmpp/jid"
)

// link is the state of the stanzas from one session to one recipient. It is
// owned by the sender's read loop, so the decisions taken for a link depend
// only on the sequence of stanzas on it.
type link struct {
	faults *rand.Rand // four draws for every stanza the FaultFilter selects
	jitter *rand.Rand // one draw for every stanza
	last   time.Time  // latest delivery time scheduled on the link
	held   *item      // the stanza Reorder holds back, if any
	heldTo *session
}

func (s *session) link(cfg *config, to *session) *link {
	if l, ok := s.links[to.key]; ok {
		return l
	}
	h := fnv.New64a()
	h.Write([]byte(s.key))
	h.Write([]byte{0})
	h.Write([]byte(to.key))
	k := h.Sum64()
	l := &link{
		faults: rand.New(rand.NewPCG(uint64(cfg.seed), k)),
		jitter: rand.New(rand.NewPCG(uint64(cfg.seed), k^0x9e3779b97f4a7c15)),
	}
	s.links[to.key] = l
	return l
}

// route sends one stanza from s on its way. raw is the stanza as the client
// wrote it, tagLen the length of its start tag; both are valid only during
// the call.
func (s *session) route(cfg *config, h stanzaHeader, raw []byte, tagLen int) {
	n := s.n
	n.stats.stanzas.Add(1)
	n.stats.bytes.Add(int64(len(raw)))
	if cfg.bandwidth > 0 && !s.shape(len(raw), cfg.bandwidth) {
		return
	}

	to, from, id := h.to, h.from, h.id
	st := Stanza{From: s.addr, Sender: s.addr, Name: h.name, Type: h.typ, ID: id}
	if s.spoofing && from != "" {
		st.From, _ = jid.Parse(from)
		st.Raw = append([]byte(nil), raw...)
	} else {
		st.Raw = s.stamp(raw, tagLen)
	}

	var dest *session
	if to != "" {
		if dest = n.lookup(to); dest != nil {
			st.To = dest.addr
		} else if j, err := jid.Parse(to); err == nil {
			st.To = j
			if k := j.String(); k != to {
				dest = n.lookup(k)
			}
		}
	}

	if cfg.trace != nil {
		n.traceMu.Lock()
		cfg.trace(st)
		n.traceMu.Unlock()
	}
	intercepted := false
	if cfg.intercept != nil {
		j, ok := cfg.intercept(st)
		if !ok {
			n.stats.intercepted.Add(1)
			return
		}
		if !j.Equal(st.To) {
			n.stats.intercepted.Add(1)
			intercepted = true
			dest = n.lookup(j.String())
		}
	}

	if h.name == "presence" && dest == nil && !intercepted && s.routePresence(cfg, st, to == "") {
		return
	}
	request := st.IsRequest()
	if dest == nil {
		switch {
		case !request:
			n.stats.discarded.Add(1)
		case !intercepted && n.serveIQ(cfg, s, h, st, raw):
			// Answered by a service: a Proxy, or the server's disco#items.
		case cfg.serverName != "" && h.typ == "get" && !intercepted &&
			(to == "" || to == s.addr.Domain().String()) &&
			bytes.Contains(raw, []byte(nsDiscoInfo)):
			n.answerInfo(cfg, s, id)
		case to == "" && !intercepted:
			// Addressed to the server, which offers no service.
			n.bounce(cfg, s, s.addr.Domain().String(), id, "cancel", "service-unavailable")
			n.stats.bounced.Add(1)
		default:
			n.bounce(cfg, s, to, id, "cancel", "service-unavailable")
			n.stats.bounced.Add(1)
		}
		return
	}

	s.deliver(cfg, st, dest)
}

// deliver queues the stanza st, read from s, for dest: after the latency,
// in order on the link from s to dest, with the faults the FaultFilter
// selects.
func (s *session) deliver(cfg *config, st Stanza, dest *session) {
	n := s.n
	request, to, id := st.IsRequest(), st.To.String(), st.ID
	l := s.link(cfg, dest)
	now := time.Now()
	at := now.Add(cfg.latency)
	if j := l.jitter.Int64(); cfg.jitter > 0 {
		at = at.Add(time.Duration(uint64(j) % uint64(cfg.jitter)))
	}
	if at.Before(l.last) {
		at = l.last
	}
	l.last = at

	filter := cfg.filter
	if filter == nil {
		filter = Stanza.IsRequest
	}
	var dup, reorder bool
	if filter(st) {
		u := [4]float64{l.faults.Float64(), l.faults.Float64(), l.faults.Float64(), l.faults.Float64()}
		switch {
		case u[0] < cfg.drop:
			n.stats.dropped.Add(1)
			if request {
				n.bounce(cfg, s, to, id, "wait", "remote-server-timeout")
			}
			return
		case request && u[1] < cfg.waitErr:
			n.stats.waitErrors.Add(1)
			n.bounce(cfg, s, to, id, "wait", "resource-constraint")
			return
		}
		dup = u[2] < cfg.dup
		reorder = u[3] < cfg.reorder
	}

	it := &item{at: at, b: st.Raw, request: request, sender: s, id: id, to: to}
	held, heldTo := l.held, l.heldTo
	l.held, l.heldTo = nil, nil
	if held == nil && reorder {
		it.at = at.Add(ReorderTimeout)
		l.held, l.heldTo = it, dest
		n.stats.reordered.Add(1)
	}
	var twin *item
	if dup {
		d := *it
		d.request = false // bounce a lost request once only
		twin = &d
	}
	last := it
	if !dest.q.push(it) {
		n.undeliverable(it)
		return
	}
	if twin != nil && dest.q.push(twin) {
		n.stats.duplicated.Add(1)
		last = twin
	}
	if held != nil && heldTo == dest {
		dest.q.moveAfter(held, last)
	}
}

// stamp returns a copy of the stanza raw whose start tag, of length tagLen,
// carries the session's address as 'from': the value of every attribute
// named from (with or without a prefix, since mellium reads either) is
// replaced, or one is added after the element name.
func (s *session) stamp(raw []byte, tagLen int) []byte {
	out := make([]byte, 0, len(raw)+len(s.fromAttr))
	i := 0         // raw[:i] is in out
	plain := false // an attribute named from without prefix was found
	nameEnd := forAttrs(raw[:tagLen], func(q []byte, vs, ve int) {
		if local := q[bytes.LastIndexByte(q, ':')+1:]; string(local) == "from" {
			out = append(out, raw[i:vs]...)
			out = append(out, s.fromVal...)
			i = ve
			plain = plain || len(local) == len(q)
		}
	})
	if !plain {
		if i == 0 {
			out = append(out, raw[:nameEnd]...)
			i = nameEnd
		}
		// Insert from right after the element name.
		tail := append([]byte(nil), out[nameEnd:]...)
		out = append(append(out[:nameEnd], s.fromAttr...), tail...)
	}
	return append(out, raw[i:]...)
}

// bounce answers an IQ request of sender that is not delivered with an IQ
// error from the address the request was sent to.
func (n *Network) bounce(cfg *config, sender *session, from, id, typ, cond string) {
	n.answer(cfg, sender, "error", from, id,
		`<error type='`+typ+`'><`+cond+` xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error>`)
}

// answer queues for sender, after the latency, an IQ of type typ from the
// address from, with the id of the request it answers and the serialized
// payload inner.
func (n *Network) answer(cfg *config, sender *session, typ, from, id, inner string) {
	var b strings.Builder
	b.WriteString(`<iq xmlns='jabber:client' type='`)
	b.WriteString(typ)
	b.WriteString(`' id='`)
	b.WriteString(attrEscape(id))
	b.WriteString(`' from='`)
	b.WriteString(attrEscape(from))
	b.WriteString(`' to='`)
	b.WriteString(attrEscape(sender.key))
	b.WriteString(`'>`)
	b.WriteString(inner)
	b.WriteString(`</iq>`)
	sender.q.push(&item{at: time.Now().Add(cfg.latency), b: []byte(b.String())})
}

const nsDiscoInfo = "http://jabber.org/protocol/disco#info"

// answerInfo answers a disco#info query to the server with the identity
// that ServerName set.
func (n *Network) answerInfo(cfg *config, sender *session, id string) {
	n.answer(cfg, sender, "result", sender.addr.Domain().String(), id,
		`<query xmlns='`+nsDiscoInfo+`'><identity category='server' type='im' name='`+attrEscape(cfg.serverName)+`'/></query>`)
}

// undeliverable handles a queued stanza whose recipient is gone.
func (n *Network) undeliverable(it *item) {
	if !it.request {
		n.stats.discarded.Add(1)
		return
	}
	n.stats.bounced.Add(1)
	n.bounce(n.cfg.Load(), it.sender, it.to, it.id, "cancel", "service-unavailable")
}

// shape waits until the Bandwidth shaper has paid for size bytes. It
// returns false if the session was killed meanwhile.
func (s *session) shape(size, rate int) bool {
	now := time.Now()
	if rate != s.burstRate {
		// Start a new burst at the new rate once the old one is paid for.
		if end := s.burstEnd(); end.After(now) {
			now = end
		}
		s.burstStart, s.burstBytes, s.burstRate = now, 0, rate
	} else if now.Sub(s.burstEnd()) > burstGap {
		s.burstStart, s.burstBytes = now, 0
	}
	s.burstBytes += int64(size)
	wait := time.Until(s.burstEnd())
	if wait <= 0 {
		return true
	}
	if s.shapeTimer == nil {
		s.shapeTimer = time.NewTimer(wait)
	} else {
		s.shapeTimer.Reset(wait)
	}
	select {
	case <-s.shapeTimer.C:
		return true
	case <-s.killc:
		s.shapeTimer.Stop()
		return false
	}
}

// burstGap is the pause that ends a burst of the Bandwidth shaper. Pauses
// shorter than that, such as a timer firing late, do not slow the pace.
const burstGap = 5 * time.Millisecond

// burstEnd is when the current burst is paid for: burstBytes/burstRate
// after its start, computed exactly.
func (s *session) burstEnd() time.Time {
	if s.burstRate <= 0 {
		return s.burstStart
	}
	r := int64(s.burstRate)
	d := s.burstBytes/r*int64(time.Second) + s.burstBytes%r*int64(time.Second)/r
	return s.burstStart.Add(time.Duration(d))
}

// attrEscape escapes s for an attribute value in single or double quotes.
func attrEscape(s string) string {
	if !strings.ContainsAny(s, `<>&'"`) {
		return s
	}
	var b strings.Builder
	xml.EscapeText(&b, []byte(s))
	return b.String()
}
