package harness_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/xml"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"mellium.im/xmlstream"
	"mellium.im/xmpp"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/mux"
	"mellium.im/xmpp/ping"
	"mellium.im/xmpp/stanza"
	"mellium.im/xmpp/stream"

	"github.com/xmppxtls/xtls/integration/harness"
)

// tmpRoot is the TMPDIR of this test binary: every server and helper the
// tests start inherits it, which is how TestMain finds leftovers.
var tmpRoot string

func TestMain(m *testing.M) {
	var err error
	tmpRoot, err = os.MkdirTemp("", "xtls-harness-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Setenv("TMPDIR", tmpRoot)
	code := m.Run()
	if left := waitNoLeftovers(5 * time.Second); len(left) > 0 {
		fmt.Fprintf(os.Stderr, "FAIL: processes left running after the tests:\n%s\n", strings.Join(left, "\n"))
		code = 1
	}
	os.RemoveAll(tmpRoot)
	os.Exit(code)
}

// waitNoLeftovers polls until no process other than this one carries our
// TMPDIR in its environment (servers, ejabberdctl VMs, epmd if one were
// started), or the timeout passes; it returns what is still running then.
func waitNoLeftovers(timeout time.Duration) []string {
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		left := leftovers()
		if len(left) == 0 || time.Now().After(deadline) {
			return left
		}
		<-tick.C
	}
}

func leftovers() []string {
	want := []byte("TMPDIR=" + tmpRoot + "\x00")
	self := strconv.Itoa(os.Getpid())
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	var left []string
	for _, d := range dirs {
		pid := filepath.Base(d)
		if pid == self {
			continue
		}
		env, err := os.ReadFile(filepath.Join(d, "environ"))
		if err != nil || !bytes.Contains(env, want) {
			continue
		}
		cmdline, _ := os.ReadFile(filepath.Join(d, "cmdline"))
		left = append(left, pid+": "+strings.ReplaceAll(string(cmdline), "\x00", " "))
	}
	return left
}

// pingRecorder answers pings like ping.Handler and records who sent them.
// ping.Send treats a service-unavailable error as success, so a test must
// check that the peer really answered.
type pingRecorder chan jid.JID

func (r pingRecorder) HandleIQ(iq stanza.IQ, t xmlstream.TokenReadEncoder, start *xml.StartElement) error {
	select {
	case r <- iq.From:
	default:
	}
	return ping.Handler{}.HandleIQ(iq, t, start)
}

const dataNS = "urn:xmpp:xtls:harness-test"

// newHandler returns a mux that answers pings (recorded in r) and
// acknowledges test data IQs, whatever their size.
func newHandler(r pingRecorder) *mux.ServeMux {
	return mux.New(stanza.NSClient,
		mux.IQ(stanza.GetIQ, xml.Name{Space: ping.NS, Local: "ping"}, r),
		mux.IQFunc(stanza.SetIQ, xml.Name{Space: dataNS, Local: "data"},
			func(iq stanza.IQ, t xmlstream.TokenReadEncoder, _ *xml.StartElement) error {
				_, err := xmlstream.Copy(t, iq.Result(nil))
				return err
			}),
	)
}

// user is a connected client with its ping recorder.
type user struct {
	*harness.Client
	pings pingRecorder
}

func connect(t *testing.T, s *harness.Server, local, password string) user {
	t.Helper()
	r := make(pingRecorder, 8)
	return user{harness.ConnectT(t, s, local, password, newHandler(r)), r}
}

// pingEachOther pings b's full JID from a and a's from b, and checks that each
// ping reached the other client from the sender's full JID.
func pingEachOther(t *testing.T, a, b user) {
	t.Helper()
	for _, p := range [][2]user{{a, b}, {b, a}} {
		from, to := p[0], p[1]
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		began := time.Now()
		err := ping.Send(ctx, from.Session, to.LocalAddr())
		cancel()
		if err != nil {
			t.Fatalf("ping %s -> %s: %v", from.LocalAddr(), to.LocalAddr(), err)
		}
		select {
		case got := <-to.pings:
			if !got.Equal(from.LocalAddr()) {
				t.Fatalf("ping %s -> %s arrived from %s", from.LocalAddr(), to.LocalAddr(), got)
			}
		default:
			t.Fatalf("ping %s -> %s succeeded but the peer's handler never saw it", from.LocalAddr(), to.LocalAddr())
		}
		t.Logf("ping %s -> %s: %v", from.LocalAddr(), to.LocalAddr(), time.Since(began).Round(time.Microsecond))
	}
}

