package harness

import "fmt"

// Limits chooses a preset of the limits a server puts on its clients.
// Set it in [ProsodyOptions] or [EjabberdOptions] to run a test or a
// benchmark unlimited (the zero value) or as people get their servers:
//
//	for _, l := range []harness.Limits{harness.Unlimited, harness.StockLimits} {
//		s := harness.StartProsodyT(t, harness.ProsodyOptions{Limits: l})
//		// s.C2SRate() is 0 unlimited, 10000 bytes/s with StockLimits.
//	}
type Limits int

const (
	// Unlimited is the harness's default: no rate limit on any connection
	// and DefaultStanzaSizeLimit on stanzas, so that a test meets a limit
	// only when it asks for one (a Shaper, a StanzaSizeLimit). It measures
	// the server's own ceiling.
	Unlimited Limits = iota

	// StockLimits reproduces the limits of the configuration files Debian
	// ships with the packages (bookworm: /etc/prosody/prosody.cfg.lua of
	// prosody 0.12.3, /etc/ejabberd/ejabberd.yml of ejabberd 23.01):
	//
	//   - Prosody: mod_limits loaded with
	//     limits = { c2s = { rate = "10kb/s" }; s2sin = { rate = "30kb/s" } },
	//     which Prosody reads as 10000 and 30000 bytes/s ("k" is 10^3, see
	//     [ProsodyStockC2SRate]); its epoll backend has no burst. Stanza size
	//     limits are Prosody's own defaults (c2s 262144, s2s 524288), as the
	//     shipped file sets none.
	//   - ejabberd: the "normal" shaper (3000 bytes/s, burst 20000,
	//     [DebianC2SShaper]) for every client that is not an admin
	//     (shaper_rules c2s_shaper: {none: admin, normal: all}, with no admin
	//     defined), the "fast" shaper (200000 bytes/s) for s2s, c2s
	//     max_stanza_size 262144 and s2s 524288, and max_user_sessions 10.
	//
	// A StanzaSizeLimit or S2SStanzaSizeLimit set in the options still wins;
	// a Shaper may not be combined with StockLimits.
	StockLimits
)

// String returns "unlimited" or "stock limits".
func (l Limits) String() string {
	switch l {
	case Unlimited:
		return "unlimited"
	case StockLimits:
		return "stock limits"
	}
	return fmt.Sprintf("Limits(%d)", int(l))
}

// check returns an error if l is unknown or is combined with a Shaper.
func (l Limits) check(shaper *Shaper) error {
	switch {
	case l != Unlimited && l != StockLimits:
		return fmt.Errorf("harness: unknown %v", l)
	case l == StockLimits && shaper != nil:
		return fmt.Errorf("harness: a Shaper and StockLimits both set: choose one")
	}
	return nil
}

// The rates of Debian's shipped configuration files, in bytes per second.
const (
	// ProsodyStockC2SRate is Debian's mod_limits c2s rate, "10kb/s".
	// mod_limits reads the unit's first letter as a power of ten (b = 1,
	// k = 3, m = 6), so this is 10000 bytes/s, not 10240 (its built-in
	// default when "limits" is loaded without a rate is 10*1024).
	ProsodyStockC2SRate = 10_000
	// ProsodyStockS2SInRate is Debian's mod_limits s2sin rate, "30kb/s".
	ProsodyStockS2SInRate = 30_000
	// EjabberdStockS2SRate is the "fast" shaper Debian's ejabberd.yml gives
	// s2s connections (s2s_shaper: fast).
	EjabberdStockS2SRate = 200_000
	// EjabberdStockMaxUserSessions is Debian's max_user_sessions: 10.
	EjabberdStockMaxUserSessions = 10
	// DebianS2SStanzaSizeLimit is the s2s stanza size limit of Debian's
	// ejabberd.yml (max_stanza_size: 524288), which is also Prosody 0.12's
	// built-in s2s_stanza_size_limit.
	DebianS2SStanzaSizeLimit = 524288
)

// C2SRate returns the rate in bytes per second at which the server reads
// each client connection, 0 if it does not limit clients: the Shaper's rate,
// or with StockLimits [ProsodyStockC2SRate] or [DebianC2SShaper]'s.
func (s *Server) C2SRate() int { return s.c2sRate }

// Limits returns the preset the server was started with.
func (s *Server) Limits() Limits { return s.limits }
