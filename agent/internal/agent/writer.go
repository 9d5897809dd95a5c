package agent

import (
	"errors"
	"io"
	"sync"
	"time"

	"sshvisor/agent/internal/device"
)

// outItem is one encoded frame and the connection it belongs to.
type outItem struct {
	gen uint64
	b   []byte
}

// writer is the single goroutine that writes frames to the transport. Every
// other goroutine only queues, so a stalled device never blocks a stream's
// bookkeeping, and no stream can block another: what a stream may queue is
// bounded by its send window, everything else is small control frames.
type writer struct {
	mu      sync.Mutex
	cond    *sync.Cond
	q       []outItem
	gen     uint64
	stopped bool
	w       io.Writer
}

func newWriter(w io.Writer) *writer {
	wr := &writer{w: w}
	wr.cond = sync.NewCond(&wr.mu)
	return wr
}

// push queues a frame of connection gen; frames of an older connection are
// dropped (their gateway is gone, and the new one resynchronises anyway).
func (w *writer) push(gen uint64, b []byte) {
	w.mu.Lock()
	if gen == w.gen && !w.stopped {
		w.q = append(w.q, outItem{gen, b})
		w.cond.Signal()
	}
	w.mu.Unlock()
}

// newConnection drops everything queued for the previous connection.
func (w *writer) newConnection(gen uint64) {
	w.mu.Lock()
	w.gen = gen
	w.q = nil
	w.mu.Unlock()
}

func (w *writer) stop() {
	w.mu.Lock()
	w.stopped = true
	w.q = nil
	w.cond.Broadcast()
	w.mu.Unlock()
}

func (w *writer) current() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.gen
}

func (w *writer) loop() {
	for {
		w.mu.Lock()
		for len(w.q) == 0 && !w.stopped {
			w.cond.Wait()
		}
		if w.stopped {
			w.mu.Unlock()
			return
		}
		it := w.q[0]
		w.q[0] = outItem{}
		w.q = w.q[1:]
		if len(w.q) == 0 {
			w.q = nil
		}
		cur := w.gen
		w.mu.Unlock()
		if it.gen != cur {
			continue
		}
		w.writeAll(it)
	}
}

// writeAll writes one frame, waiting out a disconnected host with short
// sleeps; a frame of a connection that ended meanwhile is abandoned (a
// half-written frame is what the gateway's resynchronisation is for).
func (w *writer) writeAll(it outItem) {
	b := it.b
	for len(b) > 0 {
		n, err := w.w.Write(b)
		b = b[n:]
		if err == nil {
			continue
		}
		if !errors.Is(err, device.ErrNotConnected) {
			return // a broken transport: nothing better to do than drop it
		}
		time.Sleep(20 * time.Millisecond)
		if w.current() != it.gen {
			return
		}
	}
}
