package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/xmppxtls/xtls/examples/internal/cli"
	"github.com/xmppxtls/xtls/xtls"
	"github.com/xmppxtls/xtls/xtls/xtlstest"
)

// The two accounts of -demo and -loopback.
const (
	aliceAddr = "alice@example.net/chat"
	bobAddr   = "bob@example.org/chat"
)

// demoTimeout bounds the whole demo.
const demoTimeout = 60 * time.Second

// listening is what the listener prints once it waits for a chat.
const listening = "waiting for a chat"

// stage runs pairs of instances on one in-memory network: Alice listens
// and Bob dials her, their state in dir.
type stage struct {
	connect cli.ConnectFunc
	dir     string
	echo    io.Writer // nil: quiet
}

// scene runs one chat: Alice listens (with aliceFlags), and once she
// waits Bob dials her (with bobFlags); play types and reads on their
// terminals. If play fails, both are interrupted. scene returns the exit
// statuses.
func (s *stage) scene(ctx context.Context, aliceFlags, bobFlags []string, play func(ctx context.Context, alice, bob *cli.Term) error) (aliceCode, bobCode int, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	start := func(t *cli.Term, args []string) {
		t.Start(func(stdin io.Reader, stdout, stderr io.Writer) int {
			return runWith(ctx, s.connect, args, stdin, stdout, stderr)
		})
	}
	alice, bob := cli.NewTerm("alice", s.echo), cli.NewTerm("bob", s.echo)
	start(alice, append(append([]string{"-jid", aliceAddr, "-dir", s.dir}, aliceFlags...), "listen"))
	_, err = alice.Expect(ctx, listening)
	if err == nil {
		start(bob, append(append([]string{"-jid", bobAddr, "-dir", s.dir}, bobFlags...), "dial", aliceAddr))
		err = play(ctx, alice, bob)
		if err != nil {
			cancel()
		}
		bobCode = bob.Wait()
	} else {
		cancel()
	}
	aliceCode = alice.Wait()
	return aliceCode, bobCode, err
}

// step is a line to wait for on a terminal.
type step struct {
	term *cli.Term
	text string
}

// expectAll waits for each step's line in turn.
func expectAll(ctx context.Context, steps ...step) error {
	for _, s := range steps {
		if _, err := s.term.Expect(ctx, s.text); err != nil {
			return err
		}
	}
	return nil
}

// demo plays four chats between Alice and Bob on an in-memory network and
// prints what both see.
func demo(ctx context.Context, stdout, stderr io.Writer) int {
	dir, err := os.MkdirTemp("", "xtls-chat-demo-")
	if err != nil {
		fmt.Fprintln(stderr, "xtls-chat:", err)
		return exitOther
	}
	defer os.RemoveAll(dir)
	network := xtlstest.NewNetwork()
	defer network.Close()
	out := cli.SyncWriter(stdout)
	s := &stage{connect: cli.NetworkConnect(network), dir: dir, echo: out}
	ctx, cancel := context.WithTimeout(ctx, demoTimeout)
	defer cancel()

	fmt.Fprintln(out, "xtls-chat demo: Alice and Bob chat on an in-memory XMPP network, end to end")
	fmt.Fprintln(out, "encrypted. \"alice |\" is what Alice's terminal shows, \"alice <\" what she types.")
	acts := []struct {
		title                string
		aliceFlags, bobFlags []string
		before               func() error
		play                 func(ctx context.Context, alice, bob *cli.Term) error
		aliceCode, bobCode   int
	}{{
		title: "1. First contact: each compares the other's key out of band, then they chat",
		play: func(ctx context.Context, alice, bob *cli.Term) error {
			if err := expectAll(ctx, step{alice, "type yes"}, step{bob, "type yes"}); err != nil {
				return err
			}
			alice.Type("yes")
			bob.Type("yes")
			if err := expectAll(ctx, step{alice, "chat with"}, step{bob, "chat with"}); err != nil {
				return err
			}
			bob.Type("Hi Alice! Only you can read this.")
			if err := expectAll(ctx, step{alice, "bob@example.org> Hi Alice"}); err != nil {
				return err
			}
			alice.Type("And the servers see only Base64 in IQs.")
			if err := expectAll(ctx, step{bob, "alice@example.net> And the servers"}); err != nil {
				return err
			}
			bob.Type("/quit")
			return expectAll(ctx, step{alice, "left the chat"})
		},
	}, {
		title: "2. The next day: the keys are pinned, no question asked",
		play: func(ctx context.Context, alice, bob *cli.Term) error {
			if err := expectAll(ctx, step{alice, "chat with"}, step{bob, "chat with"}); err != nil {
				return err
			}
			alice.Type("Hello again, no fingerprints this time.")
			if err := expectAll(ctx, step{bob, "alice@example.net> Hello again"}); err != nil {
				return err
			}
			alice.Type("/quit")
			return expectAll(ctx, step{bob, "left the chat"})
		},
	}, {
		title:  "3. Bob has a new key (a new laptop): Alice is warned and refuses",
		before: func() error { return os.Remove(filepath.Join(dir, "bob@example.org", "cert.pem")) },
		play: func(ctx context.Context, alice, bob *cli.Term) error {
			return expectAll(ctx, step{alice, "WARNING"}, step{alice, "refused the changed key"}, step{bob, "refused our key"})
		},
		aliceCode: exitTrust, bobCode: exitTrust,
	}, {
		title:  "4. Bob read his new key to Alice on the phone: she accepts exactly that key with the command the warning named",
		before: func() error { return acceptKey(out, dir, "bob@example.org") },
		play: func(ctx context.Context, alice, bob *cli.Term) error {
			if err := expectAll(ctx, step{alice, "is the one pinned"}, step{bob, "chat with"}); err != nil {
				return err
			}
			bob.Type("New laptop, same Bob.")
			if err := expectAll(ctx, step{alice, "bob@example.org> New laptop"}); err != nil {
				return err
			}
			bob.Type("/quit")
			return expectAll(ctx, step{alice, "left the chat"})
		},
	}}
	for _, a := range acts {
		fmt.Fprintf(out, "\n== %s ==\n", a.title)
		if a.before != nil {
			if err := a.before(); err != nil {
				fmt.Fprintln(stderr, "xtls-chat: demo:", err)
				return exitOther
			}
		}
		ac, bc, err := s.scene(ctx, a.aliceFlags, a.bobFlags, a.play)
		if err == nil && (ac != a.aliceCode || bc != a.bobCode) {
			err = fmt.Errorf("exit statuses: alice %d, bob %d; want %d and %d", ac, bc, a.aliceCode, a.bobCode)
		}
		if err != nil {
			fmt.Fprintln(stderr, "xtls-chat: demo failed:", err)
			return exitOther
		}
		fmt.Fprintf(out, "(exit status: alice %d, bob %d)\n", ac, bc)
	}
	return exitOK
}

