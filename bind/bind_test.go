package bind_test

import (
	"encoding/xml"
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"mellium.im/xmpp"
	"mellium.im/xmpp/stanza"

	"github.com/xmppxtls/xtls/bind"
)

var bindTests = [...]struct {
	resource string
	opts     []bind.Option
	ans      answer
	want     string   // the bound JID, if it succeeds
	cond     string   // the condition of the *bind.Error's Err, if refused
	other    string   // the JID of the *bind.Error's Bound, if overridden
	errText  string   // a part of any other error
	requests []string // what the server was asked
}{
	0: {resource: "balcony", ans: bound("x"), want: "juliet@example.com/balcony", requests: []string{"balcony"}},
	1: {resource: "", ans: bound("rnd123"), want: "juliet@example.com/rnd123", requests: []string{"<none>"}},
	2: {
		resource: "balcony",
		ans:      func(_ int, _ *string, id string) string { return refusal(id, "conflict") },
		cond:     "conflict", requests: []string{"balcony"},
	},
	3: {
		resource: "balcony",
		ans:      func(_ int, _ *string, id string) string { return refusal(id, "not-allowed") },
		cond:     "not-allowed", requests: []string{"balcony"},
	},
	4: {
		resource: "balcony", opts: []bind.Option{bind.Fallback()},
		ans: func(n int, res *string, id string) string {
			if n == 0 {
				return refusal(id, "conflict")
			}
			return bound("rnd123")(n, res, id)
		},
		want: "juliet@example.com/rnd123", requests: []string{"balcony", "<none>"},
	},
	5: {
		resource: "balcony", opts: []bind.Option{bind.Fallback()},
		ans: func(n int, res *string, id string) string {
			if n == 0 {
				return refusal(id, "not-allowed")
			}
			return bound("rnd123")(n, res, id)
		},
		want: "juliet@example.com/rnd123", requests: []string{"balcony", "<none>"},
	},
	6: {
		// Fallback does not hide a refusal of the second request.
		resource: "balcony", opts: []bind.Option{bind.Fallback()},
		ans:  func(_ int, _ *string, id string) string { return refusal(id, "not-allowed") },
		cond: "not-allowed", requests: []string{"balcony", "<none>"},
	},
	7: {
		// Other conditions are not retried.
		resource: "balcony", opts: []bind.Option{bind.Fallback()},
		ans:  func(_ int, _ *string, id string) string { return refusal(id, "resource-constraint") },
		cond: "resource-constraint", requests: []string{"balcony"},
	},
	8: {
		// The server overrides the request (RFC 6120 §7.7.2.2, option 1).
		resource: "balcony",
		ans:      func(_ int, _ *string, id string) string { return result(id, "juliet@example.com/balcony-2") },
		other:    "juliet@example.com/balcony-2", requests: []string{"balcony"},
	},
	9: {
		resource: "balcony", opts: []bind.Option{bind.Fallback()},
		ans:  func(_ int, _ *string, id string) string { return result(id, "juliet@example.com/balcony-2") },
		want: "juliet@example.com/balcony-2", requests: []string{"balcony"},
	},
	10: {
		resource: "balcony",
		ans:      func(_ int, _ *string, id string) string { return result(id, "juliet@example.com") },
		errText:  "not a full JID", requests: []string{"balcony"},
	},
	11: {
		resource: "balcony",
		ans:      func(int, *string, string) string { return result("other", "juliet@example.com/balcony") },
		errText:  "id", requests: []string{"balcony"},
	},
	12: {
		resource: "balcony",
		ans:      func(_ int, _ *string, id string) string { return `<message id='` + id + `'/>` },
		errText:  "expected the answer", requests: []string{"balcony"},
	},
	13: {
		// Prosody's kick_new: the condition is named beside the text.
		resource: "balcony",
		ans: func(_ int, _ *string, id string) string {
			return `<iq type='error' id='` + id + `'><error type='cancel'><conflict xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>` +
				`<text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>Resource already exists</text></error></iq>`
		},
		cond: "conflict", errText: "Resource already exists", requests: []string{"balcony"},
	},
	14: {
		// Resourceprep fails before anything is sent.
		resource: strings.Repeat("r", 1024),
		ans:      bound("x"),
		errText:  "invalid resourcepart",
	},
}

func TestResource(t *testing.T) {
	for i, tc := range bindTests {
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			srv := newServer(t, tc.ans)
			s, err := srv.login(t, "juliet@example.com", bind.Resource(tc.resource, tc.opts...))
			switch {
			case tc.want != "":
				require.NoError(t, err)
				require.Equal(t, tc.want, s.LocalAddr().String())
			case tc.cond != "":
				var be *bind.Error
				require.ErrorAs(t, err, &be)
				require.Equal(t, tc.resource, be.Requested)
				require.ErrorIs(t, err, stanza.Error{Condition: stanza.Condition(tc.cond)})
				require.Contains(t, err.Error(), tc.cond)
				require.Contains(t, err.Error(), tc.errText)
			case tc.other != "":
				var be *bind.Error
				require.ErrorAs(t, err, &be)
				require.Equal(t, tc.other, be.Bound.String())
				require.NoError(t, be.Err)
				require.Contains(t, err.Error(), tc.other)
			default:
				require.ErrorContains(t, err, tc.errText)
				var be *bind.Error
				require.False(t, errors.As(err, &be), "%v", err)
			}
			require.Equal(t, tc.requests, srv.Requests())
		})
	}
}

// The resourcepart of the origin JID is not requested: Resource binds what
// it is given.
func TestResourceIgnoresOrigin(t *testing.T) {
	srv := newServer(t, bound("rnd123"))
	s, err := srv.login(t, "juliet@example.com/balcony", bind.Resource("chamber"))
	require.NoError(t, err)
	require.Equal(t, "juliet@example.com/chamber", s.LocalAddr().String())
	require.Equal(t, []string{"chamber"}, srv.Requests())
}

// Regression test for the bug this package works around: mellium v0.23.0's
// BindResource sends an empty <resource/> whatever the origin JID's
// resourcepart, so the server assigns one. If this test fails, mellium has
// fixed the bug and BindResource can be used again.
func TestMelliumBindResourceSendsNoResource(t *testing.T) {
	srv := newServer(t, bound("rnd123"))
	s, err := srv.login(t, "juliet@example.com/balcony", xmpp.BindResource())
	require.NoError(t, err)
	require.Equal(t, []string{""}, srv.Requests())
	require.Equal(t, "juliet@example.com/rnd123", s.LocalAddr().String())
}

// Resource refuses to be listed by a server.
func TestResourceIsForClients(t *testing.T) {
	f := bind.Resource("balcony")
	_, err := f.List(t.Context(), nil, xml.StartElement{Name: f.Name})
	require.ErrorContains(t, err, "client")
}
