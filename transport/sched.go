package transport

import "time"

// sched decides which tunnel of a path sends next, for people rather than
// only for throughput: control elements (start, credit, close, abort, and
// elements sent again) of any tunnel go ahead of data; among the tunnels
// with data to send, one that has just become active (a chat message, an
// interactive request: nothing queued before) goes ahead of tunnels that
// have been sending for a while, for one quantum of data, as a new flow does
// in FQ-CoDel; tunnels that stay busy take turns, one quantum each (deficit
// round robin), so that none starves. It is owned by the loop.
type sched struct {
	ctrl  connList // tunnels with control elements to send
	fresh connList // tunnels whose data became ready while they were idle
	busy  connList // tunnels that keep data ready
}

// schedState is a tunnel's place in its path's scheduler.
type schedState struct {
	inCtrl, inFresh, inBusy bool
	deficit                 int // payload bytes the tunnel may still send this turn
	ctrlNext, dataNext      *Conn
}

// connList is an intrusive FIFO of tunnels.
type connList struct {
	head, tail *Conn
	ctrl       bool // the list links through ctrlNext, not dataNext
}

func (l *connList) next(c *Conn) **Conn {
	if l.ctrl {
		return &c.sched.ctrlNext
	}
	return &c.sched.dataNext
}

func (l *connList) push(c *Conn) {
	*l.next(c) = nil
	if l.tail == nil {
		l.head = c
	} else {
		*l.next(l.tail) = c
	}
	l.tail = c
}

func (l *connList) pop() *Conn {
	c := l.head
	if c == nil {
		return nil
	}
	l.head = *l.next(c)
	if l.head == nil {
		l.tail = nil
	}
	*l.next(c) = nil
	return c
}

func newSched() sched { return sched{ctrl: connList{ctrl: true}} }

// touch puts c where its pending work says, after anything changed it.
func (s *sched) touch(c *Conn, now time.Time, quantum int) {
	ctrl, data := c.t.pending(now)
	st := &c.sched
	if ctrl && !st.inCtrl {
		st.inCtrl = true
		s.ctrl.push(c)
	}
	if data > 0 && !st.inFresh && !st.inBusy {
		st.inFresh = true
		st.deficit = quantum
		s.fresh.push(c)
	}
}
