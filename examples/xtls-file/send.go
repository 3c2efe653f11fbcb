package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"time"

	"github.com/xmppxtls/xtls/examples/internal/cli"
	"github.com/xmppxtls/xtls/xtls"
)

// source is an entry of the manifest and where it is on our disk.
type source struct {
	Entry
	local string
}

// manifest walks paths: each names a file or a folder, sent under its own
// name. Links and special files are skipped, with a word on warn.
func manifest(paths []string, warn func(string, ...any)) ([]source, error) {
	var out []source
	tops := make(map[string]bool)
	for _, p := range paths {
		abs, err := filepath.Abs(p)
		if err != nil {
			return nil, err
		}
		top := filepath.Base(abs)
		if tops[top] {
			return nil, fmt.Errorf("two paths named %q: send them one at a time", top)
		}
		tops[top] = true
		err = filepath.WalkDir(abs, func(local string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, err := filepath.Rel(abs, local)
			if err != nil {
				return err
			}
			name := path.Join(top, filepath.ToSlash(rel))
			switch t := d.Type(); {
			case t.IsDir():
				out = append(out, source{Entry{Path: name, Dir: true}, local})
			case t.IsRegular():
				fi, err := d.Info()
				if err != nil {
					return err
				}
				out = append(out, source{Entry{Path: name, Size: fi.Size(), Mode: uint32(fi.Mode().Perm())}, local})
			default:
				warn("skipping %s: not a regular file or folder", local)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	if len(out) == 0 {
		return nil, errors.New("nothing to send")
	}
	return out, nil
}

// sender is one run of send.
type sender struct {
	o      *options
	errw   io.Writer
	conn   *xtls.Conn
	fw     *frameWriter
	fr     *frameReader
	files  []source
	sent   int64 // data bytes sent this run
	skip   int64 // bytes the receiver had already
	digest hash.Hash
}

func (s *sender) say(format string, a ...any) {
	if !s.o.Quiet {
		fmt.Fprintf(s.errw, "xtls-file: "+format+"\n", a...)
	}
}

// send is the sending side.
func send(ctx context.Context, o *options, errw io.Writer) error {
	s := &sender{o: o, errw: errw, digest: sha256.New()}
	files, err := manifest(o.paths, func(f string, a ...any) { fmt.Fprintf(errw, "xtls-file: "+f+"\n", a...) })
	if err != nil {
		return &cli.Failure{Code: cli.ExitOther, Err: err}
	}
	s.files = files
	self, _ := o.Self()
	id, err := o.OpenIdentity(self)
	if err != nil {
		return &cli.Failure{Code: cli.ExitUsage, Err: err}
	}
	cfg := &xtls.Config{Certificate: id.Cert, Pins: id.Pins, TrustOnFirstUse: true, Logger: o.Logger(errw), Reattach: cli.NoReattach}
	cfg.Transport = transportConfig
	party, err := cli.Start(ctx, connect, &o.Options, cfg)
	if err != nil {
		return err
	}
	defer party.Close()
	s.say("logged in as %s; calling %s", party.Addr(), o.peer)
	if s.conn, err = cli.Dial(ctx, party.Handler, o.peer, &o.Options); err != nil {
		return err
	}
	st := s.conn.State()
	s.say("connected to %s, %s", trustLine(st), st.VersionName())
	var act activity
	act.touch()
	s.fw = newFrameWriter(s.conn, true, &act)
	s.fr = newFrameReader(s.conn, &act)
	defer keepAlive(s.fw)()

	// ctx unblocks a wait for the receiver, and gives a write in progress
	// abortGrace to finish.
	stop := context.AfterFunc(ctx, func() {
		s.conn.SetReadDeadline(time.Now())
		s.conn.SetWriteDeadline(time.Now().Add(abortGrace))
	})
	err = s.run(ctx)
	if !stop() || ctx.Err() != nil {
		abortConn(s.conn, s.fw, cli.Why(ctx).Error())
		return &cli.Failure{Code: cli.ExitInterrupted, Err: fmt.Errorf("%v: sent %d bytes; run the same command again to resume", cli.Why(ctx), s.sent)}
	}
	if err != nil {
		var pe *ProtocolError
		if errors.As(err, &pe) {
			abortConn(s.conn, s.fw, pe.Error())
		} else {
			s.conn.Close()
		}
		return streamFailure(err, st)
	}
	closeConn(s.conn)
	return nil
}

// run offers, waits for the answer, and sends.
func (s *sender) run(ctx context.Context) error {
	offer := Offer{Version: version, Entries: make([]Entry, len(s.files))}
	for i, f := range s.files {
		offer.Entries[i] = f.Entry
	}
	total := offer.Total()
	if err := s.fw.writeJSON(frameOffer, offer); err != nil {
		return err
	}
	if err := s.fw.flush(); err != nil {
		return err
	}
	s.say("offered %d entries, %s; waiting for %s to accept", len(s.files), cli.Size(total), s.o.peer)
	typ, body, err := s.fr.next()
	if err != nil {
		return err
	}
	var acc Accept
	switch typ {
	case frameDecline:
		return &DeclinedError{Reason: printable(string(body))}
	case frameAccept:
		if err := json.Unmarshal(body, &acc); err != nil {
			return protocolErrorf("accept: %v", err)
		}
	default:
		return protocolErrorf("frame %c where accept was due", typ)
	}
	resume, err := s.resume(acc)
	if err != nil {
		return err
	}
	if s.skip > 0 {
		s.say("resuming: %s of %s already there", cli.Size(s.skip), cli.Size(total))
	}
	var prog *cli.Progress
	if !s.o.Quiet {
		prog = cli.StartProgress(s.errw, "xtls-file: ", total, s.skip)
		defer prog.Stop()
	}
	start := time.Now()
	for i, f := range s.files {
		if f.Dir {
			continue
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err := s.sendFile(ctx, i, f, resume[i], prog); err != nil {
			return err
		}
	}
	sum := s.digest.Sum(nil)
	if err := s.fw.write(frameDone, sum); err != nil {
		return err
	}
	if err := s.fw.flush(); err != nil {
		return err
	}
	ok, err := s.fr.expect(frameOK)
	if err != nil {
		return err
	}
	if !bytes.Equal(ok, sum) {
		return protocolErrorf("the receiver's digest is not ours")
	}
	if prog != nil {
		prog.Stop()
	}
	el := time.Since(start)
	s.say("done: %s verified all %d files (SHA-256); sent %d bytes (%d were already there) in %v, %s%s",
		s.o.peer.Bare(), len(s.files), s.sent, s.skip, el.Round(time.Millisecond), rate(s.sent, el), "; "+cli.PathNote(s.conn))
	return nil
}

// resumed is where a file's data starts, and the hash of what comes
// before.
type resumed struct {
	offset int64
	h      hash.Hash
}

// resume checks what the receiver has against our files.
func (s *sender) resume(acc Accept) (map[int]resumed, error) {
	out := make(map[int]resumed, len(acc.Have))
	for _, hv := range acc.Have {
		if hv.I < 0 || hv.I >= len(s.files) || s.files[hv.I].Dir || hv.N <= 0 || hv.N > s.files[hv.I].Size ||
			len(hv.Hash) != sha256.Size {
			return nil, protocolErrorf("accept: bad have %+v", hv)
		}
		if _, dup := out[hv.I]; dup {
			return nil, protocolErrorf("accept: file %d twice", hv.I)
		}
		f, err := os.Open(s.files[hv.I].local)
		if err != nil {
			return nil, localError(err)
		}
		h := sha256.New()
		_, err = io.CopyN(h, f, hv.N)
		f.Close()
		if err != nil {
			return nil, localError(fmt.Errorf("%s changed: %w", s.files[hv.I].local, err))
		}
		if bytes.Equal(h.Sum(nil), hv.Hash) {
			out[hv.I] = resumed{offset: hv.N, h: h}
			s.skip += hv.N
		} else {
			out[hv.I] = resumed{}
		}
	}
	return out, nil
}

// sendFile sends file i from where the receiver's copy stops.
func (s *sender) sendFile(ctx context.Context, i int, f source, r resumed, prog *cli.Progress) error {
	h := r.h
	if h == nil {
		h = sha256.New()
	}
	if err := s.fw.write(frameFile, fileFrame(i, r.offset)); err != nil {
		return err
	}
	if left := f.Size - r.offset; left > 0 {
		file, err := os.Open(f.local)
		if err != nil {
			return localError(err)
		}
		defer file.Close()
		if _, err := file.Seek(r.offset, io.SeekStart); err != nil {
			return localError(err)
		}
		buf := make([]byte, blockSize)
		for left > 0 {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			n, err := io.ReadFull(file, buf[:min(int64(len(buf)), left)])
			if err != nil {
				return localError(fmt.Errorf("%s changed while sending: %w", f.local, err))
			}
			h.Write(buf[:n])
			if err := s.fw.write(frameData, buf[:n]); err != nil {
				return err
			}
			left -= int64(n)
			s.sent += int64(n)
			if prog != nil {
				prog.Add(int64(n))
			}
		}
	}
	sum := h.Sum(nil)
	s.digest.Write(sum)
	return s.fw.write(frameEnd, endFrame(i, sum))
}

// localError is a failure of our own files.
func localError(err error) error {
	return &cli.Failure{Code: cli.ExitOther, Err: err}
}

// streamFailure gives an error in the transfer its exit status.
func streamFailure(err error, st xtls.State) error {
	var (
		ab *AbortedError
		de *DeclinedError
		pe *ProtocolError
		f  *cli.Failure
	)
	switch {
	case errors.As(err, &f):
		return err
	case errors.As(err, &ab):
		return cli.Fail(cli.ExitPeerAborted, "%s aborted: %s", st.Peer.Bare(), ab.Reason)
	case errors.As(err, &de):
		return cli.Fail(cli.ExitPeer, "%s declined: %s", st.Peer.Bare(), de.Reason)
	case errors.As(err, &pe):
		return &cli.Failure{Code: cli.ExitBroken, Err: err}
	case errors.Is(err, io.EOF):
		return cli.Fail(cli.ExitBroken, "%s closed the connection before the end", st.Peer.Bare())
	}
	return cli.StreamFailure(err, st.Peer)
}

// abortConn tells the peer why we give up, within abortGrace, and ends the
// tunnel; if the words cannot get through, the tunnel is aborted.
func abortConn(conn *xtls.Conn, fw *frameWriter, reason string) {
	conn.SetWriteDeadline(time.Now().Add(abortGrace))
	err := fw.write(frameAbort, []byte(reason))
	if err == nil {
		err = fw.flush()
	}
	if err == nil {
		closed := make(chan error, 1)
		go func() { closed <- conn.Close() }()
		t := time.NewTimer(abortGrace)
		defer t.Stop()
		select {
		case err = <-closed:
			if err == nil {
				cli.AwaitTunnel(conn, abortGrace)
				return
			}
		case <-t.C:
		}
	}
	cli.AbortInterrupted(conn.Tunnel(), reason)
	cli.AwaitTunnel(conn, abortGrace)
}

// closeConn closes conn and waits a moment for the peer's close: closing
// the Handler before would abort the tunnel under the peer.
func closeConn(conn *xtls.Conn) {
	conn.Close()
	cli.AwaitTunnel(conn, closeWait)
}
