//go:build unix

package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
)

// asMain is the environment variable that makes the test binary run
// xtls-chat's main instead of the tests, so that chat_test.sh can run it
// (built with the race detector when the tests are).
const asMain = "XTLS_CHAT_TEST_AS_MAIN"

// TestMain runs main when chat_test.sh runs the test binary as xtls-chat.
func TestMain(m *testing.M) {
	if os.Getenv(asMain) == "1" {
		main()
	}
	os.Exit(m.Run())
}

// chat_test.sh drives two instances through named pipes: first contact
// (each sees the other's real key, both say yes, lines cross, the keys
// are pinned), then a second chat that asks nothing.
func TestScript(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Fatal("the chat script needs bash:", err)
	}
	if _, err := exec.LookPath("mkfifo"); err != nil {
		t.Fatal("the chat script needs mkfifo:", err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bash, "chat_test.sh", self)
	cmd.Env = append(os.Environ(), asMain+"=1", "XTLS_CHAT_TIMEOUT=15")
	// On a timeout, end the script and the xtls-chat it started.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("chat_test.sh: %v\n%s", err, out.String())
	}
	for _, want := range []string{
		"alice | bob@example.org> hello from the script",
		"bob   | alice@example.net> hello back, <b>&amp; no markup</b>",
		"bob   | *** alice@example.net's key is the one pinned",
		"PASS",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("no %q in the script's output:\n%s", want, out.String())
		}
	}
}
