package agent

import (
	"errors"
	"os"
	"time"

	"sshvisor/agent/protocol"
)

// pump forwards r as typ frames, reading only as much as the window allows.
func pump(s *stream, r *os.File, typ byte) {
	for {
		k := s.waitWindow()
		if k == 0 {
			return
		}
		b := make([]byte, protocol.HeaderSize+k)
		n, err := r.Read(b[protocol.HeaderSize:])
		if n > 0 && !s.sendOutput(typ, b[:protocol.HeaderSize+n]) {
			return
		}
		if err != nil {
			return
		}
	}
}

// pumpPty reads the master until the slave side is gone (EIO) or, after the
// child was reaped, for at most ptyDrainMax.
func (e *execStream) pumpPty() {
	for {
		k := e.s.waitWindow()
		if k == 0 {
			return
		}
		e.mu.Lock()
		reaped, at, eow := e.reaped, e.reapedAt, e.eow
		e.mu.Unlock()
		if eow {
			return
		}
		if reaped {
			if time.Since(at) > ptyDrainMax {
				return
			}
			e.master.SetReadDeadline(at.Add(ptyDrainMax))
		}
		b := make([]byte, protocol.HeaderSize+k)
		n, err := e.master.Read(b[protocol.HeaderSize:])
		if n > 0 && !e.s.sendOutput(protocol.TypeData, b[:protocol.HeaderSize+n]) {
			return
		}
		if err != nil {
			e.mu.Lock()
			stop := e.reaped || e.eow
			e.mu.Unlock()
			if errors.Is(err, os.ErrDeadlineExceeded) && !stop {
				continue // a stale deadline; the child still runs
			}
			return
		}
	}
}

// waitPty reaps the child, lets the pump drain, then ends the stream:
// EOF, EXIT, CLOSE.
func (e *execStream) waitPty(pumped <-chan struct{}) {
	x := e.wait()
	e.mu.Lock()
	at := e.reapedAt
	e.mu.Unlock()
	e.master.SetReadDeadline(at.Add(ptyDrainMax))
	<-pumped
	e.s.send(protocol.TypeEOF, nil)
	e.s.sendJSON(protocol.TypeExit, x)
	e.s.close()
}
