package transport

import (
	"context"
	"encoding/xml"
	"io"
	"strings"
	"time"

	"mellium.im/xmpp/stanza"
)

// The chunk size chosen for the server's software when Config.ChunkSize is
// not set. What the default (5120) does not suit:
//
// Prosody (0.12 measured) reads a client 4096 bytes at a time and, when a
// read leaves part of a TLS record buffered, pauses that connection for up
// to a millisecond (server_epoll's read_retry_delay, rounded up to its
// loop's min_wait). mellium writes a stanza through a 4096-byte buffer and
// flushes it whole, so a 5120-byte chunk leaves as a 4096-byte record and a
// ~2.9 KB one and most of Prosody's reads end inside a record: ~120 pauses
// per MB. 2880 bytes are 3840 in Base64: the whole data IQ fits one
// 4096-byte record (up to a peer JID of about 100 bytes), and the pauses
// vanish. Measured over Prosody 0.12 (xtls-bench -quick, 32 MiB, median of
// 5): 10.3 against 9.5 MB/s, and 1.0 of the raw ceiling against 0.88. An
// operator who raises network_default_read_size to 65536 removes the trap;
// a client of such a server does better with ChunkSize set (16384: ~23
// MB/s).
const prosodyChunk = 2880

// ejabberd (23.01 measured) has neither of Prosody's traps, and a block
// costs it and the clients about as much whatever its size, so larger
// blocks move more for the same queue: with the in-flight bound keeping
// about 5 ms queued, 16384-byte blocks moved 28.5 MB/s against 16-19 with
// 5120 (xtls-bench, 32 MiB, median of 3), and kept a ping on the same
// session within 10 ms. They grow to this size only on a path that shows
// it can take them (controller.setChunkMax): behind a server's shaper one
// such stanza would hold the session for seconds.
const ejabberdChunk = 16384

// chunkFor returns the chunk size for a server whose software is name
// (lower case), or 0 to keep the default.
func chunkFor(name string) int {
	switch name {
	case "prosody":
		return prosodyChunk
	case "ejabberd":
		return ejabberdChunk
	}
	return 0
}

const discoInfoNS = "http://jabber.org/protocol/disco#info"

// probeTimeout bounds the wait for the server's answer.
const probeTimeout = 5 * time.Second

// probe is the state of the query that asks the session's server what
// software it runs, once per Endpoint (never if Config.ChunkSize is set).
type probe struct {
	done bool      // the server answered (or the query is not wanted)
	run  *probeRun // the query under way
}

type probeRun struct {
	id    string
	ended chan struct{} // closed when it is answered or given up
}

// TuneChunk asks the session's server, unless it answered before or a
// query is under way, what software it runs (the name of its disco#info
// identity of category server), and sets the chunk size for it (see
// prosodyChunk) when it answers. It returns at once with a function that
// waits for the query it started (a no-op if it started none) until the
// answer comes, ctx ends or 5 s pass; a query given up is asked again by
// the next call. xtls's Handler calls it beside the first Dial or accepted
// handshake: the answer takes one round trip to the server, the handshake
// at least one through it to the peer, so the tunnel rarely waits, and a
// tunnel opened before the answer adopts the new size from its next data
// element. An error answer counts as an answer: there is nothing to learn.
func (e *Endpoint) TuneChunk(ctx context.Context) (wait func()) {
	var run *probeRun
	e.call(func(now time.Time) { run = e.path.startProbe(now) })
	if run == nil {
		return func() {}
	}
	return func() {
		t := time.NewTimer(probeTimeout)
		defer t.Stop()
		select {
		case <-run.ended:
			return
		case <-ctx.Done():
		case <-t.C:
		}
		e.call(func(time.Time) { e.path.cancelProbe(run) })
	}
}

func (p *iqPath) startProbe(now time.Time) *probeRun {
	if p.probe.done || p.probe.run != nil || p.dead || p.e.err != nil {
		return nil
	}
	run := &probeRun{id: p.newID(), ended: make(chan struct{})}
	p.probe.run = run
	att := &attempt{handedAt: now}
	p.remember(run.id, att, now)
	q := xml.StartElement{Name: xml.Name{Space: discoInfoNS, Local: "query"}}
	p.enqueue(&outIQ{
		id:   run.id,
		to:   p.e.local.Domain().String(),
		typ:  stanza.GetIQ,
		elem: &tokens{toks: []xml.Token{q, q.End()}},
		att:  att,
	})
	return run
}

func (p *iqPath) cancelProbe(run *probeRun) {
	if p.probe.run == run {
		p.probe.run = nil
		delete(p.pending, run.id)
		close(run.ended)
	}
}

func (p *iqPath) probeAnswered(a *answer) {
	run := p.probe.run
	if run == nil || run.id != a.id {
		return
	}
	p.probe.run = nil
	p.probe.done = true
	close(run.ended)
	if n := chunkFor(a.server); n != 0 {
		p.e.chunk.Store(int64(n))
		p.setChunk(n, n > p.ctl.chunkMax)
		p.e.log.Debug("xtls: chunk size chosen for the server's software", "server", a.server, "chunk", n)
	}
}

// serverSoftware reads a disco#info answer and returns the name of its
// identity of category server, in lower case.
func serverSoftware(r xml.TokenReader) string {
	for {
		tok, err := r.Token()
		if err != nil {
			return ""
		}
		st, ok := tok.(xml.StartElement)
		if !ok || st.Name.Local != "identity" {
			continue
		}
		if rawAttr(&st, "category") == "server" {
			return strings.ToLower(rawAttr(&st, "name"))
		}
	}
}

// tokens is a TokenReader over a fixed list.
type tokens struct {
	toks []xml.Token
}

func (t *tokens) Token() (xml.Token, error) {
	if len(t.toks) == 0 {
		return nil, io.EOF
	}
	tok := t.toks[0]
	t.toks = t.toks[1:]
	return tok, nil
}
