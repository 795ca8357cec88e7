// Package writequeue hands a store's writes to its one writer goroutine,
// which commits them in groups (group commit), and gives each caller its
// write's answer. The backends differ only in what a group commit does.
package writequeue

import (
	"context"

	"github.com/pkid/pkid/record"
)

// Op is one write: Fn runs inside the group's transaction with the
// backend's W (its writer or its transaction state).
type Op[W any] struct {
	Ctx context.Context
	// Chain: the write appends to the audit log or checks against it (a
	// backend whose groups lock the chain head only when one needs it).
	Chain bool
	Fn    func(ctx context.Context, w W) error
	done  chan error // buffered: the writer never blocks on an abandoned op
}

// Answer gives the op's caller its result; the writer calls it once per op.
func (o *Op[W]) Answer(err error) { o.done <- err }

// Queue is the queue between callers and the writer.
type Queue[W any] struct {
	ops  chan *Op[W]
	quit <-chan struct{} // the store's: closed when Close begins
	done chan struct{}   // closed when the writer has stopped

	// Queued, if set before the first write, is called after each op is
	// queued (tests hold the writer and count what waits).
	Queued func()
}

// New returns a queue of up to size waiting ops whose writer stops, once
// it has drained the queue, after quit is closed.
func New[W any](size int, quit <-chan struct{}) *Queue[W] {
	return &Queue[W]{ops: make(chan *Op[W], size), quit: quit, done: make(chan struct{})}
}

// Done is closed when the writer has stopped.
func (q *Queue[W]) Done() <-chan struct{} { return q.done }

// Submit hands fn to the writer and waits until its group is committed or
// rolled back. Once submitted, the write is waited for even if ctx ends,
// so the caller never misreports a write that became durable.
func (q *Queue[W]) Submit(ctx context.Context, chain bool, fn func(context.Context, W) error) error {
	o, err := q.enqueue(ctx, chain, fn)
	if err != nil {
		return err
	}
	return q.await(o, nil)
}

// SubmitBounded is Submit for callers that must return by ctx's deadline
// even if the writer is stuck (Check). Only writes whose outcome does not
// matter once abandoned may use it.
func (q *Queue[W]) SubmitBounded(ctx context.Context, chain bool, fn func(context.Context, W) error) error {
	o, err := q.enqueue(ctx, chain, fn)
	if err != nil {
		return err
	}
	return q.await(o, ctx.Done())
}

func (q *Queue[W]) enqueue(ctx context.Context, chain bool, fn func(context.Context, W) error) (*Op[W], error) {
	select {
	case <-q.quit:
		return nil, record.ErrClosed
	default:
	}
	o := &Op[W]{Ctx: ctx, Chain: chain, Fn: fn, done: make(chan error, 1)}
	select {
	case q.ops <- o:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-q.quit:
		return nil, record.ErrClosed
	}
	if q.Queued != nil {
		q.Queued()
	}
	return o, nil
}

// await waits for o's answer. If the writer has stopped without taking o
// (an op sent as Close drained the queue), o never ran: ErrClosed. The
// writer answers every op it took before it stops, so checking o.done once
// more after done cannot miss an answer.
func (q *Queue[W]) await(o *Op[W], abandon <-chan struct{}) error {
	select {
	case err := <-o.done:
		return err
	case <-abandon:
		return o.Ctx.Err()
	case <-q.done:
		select {
		case err := <-o.done:
			return err
		default:
			return record.ErrClosed
		}
	}
}

// Run is the writer: it takes the waiting ops, up to maxGroup at a time,
// hands each group to commit (which answers every op), and returns when
// quit is closed and the queue is empty — what was submitted before Close
// is still committed, in groups.
func (q *Queue[W]) Run(maxGroup int, commit func([]*Op[W])) {
	defer close(q.done)
	for {
		var first *Op[W]
		select {
		case first = <-q.ops:
		case <-q.quit:
			select {
			case first = <-q.ops:
			default:
				return
			}
		}
		group := []*Op[W]{first}
	gather:
		for len(group) < maxGroup {
			select {
			case o := <-q.ops:
				group = append(group, o)
			default:
				break gather
			}
		}
		commit(group)
	}
}