// sendData sends one IQ-set with n bytes of character data to to.
func sendData(ctx context.Context, from user, to jid.JID, n int) error {
	payload := xmlstream.Wrap(
		xmlstream.Token(xml.CharData(bytes.Repeat([]byte{'x'}, n))),
		xml.StartElement{Name: xml.Name{Space: dataNS, Local: "data"}},
	)
	return from.UnmarshalIQ(ctx, stanza.IQ{Type: stanza.SetIQ, To: to}.Wrap(payload), nil)
}

// sendAll sends total bytes from one user to the other in IQs of chunk
// bytes, one after the other, within timeout, and returns how long it took.
func sendAll(t *testing.T, from, to user, total, chunk int, timeout time.Duration) time.Duration {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	began := time.Now()
	for sent := 0; sent < total; sent += chunk {
		if err := sendData(ctx, from, to.LocalAddr(), chunk); err != nil {
			t.Fatalf("after %d bytes: %v", sent, err)
		}
	}
	return time.Since(began)
}

// checkLoopbackOnly checks what `ss -ltnp` would show for the server's PID:
// listeners on 127.0.0.1 only, its c2s and s2s ports (and its proxy's) among
// them.
func checkLoopbackOnly(t *testing.T, s *harness.Server) {
	t.Helper()
	addrs, err := s.Listeners()
	if err != nil {
		t.Fatal(err)
	}
	loopback := netip.AddrFrom4([4]byte{127, 0, 0, 1})
	for _, a := range addrs {
		if a.Addr() != loopback {
			t.Errorf("%s (pid %d) listens on %s", s.Kind(), s.PID(), a)
		}
	}
	ports := []int{s.C2SPort(), s.S2SPort()}
	if p, ok := s.Proxy65(); ok {
		ports = append(ports, p.Port)
	}
	for _, port := range ports {
		if !slices.Contains(addrs, netip.AddrPortFrom(loopback, uint16(port))) {
			t.Errorf("%s (pid %d) does not listen on port %d; listeners: %v", s.Kind(), s.PID(), port, addrs)
		}
	}
	t.Logf("%s (pid %d) listens on %v", s.Kind(), s.PID(), addrs)
}

// waitLog polls the server's log until it contains want, and fails the test
// if it does not within 5 s.
func waitLog(t *testing.T, s *harness.Server, want string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !strings.Contains(s.Log(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("the %s log does not show %q:\n%s", s.Kind(), want, s.Log())
		}
		<-tick.C
	}
}

// startT starts a standalone server of the given kind with default options
// and logs how long the start took.
func startT(t *testing.T, kind string) *harness.Server {
	t.Helper()
	began := time.Now()
	var s *harness.Server
	switch kind {
	case "prosody":
		s = harness.StartProsodyT(t, harness.ProsodyOptions{})
	case "ejabberd":
		s = harness.StartEjabberdT(t, harness.EjabberdOptions{})
	default:
		t.Fatalf("unknown server kind %q", kind)
	}
	t.Logf("%s started in %v", kind, time.Since(began).Round(time.Millisecond))
	return s
}

var kinds = []string{"prosody", "ejabberd"}

func TestPing(t *testing.T) {
	t.Parallel()
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			s := startT(t, kind)
			checkLoopbackOnly(t, s)
			harness.AddUserT(t, s, "alice", "alice-secret")
			harness.AddUserT(t, s, "bob", "bob-secret")
			alice := connect(t, s, "alice", "alice-secret")
			bob := connect(t, s, "bob", "bob-secret")
			if alice.LocalAddr().Resourcepart() == "" || alice.LocalAddr().Domainpart() != s.Domain() {
				t.Fatalf("alice is bound to %s", alice.LocalAddr())
			}
			checkTrust(t, s, alice)
			pingEachOther(t, alice, bob)
		})
	}
}

// checkTrust checks that c's TLS connection was verified against the
// server's test CA, and that a client trusting another CA is refused.
func checkTrust(t *testing.T, s *harness.Server, c user) {
	t.Helper()
	cs := c.ConnectionState()
	if !cs.HandshakeComplete || len(cs.VerifiedChains) == 0 {
		t.Fatalf("%s's connection is not verified TLS: %+v", c.LocalAddr(), cs)
	}
	chain := cs.VerifiedChains[0]
	if root := chain[len(chain)-1]; !root.Equal(s.CA().Certificate()) {
		t.Fatalf("%s's chain ends at %s, not the test CA", c.LocalAddr(), root.Subject)
	}
	if err := chain[0].VerifyHostname(s.Domain()); err != nil {
		t.Fatal(err)
	}

	other, err := harness.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	conn, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	session, err := xmpp.NewClientSession(ctx, c.LocalAddr().Bare(), conn,
		xmpp.StartTLS(&tls.Config{ServerName: s.Domain(), RootCAs: other.CertPool(), MinVersion: tls.VersionTLS12}))
	if err == nil {
		session.Close()
		t.Fatal("a client that trusts another CA completed STARTTLS")
	}
	var unknown x509.UnknownAuthorityError
	if !errors.As(err, &unknown) {
		t.Fatalf("a client that trusts another CA: got %v, want an unknown-authority error", err)
	}
}

