package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/xmppxtls/xtls/examples/internal/cli"
	"github.com/xmppxtls/xtls/xtls/xtlstest"
)

// The two accounts of -demo.
const (
	aliceAddr = "alice@example.net/pair"
	bobAddr   = "bob@example.org/pair"
)

// demoTimeout bounds the whole demo.
const demoTimeout = 60 * time.Second

// scene runs one pairing on network, state in dir: Alice listens, Bob
// dials her and types the code that typed returns, given the one Alice
// shows. It returns both terminals, whose programs have ended.
func scene(ctx context.Context, connect cli.ConnectFunc, dir string, echo io.Writer, typed func(shown string) []string) (alice, bob *cli.Term, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	start := func(t *cli.Term, args ...string) {
		t.Start(func(stdin io.Reader, stdout, stderr io.Writer) int {
			return runWith(ctx, connect, append([]string{"-dir", dir}, args...), stdin, stdout, stderr)
		})
	}
	alice, bob = cli.NewTerm("alice", echo), cli.NewTerm("bob", echo)
	start(alice, "-jid", aliceAddr, "listen")
	defer alice.Wait()
	line, err := alice.Expect(ctx, "pairing code:")
	if err == nil {
		_, err = alice.Expect(ctx, "waiting")
	}
	if err != nil {
		cancel()
		return alice, bob, err
	}
	start(bob, "-jid", bobAddr, "dial", aliceAddr)
	defer bob.Wait()
	if _, err := bob.Expect(ctx, "type the pairing code"); err != nil {
		cancel()
		return alice, bob, err
	}
	for i, t := range typed(strings.TrimSpace(strings.SplitN(line, ":", 2)[1])) {
		if i > 0 {
			if _, err := bob.Expect(ctx, "type the code again"); err != nil {
				cancel()
				return alice, bob, err
			}
		}
		bob.Type(t)
	}
	return alice, bob, nil
}

// demo pairs Alice and Bob on an in-memory network, once with the right
// code, once with a wrong one and then the right one, once with three
// wrong ones, and prints what both see.
func demo(ctx context.Context, stdout, stderr io.Writer) int {
	dir, err := os.MkdirTemp("", "xtls-pair-demo-")
	if err != nil {
		fmt.Fprintln(stderr, "xtls-pair:", err)
		return exitOther
	}
	defer os.RemoveAll(dir)
	network := xtlstest.NewNetwork()
	defer network.Close()
	connect := cli.NetworkConnect(network)
	out := cli.SyncWriter(stdout)
	ctx, cancel := context.WithTimeout(ctx, demoTimeout)
	defer cancel()

	fmt.Fprintln(out, "xtls-pair demo: Alice and Bob, on an in-memory XMPP network, pin each other's keys")
	fmt.Fprintln(out, "with a code that Alice's side shows and Bob types. \"alice |\" is what Alice's")
	fmt.Fprintln(out, "terminal shows, \"bob <\" what Bob types.")
	acts := []struct {
		title string
		typed func(shown string) []string
		want  int
	}{
		{"1. Bob types the code Alice reads to him", func(shown string) []string { return []string{shown} }, exitOK},
		{"2. From scratch (new keys, nothing pinned): Bob mistypes the last digit, is asked again, and gets it right",
			func(shown string) []string { return []string{wrongDigit(shown), shown} }, exitOK},
		{"3. From scratch: Bob gets it wrong three times, and the code is used up",
			func(shown string) []string { w := wrongDigit(shown); return []string{w, w, w} }, exitTrust},
	}
	for i, a := range acts {
		fmt.Fprintf(out, "\n== %s ==\n", a.title)
		alice, bob, err := scene(ctx, connect, filepath.Join(dir, fmt.Sprint(i)), out, a.typed)
		if err == nil {
			if ac, bc := alice.Wait(), bob.Wait(); ac != a.want || bc != a.want {
				err = fmt.Errorf("exit statuses: alice %d, bob %d; want %d", ac, bc, a.want)
			}
		}
		if err != nil {
			fmt.Fprintln(stderr, "xtls-pair: demo failed:", err)
			return exitOther
		}
		fmt.Fprintf(out, "(exit status: alice %d, bob %d)\n", a.want, a.want)
	}
	return exitOK
}

// wrongDigit returns code with its last digit changed.
func wrongDigit(code string) string {
	b := []byte(code)
	last := len(b) - 1
	b[last] = '0' + (b[last]-'0'+1)%10
	return string(b)
}
