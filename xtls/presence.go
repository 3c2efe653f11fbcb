package xtls

import (
	"context"
	"crypto/sha1"
	"encoding/xml"
	"strconv"
	"strings"
	"sync"
	"time"

	"mellium.im/xmlstream"
	"mellium.im/xmpp/crypto"
	"mellium.im/xmpp/disco"
	"mellium.im/xmpp/disco/info"
	"mellium.im/xmpp/form"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/mux"
	"mellium.im/xmpp/stanza"

	"github.com/xmppxtls/xtls/internal/sendctx"
)

// What a Handler learns from presence: the available resources of its
// contacts, with their priority, when each was last heard of, and their
// entity capabilities. Dial and Resolve choose among them for a bare JID.
// The presence handlers run on the session's Serve goroutine; they only
// update the table under its mutex.

const (
	// maxTracked bounds the resources tracked, all peers together; past
	// it, the one heard of least recently is forgotten.
	maxTracked = 1024
	// maxCapsCache bounds the verification strings remembered; past it,
	// one is forgotten.
	maxCapsCache = 256
	// maxCapsAttr bounds the 'node' and 'ver' of a <c/> kept from a
	// presence; longer ones are ignored (no verification string is that
	// long).
	maxCapsAttr = 256
	// presenceSettle is how long after our initial presence (sent with
	// SendPresence) a bare JID is not yet given up: the server sends the
	// contacts' presence in answer to it, and it may take a moment.
	presenceSettle = 3 * time.Second
)

// capsRef is the <c/> of a presence: hash, node and ver.
type capsRef struct{ hash, node, ver string }

// capsKey identifies a verified verification string.
type capsKey struct{ hash, ver string }

// resource is one available resource of a peer.
type resource struct {
	addr     jid.JID
	priority int
	seq      uint64 // the order of the last presence: higher is more recent
	caps     capsRef
	xtls     int8 // what a disco#info of this JID said: 0 not asked, 1 XTLS, -1 no XTLS or no answer
}

// presenceTable holds what the Handler learnt from presence.
type presenceTable struct {
	mu      sync.Mutex
	peers   map[string]map[string]*resource // by bare JID, then resourcepart
	n       int
	seq     uint64
	changed chan struct{}    // closed at each change, then replaced
	caps    map[capsKey]bool // verified: whether that ver's disco#info has XTLS
	sentAt  time.Time        // when SendPresence sent our initial presence
	mux     *mux.ServeMux    // the mux Handle was given, for our own caps
	ver     string           // our verification string, once mux is known
}

// setMux records the mux that serves the session; our verification string
// is the hash of what its disco#info answers.
func (t *presenceTable) setMux(m *mux.ServeMux) {
	t.mu.Lock()
	t.mux, t.ver = m, ""
	t.mu.Unlock()
}

// update records an available presence from a full JID.
func (t *presenceTable) update(from jid.JID, priority int, c capsRef) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.peers == nil {
		t.peers = make(map[string]map[string]*resource)
	}
	bare, res := from.Bare().String(), from.Resourcepart()
	r := t.peers[bare][res]
	if r == nil {
		if t.n >= maxTracked {
			t.forgetOldest()
		}
		r = &resource{addr: from}
		if t.peers[bare] == nil {
			t.peers[bare] = make(map[string]*resource)
		}
		t.peers[bare][res] = r
		t.n++
	}
	if r.caps != c {
		r.caps, r.xtls = c, 0
	}
	r.priority = priority
	t.seq++
	r.seq = t.seq
	t.notify()
}

// remove records an unavailable presence: from one resource, or from a
// bare JID (all of its resources).
func (t *presenceTable) remove(from jid.JID) {
	t.mu.Lock()
	defer t.mu.Unlock()
	bare := from.Bare().String()
	rs := t.peers[bare]
	if res := from.Resourcepart(); res != "" {
		if _, ok := rs[res]; ok {
			delete(rs, res)
			t.n--
		}
	} else {
		t.n -= len(rs)
		rs = nil
	}
	if len(rs) == 0 {
		delete(t.peers, bare)
	}
	t.notify()
}

