package agent

import (
	"encoding/json"
	"errors"
	"sync"

	"sshvisor/agent/protocol"
)

// handler is what a stream kind does with the stream's resources.
type handler interface {
	// hangup lets go of the stream's resources: a pty master or pipes are
	// closed, sockets and listeners too. It is idempotent and must not block.
	hangup()
	// request handles a STREAM_REQUEST (exec streams; others ignore it).
	request(r protocol.StreamRequest)
}

// stream is the shared bookkeeping of one stream: the two windows, the
// queue of bytes from the gateway (at most one window of them), and the
// CLOSE handshake.
type stream struct {
	a   *Agent
	id  uint32
	gen uint64

	mu                  sync.Mutex
	cond                *sync.Cond
	h                   handler
	sendWin             int64    // bytes we may still send
	recvLeft            int64    // bytes the gateway may still send
	in                  [][]byte // bytes from the gateway not yet consumed
	inEOF               bool
	dead                bool // hung up or closed: everything stops
	sentClose, gotClose bool
	// Agent-opened streams wait for the gateway's OPEN_OK / OPEN_FAIL.
	pending bool
	openRes chan bool
}

var errWindow = errors.New("DATA beyond the window")

func (a *Agent) newStream(id uint32, gen uint64) *stream {
	s := &stream{a: a, id: id, gen: gen, sendWin: protocol.InitialWindow, recvLeft: protocol.InitialWindow}
	s.cond = sync.NewCond(&s.mu)
	return s
}

// send queues a frame unless we already sent CLOSE.
func (s *stream) send(typ byte, payload []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.sentClose {
		s.a.out.push(s.gen, protocol.Encode(typ, s.id, payload))
	}
}

func (s *stream) sendJSON(typ byte, v any) {
	j, _ := json.Marshal(v)
	s.send(typ, j)
}

// waitWindow blocks until there is send credit and returns how many bytes a
// pump may read now (≤ one DATA frame), or 0 when the stream is over. Reading
// only this much is what back-pressures a fast child behind a slow client.
func (s *stream) waitWindow() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	for s.sendWin <= 0 && !s.dead {
		s.cond.Wait()
	}
	if s.dead {
		return 0
	}
	if s.sendWin > protocol.MaxData {
		return protocol.MaxData
	}
	return int(s.sendWin)
}

// sendOutput sends frame (a 12-byte header space then n bytes) as DATA or
// STDERR, never beyond the window. stdout and stderr share the window, so
// the other pump may have used credit since waitWindow: then the bytes go out
// in pieces as credit comes. It returns false when the stream is over.
func (s *stream) sendOutput(typ byte, frame []byte) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	data := frame[protocol.HeaderSize:]
	for len(data) > 0 {
		for s.sendWin <= 0 && !s.dead {
			s.cond.Wait()
		}
		if s.dead || s.sentClose {
			return false
		}
		n := len(data)
		if int64(n) > s.sendWin {
			n = int(s.sendWin)
		}
		s.sendWin -= int64(n)
		var b []byte
		if n == len(data) && len(frame) == protocol.HeaderSize+n {
			b = frame // the common case: the frame as read, no copy
		} else {
			b = make([]byte, protocol.HeaderSize+n)
			copy(b[protocol.HeaderSize:], data[:n])
		}
		protocol.PutHeader(b, typ, s.id, n)
		s.a.out.push(s.gen, b)
		data = data[n:]
		frame = nil
	}
	return true
}

// addWindow adds credit granted by a WINDOW frame; credit past 2^32-1 is a
// protocol violation.
func (s *stream) addWindow(n uint32) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sendWin+int64(n) > 1<<32-1 {
		return errors.New("WINDOW beyond 2^32-1")
	}
	s.sendWin += int64(n)
	s.cond.Broadcast()
	return nil
}

// pushInput queues DATA from the gateway; more than the window is a
// protocol violation.
func (s *stream) pushInput(b []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if int64(len(b)) > s.recvLeft {
		return errWindow
	}
	s.recvLeft -= int64(len(b))
	if s.dead || s.inEOF || len(b) == 0 {
		return nil
	}
	s.in = append(s.in, append([]byte(nil), b...))
	s.cond.Broadcast()
	return nil
}

// inputEOF records the gateway's EOF.
func (s *stream) inputEOF() {
	s.mu.Lock()
	s.inEOF = true
	s.cond.Broadcast()
	s.mu.Unlock()
}

// nextInput blocks for the next bytes from the gateway; eof=true once they
// are all consumed and the gateway sent EOF; ok=false when the stream is over.
func (s *stream) nextInput() (b []byte, eof, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for len(s.in) == 0 && !s.inEOF && !s.dead {
		s.cond.Wait()
	}
	if s.dead {
		return nil, false, false
	}
	if len(s.in) == 0 {
		return nil, true, true
	}
	b = s.in[0]
	s.in[0] = nil
	s.in = s.in[1:]
	return b, false, true
}

// consumed grants the gateway credit for n bytes its consumer took.
func (s *stream) consumed(n int) {
	if n <= 0 {
		return
	}
	s.mu.Lock()
	s.recvLeft += int64(n)
	s.mu.Unlock()
	s.send(protocol.TypeWindow, protocol.Window(uint32(n)))
}

// close ends our side: the resources are let go, then CLOSE is sent (once),
// and the stream leaves the table once the gateway has sent its CLOSE too.
func (s *stream) close() {
	s.mu.Lock()
	s.dead = true
	s.cond.Broadcast()
	h := s.h
	s.mu.Unlock()
	if h != nil {
		h.hangup()
	}
	s.mu.Lock()
	if !s.sentClose {
		s.a.out.push(s.gen, protocol.Encode(protocol.TypeClose, s.id, nil))
		s.sentClose = true
	}
	done := s.gotClose
	s.mu.Unlock()
	if done {
		s.a.remove(s)
	}
}

// gatewayClosed handles the gateway's CLOSE: hang up, then answer CLOSE.
func (s *stream) gatewayClosed() {
	s.mu.Lock()
	s.gotClose = true
	s.mu.Unlock()
	s.resolveOpen(false)
	s.close()
}

// kill hangs the stream up without a word to the gateway (it is a previous
// connection's).
func (s *stream) kill() {
	s.mu.Lock()
	s.dead = true
	s.cond.Broadcast()
	h := s.h
	s.mu.Unlock()
	s.resolveOpen(false)
	if h != nil {
		h.hangup()
	}
}

func (s *stream) setHandler(h handler) {
	s.mu.Lock()
	s.h = h
	dead := s.dead
	s.mu.Unlock()
	if dead {
		h.hangup() // hung up while it was starting
	}
}

func (s *stream) isDead() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dead
}

// resolveOpen delivers the gateway's answer to an agent-opened stream.
func (s *stream) resolveOpen(ok bool) {
	s.mu.Lock()
	p := s.pending
	s.pending = false
	s.mu.Unlock()
	if p {
		s.openRes <- ok
	}
}
