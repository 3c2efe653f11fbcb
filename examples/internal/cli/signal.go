package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"mellium.im/xmpp/stanza"

	xstanza "github.com/xmppxtls/xtls/stanza"
)

// Interrupted is the cause of a context that a signal ended.
type Interrupted struct {
	Signal os.Signal
}

// Error implements error.
func (e *Interrupted) Error() string { return fmt.Sprintf("interrupted (%v)", e.Signal) }

// SignalContext returns a context that ends, with an *Interrupted cause,
// when the process gets SIGINT (Ctrl-C), SIGTERM or SIGHUP: the programs
// then abort their tunnels and exit with ExitInterrupted. A second signal
// kills the process as usual. stop releases the signals.
func SignalContext(parent context.Context) (ctx context.Context, stop func()) {
	ctx, cancel := context.WithCancelCause(parent)
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		select {
		case s := <-ch:
			signal.Stop(ch)
			cancel(&Interrupted{Signal: s})
		case <-ctx.Done():
		}
	}()
	return ctx, func() {
		signal.Stop(ch)
		cancel(nil)
	}
}

// Why returns why ctx ended: the signal's *Interrupted, or "interrupted".
func Why(ctx context.Context) error {
	var in *Interrupted
	if errors.As(context.Cause(ctx), &in) {
		return in
	}
	return errors.New("interrupted")
}

// AbortCondition is the condition with which the programs abort a tunnel
// when interrupted; the abort also carries the reason shutdown (see
// AbortInterrupted), which the peer reports in words.
const AbortCondition = stanza.Gone

// AbortInterrupted aborts the tunnel under c because we were interrupted:
// the peer learns that we are shutting down ("the peer aborted the
// tunnel: it is shutting down"), not merely a stanza condition.
func AbortInterrupted(c interface {
	AbortBecause(cond stanza.Condition, why, detail string)
}, detail string) {
	c.AbortBecause(AbortCondition, xstanza.ReasonShutdown, detail)
}
