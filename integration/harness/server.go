package harness

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

const (
	// DefaultStanzaSizeLimit is the stanza size limit the harness configures
	// unless told otherwise: large, so that tests meet a limit only when they
	// ask for one.
	DefaultStanzaSizeLimit = 10 << 20

	// DebianStanzaSizeLimit is the c2s stanza size limit of Debian's shipped
	// ejabberd configuration (max_stanza_size: 262144), which is also
	// Prosody 0.12's built-in default c2s_stanza_size_limit.
	DebianStanzaSizeLimit = 262144

	// stopTimeout is how long Stop waits after SIGTERM before it kills.
	stopTimeout = 10 * time.Second

	// pollInterval is how often a starting server is checked for readiness.
	pollInterval = 20 * time.Millisecond

	// logTailLines is how many lines of each log Log returns.
	logTailLines = 60
)

// DebianC2SShaper is the c2s shaper of Debian's shipped ejabberd
// configuration: "normal", 3000 bytes/s with a burst of 20000 bytes.
var DebianC2SShaper = Shaper{Rate: 3000, Burst: 20000}

// Shaper limits how fast a server reads from each client connection.
type Shaper struct {
	// Rate is the sustained rate in bytes per second. It must be positive.
	Rate int
	// Burst is how many bytes a client may send at once before the rate
	// applies (ejabberd's burst_size). Zero means the server's default.
	// Prosody 0.12's epoll backend ignores it (mod_limits: "Currently no
	// burst support"): it pauses each connection for bytes/Rate after every
	// read.
	Burst int
}

// Remote names another server that this one federates with (server-to-server):
// its domain and the port on 127.0.0.1 where it accepts s2s connections.
// Both servers must know each other, because dialback connects back.
type Remote struct {
	// Domain is the remote server's domain, e.g. "b.localhost".
	// Prosody resolves the SRV target through libunbound's built-in
	// "localhost." zone, so keep remote domains under ".localhost".
	Domain string
	// S2SPort is the remote server's s2s port on 127.0.0.1.
	S2SPort int
}

// Server is one XMPP server process running on 127.0.0.1 in its own
// directory, with its own ports, certificate and accounts.
// Create it with [StartProsody], [StartEjabberd] or [StartFederated].
//
// Its methods are safe for concurrent use by multiple goroutines.
type Server struct {
	kind         string
	domain       string
	dir          string
	ownDir       bool
	c2sPort      int
	s2sPort      int
	ports        []int // every port the process must listen on before it counts as ready
	ca           *CA
	startTimeout time.Duration
	stdoutPath   string
	logPaths     []string                // files Log shows, stdout first
	command      func() *exec.Cmd        // builds the server's command line
	startFailure func(log string) string // a fatal start problem the log reveals, or ""
	addUser      func(ctx context.Context, local, password string) error
	limits       Limits
	c2sRate      int     // bytes/s each client is read at; 0 = unlimited
	proxy65      Proxy65 // Port 0: none

	lifecycle sync.Mutex // serializes Start, Stop and Close
	mu        sync.Mutex // guards the fields below
	proc      *process
	closed    bool
}

// process is one run of the server binary.
type process struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when Wait has returned
	err  error         // Wait's result; read it only after done is closed
}

// Kind returns "prosody" or "ejabberd".
func (s *Server) Kind() string { return s.kind }

// Domain returns the server's XMPP domain, e.g. "a.localhost".
func (s *Server) Domain() string { return s.domain }

// Dir returns the directory that holds the server's configuration,
// certificates, data and logs.
func (s *Server) Dir() string { return s.dir }

// C2SPort returns the client-to-server port on 127.0.0.1 (STARTTLS).
func (s *Server) C2SPort() int { return s.c2sPort }

// S2SPort returns the server-to-server port on 127.0.0.1.
func (s *Server) S2SPort() int { return s.s2sPort }

// Addr returns the client-to-server address, "127.0.0.1:port".
func (s *Server) Addr() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.c2sPort))
}

// RootCAs returns a new pool holding the CA that issued the server's
// certificate, for a client's [tls.Config.RootCAs].
func (s *Server) RootCAs() *x509.CertPool { return s.ca.CertPool() }