// loopback runs Alice listening and Bob dialing her on an in-memory
// network, their input and output the named pipes in dir, opened in the
// order alice.in, alice.out, bob.in, bob.out. Each program's standard
// error goes to its .out pipe too, as on a terminal.
func loopback(ctx context.Context, dir string, stderr io.Writer) int {
	network := xtlstest.NewNetwork()
	defer network.Close()
	s := &stage{connect: cli.NetworkConnect(network), dir: filepath.Join(dir, "state")}
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		fmt.Fprintln(stderr, "xtls-chat:", err)
		return exitOther
	}
	var files []*os.File
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	open := func(name string, flag int) (*os.File, error) {
		f, err := os.OpenFile(filepath.Join(dir, name), flag, 0)
		if err == nil {
			files = append(files, f)
		}
		return f, err
	}
	var pipes [4]*os.File
	for i, p := range []struct {
		name string
		flag int
	}{{"alice.in", os.O_RDONLY}, {"alice.out", os.O_WRONLY}, {"bob.in", os.O_RDONLY}, {"bob.out", os.O_WRONLY}} {
		f, err := open(p.name, p.flag)
		if err != nil {
			fmt.Fprintln(stderr, "xtls-chat: -loopback:", err)
			return exitOther
		}
		pipes[i] = f
	}

	ready, aliceDone := make(chan struct{}), make(chan struct{})
	aliceOut := &watchWriter{w: cli.SyncWriter(pipes[1]), substr: listening, seen: ready}
	bobOut := cli.SyncWriter(pipes[3])
	var aliceCode, bobCode int
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(aliceDone)
		aliceCode = runWith(ctx, s.connect, []string{"-jid", aliceAddr, "-dir", s.dir, "listen"}, pipes[0], aliceOut, aliceOut)
		pipes[1].Close() // the script sees the end of Alice's output
	}()
	select {
	case <-ready:
		bobCode = runWith(ctx, s.connect, []string{"-jid", bobAddr, "-dir", s.dir, "dial", aliceAddr}, pipes[2], bobOut, bobOut)
	case <-aliceDone:
		bobCode = exitOther // Alice never listened
	case <-ctx.Done():
		bobCode = exitOther
	}
	pipes[3].Close()
	wg.Wait()
	if aliceCode != exitOK || bobCode != exitOK {
		fmt.Fprintf(stderr, "xtls-chat: -loopback: alice exited with status %d, bob with %d\n", aliceCode, bobCode)
		return max(aliceCode, bobCode)
	}
	return exitOK
}

// watchWriter passes writes to w and closes seen once a write contains
// substr.
type watchWriter struct {
	w      io.Writer
	substr string
	once   sync.Once
	seen   chan struct{}
}

// Write writes p to w.
func (ww *watchWriter) Write(p []byte) (int, error) {
	n, err := ww.w.Write(p)
	if strings.Contains(string(p), ww.substr) {
		ww.once.Do(func() { close(ww.seen) })
	}
	return n, err
}

// acceptKey runs, as Alice would, the xtls-pins command that accepts the
// key of peer (read from its certificate, as its user reads it out).
func acceptKey(out io.Writer, dir, peer string) error {
	c, err := xtls.LoadCertificatePEM(filepath.Join(dir, peer, "cert.pem"))
	if err != nil {
		return err
	}
	o := cli.Options{Dir: dir, JID: aliceAddr}
	cmd := cli.PinsCommand(&o, "accept", peer, xtls.SPKIFingerprint(c.Leaf).String())
	fmt.Fprintf(out, "alice$ %s\n", cmd)
	args := []string{"-dir", dir, "-jid", aliceAddr, "accept", peer, xtls.SPKIFingerprint(c.Leaf).String()}
	if code := cli.RunPins(args, out, out); code != cli.ExitOK {
		return fmt.Errorf("xtls-pins accept: exit %d", code)
	}
	return nil
}
