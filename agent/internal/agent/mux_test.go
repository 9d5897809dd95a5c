package agent

import (
	"encoding/json"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"sshvisor/agent/protocol"
)

func jsonUnmarshal(t *testing.T, b []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
}

func TestFlowControlStallsOnlyItsStream(t *testing.T) {
	g := newGW(t)
	g.mu.Lock()
	slow := g.stream(1)
	slow.grant = false
	g.mu.Unlock()
	g.open(1, map[string]any{"kind": "exec", "command": []byte("head -c 1000000 /dev/zero")})
	g.waitFor("a full window", func() bool { return len(slow.out) == protocol.InitialWindow })
	fast := g.run(2, "echo done")
	if string(fast.out) != "done\n" {
		t.Fatalf("fast stream: %q", fast.out)
	}
	time.Sleep(200 * time.Millisecond)
	g.mu.Lock()
	got := len(slow.out)
	g.mu.Unlock()
	if got != protocol.InitialWindow {
		t.Fatalf("agent sent %d bytes with a window of %d", got, protocol.InitialWindow)
	}
	// Granting the rest lets it finish.
	g.send(protocol.TypeWindow, 1, protocol.Window(1000000))
	g.send(protocol.TypeEOF, 1, nil)
	g.waitClosed(slow)
	if len(slow.out) != 1000000 {
		t.Fatalf("got %d", len(slow.out))
	}
}

func TestWindowViolationDesyncs(t *testing.T) {
	g := newGW(t)
	g.open(1, map[string]any{"kind": "exec", "command": []byte("sleep 100")})
	for i := 0; i < 10; i++ {
		g.send(protocol.TypeData, 1, make([]byte, protocol.MaxData))
	}
	// Everything is ignored until a new HELLO.
	g.sendJSON(protocol.TypeRequest, 0, map[string]any{"id": 9, "op": "ping"})
	time.Sleep(200 * time.Millisecond)
	g.mu.Lock()
	answered := g.resp[9] != nil
	g.mu.Unlock()
	if answered {
		t.Fatal("answered a request after a violation")
	}
	g.hello()
	if r := g.request(10, map[string]any{"op": "ping"}); r["ok"] != true {
		t.Fatalf("%v", r)
	}
}

func TestControlRequests(t *testing.T) {
	g := newGW(t)
	if r := g.request(1, map[string]any{"op": "ping"}); r["ok"] != true {
		t.Fatalf("%v", r)
	}
	if r := g.request(2, map[string]any{"op": "info"}); r["ok"] != true || r["streams"] != 0.0 || r["hostname"] == "" {
		t.Fatalf("%v", r)
	}
	if r := g.request(3, map[string]any{"op": "frobnicate"}); r["ok"] != false || r["error"] != "unknown op frobnicate" {
		t.Fatalf("%v", r)
	}
	var got []string
	saved := SystemOps
	defer func() { SystemOps = saved }()
	SystemOps.SetHostname = func(h string) error { got = append(got, "host "+h); return nil }
	SystemOps.SetClock = func(ms int64) error { got = append(got, "clock"); return nil }
	SystemOps.AddEntropy = func(b []byte) error { got = append(got, "seed"); return nil }
	SystemOps.WriteIdentity = func(h string) error { got = append(got, "file "+h); return nil }
	r := g.request(4, map[string]any{"op": "identity", "hostname": "vm1", "unixMs": 1700000000000, "seed": make([]byte, 32)})
	if r["ok"] != true || strings.Join(got, ",") != "host vm1,clock,seed,file vm1" {
		t.Fatalf("%v %v", r, got)
	}
	if r := g.request(5, map[string]any{"op": "set-clock"}); r["ok"] != false {
		t.Fatalf("%v", r)
	}
}

func TestResyncAfterGarbage(t *testing.T) {
	g := newGW(t)
	g.c.Write([]byte("\x00\x00\x00\x05\x99garbage from an old connection"))
	g.hello()
	if r := g.request(1, map[string]any{"op": "ping"}); r["ok"] != true {
		t.Fatalf("%v", r)
	}
}

func TestTCPConnect(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	accepted := make(chan net.Conn, 1)
	go func() { c, _ := l.Accept(); accepted <- c }()
	g := newGW(t)
	s := g.open(1, map[string]any{"kind": "tcp-connect", "host": "127.0.0.1", "port": port})
	c := <-accepted
	c.Write([]byte("from guest"))
	g.waitFor("data", func() bool { return string(s.out) == "from guest" })
	g.write(s, []byte("from gateway"))
	g.send(protocol.TypeEOF, 1, nil)
	b, _ := io.ReadAll(c) // ends at the half-close
	if string(b) != "from gateway" {
		t.Fatalf("%q", b)
	}
	c.Close()
	g.waitClosed(s)
	if !has(s.events, "EOF") {
		t.Fatalf("events %v", s.events)
	}
	l.Close()
	f := g.open(2, map[string]any{"kind": "tcp-connect", "host": "127.0.0.1", "port": port})
	if !has(f.events, "OPEN_FAIL") || !strings.Contains(string(f.open), "connection refused") {
		t.Fatalf("%v %s", f.events, f.open)
	}
}

