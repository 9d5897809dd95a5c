package agent

import (
	"encoding/binary"
	"encoding/json"
	"io"
	"log"
	"net"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"sshvisor/agent/protocol"
)

// tstream is what the fake gateway saw on one stream.
type tstream struct {
	id       uint32
	out, err []byte
	events   []string // OPEN_OK, OPEN_FAIL, EOF, EXIT, CLOSE in arrival order
	open     json.RawMessage
	exit     protocol.Exit
	sendWin  int64 // our credit towards the agent
	grant    bool  // grant WINDOW for everything received
}

// gw is a fake gateway driving an in-process agent over a socketpair.
type gw struct {
	t     *testing.T
	c     net.Conn
	wmu   sync.Mutex
	mu    sync.Mutex
	cond  *sync.Cond
	st    map[uint32]*tstream
	resp  map[uint32]map[string]any
	acks  [][]byte
	opens []uint32 // agent-opened streams, in order
	// refuseOpens makes the fake gateway answer OPEN_FAIL to the agent.
	refuseOpens bool
	// holdOpens leaves the agent's OPENs unanswered.
	holdOpens bool
	done      chan error
}

func newGW(t *testing.T) *gw {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	// FileConn dups; close the originals through their *os.File, or a
	// finalizer would close a reused descriptor number later.
	f0, f1 := os.NewFile(uintptr(fds[0]), "gw"), os.NewFile(uintptr(fds[1]), "agent")
	mine, _ := net.FileConn(f0)
	theirs, _ := net.FileConn(f1)
	f0.Close()
	f1.Close()
	g := &gw{t: t, c: mine, st: map[uint32]*tstream{}, resp: map[uint32]map[string]any{}, done: make(chan error, 1)}
	g.cond = sync.NewCond(&g.mu)
	a := New("test", log.New(os.Stderr, "agent: ", 0))
	go func() { g.done <- a.Serve(theirs, true) }()
	go g.read()
	t.Cleanup(func() {
		mine.Close()
		select {
		case <-g.done:
		case <-time.After(5 * time.Second):
			t.Error("agent did not stop at end of file")
		}
		theirs.Close()
	})
	g.hello()
	return g
}

func (g *gw) hello() {
	g.mu.Lock()
	n := len(g.acks)
	g.mu.Unlock()
	g.send(protocol.TypeHello, 0, protocol.EncodeHello(1, 1, [16]byte{7}))
	g.waitFor("HELLO_ACK", func() bool { return len(g.acks) > n })
}

func (g *gw) send(typ byte, id uint32, payload []byte) {
	g.wmu.Lock()
	defer g.wmu.Unlock()
	// Errors are ignored: answers sent from goroutines may race the end
	// of a test; the assertions catch anything that really went missing.
	g.c.Write(protocol.Encode(typ, id, payload))
}

func (g *gw) sendJSON(typ byte, id uint32, v any) {
	b, _ := json.Marshal(v)
	g.send(typ, id, b)
}

func (g *gw) read() {
	hdr := make([]byte, 12)
	for {
		if _, err := io.ReadFull(g.c, hdr); err != nil {
			return
		}
		n := binary.BigEndian.Uint32(hdr)
		typ, id := hdr[4], binary.BigEndian.Uint32(hdr[8:])
		p := make([]byte, n)
		if _, err := io.ReadFull(g.c, p); err != nil {
			return
		}
		g.handle(typ, id, p)
	}
}

func (g *gw) stream(id uint32) *tstream {
	s := g.st[id]
	if s == nil {
		s = &tstream{id: id, sendWin: protocol.InitialWindow, grant: true}
		g.st[id] = s
	}
	return s
}