func TestWrongPassword(t *testing.T) {
	t.Parallel()
	s := startT(t, "prosody")
	harness.AddUserT(t, s, "alice", "alice-secret")
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	session, err := s.Connect(ctx, "alice", "wrong")
	if err == nil {
		session.Close()
		session.Conn().Close()
		t.Fatal("logged in with a wrong password")
	}
	t.Logf("wrong password: %v", err)
}

func TestFederation(t *testing.T) {
	t.Parallel()
	began := time.Now()
	prosody, ejabberd := harness.StartFederatedT(t, harness.ProsodyOptions{}, harness.EjabberdOptions{})
	t.Logf("both started in %v", time.Since(began).Round(time.Millisecond))
	if prosody.Domain() != "a.localhost" || ejabberd.Domain() != "b.localhost" {
		t.Fatalf("domains %s and %s", prosody.Domain(), ejabberd.Domain())
	}
	checkLoopbackOnly(t, prosody)
	checkLoopbackOnly(t, ejabberd)
	harness.AddUserT(t, prosody, "alice", "alice-secret")
	harness.AddUserT(t, ejabberd, "bob", "bob-secret")
	alice := connect(t, prosody, "alice", "alice-secret")
	bob := connect(t, ejabberd, "bob", "bob-secret")
	pingEachOther(t, alice, bob)
	pingEachOther(t, alice, bob) // over the established s2s streams

	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	began = time.Now()
	if err := sendData(ctx, alice, bob.LocalAddr(), 100_000); err != nil {
		t.Fatalf("100 kB IQ a -> b: %v", err)
	}
	t.Logf("100 kB IQ a.localhost -> b.localhost: %v", time.Since(began).Round(time.Millisecond))
}

func TestRestart(t *testing.T) {
	t.Parallel()
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			s := startT(t, kind)
			harness.AddUserT(t, s, "alice", "alice-secret")
			harness.AddUserT(t, s, "bob", "bob-secret")
			before := connect(t, s, "alice", "alice-secret")
			if err := s.Start(t.Context()); err == nil {
				t.Fatal("Start on a running server succeeded")
			}
			pid := s.PID()

			began := time.Now()
			if err := s.Stop(); err != nil {
				t.Fatal(err)
			}
			t.Logf("%s stopped in %v", kind, time.Since(began).Round(time.Millisecond))
			if s.PID() != 0 {
				t.Fatalf("PID %d after Stop", s.PID())
			}
			if err := s.Stop(); err != nil {
				t.Fatalf("second Stop: %v", err)
			}
			select {
			case <-before.Done():
				t.Logf("the old session ended with %v", before.Err())
			case <-time.After(5 * time.Second):
				t.Fatal("the old session's Serve did not return after the server stopped")
			}

			began = time.Now()
			if err := s.Start(t.Context()); err != nil {
				t.Fatal(err)
			}
			t.Logf("%s restarted in %v", kind, time.Since(began).Round(time.Millisecond))
			if s.PID() == pid || s.PID() == 0 {
				t.Fatalf("PID %d after restart, %d before", s.PID(), pid)
			}
			// Same ports, same accounts.
			alice := connect(t, s, "alice", "alice-secret")
			bob := connect(t, s, "bob", "bob-secret")
			pingEachOther(t, alice, bob)
		})
	}
}

func TestCloseIsFinal(t *testing.T) {
	t.Parallel()
	s := startT(t, "prosody")
	began := time.Now()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	t.Logf("idle prosody closed in %v", time.Since(began).Round(time.Millisecond))
	if err := s.Start(t.Context()); err == nil {
		t.Fatal("Start after Close succeeded")
	}
	if _, err := os.Stat(s.Dir()); err != nil {
		t.Fatalf("Close removed the caller's directory: %v", err)
	}

	owned, err := harness.StartProsody(t.Context(), harness.ProsodyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := owned.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(owned.Dir()); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Close left the harness's own directory %s: %v", owned.Dir(), err)
	}
}

