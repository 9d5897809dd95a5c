// Package agent is the guest side of the sshvisor agent protocol: one
// connection at a time over a byte stream, multiplexing exec sessions, TCP
// and agent-forwarding streams with per-stream flow control, plus the
// housekeeping requests.
package agent

import (
	"errors"
	"fmt"
	"io"
	"log"
	"sync"
	"time"

	"sshvisor/agent/protocol"
)

// Limits of what the agent accepts (docs: "Limits and trust").
const (
	MaxStreams      = 1024
	MaxAgentOpened  = 256 // what the gateway accepts at a time
	pollInterval    = 50 * time.Millisecond
	readBufferBytes = 64 * 1024
)

// Agent serves the protocol over one transport.
type Agent struct {
	version string
	logger  *log.Logger
	out     *writer

	mu          sync.Mutex
	slots       *sync.Cond // signalled when an agent-opened stream ends
	gen         uint64     // connection generation: bumped by HELLO and end of file
	streams     map[uint32]*stream
	agentOpened int
	nextID      uint32
	loggedBad   bool
}

// New returns an agent that reports version in HELLO_ACK and logs (rarely)
// to logger.
func New(version string, logger *log.Logger) *Agent {
	a := &Agent{version: version, logger: logger, streams: map[uint32]*stream{}, nextID: protocol.FirstAgentStream}
	a.slots = sync.NewCond(&a.mu)
	return a
}

// Serve reads frames from rw until it fails. At end of file the streams are
// hung up and the parser waits for a new HELLO; with eofIsFinal Serve then
// returns (stdin, tests), otherwise it polls every 50 ms for the next
// connection (a virtio port returns 0 while no host is connected).
func (a *Agent) Serve(rw io.ReadWriter, eofIsFinal bool) error {
	a.out = newWriter(rw)
	go a.out.loop()
	defer a.out.stop()
	var p protocol.Parser
	buf := make([]byte, readBufferBytes)
	for {
		n, err := rw.Read(buf)
		if n > 0 {
			p.Feed(buf[:n])
			a.drain(&p)
		}
		if err == nil {
			continue
		}
		if !errors.Is(err, io.EOF) {
			a.disconnect()
			return err
		}
		p.Reset()
		a.disconnect()
		if eofIsFinal {
			return nil
		}
		time.Sleep(pollInterval)
	}
}

// drain acts on every complete frame in the parser.
func (a *Agent) drain(p *protocol.Parser) {
	for {
		f, ok, err := p.Next()
		if err != nil {
			a.violation(err)
			continue
		}
		if !ok {
			return
		}
		if err := a.dispatch(f); err != nil {
			p.Desync()
			a.violation(err)
		}
	}
}

// violation logs the first protocol violation of a connection (a broken
// gateway must not flood the guest console).
func (a *Agent) violation(err error) {
	a.mu.Lock()
	first := !a.loggedBad
	a.loggedBad = true
	a.mu.Unlock()
	if first && a.logger != nil {
		a.logger.Printf("protocol violation, waiting for HELLO: %v", err)
	}
}

func (a *Agent) dispatch(f protocol.Frame) error {
	switch f.Type {
	case protocol.TypeHello:
		return a.hello(f.Payload)
	case protocol.TypeRequest:
		var r protocol.Request
		if err := protocol.ParseJSON(f.Payload, &r); err != nil {
			return fmt.Errorf("REQUEST: %w", err)
		}
		go a.request(a.currentGen(), r)
		return nil
	case protocol.TypeOpen:
		var o protocol.Open
		if err := protocol.ParseJSON(f.Payload, &o); err != nil {
			return fmt.Errorf("OPEN: %w", err)
		}
		return a.open(f.Stream, &o)
	}
	s := a.get(f.Stream)
	if s == nil {
		// Frames racing a stream's end (or of streams of a connection that
		// was hung up) are harmless; drop them.
		return nil
	}
	switch f.Type {
	case protocol.TypeOpenOK, protocol.TypeOpenFail:
		s.resolveOpen(f.Type == protocol.TypeOpenOK)
	case protocol.TypeData:
		return s.pushInput(f.Payload)
	case protocol.TypeWindow:
		n, err := protocol.ParseWindow(f.Payload)
		if err != nil {
			return err
		}
		return s.addWindow(n)
	case protocol.TypeEOF:
		s.inputEOF()
	case protocol.TypeClose:
		s.gatewayClosed()
	case protocol.TypeStreamRequest:
		var r protocol.StreamRequest
		if err := protocol.ParseJSON(f.Payload, &r); err != nil {
			return fmt.Errorf("STREAM_REQUEST: %w", err)
		}
		s.mu.Lock()
		h := s.h
		s.mu.Unlock()
		if h != nil {
			h.request(r)
		}
	}
	return nil
}