// CA returns the CA that issued the server's certificate.
func (s *Server) CA() *CA { return s.ca }

// PID returns the process ID of the running server (Prosody's Lua
// interpreter, ejabberd's beam.smp), or 0 if it is not running.
func (s *Server) PID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return 0
	}
	return s.proc.cmd.Process.Pid
}

// Listeners returns the TCP addresses on which the running server process
// listens, read from /proc: what `ss -ltnp` shows for its PID.
func (s *Server) Listeners() ([]netip.AddrPort, error) {
	pid := s.PID()
	if pid == 0 {
		return nil, fmt.Errorf("harness: %s is not running", s.kind)
	}
	return listeners(pid)
}

// AddUser creates the account local@Domain() with the given password, with
// prosodyctl or ejabberdctl. Prosody accepts it whether or not the server
// runs (and silently replaces an existing account's password); ejabberd needs
// the server running and refuses an existing account.
func (s *Server) AddUser(ctx context.Context, local, password string) error {
	return s.addUser(ctx, local, password)
}

// Log returns the last lines of the server's output and log file,
// for failure messages.
func (s *Server) Log() string {
	var b strings.Builder
	for _, p := range s.logPaths {
		tail, err := tailLines(p, 0, logTailLines)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			fmt.Fprintf(&b, "==> %s: %v\n", p, err)
			continue
		}
		if tail == "" {
			continue
		}
		fmt.Fprintf(&b, "==> %s <==\n%s", p, tail)
		if !strings.HasSuffix(tail, "\n") {
			b.WriteByte('\n')
		}
	}
	return b.String()
}

// Start starts the server process and waits until it is ready, polling every
// 20 ms: its PID listens on every one of its ports on 127.0.0.1, and its c2s
// port answers an XMPP stream header with stream features. It fails at once,
// with the log tail, if the process exits or its log shows that a port could
// not be opened, and it fails when ctx ends or the start timeout (10 s for
// Prosody, 30 s for ejabberd, unless set in the options) passes; a failed
// start leaves no process behind.
//
// [StartProsody] and [StartEjabberd] call Start; call it yourself to restart a
// server after [Server.Stop], with the same directory, ports and accounts.
func (s *Server) Start(ctx context.Context) error {
	s.lifecycle.Lock()
	defer s.lifecycle.Unlock()
	s.mu.Lock()
	closed, running := s.closed, s.proc != nil
	s.mu.Unlock()
	switch {
	case closed:
		return fmt.Errorf("harness: %s in %s: Start after Close", s.kind, s.dir)
	case running:
		return fmt.Errorf("harness: %s in %s is already running", s.kind, s.dir)
	}

	offsets := make([]int64, len(s.logPaths))
	for i, p := range s.logPaths {
		if fi, err := os.Stat(p); err == nil {
			offsets[i] = fi.Size()
		}
	}
	out, err := os.OpenFile(s.stdoutPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("harness: %w", err)
	}
	cmd := s.command()
	fmt.Fprintf(out, "=== harness: %s: %s\n", time.Now().Format(time.RFC3339Nano), strings.Join(cmd.Args, " "))
	cmd.Stdout = out
	cmd.Stderr = out
	cmd.SysProcAttr = sysProcAttr()
	began := time.Now()
	err = cmd.Start()
	out.Close() // the child has its own descriptor
	if err != nil {
		return fmt.Errorf("harness: starting %s: %w", s.kind, err)
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()

	if err := s.waitReady(ctx, p, offsets); err != nil {
		p.kill()
		return fmt.Errorf("harness: %s (pid %d, %s) did not start after %v: %w\n%s",
			s.kind, cmd.Process.Pid, s.dir, time.Since(began).Round(time.Millisecond), err, s.Log())
	}
	s.mu.Lock()
	s.proc = p
	s.mu.Unlock()
	return nil
}

// waitReady polls p every pollInterval until it is ready, it fails, or the
// deadline passes.
func (s *Server) waitReady(ctx context.Context, p *process, offsets []int64) error {
	ctx, cancel := context.WithTimeout(ctx, s.startTimeout)
	defer cancel()
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	pid := p.cmd.Process.Pid
	for {
		select {
		case <-p.done:
			return fmt.Errorf("the process exited: %v", p.err)
		default:
		}
		if s.startFailure != nil {
			for i, path := range s.logPaths {
				text, _ := tailLines(path, offsets[i], -1) // a missing file has nothing to say
				if msg := s.startFailure(text); msg != "" {
					return fmt.Errorf("its log says: %s", msg)
				}
			}
		}
		if s.listensOnAll(pid) && streamOK(ctx, s.Addr(), s.domain) {
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("the process exited: %v", p.err)
		case <-ctx.Done():
			return fmt.Errorf("not ready: %w", context.Cause(ctx))
		case <-tick.C:
		}
	}
}

// listensOnAll reports whether process pid listens on 127.0.0.1 on every port
// in s.ports. Checking the PID, not just the port, keeps another program that
// holds one of the ports from passing for the server.
func (s *Server) listensOnAll(pid int) bool {
	addrs, err := listeners(pid)
	if err != nil {
		return false
	}
	for _, port := range s.ports {
		want := netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), uint16(port))
		if !slices.Contains(addrs, want) {
			return false
		}
	}
	return true
}

