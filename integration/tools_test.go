package integration

import (
	"bytes"
	"crypto/sha256"
	"encoding/pem"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/xmppxtls/xtls/integration/harness"
)

// The command-line tools, built and run as a user runs them, each user
// with a state directory and a profile of its own (server, JID, CA,
// password file), through the shared Prosody: xtls-file moves a folder
// and a file, resumes after its receiver was killed (SIGKILL) halfway, and
// a SIGTERM'd sender makes the receiver exit 7; xtls-fwd carries ten
// connections at once and refuses an account not on -allow. Sizes are
// smaller than in the examples' own tests (20 MiB, not 200 MB): Prosody
// moves ~10 MB/s.
func TestToolsThroughProsody(t *testing.T) {
	shared.once.Do(startShared)
	require.NoError(t, shared.err, "starting the shared servers")
	srv := shared.prosody
	bin := buildTools(t, "xtls-file", "xtls-fwd")
	dir := t.TempDir()
	alice, bob, carol := newUser(t, srv, dir, "alice"), newUser(t, srv, dir, "bob"), newUser(t, srv, dir, "carol")

	t.Run("file", func(t *testing.T) {
		src := filepath.Join(dir, "src")
		for i := range 200 {
			writeRandomFile(t, filepath.Join(src, "folder", fmt.Sprintf("f%03d", i)), int64(i*37), uint64(i))
		}
		const size = 20 << 20
		writeRandomFile(t, filepath.Join(src, "big.bin"), size, 1000)
		out := filepath.Join(dir, "out")
		part := filepath.Join(out, "big.bin.xtls-part")

		// First run: bob confirms, then is killed halfway.
		recv := bob.start(t, bin, "y\n", "xtls-file", "receive", "-o", out)
		full := recv.waitFor(t, regexp.MustCompile(`xtls-file send (\S+) PATH`))
		send := alice.start(t, bin, "", "xtls-file", "send", full, filepath.Join(src, "folder"), filepath.Join(src, "big.bin"))
		waitFile(t, part, size/2)
		require.NoError(t, recv.cmd.Process.Signal(syscall.SIGKILL))
		recv.wait(t, -1)
		fi, err := os.Stat(part)
		require.NoError(t, err)
		code := send.wait(t, -1)
		require.Contains(t, []int{6, 7}, code, "the sender whose receiver vanished:\n%s", send.out.String())

		// The same commands again: the rest, and only the rest.
		recv = bob.start(t, bin, "", "xtls-file", "receive", "-yes", "-o", out)
		full = recv.waitFor(t, regexp.MustCompile(`xtls-file send (\S+) PATH`))
		send = alice.start(t, bin, "", "xtls-file", "send", full, filepath.Join(src, "folder"), filepath.Join(src, "big.bin"))
		require.Equal(t, 0, send.wait(t, 0))
		require.Equal(t, 0, recv.wait(t, 0))
		m := regexp.MustCompile(`sent (\d+) bytes \((\d+) were already there\)`).FindStringSubmatch(send.out.String())
		require.NotNil(t, m, send.out.String())
		sent, _ := strconv.ParseInt(m[1], 10, 64)
		skipped, _ := strconv.ParseInt(m[2], 10, 64)
		require.GreaterOrEqual(t, skipped, fi.Size(), "what the receiver had was not reused")
		require.LessOrEqual(t, sent, int64(size)-fi.Size()+64<<10, "more than the missing part and one block")
		sameFiles(t, src, out)

		// A SIGTERM'd sender: the receiver exits 7 and says why.
		writeRandomFile(t, filepath.Join(src, "again.bin"), size, 2000)
		recv = bob.start(t, bin, "", "xtls-file", "receive", "-yes", "-o", out)
		full = recv.waitFor(t, regexp.MustCompile(`xtls-file send (\S+) PATH`))
		send = alice.start(t, bin, "", "xtls-file", "send", full, filepath.Join(src, "again.bin"))
		waitFile(t, filepath.Join(out, "again.bin.xtls-part"), 1)
		require.NoError(t, send.cmd.Process.Signal(syscall.SIGTERM))
		require.Equal(t, 130, send.wait(t, 130))
		require.Equal(t, 7, recv.wait(t, 7))
		require.Contains(t, recv.out.String(), "aborted: interrupted (terminated)")
	})

	t.Run("fwd", func(t *testing.T) {
		echo := echoServer(t)
		serve := bob.start(t, bin, "", "xtls-fwd", "serve", "-allow", "alice@"+srv.Domain(), "-to", echo)
		full := serve.waitFor(t, regexp.MustCompile(`xtls-fwd local PORT (\S+)`))
		local := alice.start(t, bin, "", "xtls-fwd", "local", "0", full)
		addr := local.waitFor(t, regexp.MustCompile(`listening on (\S+):`))
		var wg sync.WaitGroup
		errs := make(chan error, 10)
		for i := range 10 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs <- echoThrough(addr, 300_000, uint64(i))
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			require.NoError(t, err)
		}
		c := carol.start(t, bin, "hello", "xtls-fwd", "stdio", full)
		require.Equal(t, 4, c.wait(t, 4))
		require.Contains(t, c.out.String(), "refused")
		require.NoError(t, local.cmd.Process.Signal(syscall.SIGTERM))
		require.Equal(t, 130, local.wait(t, 130))
		require.NoError(t, serve.cmd.Process.Signal(syscall.SIGHUP))
		require.Equal(t, 130, serve.wait(t, 130))
	})

	t.Run("login to a port that is not XMPP", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		defer ln.Close()
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				defer c.Close() // says nothing
			}
		}()
		began := time.Now()
		p := alice.start(t, bin, "", "xtls-file", "-server", ln.Addr().String(), "-timeout", "2s", "receive")
		require.Equal(t, 3, p.wait(t, 3))
		require.Less(t, time.Since(began), 10*time.Second)
		require.Contains(t, p.out.String(), "no XMPP answer within 2s")
	})
}

