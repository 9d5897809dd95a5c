package agent

import (
	"errors"
	"net"
	"strconv"
	"sync"
	"syscall"
	"time"

	"sshvisor/agent/protocol"
)

const dialTimeout = 10 * time.Second

// connStream relays a stream to a socket (tcp-connect, tcp-accepted,
// auth-agent), with EOF as a half-close in each direction.
type connStream struct {
	s *stream
	c net.Conn

	mu                  sync.Mutex
	readDone, wroteDone bool
}

// relay starts moving bytes between c and s; the stream closes once both
// directions have ended.
func relay(s *stream, c net.Conn) {
	r := &connStream{s: s, c: c}
	s.setHandler(r)
	go r.read()
	go r.write()
}

func (r *connStream) read() {
	for {
		k := r.s.waitWindow()
		if k == 0 {
			break
		}
		b := make([]byte, protocol.HeaderSize+k)
		n, err := r.c.Read(b[protocol.HeaderSize:])
		if n > 0 && !r.s.sendOutput(protocol.TypeData, b[:protocol.HeaderSize+n]) {
			break
		}
		if err != nil {
			r.s.send(protocol.TypeEOF, nil)
			break
		}
	}
	r.done(true)
}

func (r *connStream) write() {
	broken := false
	for {
		b, eof, ok := r.s.nextInput()
		if !ok {
			break
		}
		if eof {
			if cw, ok := r.c.(interface{ CloseWrite() error }); ok {
				cw.CloseWrite()
			}
			break
		}
		if !broken {
			if _, err := r.c.Write(b); err != nil {
				broken = true
			}
		}
		r.s.consumed(len(b))
	}
	r.done(false)
}

func (r *connStream) done(reader bool) {
	r.mu.Lock()
	if reader {
		r.readDone = true
	} else {
		r.wroteDone = true
	}
	both := r.readDone && r.wroteDone
	r.mu.Unlock()
	if both {
		r.s.close()
	}
}

func (r *connStream) hangup()                          { r.c.Close() }
func (r *connStream) request(_ protocol.StreamRequest) {}

func startTCPConnect(s *stream, o *protocol.Open) {
	c, err := net.DialTimeout("tcp", net.JoinHostPort(o.Host, strconv.Itoa(o.Port)), dialTimeout)
	if err != nil {
		s.fail(netError(err))
		return
	}
	s.sendJSON(protocol.TypeOpenOK, struct{}{})
	relay(s, c)
}

// netError is the short reason ssh users know ("connection refused").
func netError(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno.Error()
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "connection timed out"
	}
	return oneLine(err)
}

// listener is a tcp-listen stream: it carries no data; each accepted
// connection becomes a tcp-accepted stream the agent opens.
type listener struct {
	s *stream
	l net.Listener
}

func startTCPListen(s *stream, o *protocol.Open) {
	l, err := net.Listen("tcp", net.JoinHostPort(o.Host, strconv.Itoa(o.Port)))
	if err != nil {
		s.fail(netError(err))
		return
	}
	ls := &listener{s: s, l: l}
	s.setHandler(ls)
	s.sendJSON(protocol.TypeOpenOK, map[string]int{"port": l.Addr().(*net.TCPAddr).Port})
	go ls.accept()
}

func (ls *listener) accept() {
	alive := func() bool { return !ls.s.isDead() }
	for {
		if !ls.s.a.waitSlot(ls.s.gen, alive) {
			return
		}
		c, err := ls.l.Accept()
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				continue
			}
			return // closed by hangup
		}
		go func() {
			ra, _ := c.RemoteAddr().(*net.TCPAddr)
			o := protocol.Open{Kind: "tcp-accepted", Listener: ls.s.id}
			if ra != nil {
				o.OriginHost, o.OriginPort = ra.IP.String(), ra.Port
			}
			s := ls.s.a.openAgentStream(ls.s.gen, alive, o)
			if s == nil || !alive() {
				c.Close()
				if s != nil {
					s.close()
				}
				return
			}
			relay(s, c)
		}()
	}
}

func (ls *listener) hangup() {
	ls.l.Close()
	ls.s.a.wakeSlots()
}
func (ls *listener) request(_ protocol.StreamRequest) {}