func (t *presenceTable) forgetOldest() {
	var old *resource
	for _, rs := range t.peers {
		for _, r := range rs {
			if old == nil || r.seq < old.seq {
				old = r
			}
		}
	}
	if old != nil {
		bare := old.addr.Bare().String()
		delete(t.peers[bare], old.addr.Resourcepart())
		if len(t.peers[bare]) == 0 {
			delete(t.peers, bare)
		}
		t.n--
	}
}

// notify wakes those waiting for a change. Called with t.mu held.
func (t *presenceTable) notify() {
	if t.changed != nil {
		close(t.changed)
		t.changed = nil
	}
}

// changes returns a channel that is closed at the next change. Called with
// t.mu held.
func (t *presenceTable) changes() <-chan struct{} {
	if t.changed == nil {
		t.changed = make(chan struct{})
	}
	return t.changed
}

// presencePayload is what a presence says that matters here.
type presencePayload struct {
	Priority string `xml:"priority"`
	Caps     []struct {
		Hash string `xml:"hash,attr"`
		Node string `xml:"node,attr"`
		Ver  string `xml:"ver,attr"`
	} `xml:"http://jabber.org/protocol/caps c"`
}

// availHandler tracks available presence. It also answers disco#info for
// our caps node: it is registered once in the mux, so the features it
// lists for that node are not repeated.
type availHandler struct{ h *Handler }

// HandlePresence reads the whole presence (the mux hands every handler of
// a presence the stanza from its start, once per child element it has, so
// the same presence may come more than once; recording it again changes
// nothing that matters). It never returns an error: that would end the
// session.
func (a availHandler) HandlePresence(p stanza.Presence, r xmlstream.TokenReadEncoder) error {
	if p.From.Resourcepart() == "" {
		return nil
	}
	var v presencePayload
	if err := xml.NewTokenDecoder(r).Decode(&v); err != nil {
		return nil
	}
	prio, err := strconv.ParseInt(strings.TrimSpace(v.Priority), 10, 8)
	if err != nil {
		prio = 0
	}
	var c capsRef
	for _, x := range v.Caps {
		if x.Hash != "" && x.Node != "" && x.Ver != "" && len(x.Node) <= maxCapsAttr && len(x.Ver) <= maxCapsAttr {
			c = capsRef{hash: x.Hash, node: x.Node, ver: x.Ver}
			break
		}
	}
	a.h.pres.update(p.From, int(prio), c)
	// A tunnel waiting for this account to come back (both ends lost
	// their sessions at once) learns where it is now.
	a.h.ep.PeerAvailable(p.From)
	return nil
}

// ForFeatures implements info.FeatureIter: for the node CapsNode#ver, the
// features of the whole mux (or of the Handler alone, for the ver that Caps
// gave before the mux existed).
func (a availHandler) ForFeatures(node string, f func(info.Feature) error) error {
	m, alone := a.capsNode(node)
	switch {
	case m != nil:
		return m.ForFeatures("", f)
	case alone:
		return f(info.Feature{Var: NS})
	}
	return nil
}

// ForIdentities implements info.IdentityIter, as ForFeatures.
func (a availHandler) ForIdentities(node string, f func(info.Identity) error) error {
	if m, _ := a.capsNode(node); m != nil {
		return m.ForIdentities("", f)
	}
	return nil
}

// ForForms implements form.Iter, as ForFeatures.
func (a availHandler) ForForms(node string, f func(*form.Data) error) error {
	if m, _ := a.capsNode(node); m != nil {
		return m.ForForms("", f)
	}
	return nil
}

// capsNode says what node answers for: the mux's disco#info if node is our
// caps node with the mux's ver, the Handler's alone (alone) if it is our
// caps node with the ver of the Handler alone, or nothing.
func (a availHandler) capsNode(node string) (m *mux.ServeMux, alone bool) {
	ver, ok := strings.CutPrefix(node, CapsNode+"#")
	if node == "" || !ok {
		return nil, false
	}
	if m, v := a.h.ownCaps(); m != nil && ver == v {
		return m, false
	}
	return nil, ver == aloneVer()
}

