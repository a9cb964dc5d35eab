package sms

import "time"

// outQueue is the sender's in-memory view of the queued messages: one FIFO
// per recipient, served round-robin so one long conversation cannot starve
// the others. Owned by the sender goroutine.
type outQueue struct {
	byTo    map[string][]*outMsg
	order   []string // recipients with queued messages, in turn order
	turn    int      // index in order of the next recipient to serve
	current *outMsg  // message with parts sent and parts left: served first
	ids     map[string]bool
}

func newOutQueue() *outQueue {
	return &outQueue{byTo: map[string][]*outMsg{}, ids: map[string]bool{}}
}

func (q *outQueue) add(m *outMsg) {
	if q.ids[m.id] {
		return
	}
	q.ids[m.id] = true
	if len(q.byTo[m.to]) == 0 {
		q.order = append(q.order, m.to)
	}
	q.byTo[m.to] = append(q.byTo[m.to], m)
}

func (q *outQueue) len() int { return len(q.ids) }

// next returns the message to send now, or nil and how long to wait for
// the earliest retry (0: nothing queued).
func (q *outQueue) next(now time.Time) (*outMsg, time.Duration) {
	if c := q.current; c != nil && !c.nextAttempt.After(now) {
		return c, 0
	}
	var wait time.Duration
	for i := range q.order {
		k := (q.turn + i) % len(q.order)
		head := q.byTo[q.order[k]][0]
		if !head.nextAttempt.After(now) {
			q.turn = k + 1
			return head, 0
		}
		if d := head.nextAttempt.Sub(now); wait == 0 || d < wait {
			wait = d
		}
	}
	return nil, wait
}

// done removes a finished message (it is its recipient's head).
func (q *outQueue) done(m *outMsg) {
	if q.current == m {
		q.current = nil
	}
	delete(q.ids, m.id)
	list := q.byTo[m.to]
	for i, x := range list {
		if x == m {
			list = append(list[:i:i], list[i+1:]...)
			break
		}
	}
	if len(list) > 0 {
		q.byTo[m.to] = list
		return
	}
	delete(q.byTo, m.to)
	for i, r := range q.order {
		if r == m.to {
			q.order = append(q.order[:i:i], q.order[i+1:]...)
			if q.turn > i {
				q.turn--
			}
			break
		}
	}
	if len(q.order) > 0 {
		q.turn %= len(q.order)
	} else {
		q.turn = 0
	}
}

// all returns every queued message.
func (q *outQueue) all() []*outMsg {
	var out []*outMsg
	for _, r := range q.order {
		out = append(out, q.byTo[r]...)
	}
	return out
}

// pendingParts sums the parts left to send, bounded by limit.
func (q *outQueue) pendingParts(limit int) int {
	n := 0
	for _, r := range q.order {
		for _, m := range q.byTo[r] {
			n += m.parts
			if n >= limit {
				return n
			}
		}
	}
	return n
}
