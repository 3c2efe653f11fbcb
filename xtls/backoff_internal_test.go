package xtls

import (
	"cmp"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"mellium.im/xmpp/jid"
)

// A step of a failures test: at (from the start), a failure (or a success)
// of peer, and what is reported: "" (nothing), "err" (the failure itself)
// or "backoff N D" (a *BackoffError with N failures, for D). refused is
// whether the peer's starts are refused right after.
type failStep struct {
	at      time.Duration
	peer    string
	success bool
	report  string
	refused bool
}

var failTests = [...][]failStep{
	0: { // three within the window start a back-off; it doubles, capped
		{at: 0, report: "err"},
		{at: time.Second, report: "err"},
		{at: 2 * time.Second, report: "backoff 3 5s", refused: true},
		{at: 3 * time.Second, report: "", refused: true}, // in progress when it began
		{at: 8 * time.Second, report: "backoff 2 10s", refused: true},
		{at: 19 * time.Second, report: "backoff 1 20s", refused: true},
		{at: 40 * time.Second, report: "backoff 1 40s", refused: true},
		{at: 81 * time.Second, report: "backoff 1 1m20s", refused: true},
		{at: 162 * time.Second, report: "backoff 1 2m40s", refused: true},
		{at: 323 * time.Second, report: "backoff 1 5m0s", refused: true},
		{at: 624 * time.Second, report: "backoff 1 5m0s", refused: true},
	},
	1: { // failures further apart than the window do not add up
		{at: 0, report: "err"},
		{at: 20 * time.Second, report: "err"},
		{at: 40 * time.Second, report: "err"},
		{at: 50 * time.Second, report: "err"},
		{at: 55 * time.Second, report: "backoff 3 5s", refused: true},
	},
	2: { // a success forgets everything
		{at: 0, report: "err"},
		{at: 1 * time.Second, report: "err"},
		{at: 2 * time.Second, report: "backoff 3 5s", refused: true},
		{at: 7 * time.Second, success: true},
		{at: 8 * time.Second, report: "err"},
	},
	3: { // so does a quiet period after the back-off
		{at: 0, report: "err"},
		{at: 1 * time.Second, report: "err"},
		{at: 2 * time.Second, report: "backoff 3 5s", refused: true},
		{at: 7*time.Second + backoffQuiet, report: "err"},
	},
	4: { // peers are counted apart; resources of one bare JID together
		{at: 0, peer: "a@x/1", report: "err"},
		{at: 0, peer: "b@x/1", report: "err"},
		{at: 0, peer: "a@x/2", report: "err"},
		{at: 0, peer: "a@x/3", report: "backoff 3 5s", refused: true},
		{at: 0, peer: "b@x/2", report: "err"},
	},
}

func TestFailures(t *testing.T) {
	t0 := time.Unix(1e9, 0)
	for i, steps := range failTests {
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			var f failures
			for j, s := range steps {
				peer := jid.MustParse(cmp.Or(s.peer, "mallory@evil.example/m"))
				now := t0.Add(s.at)
				bare := peer.Bare().String()
				if s.success {
					f.succeeded(bare)
					require.False(t, f.refused(bare, now), "step %d", j)
					continue
				}
				cause := errors.New("cause " + strconv.Itoa(j))
				got := f.failed(peer, now, cause)
				require.Equal(t, s.report, describe(got, cause), "step %d", j)
				require.Equal(t, s.refused, f.refused(bare, now), "step %d", j)
			}
		})
	}
}

func describe(got, cause error) string {
	var be *BackoffError
	switch {
	case got == nil:
		return ""
	case got == cause:
		return "err"
	case errors.As(got, &be) && be.Last == cause:
		return "backoff " + strconv.Itoa(be.Failures) + " " + be.For.String()
	}
	return "unexpected: " + got.Error()
}

// A back-off ends when it says; the records kept are bounded, and the
// record dropped to make room is the one quiet longest, not one in
// back-off.
func TestFailuresBounded(t *testing.T) {
	t0 := time.Unix(1e9, 0)
	var f failures
	backedOff := jid.MustParse("mallory@evil.example/m")
	for i := range backoffThreshold {
		f.failed(backedOff, t0.Add(time.Duration(i)), errors.New("x"))
	}
	require.True(t, f.refused("mallory@evil.example", t0.Add(backoffMin-time.Nanosecond)))
	require.False(t, f.refused("mallory@evil.example", t0.Add(backoffMin+2)))
	for i := range maxFailRecords + 10 {
		f.failed(jid.MustParse("p"+strconv.Itoa(i)+"@x/r"), t0.Add(time.Second), errors.New("x"))
	}
	require.Len(t, f.peers, maxFailRecords)
	require.True(t, f.refused("mallory@evil.example", t0.Add(time.Second)))
}