// buildTools builds the example programs named into a directory.
func buildTools(t *testing.T, names ...string) string {
	t.Helper()
	bin := t.TempDir()
	args := []string{"build", "-o", bin + string(os.PathSeparator)}
	for _, n := range names {
		args = append(args, "github.com/xmppxtls/xtls/examples/"+n)
	}
	out, err := exec.Command("go", args...).CombinedOutput()
	require.NoError(t, err, "go build: %s", out)
	return bin
}

// user is an account on a machine of its own: a state directory with a
// profile that names the server, the JID, the CA and a password file.
type user struct {
	name, state string
}

func newUser(t *testing.T, srv *harness.Server, dir, name string) *user {
	t.Helper()
	state := filepath.Join(dir, name)
	require.NoError(t, os.MkdirAll(state, 0o700))
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.CA().Certificate().Raw})
	require.NoError(t, os.WriteFile(filepath.Join(state, "ca.pem"), ca, 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(state, "password"), []byte(password(name)+"\n"), 0o600))
	profile := fmt.Sprintf("jid = %s@%s/tools\nserver = %s\nca = ca.pem\npassword-file = password\n", name, srv.Domain(), srv.Addr())
	require.NoError(t, os.WriteFile(filepath.Join(state, "default.profile"), []byte(profile), 0o600))
	return &user{name: name, state: state}
}

// proc is a running tool.
type proc struct {
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan int
}

// start runs a tool as u, with stdin.
func (u *user) start(t *testing.T, bin, stdin, tool string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(filepath.Join(bin, tool), args...)
	cmd.Env = append(os.Environ(), "XTLS_DIR="+u.state, "XTLS_PASSWORD=")
	cmd.Stdin = strings.NewReader(stdin)
	p := &proc{cmd: cmd, out: &syncBuffer{}, done: make(chan int, 1)}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	require.NoError(t, cmd.Start())
	go func() {
		cmd.Wait()
		p.done <- cmd.ProcessState.ExitCode()
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-p.done
		p.done <- -1
	})
	return p
}

// wait waits for the process to end and returns its exit status (-1 if
// killed); want only shapes the message of a timeout.
func (p *proc) wait(t *testing.T, want int) int {
	t.Helper()
	select {
	case code := <-p.done:
		p.done <- code
		return code
	case <-time.After(2 * time.Minute):
		t.Fatalf("%s did not end (want status %d):\n%s", p.cmd.Path, want, p.out.String())
	}
	return 0
}

// waitFor waits, with a deadline, for re to match the output, and returns
// its first group.
func (p *proc) waitFor(t *testing.T, re *regexp.Regexp) string {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		if m := re.FindStringSubmatch(p.out.String()); m != nil {
			return m[1]
		}
		select {
		case code := <-p.done:
			p.done <- code
			t.Fatalf("%s ended (%d) without %v:\n%s", p.cmd.Path, code, re, p.out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %v in:\n%s", re, p.out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitFile waits, with a deadline, until the file at path has at least n
// bytes.
func waitFile(t *testing.T, path string, n int64) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		if fi, err := os.Stat(path); err == nil && fi.Size() >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never reached %d bytes", path, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// writeRandomFile writes n pseudo-random bytes to path.
func writeRandomFile(t *testing.T, path string, n int64, seed uint64) {
	t.Helper()
	require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
	f, err := os.Create(path)
	require.NoError(t, err)
	_, err = io.CopyN(f, rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)}), n)
	require.NoError(t, err)
	require.NoError(t, f.Close())
}

// sameFiles checks that every file under want is under got, identical.
func sameFiles(t *testing.T, want, got string) {
	t.Helper()
	require.NoError(t, filepath.Walk(want, func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(want, p)
		a, err := os.ReadFile(p)
		require.NoError(t, err)
		b, err := os.ReadFile(filepath.Join(got, rel))
		require.NoError(t, err, rel)
		require.Equal(t, sha256.Sum256(a), sha256.Sum256(b), rel)
		return nil
	}))
}

// echoServer is a TCP echo server on 127.0.0.1.
func echoServer(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				io.Copy(c, c)
				c.Close()
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	return ln.Addr().String()
}

// echoThrough sends n random bytes through addr and checks the echo.
func echoThrough(addr string, n int, seed uint64) error {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	data := make([]byte, n)
	rand.NewChaCha8([32]byte{byte(seed)}).Read(data)
	go func() {
		c.Write(data)
		c.(*net.TCPConn).CloseWrite()
	}()
	got, err := io.ReadAll(c)
	if err != nil {
		return err
	}
	if !bytes.Equal(got, data) {
		return fmt.Errorf("connection %d: %d bytes back, want %d", seed, len(got), n)
	}
	return nil
}

// syncBuffer is a buffer safe for concurrent use.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
