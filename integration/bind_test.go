package integration

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/ping"
	"mellium.im/xmpp/stanza"
	"mellium.im/xmpp/stream"

	"github.com/xmppxtls/xtls/bind"
	"github.com/xmppxtls/xtls/integration/harness"
)

// The requested resource is bound on both servers. A second session that
// asks for the same resource gets it as both servers are shipped: the
// first session is ended with the stream error conflict. Configured to
// refuse instead (Prosody's conflict_resolve = "kick_new", ejabberd's
// resource_conflict: closenew), the server answers conflict, which is a
// *bind.Error, or with bind.Fallback a resource the server chose while the
// first session lives on. Configured to rename (Prosody's "random" or
// "increment", ejabberd's setresource), the server binds another resource,
// which is a *bind.Error unless bind.Fallback accepts it.
func TestBindResource(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			noLeaks(t)
			srv := startOwn(t, kind, ownOpts{})
			want := jid.MustParse("alice@" + srv.Domain() + "/demo")

			first := harness.ConnectResourceT(t, srv, "alice", "demo", password("alice"), nil)
			require.Equal(t, want.String(), first.LocalAddr().String())

			// As shipped: the new session wins.
			second := harness.ConnectResourceT(t, srv, "alice", "demo", password("alice"), nil)
			require.Equal(t, want.String(), second.LocalAddr().String())
			select {
			case <-first.Done():
				require.ErrorIs(t, first.Err(), stream.Conflict)
			case <-time.After(30 * time.Second):
				t.Fatal("the first session with the resource was not ended")
			}
			require.NoError(t, ping.Send(ctxT(t), second.Session, second.LocalAddr().Domain()))

			refuse, rename := `conflict_resolve = "kick_new"`, `conflict_resolve = "increment"`
			if kind == "ejabberd" {
				refuse, rename = "resource_conflict: closenew", "resource_conflict: setresource"
			}

			reconfigure(t, srv, refuse)
			first = harness.ConnectResourceT(t, srv, "alice", "demo", password("alice"), nil)
			_, err := srv.ConnectResource(ctxT(t), "alice", "demo", password("alice"))
			var be *bind.Error
			require.ErrorAs(t, err, &be)
			require.Equal(t, "demo", be.Requested)
			require.ErrorIs(t, err, stanza.Error{Condition: stanza.Conflict})
			fallback, err := srv.ConnectResource(ctxT(t), "alice", "demo", password("alice"), bind.Fallback())
			require.NoError(t, err)
			t.Logf("%s refused the resource; the fallback bound %s", kind, fallback.LocalAddr())
			require.Equal(t, want.Bare().String(), fallback.LocalAddr().Bare().String())
			require.NotEqual(t, "demo", fallback.LocalAddr().Resourcepart())
			fallback.Close()
			fallback.Conn().Close()
			require.NoError(t, ping.Send(ctxT(t), first.Session, first.LocalAddr().Domain()), "the first session lives on")

			reconfigure(t, srv, rename)
			first = harness.ConnectResourceT(t, srv, "alice", "demo", password("alice"), nil)
			_, err = srv.ConnectResource(ctxT(t), "alice", "demo", password("alice"))
			require.ErrorAs(t, err, &be)
			require.NoError(t, be.Err)
			t.Logf("%s renamed the resource: %v", kind, err)
			require.Equal(t, want.Bare().String(), be.Bound.Bare().String())
			require.NotEqual(t, "demo", be.Bound.Resourcepart())
			require.NoError(t, ping.Send(ctxT(t), first.Session, first.LocalAddr().Domain()), "the first session lives on")
		})
	}
}

// ctxT bounds one step of a test.
func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// reconfigure restarts srv with line added at the end of its configuration
// file (the harness's prosody.cfg.lua or ejabberd.yml in srv.Dir()), where
// it is global in ejabberd.yml and applies to the VirtualHost in
// Prosody's. Sessions still open are cut by the restart.
func reconfigure(t *testing.T, srv *harness.Server, line string) {
	t.Helper()
	name, comment := "prosody.cfg.lua", "--"
	if srv.Kind() == "ejabberd" {
		name, comment = "ejabberd.yml", "#"
	}
	path := filepath.Join(srv.Dir(), name)
	cfg, err := os.ReadFile(path)
	require.NoError(t, err)
	// The line replaces the one an earlier call added.
	mark := "\n" + comment + " reconfigured by the test\n"
	cfg, _, _ = bytes.Cut(cfg, []byte(mark))
	cfg = append(append(cfg, mark...), line+"\n"...)
	require.NoError(t, os.WriteFile(path, cfg, 0o600))
	require.NoError(t, srv.Stop())
	require.NoError(t, srv.Start(t.Context()), "%s", srv.Log())
}