func (g *gw) handle(typ byte, id uint32, p []byte) {
	g.mu.Lock()
	defer g.mu.Unlock()
	defer g.cond.Broadcast()
	switch typ {
	case protocol.TypeHelloAck:
		g.acks = append(g.acks, p)
		return
	case protocol.TypeResponse:
		var m map[string]any
		json.Unmarshal(p, &m)
		g.resp[uint32(m["id"].(float64))] = m
		return
	}
	s := g.stream(id)
	switch typ {
	case protocol.TypeOpen:
		s.open = p
		g.opens = append(g.opens, id)
		if g.holdOpens {
			// no answer yet
		} else if g.refuseOpens {
			go g.sendJSON(protocol.TypeOpenFail, id, map[string]string{"error": "no"})
		} else {
			go g.sendJSON(protocol.TypeOpenOK, id, struct{}{})
		}
	case protocol.TypeOpenOK:
		s.events = append(s.events, "OPEN_OK")
		s.open = p
	case protocol.TypeOpenFail:
		s.events = append(s.events, "OPEN_FAIL")
		s.open = p
	case protocol.TypeData, protocol.TypeStderr:
		if typ == protocol.TypeData {
			s.out = append(s.out, p...)
		} else {
			s.err = append(s.err, p...)
		}
		if s.grant {
			go g.send(protocol.TypeWindow, id, protocol.Window(uint32(len(p))))
		}
	case protocol.TypeWindow:
		n, _ := protocol.ParseWindow(p)
		s.sendWin += int64(n)
	case protocol.TypeEOF:
		s.events = append(s.events, "EOF")
	case protocol.TypeExit:
		s.events = append(s.events, "EXIT")
		json.Unmarshal(p, &s.exit)
	case protocol.TypeClose:
		s.events = append(s.events, "CLOSE")
		go g.send(protocol.TypeClose, id, nil) // answer, as the gateway does
	}
}

// waitFor waits (with g.mu held while testing cond) until cond is true.
func (g *gw) waitFor(what string, cond func() bool) {
	g.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	timer := time.AfterFunc(15*time.Second, func() { g.cond.Broadcast() })
	defer timer.Stop()
	g.mu.Lock()
	defer g.mu.Unlock()
	for !cond() {
		if time.Now().After(deadline) {
			g.t.Fatalf("timed out waiting for %s", what)
		}
		g.cond.Wait()
	}
}

func has(events []string, e string) bool {
	for _, x := range events {
		if x == e {
			return true
		}
	}
	return false
}

// open sends OPEN and waits for the answer.
func (g *gw) open(id uint32, o any) *tstream {
	g.t.Helper()
	g.mu.Lock()
	s := g.stream(id)
	g.mu.Unlock()
	g.sendJSON(protocol.TypeOpen, id, o)
	g.waitFor("OPEN answer", func() bool { return has(s.events, "OPEN_OK") || has(s.events, "OPEN_FAIL") })
	return s
}

func (g *gw) waitClosed(s *tstream) {
	g.t.Helper()
	g.waitFor("CLOSE", func() bool { return has(s.events, "CLOSE") })
}

// write sends stdin, respecting the agent's window.
func (g *gw) write(s *tstream, b []byte) {
	g.t.Helper()
	for len(b) > 0 {
		n := len(b)
		if n > protocol.MaxData {
			n = protocol.MaxData
		}
		g.waitFor("window", func() bool { return s.sendWin > 0 })
		g.mu.Lock()
		if int64(n) > s.sendWin {
			n = int(s.sendWin)
		}
		s.sendWin -= int64(n)
		g.mu.Unlock()
		g.send(protocol.TypeData, s.id, b[:n])
		b = b[n:]
	}
}

func (g *gw) request(id uint32, v map[string]any) map[string]any {
	g.t.Helper()
	v["id"] = id
	g.sendJSON(protocol.TypeRequest, 0, v)
	var r map[string]any
	g.waitFor("RESPONSE", func() bool { r = g.resp[id]; return r != nil })
	return r
}

// run execs command without a pty, closes stdin, and waits for the end.
func (g *gw) run(id uint32, command string) *tstream {
	g.t.Helper()
	s := g.open(id, map[string]any{"kind": "exec", "command": []byte(command)})
	g.send(protocol.TypeEOF, id, nil)
	g.waitClosed(s)
	return s
}
