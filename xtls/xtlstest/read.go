package xtlstest

import (
	"bytes"
	"errors"
	"time"

	"mellium.im/xmpp/stanza"
	"mellium.im/xmpp/stream"
)

// tooBig is the stream error of a stanza larger than MaxStanzaSize.
var tooBig = stream.Error{
	Err: stream.PolicyViolation.Err,
	Text: []struct {
		Lang  string
		Value string
	}{{Value: "XML stanza is too big"}},
}

// readLoop reads the client's stream until it ends, routes every stanza, and
// then closes the connection once the write loop has closed the stream.
func (s *session) readLoop() {
	defer s.n.wg.Done()
	f := &framer{r: s.conn}
	err := s.read(f)

	var se stream.Error
	switch {
	case errors.Is(err, errStreamEnd):
		s.kill(nil)
	case errors.Is(err, errTooBig):
		s.n.stats.policyViolations.Add(1)
		s.kill(&tooBig)
		s.drain(f.unread())
	case errors.As(err, &se):
		s.kill(&se)
		s.drain(f.unread())
	default:
		// The client closed the connection, or the network closed the
		// stream and timed out waiting for the client to close its own.
		s.kill(nil)
	}
	<-s.writerDone
	s.conn.Close()
	s.conn.SetReadDeadline(time.Time{})
	if s.shapeTimer != nil {
		s.shapeTimer.Stop()
	}
}

// stanzaHeader holds what the router reads from a stanza's start tag.
type stanzaHeader struct {
	name, to, from, typ, id string
}

// read reads the client's stream header, then routes its stanzas until the
// stream ends or fails. Once the session is killed it discards what it reads
// until the client closes its stream.
func (s *session) read(f *framer) error {
	if err := f.header(); err != nil {
		return err
	}
	for {
		// The configuration is loaded for each stanza once it has been
		// read, so SetFaults applies to the stanzas read after it returned.
		raw, tagLen, err := f.next(s.n.cfg.Load().maxSize)
		if err != nil {
			return err
		}
		tag := raw[:tagLen]
		var h stanzaHeader
		var xmlns string
		nameEnd := forAttrs(tag, func(q []byte, vs, ve int) {
			switch string(q) {
			case "xmlns":
				xmlns = attrValue(tag[vs:ve])
			case "to":
				h.to = attrValue(tag[vs:ve])
			case "from":
				h.from = attrValue(tag[vs:ve])
			case "type":
				h.typ = attrValue(tag[vs:ve])
			case "id":
				h.id = attrValue(tag[vs:ve])
			}
		})
		switch name := tag[1:nameEnd]; {
		case bytes.Equal(name, f.streamError):
			// The client's own stream error; its stream end follows.
			continue
		case xmlns != "" && xmlns != stanza.NSClient:
			return stream.UnsupportedStanzaType
		case string(name) == "iq", string(name) == "message", string(name) == "presence":
			h.name = string(name)
		default:
			return stream.UnsupportedStanzaType
		}
		if s.killed() {
			s.n.stats.discarded.Add(1)
			continue
		}
		s.route(s.n.cfg.Load(), h, raw, tagLen)
	}
}

// drain reads and discards what the client still sends after the network
// closed its stream because of an error, until the client's stream end, the
// end of the connection, or the close timeout. It scans for the literal
// "</stream:stream>", which cannot occur inside well-formed character data
// or attribute values, so it works even when the error left the stream
// unparsable.
func (s *session) drain(tail []byte) {
	end := []byte(streamEnd)
	if bytes.Contains(tail, end) {
		return
	}
	buf := make([]byte, 32<<10)
	keep := copy(buf, tail[max(0, len(tail)-(len(end)-1)):])
	for {
		n, err := s.conn.Read(buf[keep:])
		if bytes.Contains(buf[:keep+n], end) || err != nil {
			return
		}
		k := min(keep+n, len(end)-1)
		copy(buf, buf[keep+n-k:keep+n])
		keep = k
	}
}