// unavailHandler tracks unavailable presence.
type unavailHandler struct{ h *Handler }

func (u unavailHandler) HandlePresence(p stanza.Presence, _ xmlstream.TokenReadEncoder) error {
	if p.From.Equal(jid.JID{}) {
		return nil
	}
	u.h.pres.remove(p.From)
	// Its tunnels learn it now rather than when their keep-alive does.
	u.h.ep.PeerGone(p.From, "its presence became unavailable")
	return nil
}

// handlePresence registers the presence handlers in m: available and
// unavailable presence with any payload.
func (h *Handler) handlePresence(m *mux.ServeMux) {
	h.pres.setMux(m)
	mux.Presence(stanza.AvailablePresence, xml.Name{}, availHandler{h})(m)
	mux.Presence(stanza.UnavailablePresence, xml.Name{}, unavailHandler{h})(m)
}

// ownCaps returns the mux and our verification string: SHA-1 of what the
// mux's disco#info answers, or of the Handler alone without a mux (Handle
// not used yet).
func (h *Handler) ownCaps() (*mux.ServeMux, string) {
	t := &h.pres
	t.mu.Lock()
	m, ver := t.mux, t.ver
	t.mu.Unlock()
	if m == nil {
		return nil, aloneVer()
	}
	if ver != "" {
		return m, ver
	}
	// The mux cannot change once made, so neither can its answer.
	ver, err := capsVer(muxInfo(m), sha1.New())
	if err != nil {
		// muxInfo lists each feature, identity and form type once.
		return m, aloneVer()
	}
	t.mu.Lock()
	if t.mux == m {
		t.ver = ver
	}
	t.mu.Unlock()
	return m, ver
}

// aloneVer is the verification string of a Handler alone: the XTLS
// feature, no identity.
var aloneVer = sync.OnceValue(func() string {
	ver, _ := capsVer(disco.Info{Features: []info.Feature{{Var: NS}}}, sha1.New())
	return ver
})

// Caps returns the entity capabilities (XEP-0115) to put in our presence:
// node CapsNode and, hashed with SHA-1, the verification string of what the
// disco#info of the Handler's mux answers (use Handle and disco.Handle in
// the same mux). A peer that has not seen this verification string before
// asks the disco#info for CapsNode#ver, which the Handler answers. Called
// before the mux is made, Caps describes the Handler alone (the XTLS
// feature), and that ver is answered too. SendPresence adds Caps for you.
// Call it once mux.New has returned: it reads the mux, which must not be
// still under construction on another goroutine.
func (h *Handler) Caps() disco.Caps {
	_, ver := h.ownCaps()
	return disco.Caps{Hash: crypto.SHA1, Node: CapsNode, Ver: ver}
}

// SendPresence sends the presence p with payload (nil for none; put a
// <priority/> there, say) followed by our entity capabilities (Caps), so
// that contacts who Dial our bare JID find this resource without asking.
// The first available presence without 'to' sent this way is our initial
// presence: for presenceSettle (3 s) after it, Dial and Resolve of a bare
// JID wait for the peer's presence, which the server sends in answer,
// instead of reporting the peer offline at once.
func (h *Handler) SendPresence(ctx context.Context, p stanza.Presence, payload xml.TokenReader) error {
	if err := sendctx.Check(ctx); err != nil {
		return err
	}
	caps := h.Caps().TokenReader()
	if payload != nil {
		caps = xmlstream.MultiReader(payload, caps)
	}
	if p.Type == stanza.AvailablePresence && p.To.Equal(jid.JID{}) {
		h.pres.mu.Lock()
		if h.pres.sentAt.IsZero() {
			h.pres.sentAt = time.Now()
		}
		h.pres.mu.Unlock()
	}
	return h.session().Send(ctx, p.Wrap(caps))
}