// probeTimeout bounds one readiness probe. A probe that waits in the accept
// queue of a server that has bound its port but does not accept yet
// (ejabberd, for about a second) is answered as soon as the server accepts.
const probeTimeout = 500 * time.Millisecond

// streamOK reports whether the server at addr answers an XMPP client stream
// header for domain with a stream header and stream features. A TCP connect
// alone proves little: ejabberd binds its ports a second before it accepts.
// The probe closes its stream and waits for the server to hang up, so that
// no session of the probe is left over (Prosody waits up to a second for open
// sessions when it stops).
func streamOK(ctx context.Context, addr, domain string) bool {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return false
	}
	defer c.Close()
	deadline, _ := ctx.Deadline()
	c.SetDeadline(deadline)
	var to strings.Builder
	xml.EscapeText(&to, []byte(domain))
	if _, err := fmt.Fprintf(c, "<?xml version='1.0'?><stream:stream to='%s' version='1.0' xml:lang='en' xmlns='jabber:client' xmlns:stream='%s'>",
		to.String(), nsStream); err != nil {
		return false
	}
	dec := xml.NewDecoder(c)
	for {
		tok, err := dec.Token()
		if err != nil {
			return false
		}
		se, ok := tok.(xml.StartElement)
		switch {
		case !ok || se.Name.Space != nsStream:
		case se.Name.Local == "features":
			// Close the stream and wait for the server to close the
			// connection, so that no session of ours is left when Start
			// returns.
			if _, err := c.Write([]byte("</stream:stream>")); err == nil {
				io.Copy(io.Discard, c)
			}
			return true
		case se.Name.Local == "error":
			return false
		}
	}
}

// nsStream is the namespace of the XMPP stream element.
const nsStream = "http://etherx.jabber.org/streams"

// Stop ends the server: SIGTERM, up to 10 s for it to exit, then SIGKILL.
// It always waits for the process (and for a Start in progress). The
// directory, ports and accounts stay, so [Server.Start] can run it again.
// Stop on a stopped server does nothing.
//
// Stop returns an error if the server had already exited on its own (it
// crashed), exited with a failure status, or had to be killed.
func (s *Server) Stop() error {
	s.lifecycle.Lock()
	defer s.lifecycle.Unlock()
	return s.stop()
}