// TestStanzaSizeLimit checks that a stanza over the server's limit ends the
// session with a policy-violation stream error, and pins down what mellium
// v0.23.0's Serve returns then.
func TestStanzaSizeLimit(t *testing.T) {
	t.Parallel()
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			var s *harness.Server
			var serverSaid string // what the server's log shows when it sends the stream error
			if kind == "prosody" {
				// Prosody logs the stream errors it sends at debug level.
				s = harness.StartProsodyT(t, harness.ProsodyOptions{StanzaSizeLimit: harness.DebianStanzaSizeLimit, LogLevel: "debug"})
				serverSaid = "<stream:error><policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-streams'/><text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>XML stanza is too big</text>"
			} else {
				s = harness.StartEjabberdT(t, harness.EjabberdOptions{StanzaSizeLimit: harness.DebianStanzaSizeLimit})
				serverSaid = "Stream closed by local host: XML stanza is too big (policy-violation)"
			}
			harness.AddUserT(t, s, "alice", "alice-secret")
			harness.AddUserT(t, s, "bob", "bob-secret")
			alice := connect(t, s, "alice", "alice-secret")
			bob := connect(t, s, "bob", "bob-secret")

			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			if err := sendData(ctx, alice, bob.LocalAddr(), 200_000); err != nil {
				t.Fatalf("a 200000-byte IQ under the limit: %v", err)
			}

			// mellium does not fail the pending IQ when the stream dies: it
			// waits for its context. Watch Serve instead.
			iqErr := make(chan error, 1)
			go func() { iqErr <- sendData(ctx, alice, bob.LocalAddr(), 270_000) }()
			select {
			case <-alice.Done():
			case err := <-iqErr:
				t.Fatalf("a 270000-byte IQ over the %d-byte limit returned %v, and the session stayed up", harness.DebianStanzaSizeLimit, err)
			}
			cancel()
			<-iqErr
			waitLog(t, s, serverSaid) // the server may log it after closing

			// What Serve returns is a race. Serve reads the stream error, then
			// writes a stream error back before returning; if that write fails
			// it returns the write error instead. The server closed with the
			// rest of our stanza unread, so its kernel sent a reset, and the
			// write often fails with "connection reset by peer". Besides,
			// Prosody adds an application condition, <stanza-too-big
			// xmlns='urn:xmpp:errors'/>, which mellium's stream.Error cannot
			// parse: Serve gets the parse error and writes undefined-condition.
			err := alice.Err()
			t.Logf("Serve returned %v", err)
			switch {
			case kind == "ejabberd" && errors.Is(err, stream.PolicyViolation):
			case kind == "prosody" && err != nil && strings.Contains(err.Error(), "did not consume entire <error> element"):
			case errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE):
			case errors.Is(err, stream.PolicyViolation):
				t.Logf("mellium now parses %s's stream error: simplify this test", kind)
			default:
				t.Fatalf("Serve returned %#v; want policy-violation or one of mellium v0.23.0's known substitutes", err)
			}
		})
	}
}

func TestPortTaken(t *testing.T) {
	t.Parallel()
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			port := l.Addr().(*net.TCPAddr).Port
			began := time.Now()
			var s *harness.Server
			if kind == "prosody" {
				s, err = harness.StartProsody(t.Context(), harness.ProsodyOptions{Dir: t.TempDir(), C2SPort: port})
			} else {
				s, err = harness.StartEjabberd(t.Context(), harness.EjabberdOptions{Dir: t.TempDir(), C2SPort: port})
			}
			elapsed := time.Since(began)
			if err == nil {
				s.Close()
				t.Fatalf("%s started although port %d was taken", kind, port)
			}
			t.Logf("%s failed in %v: %v", kind, elapsed.Round(time.Millisecond), err)
		})
	}
}

func TestStartTimeout(t *testing.T) {
	t.Parallel()
	began := time.Now()
	s, err := harness.StartProsody(t.Context(), harness.ProsodyOptions{Dir: t.TempDir(), StartTimeout: time.Millisecond})
	if err == nil {
		s.Close()
		t.Fatal("Prosody was ready within 1 ms")
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want a deadline error", err)
	}
	t.Logf("failed after %v: %.200s", time.Since(began).Round(time.Millisecond), err)
}