func TestTCPListen(t *testing.T) {
	g := newGW(t)
	s := g.open(1, map[string]any{"kind": "tcp-listen", "host": "127.0.0.1", "port": 0})
	var ok struct{ Port int }
	jsonUnmarshal(t, s.open, &ok)
	c, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", itoa(ok.Port)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	g.waitFor("tcp-accepted", func() bool { return len(g.opens) == 1 })
	g.mu.Lock()
	acc := g.st[g.opens[0]]
	g.mu.Unlock()
	var o protocol.Open
	jsonUnmarshal(t, acc.open, &o)
	if o.Kind != "tcp-accepted" || o.Listener != 1 || o.OriginHost != "127.0.0.1" || acc.id < protocol.FirstAgentStream {
		t.Fatalf("%+v id %d", o, acc.id)
	}
	c.Write([]byte("hi"))
	g.waitFor("data", func() bool { return string(acc.out) == "hi" })
	g.write(acc, []byte("yo"))
	buf := make([]byte, 2)
	io.ReadFull(c, buf)
	if string(buf) != "yo" {
		t.Fatalf("%q", buf)
	}
	// CLOSE stops the listener.
	g.send(protocol.TypeClose, 1, nil)
	g.waitClosed(s)
	time.Sleep(50 * time.Millisecond)
	if c2, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", itoa(ok.Port))); err == nil {
		c2.Close()
		t.Fatal("listener still accepting after CLOSE")
	}
}

func TestAuthAgentSocket(t *testing.T) {
	g := newGW(t)
	s := g.open(1, map[string]any{"kind": "exec", "agentForward": true,
		"command": []byte(`echo "$SSH_AUTH_SOCK"; stat -c %a "$(dirname "$SSH_AUTH_SOCK")"; read x`)})
	g.waitFor("socket path", func() bool { return strings.Count(string(s.out), "\n") >= 2 })
	lines := strings.Split(string(s.out), "\n")
	path := lines[0]
	if !strings.HasPrefix(path, "/tmp/ssh-") || !strings.HasSuffix(path, "/agent."+itoa(os.Getpid())) || lines[1] != "700" {
		t.Fatalf("%q", s.out)
	}
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	g.waitFor("auth-agent", func() bool { return len(g.opens) == 1 })
	g.mu.Lock()
	aa := g.st[g.opens[0]]
	g.mu.Unlock()
	var o protocol.Open
	jsonUnmarshal(t, aa.open, &o)
	if o.Kind != "auth-agent" || o.Session != 1 {
		t.Fatalf("%+v", o)
	}
	c.Write([]byte("\x00\x00\x00\x01\x0b"))
	g.waitFor("request", func() bool { return len(aa.out) == 5 })
	c.Close()
	g.send(protocol.TypeEOF, aa.id, nil)
	g.waitClosed(aa)
	g.send(protocol.TypeData, 1, []byte("\n"))
	g.waitClosed(s)
	if _, err := os.Stat(path[:strings.LastIndexByte(path, '/')]); !os.IsNotExist(err) {
		t.Fatalf("socket dir left behind: %v", err)
	}
}

func itoa(n int) string { return strings.TrimSpace(strings.Repeat(" ", 0) + jsonNum(n)) }

func jsonNum(n int) string { b, _ := json.Marshal(n); return string(b) }

func TestAgentOpensAtMost256(t *testing.T) {
	g := newGW(t)
	g.holdOpens = true
	s := g.open(1, map[string]any{"kind": "tcp-listen", "host": "127.0.0.1", "port": 0})
	var ok struct{ Port int }
	jsonUnmarshal(t, s.open, &ok)
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := 0; i < MaxAgentOpened+2; i++ {
		c, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", itoa(ok.Port)))
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	g.waitFor("256 OPENs", func() bool { return len(g.opens) == MaxAgentOpened })
	time.Sleep(200 * time.Millisecond)
	g.mu.Lock()
	n, first := len(g.opens), g.opens[0]
	g.mu.Unlock()
	if n != MaxAgentOpened {
		t.Fatalf("agent opened %d streams", n)
	}
	// Refusing one frees a slot: the next connection waiting in the backlog
	// is opened.
	g.sendJSON(protocol.TypeOpenFail, first, map[string]string{"error": "no"})
	g.waitFor("the 257th OPEN", func() bool { return len(g.opens) == MaxAgentOpened+1 })
}
