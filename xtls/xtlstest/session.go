package xtlstest

import (
	"container/heap"
	"sync"
	"time"

	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stream"
)

// session is the network's side of one client's connection. Two goroutines
// serve it:
//
//   - the read loop (readLoop) reads what the client sends, stanza by stanza,
//     and routes each one into the queue of its recipient. It blocks only on
//     reading the client and on the Bandwidth shaper's timer, never on
//     another session, so no cycle of blocked goroutines can form. The fields
//     marked "read loop" are owned by it.
//   - the write loop (writeLoop) takes the stanzas of the session's queue in
//     the order of their delivery time and writes them to the client. The
//     network's side of the pipe is unbounded, so it never blocks on a slow
//     client; it sleeps only until the next delivery time.
type session struct {
	n        *Network
	addr     jid.JID
	key      string // addr.String()
	fromAttr []byte // " from='addr'", inserted into stanzas without 'from'
	fromVal  []byte // "'addr'", replaces the value of a 'from' attribute
	spoofing bool
	conn     *pipeConn // the network's end

	q outq

	killOnce   sync.Once
	killc      chan struct{} // closed when the session is ending
	killErr    *stream.Error // the stream error to send, if any; set before killc is closed
	writerDone chan struct{}

	links      map[string]*link // read loop: by recipient's full JID
	shapeTimer *time.Timer      // read loop
	burstStart time.Time        // read loop: Bandwidth shaper state
	burstBytes int64
	burstRate  int

	avail []byte // under n.presMu: the last broadcast presence if available
}

func newSession(n *Network, addr jid.JID, sc sessionConfig, conn *pipeConn) *session {
	key := addr.String()
	val := "'" + attrEscape(key) + "'"
	return &session{
		n:          n,
		addr:       addr,
		key:        key,
		fromAttr:   []byte(" from=" + val),
		fromVal:    []byte(val),
		spoofing:   sc.spoofing,
		conn:       conn,
		q:          outq{wake: make(chan struct{}, 1)},
		killc:      make(chan struct{}),
		writerDone: make(chan struct{}),
		links:      make(map[string]*link),
	}
}

// kill ends the session: it becomes unreachable at once, its write loop
// sends the stream error e (if not nil) and closes the stream, and its read
// loop waits at most CloseTimeout for the client to close its stream.
func (s *session) kill(e *stream.Error) {
	s.killOnce.Do(func() {
		s.killErr = e
		s.n.remove(s)
		s.unavailable()
		close(s.killc)
		s.conn.SetReadDeadline(time.Now().Add(CloseTimeout))
	})
}

func (s *session) killed() bool {
	select {
	case <-s.killc:
		return true
	default:
		return false
	}
}

// writeLoop writes the stream header, then the queued stanzas when they are
// due, until the session is killed.
func (s *session) writeLoop(header []byte) {
	defer s.n.wg.Done()
	defer close(s.writerDone)
	broken := false
	write := func(b []byte) bool {
		if !broken {
			_, err := s.conn.Write(b)
			broken = err != nil
		}
		return !broken
	}
	write(header)

	var timer *time.Timer
	var batch []*item
	for {
		var wait time.Duration
		batch, wait = s.q.due(time.Now(), batch[:0])
		for i, it := range batch {
			if write(it.b) {
				s.n.stats.delivered.Add(1)
				s.n.stats.deliveredBytes.Add(int64(len(it.b)))
			}
			batch[i] = nil
		}
		if len(batch) > 0 {
			continue
		}
		var tc <-chan time.Time
		if wait > 0 {
			if timer == nil {
				timer = time.NewTimer(wait)
			} else {
				timer.Reset(wait)
			}
			tc = timer.C
		}
		select {
		case <-s.q.wake:
		case <-tc:
			continue
		case <-s.killc:
			if timer != nil {
				timer.Stop()
			}
			for _, it := range s.q.close() {
				s.n.undeliverable(it)
			}
			if s.killErr != nil {
				write(streamError(*s.killErr))
			}
			write([]byte(streamEnd))
			return
		}
		if timer != nil {
			timer.Stop()
		}
	}
}

// item is a stanza waiting in a queue.
type item struct {
	at  time.Time // delivery time
	seq uint64    // order among items with the same delivery time
	idx int       // index in the heap, -1 once out of it
	b   []byte

	// What is needed to bounce an IQ request that cannot be delivered.
	request bool
	sender  *session
	id, to  string
}

// outq is the queue of stanzas bound to one session, ordered by delivery
// time, then by the order in which they were queued. Since the delivery
// times of a link never decrease, a link stays in order.
type outq struct {
	mu     sync.Mutex
	h      itemHeap
	seq    uint64
	closed bool
	wake   chan struct{} // capacity 1: a new item became the head
}

// push queues it, unless the queue is closed.
func (q *outq) push(it *item) bool {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return false
	}
	it.seq = q.seq
	q.seq++
	heap.Push(&q.h, it)
	head := q.h[0] == it
	q.mu.Unlock()
	if head {
		signal(q.wake)
	}
	return true
}

// moveAfter reschedules held, if it is still queued, right after next.
func (q *outq) moveAfter(held, next *item) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if held.idx < 0 || q.closed {
		return false
	}
	held.at = next.at
	held.seq = q.seq
	q.seq++
	heap.Fix(&q.h, held.idx)
	if q.h[0] == held {
		signal(q.wake)
	}
	return true
}

// due appends the items due at now to batch and returns it, with the time
// until the next item is due (0 if none).
func (q *outq) due(now time.Time, batch []*item) ([]*item, time.Duration) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.h) > 0 && !q.h[0].at.After(now) {
		batch = append(batch, heap.Pop(&q.h).(*item))
	}
	if len(q.h) > 0 {
		return batch, q.h[0].at.Sub(now)
	}
	return batch, 0
}

// close closes the queue and returns what it held.
func (q *outq) close() []*item {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed = true
	items := q.h
	for _, it := range items {
		it.idx = -1
	}
	q.h = nil
	return items
}

type itemHeap []*item

func (h itemHeap) Len() int { return len(h) }
func (h itemHeap) Less(i, j int) bool {
	if h[i].at.Equal(h[j].at) {
		return h[i].seq < h[j].seq
	}
	return h[i].at.Before(h[j].at)
}
func (h itemHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].idx = i
	h[j].idx = j
}
func (h *itemHeap) Push(x any) {
	it := x.(*item)
	it.idx = len(*h)
	*h = append(*h, it)
}
func (h *itemHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	it.idx = -1
	return it
}
