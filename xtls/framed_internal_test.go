package xtls

import (
	"encoding/binary"
	"io"
	"net"
	"os"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"
)

// pipePair is tlsConns over net.Pipe, for a synctest bubble: the test's
// end stops r's demultiplexer and closes the pipe (not the TLS conns, whose
// close_notify nobody might read), which ends every goroutine.
func pipePair(t *testing.T) (w, r *Conn) {
	t.Helper()
	cc, sc := net.Pipe()
	w, r = tlsConns(t, cc, sc, true)
	t.Cleanup(func() {
		r.demux.stop(net.ErrClosed)
		cc.Close()
		sc.Close()
	})
	return w, r
}

// pattern is n bytes that differ from one offset to the next.
func pattern(off, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte((off + i) % 251)
	}
	return b
}

// queued returns the application bytes r's demultiplexer holds and the
// chunks it holds them in.
func queued(r *Conn) (n, chunks int) {
	d := r.demux
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.n, len(d.q)
}

// maxChunks is the most chunks the demultiplexer may hold: recvBufMax of
// bytes, not aligned on chunks, and the one it fills.
const maxChunks = recvBufMax/(3+maxAppRecord) + 3

// Bytes that are read leave no buffer behind: a tunnel that is idle once
// its application has read everything holds no chunk, whatever the size
// of the burst (up to 4 records' worth stayed before).
func TestDemuxIdleHoldsNoChunk(t *testing.T) {
	for i, sizes := range [][]int{
		0: {1},
		1: {100, 5000},
		2: {maxAppRecord, 1, maxAppRecord},
		3: {40000, 3, 70000},
	} {
		synctest.Test(t, func(t *testing.T) {
			w, r := pipePair(t)
			total := 0
			for _, n := range sizes {
				_, err := w.writeApp(pattern(total, n))
				require.NoError(t, err)
				total += n
			}
			synctest.Wait()
			n, chunks := queued(r)
			require.Equal(t, total, n, "case %d", i)
			require.NotZero(t, chunks)
			got := make([]byte, total)
			_, err := io.ReadFull(r, got)
			require.NoError(t, err)
			require.Equal(t, pattern(0, total), got)
			synctest.Wait()
			n, chunks = queued(r)
			require.Zero(t, n)
			require.Zero(t, chunks, "case %d: an idle tunnel holds a chunk", i)
		})
	}
}

// When the application does not read, the demultiplexer holds at most
// recvBufMax bytes and stops reading (the writer waits); a reader that
// then reads in small pieces gets every byte in order, and the buffer
// never holds more than its bound (it grew without one while a reader
// lagged: the bytes it had read stayed in front until it caught up).
func TestDemuxBackPressure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const total = 1 << 20
		w, r := pipePair(t)
		werr := make(chan error, 1)
		go func() {
			_, err := w.writeApp(pattern(0, total))
			werr <- err
		}()
		synctest.Wait()
		n, chunks := queued(r)
		require.LessOrEqual(t, n, recvBufMax)
		require.Greater(t, n, recvBufMax-maxAppRecord)
		require.LessOrEqual(t, chunks, maxChunks)
		select {
		case err := <-werr:
			t.Fatalf("the writer was not held back: %v", err)
		default:
		}
		buf := make([]byte, 1000)
		for off := 0; off < total; {
			k, err := r.Read(buf)
			require.NoError(t, err)
			require.Equal(t, pattern(off, k), buf[:k], "at %d", off)
			off += k
			n, chunks := queued(r)
			require.LessOrEqual(t, n, recvBufMax)
			require.LessOrEqual(t, chunks, maxChunks)
		}
		require.NoError(t, <-werr)
	})
}

// writeRaw writes b as one TLS record, whatever it holds.
func writeRaw(t *testing.T, w *Conn, b ...[]byte) {
	t.Helper()
	for _, p := range b {
		_, err := w.tls.Write(p)
		require.NoError(t, err)
	}
}

// header is a record's header.
func header(typ byte, n int) []byte {
	return binary.BigEndian.AppendUint16([]byte{typ}, uint16(n))
}

// A record may be cut across TLS records anywhere, and several records
// may share one; a record cut short by the end of the stream is not
// delivered, the bytes before it are, then io.ErrUnexpectedEOF, and no
// chunk stays behind.
func TestDemuxRecordBoundaries(t *testing.T) {
	for i, tc := range []struct {
		name   string
		writes func(body []byte) [][]byte
		want   int
		err    error
	}{
		0: {"header and body apart", func(b []byte) [][]byte {
			return [][]byte{header(recApp, len(b)), b}
		}, 10000, io.EOF},
		1: {"body in three", func(b []byte) [][]byte {
			return [][]byte{append(header(recApp, len(b)), b[:10]...), b[10:5000], b[5000:]}
		}, 10000, io.EOF},
		2: {"two records in one", func(b []byte) [][]byte {
			one := append(header(recApp, 4000), b[:4000]...)
			one = append(one, header(0x80, 2)...) // ignored
			one = append(one, 'x', 'y')
			return [][]byte{append(append(one, header(recApp, 6000)...), b[4000:]...)}
		}, 10000, io.EOF},
		3: {"cut in the body", func(b []byte) [][]byte {
			return [][]byte{append(header(recApp, 3000), b[:3000]...), header(recApp, 7000), b[3000:5000]}
		}, 3000, io.ErrUnexpectedEOF},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				w, r := pipePair(t)
				body := pattern(0, 10000)
				go func() {
					for _, p := range tc.writes(body) {
						if _, err := w.tls.Write(p); err != nil {
							return
						}
					}
					w.tls.Close()
				}()
				got, err := io.ReadAll(struct{ io.Reader }{r})
				if tc.err == io.EOF {
					require.NoError(t, err, "case %d", i) // ReadAll takes io.EOF as the end
				} else {
					require.ErrorIs(t, err, tc.err, "case %d", i)
				}
				require.Equal(t, body[:tc.want], got)
				synctest.Wait()
				_, chunks := queued(r)
				require.Zero(t, chunks)
			})
		})
	}
}