func (s *Server) stop() error {
	s.mu.Lock()
	p := s.proc
	s.proc = nil
	s.mu.Unlock()
	if p == nil {
		return nil
	}
	pid := p.cmd.Process.Pid
	select {
	case <-p.done:
		return fmt.Errorf("harness: %s (pid %d) had exited before Stop: %v\n%s", s.kind, pid, p.err, s.Log())
	default:
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		p.kill()
		return fmt.Errorf("harness: %s (pid %d): SIGTERM: %w", s.kind, pid, err)
	}
	timer := time.NewTimer(stopTimeout)
	defer timer.Stop()
	select {
	case <-p.done:
	case <-timer.C:
		p.kill()
		return fmt.Errorf("harness: %s (pid %d) did not exit within %v of SIGTERM; killed\n%s", s.kind, pid, stopTimeout, s.Log())
	}
	if p.err != nil && !terminatedBy(p.err, syscall.SIGTERM) {
		return fmt.Errorf("harness: %s (pid %d) stopped with %v\n%s", s.kind, pid, p.err, s.Log())
	}
	return nil
}

// Close stops the server for good and removes its directory if the harness
// made it. Close on a closed server does nothing.
func (s *Server) Close() error {
	s.lifecycle.Lock()
	defer s.lifecycle.Unlock()
	s.mu.Lock()
	closed := s.closed
	s.closed = true
	s.mu.Unlock()
	if closed {
		return nil
	}
	err := s.stop()
	if s.ownDir {
		if rmErr := os.RemoveAll(s.dir); rmErr != nil && err == nil {
			err = fmt.Errorf("harness: %w", rmErr)
		}
	}
	return err
}

// kill kills the process, if it still runs, and waits for it.
func (p *process) kill() {
	p.cmd.Process.Kill()
	<-p.done
}

// terminatedBy reports whether err says the process died of signal sig.
func terminatedBy(err error, sig syscall.Signal) bool {
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return false
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == sig
}

// tailLines returns the last n lines of the file at path (of its last 64 KiB),
// or, if n < 0, everything from byte offset from on.
func tailLines(path string, from int64, n int) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	if n >= 0 {
		const maxTail = 64 << 10
		fi, err := f.Stat()
		if err != nil {
			return "", err
		}
		from = max(from, fi.Size()-maxTail)
	}
	if _, err := f.Seek(from, io.SeekStart); err != nil {
		return "", err
	}
	data, err := io.ReadAll(f)
	if err != nil {
		return "", err
	}
	if n >= 0 {
		lines := bytes.SplitAfter(data, []byte("\n"))
		if last := len(lines) - 1; len(lines[last]) == 0 {
			lines = lines[:last]
		}
		if len(lines) > n {
			lines = lines[len(lines)-n:]
		}
		data = bytes.Join(lines, nil)
	}
	return string(data), nil
}

// newDir returns dir, or a new temporary directory (own = true) if dir is "".
func newDir(dir, pattern string) (path string, own bool, err error) {
	if dir != "" {
		abs, err := filepath.Abs(dir)
		if err != nil {
			return "", false, fmt.Errorf("harness: %w", err)
		}
		return abs, false, os.MkdirAll(abs, 0o755)
	}
	path, err = os.MkdirTemp("", pattern)
	if err != nil {
		return "", false, fmt.Errorf("harness: %w", err)
	}
	return path, true, nil
}

// writeFiles creates the subdirectories of dir named in dirs and writes each
// named file (relative to dir) with mode 0600.
func writeFiles(dir string, dirs []string, files map[string][]byte) error {
	for _, d := range dirs {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return fmt.Errorf("harness: %w", err)
		}
	}
	for name, data := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return fmt.Errorf("harness: %w", err)
		}
		if err := os.WriteFile(p, data, 0o600); err != nil {
			return fmt.Errorf("harness: %w", err)
		}
	}
	return nil
}

// runTool runs a helper program (prosodyctl, ejabberdctl). If it fails, the
// error holds its output and its command line with secret replaced.
func runTool(ctx context.Context, cmd *exec.Cmd, secret string) error {
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	cmd.SysProcAttr = sysProcAttr()
	cmd.WaitDelay = time.Second
	err := cmd.Run()
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			err = fmt.Errorf("%w (%w)", err, ctxErr)
		}
		args := strings.Join(cmd.Args, " ")
		if secret != "" {
			args = strings.ReplaceAll(args, secret, "***")
		}
		return fmt.Errorf("harness: %s: %w: %s", args, err, strings.TrimSpace(out.String()))
	}
	return nil
}
