package transport

import (
	"log/slog"
	"time"

	xstanza "github.com/xmppxtls/xtls/stanza"
)

// Config tunes an Endpoint. The zero value is usable: every zero field takes
// its default.
type Config struct {
	// BlockSize is the largest decoded payload this side accepts in one data
	// element (4096 to 65535; default 65535).
	BlockSize int
	// Window is how many payload bytes this side buffers unread per tunnel:
	// the credit it grants at first (BlockSize to 16 MiB; default 128
	// KiB); auto-tuning grows it for a tunnel that is read fast (see
	// MaxWindow). A new tunnel gets less when the memory budgets have less
	// left, down to BlockSize or 16 KiB, whichever is larger.
	Window int
	// MaxWindow bounds auto-tuning: when the application reads a window
	// in less than about two round trips, the window doubles, up to
	// MaxWindow (Window to 16 MiB; default 8 MiB), as quic-go tunes its
	// flow control. The memory it costs is only what the application
	// leaves unread. Set it to Window to turn auto-tuning off.
	MaxWindow int
	// ChunkSize is the largest payload this side puts in one data element
	// (bounded by the peer's block-size; default 5120; Endpoint.SetChunkSize
	// changes it later). Two traps of an untuned Prosody 0.12 bound it. A
	// stanza whose serialized size exceeds 8192 bytes costs ~40 ms when it
	// travels alone: Prosody writes it as an 8192-byte TLS record plus a
	// tail that Nagle holds until the first part is acknowledged, which the
	// client's kernel delays. And in a stream, Prosody reads 4096 bytes at
	// a time and pauses a connection for up to a millisecond whenever a
	// read leaves part of a TLS record buffered; mellium writes each stanza
	// through a 4096-byte buffer (a Base64 text of more than ~8 KB as one
	// large record), so at 16384 bytes a tunnel moves ~3 MB/s instead of
	// ~11. 5120 bytes are 6828 in Base64, below the first trap with the IQ
	// around them, but mellium then writes a 4096-byte record and a ~2.9 KB
	// one, and Prosody pauses ~120 times per MB: xtls's Handler therefore
	// sets 2880 (one record per stanza) when the server says it is Prosody.
	// ejabberd has neither trap; larger chunks suit it.
	ChunkSize int
	// SessionWindow is the most payload all tunnels of the session together
	// may have sent and not seen acknowledged (default 4 MiB). Within it the
	// bound adapts to the path so that the queue the tunnels build in front
	// of everything else the session sends stays about QueueTarget long
	// (see QueueTarget). That matters beyond speed: mellium answers IQs from
	// its Serve goroutine under the same output lock as our data, so a
	// server that stops reading a client while it cannot write to it
	// (ejabberd does) would otherwise deadlock the session.
	SessionWindow int
	// QueueTarget is how much queueing delay the tunnels of a session may
	// add, together, to everything else the session sends — a ping, a chat
	// message, another tunnel's interactive data — beyond the fastest round
	// trip seen lately (default 4 ms; on a long path its round trip, where
	// jitter alone is several milliseconds and a smaller target would hold
	// the tunnels far below the path's rate). The in-flight bound follows the rate
	// the path delivers so as to keep it; on a path so slow (a server's
	// shaper) that one data stanza alone takes longer, data stanzas shrink
	// to what the path carries in 200 ms.
	QueueTarget time.Duration
	// MaxTunnels bounds the tunnels of one Endpoint; a start beyond it is
	// answered resource-constraint (wait), an Open fails with a
	// *LimitError. Default 4096.
	MaxTunnels int
	// MaxTunnelsPerPeer bounds the tunnels with one peer (a bare JID, all
	// its resources together), so that no peer can take every slot: a
	// start beyond it is answered resource-constraint (wait). Default 256.
	MaxTunnelsPerPeer int
	// MemoryBudget bounds the receive windows all tunnels together may
	// grant, which bound what peers can make us buffer (default 64 MiB,
	// which fits a phone). A tunnel's window is taken from it when the
	// tunnel is created and when auto-tuning grows it, and given back when
	// the tunnel is forgotten; a start that would exceed it is answered
	// resource-constraint (wait), and windows stop growing, while the
	// tunnels that exist keep working. The heap a tunnel's buffers hold
	// stays within about twice what its window lets the peer send.
	MemoryBudget int
	// PeerMemoryBudget is MemoryBudget for the tunnels with one peer (a
	// bare JID): its share, so that one peer cannot take what the others
	// need (default 16 MiB).
	PeerMemoryBudget int
	// AckTimeout is the acknowledgement timeout before any round trip has
	// been measured (default 3 s); afterwards it follows the measured round
	// trips (RFC 6298), never below MinAckTimeout.
	AckTimeout time.Duration
	// MinAckTimeout bounds the adaptive acknowledgement timeout from below
	// (default 2 s: an XMPP server loses no stanza while both sessions
	// stay up, but its shaper may hold the peer's answer behind one of the
	// peer's own data stanzas for a second; ejabberd's, as Debian ships
	// it, reads a client at 3000 B/s).
	MinAckTimeout time.Duration
	// StartTimeout is how long a start waits for its answer (default 30 s);
	// a start is not sent again on a timeout.
	StartTimeout time.Duration
	// MaxTries is how often an IQ is sent before the tunnel fails (default 8).
	MaxTries int
	// CloseTimeout bounds how long Close waits for queued data to be
	// acknowledged and the close to be answered (default 15 s).
	CloseTimeout time.Duration
	// KeepAlive is how long an open tunnel may hear nothing from its peer
	// (no element, no answer) before it asks whether the peer is there: a
	// credit element the peer already has, which costs one small IQ each
	// way (default 30 s; negative turns keep-alive off). Traffic that flows
	// is proof of life: a busy tunnel never probes.
	KeepAlive time.Duration
	// KeepAliveTimeout is how much longer it waits, after KeepAlive, before
	// it gives the peer up: Read and Write fail with a *PeerGoneError
	// (ErrPeerGone) and the peer, if it is there after all, gets an abort
	// saying so (default 30 s: a vanished peer is noticed within a minute).
	KeepAliveTimeout time.Duration
	// Reattach is how long a tunnel that may be re-attached
	// (Conn.AllowReattach) waits, once its path to the peer is lost, to be
	// bound again: our session ended (SessionEnded, or the Endpoint
	// noticed) and the application has not yet given the Endpoint a new
	// one (Endpoint.Reattach), or the peer's server answers that the peer
	// is gone, or the peer fell silent. Read and Write wait meanwhile;
	// their deadlines still apply. Past it the tunnel fails with a
	// *DetachedError. Zero (the default) or negative: tunnels are never
	// held, and fail as soon as their path is lost.
	Reattach time.Duration
	// Linger is how long a tunnel closed by Close is remembered so that the
	// peer's own close is still answered (default 2 min).
	Linger time.Duration
	// NoQuickAck leaves the session's TCP socket alone. By default, on
	// Linux, the Endpoint flushes the kernel's delayed ACK (TCP_QUICKACK)
	// whenever an answer to one of its IQs arrives, when the Session has
	// a Conn method (as *xmpp.Session does) over TCP: a server with Nagle's
	// algorithm on (Prosody's default) holds its next stanza until the
	// client acknowledges the last, which a client with nothing to send
	// delays by about 40 ms.
	NoQuickAck bool
	// Logger receives protocol events: rejected IQs, violations, retries.
	// Default: discard.
	Logger *slog.Logger

	chunkSet bool // ChunkSize was set (not defaulted): the server probe is off
}

