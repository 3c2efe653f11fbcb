package xtlstest

import (
	"time"

	"mellium.im/xmpp/jid"
)

// Contacts says who shares presence with whom, as the rosters of a server
// would: a session receives the presence broadcasts of another when
// f(user, contact) is true, where user is the bare JID of the receiving
// session and contact that of the sender. The sessions of one bare JID
// always see each other. The default shares with no one else; AllContacts
// makes everyone a contact of everyone.
//
// Presence is routed as RFC 6121 asks of a server, with subscriptions taken
// from f:
//
//   - A presence without 'to' is a broadcast. The first available one from a
//     session is its initial presence: the network delivers it to the
//     available sessions (those whose last broadcast was available) of its
//     contacts and of its own bare JID, itself included, and sends it the
//     last available presence of each of them (their answers to the
//     server's probes). Later broadcasts, available or unavailable, go to
//     the same sessions.
//   - A session that ends while available is announced unavailable to them.
//   - A presence to a bare JID goes to the available sessions of that JID,
//     whether or not they are contacts; to a full JID, to that session.
//
// A Network without the option routes presence the same way, with no
// contacts.
func Contacts(f func(user, contact jid.JID) bool) Option {
	return func(c *config) { c.contacts = f }
}

// AllContacts makes every user a contact of every other (see Contacts).
func AllContacts() Option {
	return Contacts(func(jid.JID, jid.JID) bool { return true })
}

// shares reports whether the session to receives the presence broadcasts
// of from.
func (c *config) shares(to, from *session) bool {
	tb, fb := to.addr.Bare(), from.addr.Bare()
	return tb.Equal(fb) || c.contacts != nil && c.contacts(tb, fb)
}

// routePresence routes a presence of s that no session was found for: a
// broadcast (no 'to'), or a presence to a bare JID. It reports whether it
// did; other presences are left to the caller (and discarded).
func (s *session) routePresence(cfg *config, st Stanza, broadcast bool) bool {
	n := s.n
	n.presMu.Lock()
	defer n.presMu.Unlock()
	if !broadcast {
		if st.To.Localpart() == "" || st.To.Resourcepart() != "" {
			return false
		}
		delivered := false
		n.eachSession(func(x *session) {
			if x.avail != nil && x.addr.Bare().Equal(st.To) {
				s.deliver(cfg, st, x)
				delivered = true
			}
		})
		if !delivered {
			n.stats.discarded.Add(1)
		}
		return true
	}
	var probes [][]byte
	switch st.Type {
	case "":
		initial := s.avail == nil
		s.avail = st.Raw
		if initial {
			n.eachSession(func(x *session) {
				if x != s && x.avail != nil && cfg.shares(s, x) {
					probes = append(probes, x.avail)
				}
			})
		}
	case "unavailable":
		if s.avail == nil {
			n.stats.discarded.Add(1)
			return true
		}
		s.avail = nil
	default:
		// A broadcast of another type is the server's business: dropped.
		n.stats.discarded.Add(1)
		return true
	}
	n.eachSession(func(x *session) {
		if (x == s || x.avail != nil) && cfg.shares(x, s) {
			s.deliver(cfg, st, x)
		}
	})
	for _, p := range probes {
		// The server answers its probes with the stored presence.
		s.q.push(&item{at: time.Now().Add(cfg.latency), b: p})
	}
	return true
}

// unavailable announces, once s has ended, that it is no longer available
// to the sessions that received its presence.
func (s *session) unavailable() {
	n := s.n
	n.presMu.Lock()
	defer n.presMu.Unlock()
	if s.avail == nil {
		return
	}
	s.avail = nil
	cfg := n.cfg.Load()
	raw := []byte(`<presence xmlns='jabber:client' type='unavailable' from='` + attrEscape(s.key) + `'/>`)
	n.eachSession(func(x *session) {
		// Not through the link from s, which its read loop owns: the
		// server speaks for a session that is gone.
		if x != s && x.avail != nil && cfg.shares(x, s) && !x.q.push(&item{at: time.Now().Add(cfg.latency), b: raw}) {
			n.stats.discarded.Add(1)
		}
	})
}

// eachSession calls f for every connected session.
func (n *Network) eachSession(f func(*session)) {
	n.mu.RLock()
	all := make([]*session, 0, len(n.sessions))
	for _, x := range n.sessions {
		all = append(all, x)
	}
	n.mu.RUnlock()
	for _, x := range all {
		f(x)
	}
}
