package harness

import (
	"context"
	"errors"
	"fmt"
	"slices"
)

// StartFederated starts a Prosody server and an ejabberd server that
// federate with each other (server-to-server over STARTTLS, authenticated by
// dialback), by default a.localhost (Prosody) and b.localhost (ejabberd).
// It chooses every port first, since each server must know the other's s2s
// port before it starts, then starts both at once. Remotes given in the
// options are kept; the other server is added to them. On error nothing is
// left running.
//
// The first stanza between the domains sets the s2s streams up (0.2-0.4 s).
func StartFederated(ctx context.Context, p ProsodyOptions, e EjabberdOptions) (prosody, ejabberd *Server, err error) {
	if p.Domain == "" {
		p.Domain = "a.localhost"
	}
	if e.Domain == "" {
		e.Domain = "b.localhost"
	}
	if p.Domain == e.Domain {
		return nil, nil, fmt.Errorf("harness: both servers serve %s", p.Domain)
	}
	if err := fillPorts(&p.C2SPort, &p.S2SPort, &e.C2SPort, &e.S2SPort, &e.DistPort); err != nil {
		return nil, nil, err
	}
	p.Remotes = append(slices.Clip(p.Remotes), Remote{Domain: e.Domain, S2SPort: e.S2SPort})
	e.Remotes = append(slices.Clip(e.Remotes), Remote{Domain: p.Domain, S2SPort: p.S2SPort})

	ejabberdDone := make(chan error, 1)
	go func() {
		var err error
		ejabberd, err = StartEjabberd(ctx, e)
		ejabberdDone <- err
	}()
	prosody, perr := StartProsody(ctx, p)
	eerr := <-ejabberdDone
	if err := errors.Join(perr, eerr); err != nil {
		for _, s := range []*Server{prosody, ejabberd} {
			if s != nil {
				s.Close()
			}
		}
		return nil, nil, err
	}
	return prosody, ejabberd, nil
}