func TestShaper(t *testing.T) {
	t.Parallel()
	const (
		total = 200_000
		chunk = 20_000
		rate  = 100_000 // bytes per second: ~2 s for 200 kB
	)
	shaper := &harness.Shaper{Rate: rate, Burst: harness.DebianC2SShaper.Burst}
	for _, kind := range kinds {
		for _, shaped := range []bool{false, true} {
			name := kind + "/unshaped"
			if shaped {
				name = kind + "/shaped"
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				var s *harness.Server
				var sh *harness.Shaper
				if shaped {
					sh = shaper
				}
				if kind == "prosody" {
					s = harness.StartProsodyT(t, harness.ProsodyOptions{Shaper: sh})
				} else {
					s = harness.StartEjabberdT(t, harness.EjabberdOptions{Shaper: sh})
				}
				harness.AddUserT(t, s, "alice", "alice-secret")
				harness.AddUserT(t, s, "bob", "bob-secret")
				alice := connect(t, s, "alice", "alice-secret")
				bob := connect(t, s, "bob", "bob-secret")
				elapsed := sendAll(t, alice, bob, total, chunk, 30*time.Second)
				t.Logf("%s: %d bytes in %d IQs took %v (%.0f kB/s)", name, total, total/chunk,
					elapsed.Round(time.Millisecond), float64(total)/elapsed.Seconds()/1000)
			})
		}
	}
}

// TestStockLimits starts both servers as Debian ships their limits, with
// their SOCKS5 proxies: both start, listen on 127.0.0.1 only (the proxy
// included), and read each client at their shipped rate: 36 kB of IQs take
// seconds (Prosody: 10000 B/s without burst; ejabberd: 3000 B/s after a
// 20000-byte burst), where unlimited they take milliseconds. The bound is a
// lower one, which a slow machine cannot break.
func TestStockLimits(t *testing.T) {
	t.Parallel()
	const (
		total = 36_000
		chunk = 3_000
		least = 2 * time.Second // 36 kB at 18 kB/s
	)
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			var s *harness.Server
			if kind == "prosody" {
				s = harness.StartProsodyT(t, harness.ProsodyOptions{Limits: harness.StockLimits, Proxy65: true})
			} else {
				s = harness.StartEjabberdT(t, harness.EjabberdOptions{Limits: harness.StockLimits, Proxy65: true})
			}
			checkLoopbackOnly(t, s)
			if s.C2SRate() == 0 || s.Limits() != harness.StockLimits {
				t.Fatalf("C2SRate %d, Limits %v", s.C2SRate(), s.Limits())
			}
			harness.AddUserT(t, s, "alice", "alice-secret")
			harness.AddUserT(t, s, "bob", "bob-secret")
			alice := connect(t, s, "alice", "alice-secret")
			bob := connect(t, s, "bob", "bob-secret")
			elapsed := sendAll(t, alice, bob, total, chunk, time.Minute)
			t.Logf("%d bytes in %d IQs took %v (%.1f kB/s; the c2s rate is %d B/s)", total, total/chunk,
				elapsed.Round(time.Millisecond), total/elapsed.Seconds()/1000, s.C2SRate())
			if elapsed < least {
				t.Fatalf("%d bytes took %v: the c2s limit is not in force", total, elapsed)
			}
		})
	}
}

// TestProsodyTuning measures 200 kB in 20 kB IQs through Prosody untuned and
// with DisableNagle and ReadSize: on defaults each IQ over ~8 KiB waits for a
// delayed ACK (~40 ms, see anchors.md); tuned, it does not. It does not run
// in parallel with the other tests, which would blur the timings.
func TestProsodyTuning(t *testing.T) {
	const (
		total = 200_000
		chunk = 20_000
	)
	times := make(map[bool]time.Duration)
	for _, tuned := range []bool{false, true} {
		s := harness.StartProsodyT(t, harness.ProsodyOptions{DisableNagle: tuned, ReadSize: map[bool]int{true: 65536}[tuned]})
		harness.AddUserT(t, s, "alice", "alice-secret")
		harness.AddUserT(t, s, "bob", "bob-secret")
		alice := connect(t, s, "alice", "alice-secret")
		bob := connect(t, s, "bob", "bob-secret")
		times[tuned] = sendAll(t, alice, bob, total, chunk, 30*time.Second)
		t.Logf("tuned=%v: %d bytes in %d IQs took %v", tuned, total, total/chunk, times[tuned].Round(time.Millisecond))
		cfg, err := os.ReadFile(filepath.Join(s.Dir(), "prosody.cfg.lua"))
		if err != nil {
			t.Fatal(err)
		}
		for _, knob := range []string{"network_settings = { nagle = false }", "network_default_read_size = 65536"} {
			if got := strings.Contains(string(cfg), knob); got != tuned {
				t.Errorf("tuned=%v: %q in the configuration: %v", tuned, knob, got)
			}
		}
	}
	// Measured here: ~255 ms untuned, 30-50 ms tuned. Timings are for the
	// log (and the benchmark command); what must hold is that the knobs
	// reach Prosody's configuration.
}