func (c *Config) withDefaults() Config {
	var d Config
	if c != nil {
		d = *c
	}
	def := func(v *int, x int) {
		if *v == 0 {
			*v = x
		}
	}
	defd := func(v *time.Duration, x time.Duration) {
		if *v == 0 {
			*v = x
		}
	}
	d.chunkSet = d.ChunkSize != 0
	def(&d.BlockSize, xstanza.MaxBlockSize)
	def(&d.Window, 128<<10)
	def(&d.MaxWindow, 8<<20)
	def(&d.ChunkSize, 5120)
	def(&d.MaxTunnels, 4096)
	def(&d.MaxTunnelsPerPeer, 256)
	def(&d.MemoryBudget, 64<<20)
	def(&d.PeerMemoryBudget, 16<<20)
	def(&d.SessionWindow, 4<<20)
	def(&d.MaxTries, 8)
	defd(&d.AckTimeout, 3*time.Second)
	defd(&d.StartTimeout, 30*time.Second)
	defd(&d.MinAckTimeout, 2*time.Second)
	defd(&d.CloseTimeout, 15*time.Second)
	defd(&d.Linger, 2*time.Minute)
	defd(&d.QueueTarget, 4*time.Millisecond)
	defd(&d.KeepAlive, 30*time.Second)
	defd(&d.KeepAliveTimeout, 30*time.Second)
	d.BlockSize = clamp(d.BlockSize, xstanza.MinBlockSize, xstanza.MaxBlockSize)
	d.Window = clamp(d.Window, d.BlockSize, xstanza.MaxWindow)
	d.MaxWindow = clamp(d.MaxWindow, d.Window, xstanza.MaxWindow)
	d.ChunkSize = clamp(d.ChunkSize, 1, xstanza.MaxBlockSize)
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	return d
}

func clamp(v, lo, hi int) int {
	return max(lo, min(v, hi))
}