// hello starts a new connection: the previous one's streams are hung up,
// then HELLO_ACK answers.
func (a *Agent) hello(payload []byte) error {
	h, err := protocol.ParseHello(payload)
	if err != nil {
		return err
	}
	a.disconnect()
	a.mu.Lock()
	a.loggedBad = false
	gen := a.gen
	a.mu.Unlock()
	// No boot id here: a clone's first HELLO comes before its identity reseeds the RNG, and the kernel
	// makes boot_id on its first read, so reading it now would give every clone of a template the same.
	info := protocol.HelloAckInfo{
		Agent: "sshvisor-agent " + a.version, MinVersion: protocol.Version, MaxVersion: protocol.Version,
		UptimeMs: uptimeMs(),
	}
	a.out.push(gen, protocol.Encode(protocol.TypeHelloAck, 0, protocol.EncodeHelloAck(h.ChooseVersion(), h.Nonce, info)))
	return nil
}

// disconnect hangs up every stream and forgets what was queued for the old
// connection.
func (a *Agent) disconnect() {
	a.mu.Lock()
	old := a.streams
	a.streams = map[uint32]*stream{}
	a.agentOpened = 0
	a.gen++
	gen := a.gen
	a.slots.Broadcast()
	a.mu.Unlock()
	a.out.newConnection(gen)
	for _, s := range old {
		s.kill()
	}
}

func (a *Agent) currentGen() uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.gen
}

func (a *Agent) get(id uint32) *stream {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.streams[id]
}

func (a *Agent) remove(s *stream) {
	a.mu.Lock()
	if a.streams[s.id] == s {
		delete(a.streams, s.id)
		if s.id >= protocol.FirstAgentStream {
			a.agentOpened--
		}
		a.slots.Broadcast()
	}
	a.mu.Unlock()
}

// StreamCount is the number of open streams (for `info`).
func (a *Agent) StreamCount() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.streams)
}

// open handles the gateway's OPEN: the stream is registered at once (so DATA
// that follows finds it) and started on its own goroutine (a tcp-connect
// may take 10 s).
func (a *Agent) open(id uint32, o *protocol.Open) error {
	if id >= protocol.FirstAgentStream {
		return fmt.Errorf("OPEN of stream %d from the agent's half", id)
	}
	a.mu.Lock()
	if a.streams[id] != nil {
		a.mu.Unlock()
		return fmt.Errorf("OPEN of stream %d already open", id)
	}
	gen := a.gen
	full := len(a.streams) >= MaxStreams
	s := a.newStream(id, gen)
	if !full {
		a.streams[id] = s
	}
	a.mu.Unlock()
	if full {
		a.out.push(gen, failFrame(id, "too many streams"))
		return nil
	}
	switch o.Kind {
	case "exec":
		go startExec(s, o)
	case "tcp-connect":
		go startTCPConnect(s, o)
	case "tcp-listen":
		go startTCPListen(s, o)
	default:
		s.fail(fmt.Sprintf("unknown stream kind %q", o.Kind))
	}
	return nil
}

// fail answers OPEN_FAIL; the stream leaves the table first so the gateway
// may reuse the id as soon as it reads the answer.
func (s *stream) fail(reason string) {
	s.a.remove(s)
	s.mu.Lock()
	s.dead = true
	s.sentClose = true
	s.cond.Broadcast()
	s.mu.Unlock()
	s.a.out.push(s.gen, failFrame(s.id, reason))
}

func failFrame(id uint32, reason string) []byte {
	return protocol.Encode(protocol.TypeOpenFail, id, mustJSON(protocol.ErrorPayload{Error: reason}))
}