// A Read that waits returns at its deadline, to the instant, after any
// change of the deadline while it waits; bytes that come first are
// returned at once; a deadline that has passed does not stop later Reads.
func TestDemuxDeadline(t *testing.T) {
	type step struct {
		at  time.Duration // after the Read began
		set time.Duration // a deadline this long after the Read began, or
		off bool          // none
		app []byte        // or bytes from the peer
	}
	for i, tc := range []struct {
		name  string
		first time.Duration // the deadline set before the Read, 0 for none
		steps []step
		at    time.Duration // when the Read returns
		data  bool          // with bytes, not a timeout
	}{
		0: {"passed", -time.Second, nil, 0, false},
		1: {"in a second", time.Second, nil, time.Second, false},
		2: {"brought forward", 5 * time.Second, []step{{at: 0, set: time.Second}}, time.Second, false},
		3: {"pushed back", time.Second, []step{{at: 500 * time.Millisecond, set: 3 * time.Second}}, 3 * time.Second, false},
		4: {"bytes first", time.Second, []step{{at: 500 * time.Millisecond, app: []byte("hi")}}, 500 * time.Millisecond, true},
		5: {"cleared", time.Second, []step{{at: 0, off: true}, {at: 2 * time.Second, app: []byte("hi")}}, 2 * time.Second, true},
		6: {"set to now", 5 * time.Second, []step{{at: 2 * time.Second, set: 2 * time.Second}}, 2 * time.Second, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				w, r := pipePair(t)
				began := time.Now()
				if tc.first != 0 {
					r.demux.setDeadline(began.Add(tc.first))
				}
				go func() {
					for _, s := range tc.steps {
						time.Sleep(time.Until(began.Add(s.at)))
						switch {
						case s.app != nil:
							if _, err := w.writeApp(s.app); err != nil {
								return
							}
						case s.off:
							r.demux.setDeadline(time.Time{})
						default:
							r.demux.setDeadline(began.Add(s.set))
						}
					}
				}()
				buf := make([]byte, 10)
				k, err := r.Read(buf)
				require.Equal(t, tc.at, time.Since(began), "case %d", i)
				if tc.data {
					require.NoError(t, err)
					require.Equal(t, "hi", string(buf[:k]))
					return
				}
				require.ErrorIs(t, err, os.ErrDeadlineExceeded)
				synctest.Wait()
				// The conn still works once the deadline is gone.
				r.demux.setDeadline(time.Time{})
				go w.writeApp([]byte("later"))
				k, err = r.Read(buf)
				require.NoError(t, err)
				require.Equal(t, "later", string(buf[:k]))
			})
		})
	}
}

// Close ends every Read that waits, gives back the chunks and lets a
// demultiplexer that waited for room go on (dropping what comes), so the
// peer is not held back by a closed Conn.
func TestDemuxClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w, r := pipePair(t)
		errs := make(chan error, 2)
		for range 2 {
			go func() {
				_, err := r.Read(make([]byte, 10))
				errs <- err
			}()
		}
		synctest.Wait()
		r.demux.stop(net.ErrClosed)
		require.ErrorIs(t, <-errs, net.ErrClosed)
		require.ErrorIs(t, <-errs, net.ErrClosed)

		w, r = pipePair(t)
		werr := make(chan error, 1)
		go func() {
			_, err := w.writeApp(pattern(0, 2*recvBufMax))
			werr <- err
		}()
		synctest.Wait()
		n, _ := queued(r)
		require.Greater(t, n, recvBufMax-maxAppRecord)
		r.demux.stop(net.ErrClosed)
		require.NoError(t, <-werr)
		synctest.Wait()
		n, chunks := queued(r)
		require.Zero(t, n)
		require.Zero(t, chunks)
		_, err := r.Read(make([]byte, 10))
		require.ErrorIs(t, err, net.ErrClosed)
	})
}

// Two Reads at once share the bytes between them, each byte once.
func TestDemuxConcurrentReads(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const total = 300000
		w, r := pipePair(t)
		got := make(chan int, 2)
		for range 2 {
			go func() {
				n := 0
				buf := make([]byte, 777)
				for {
					k, err := r.Read(buf)
					n += k
					if err != nil {
						got <- n
						return
					}
				}
			}()
		}
		_, err := w.writeApp(pattern(0, total))
		require.NoError(t, err)
		require.NoError(t, w.tls.Close())
		require.Equal(t, total, <-got+<-got)
	})
}

// A control record is handled when it comes, while the application's
// bytes before it wait unread (within the bound), and those bytes stay
// whole.
func TestDemuxControlWhileNotRead(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w, r := pipePair(t)
		nonce := [16]byte{1, 2, 3}
		answer := make(chan []byte, 1)
		r.paths.mu.Lock()
		r.paths.waiting = map[[16]byte]chan []byte{nonce: answer}
		r.paths.mu.Unlock()
		const unread = 100000
		_, err := w.writeApp(pattern(0, unread))
		require.NoError(t, err)
		require.NoError(t, w.writeRecord(recAccept, append(nonce[:], "proxy"...)))
		select {
		case got := <-answer:
			require.Equal(t, append([]byte{recAccept}, "proxy"...), got)
		case <-time.After(time.Minute):
			t.Fatal("the ACCEPT waits behind unread bytes")
		}
		got := make([]byte, unread)
		_, err = io.ReadFull(r, got)
		require.NoError(t, err)
		require.Equal(t, pattern(0, unread), got)
	})
}
