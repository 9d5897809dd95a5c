package agent

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"sshvisor/agent/protocol"
)

var home string

func TestMain(m *testing.M) {
	ResetSignals()
	dir, err := os.MkdirTemp("", "agent-test-")
	if err != nil {
		panic(err)
	}
	home = dir
	passwdFile = filepath.Join(dir, "passwd")
	os.WriteFile(passwdFile, []byte("daemon:x:1:1::/:/bin/false\nroot:x:0:0:root:"+dir+":/bin/sh\n"), 0o644)
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func TestExitCodeAndOrder(t *testing.T) {
	g := newGW(t)
	s := g.run(1, "echo out; echo err >&2; exit 3")
	if string(s.out) != "out\n" || string(s.err) != "err\n" || s.exit.Code != 3 || s.exit.Signal != "" {
		t.Fatalf("out %q err %q exit %+v", s.out, s.err, s.exit)
	}
	if s.events[0] != "OPEN_OK" || s.events[len(s.events)-1] != "CLOSE" || !has(s.events, "EOF") || !has(s.events, "EXIT") {
		t.Fatalf("events %v", s.events)
	}
}

func TestEnvironmentAndCwd(t *testing.T) {
	g := newGW(t)
	s := g.open(1, map[string]any{"kind": "exec", "command": []byte(`printf '%s|' "$0" "$PATH" "$HOME" "$USER" "$FOO" "$(pwd)"`),
		"env": []map[string]any{{"name": "FOO", "value": []byte("b\xffr")}, {"name": "HOME", "value": []byte("/evil")}}})
	g.send(protocol.TypeEOF, 1, nil)
	g.waitClosed(s)
	want := "sh|" + defaultPath + "|" + home + "|root|b\xffr|" + home + "|"
	if string(s.out) != want {
		t.Fatalf("got %q want %q", s.out, want)
	}
}

func TestSignalsAndCore(t *testing.T) {
	g := newGW(t)
	s := g.run(1, "kill -TERM $$")
	if s.exit.Signal != "TERM" || s.exit.Core {
		t.Fatalf("exit %+v", s.exit)
	}
	s = g.run(2, "ulimit -c unlimited; kill -SEGV $$")
	if s.exit.Signal != "SEGV" {
		t.Fatalf("exit %+v", s.exit)
	}
	pattern, _ := os.ReadFile("/proc/sys/kernel/core_pattern")
	t.Logf("SEGV core=%v (core_pattern %q)", s.exit.Core, strings.TrimSpace(string(pattern)))
	// The signal request: kill a sleeping child.
	s3 := g.open(3, map[string]any{"kind": "exec", "command": []byte("exec sleep 30")})
	g.sendJSON(protocol.TypeStreamRequest, 3, map[string]any{"op": "signal", "name": "USR1"})
	g.waitClosed(s3)
	if s3.exit.Signal != "USR1" {
		t.Fatalf("exit %+v", s3.exit)
	}
}

func TestChildSignalDispositions(t *testing.T) {
	g := newGW(t)
	s := g.run(1, "grep -E '^Sig(Ign|Blk)' /proc/self/status")
	for _, line := range strings.Split(strings.TrimSpace(string(s.out)), "\n") {
		if !strings.HasSuffix(line, "0000000000000000") {
			t.Errorf("child has %s", line)
		}
	}
}

func TestStdinEOFAndMegabyte(t *testing.T) {
	g := newGW(t)
	s := g.open(1, map[string]any{"kind": "exec", "command": []byte("cat")})
	data := make([]byte, 1<<20)
	for i := range data {
		data[i] = byte(i * 7)
	}
	g.write(s, data)
	g.send(protocol.TypeEOF, 1, nil)
	g.waitClosed(s)
	if !bytes.Equal(s.out, data) || s.exit.Code != 0 {
		t.Fatalf("got %d bytes back, exit %+v", len(s.out), s.exit)
	}
}

func TestBackgroundJobOutput(t *testing.T) {
	g := newGW(t)
	s := g.run(1, "sleep 0.3 && echo late &")
	if string(s.out) != "late\n" {
		t.Fatalf("out %q", s.out)
	}
}

func TestEOWKillsYes(t *testing.T) {
	g := newGW(t)
	s := g.open(1, map[string]any{"kind": "exec", "command": []byte("exec yes")})
	g.waitFor("output", func() bool { return len(s.out) > 0 })
	g.sendJSON(protocol.TypeStreamRequest, 1, map[string]any{"op": "eow"})
	g.waitClosed(s)
	if s.exit.Signal != "PIPE" {
		t.Fatalf("exit %+v", s.exit)
	}
}

func modes(ops ...uint32) []byte {
	var b []byte
	for i := 0; i+1 < len(ops); i += 2 {
		b = append(b, byte(ops[i]))
		b = binary.BigEndian.AppendUint32(b, ops[i+1])
	}
	return append(b, 0)
}

func TestPtyModesAndSize(t *testing.T) {
	g := newGW(t)
	pty := map[string]any{"term": "xterm-test", "cols": 80, "rows": 24, "modes": modes(1, 11, 42, 1)}
	s := g.open(1, map[string]any{"kind": "exec", "command": []byte("stty -a; echo TERM=$TERM; tty; read x; stty size"), "pty": pty})
	g.waitFor("stty", func() bool { return strings.Contains(string(s.out), "/dev/pts/") })
	out := string(s.out)
	if !strings.Contains(out, "intr = ^K") || strings.Contains(out, "-iutf8") || !strings.Contains(out, "iutf8") ||
		!strings.Contains(out, "rows 24; columns 80") || !strings.Contains(out, "TERM=xterm-test") {
		t.Fatalf("stty -a:\n%s", out)
	}
	g.sendJSON(protocol.TypeStreamRequest, 1, map[string]any{"op": "window-change", "cols": 100, "rows": 40})
	g.sendJSON(protocol.TypeStreamRequest, 1, map[string]any{"op": "break"})
	time.Sleep(100 * time.Millisecond)
	g.send(protocol.TypeData, 1, []byte("\n"))
	g.waitClosed(s)
	if !strings.Contains(string(s.out), "40 100") || s.exit.Code != 0 {
		t.Fatalf("out %q exit %+v", s.out, s.exit)
	}
	if i, j := indexOf(s.events, "EOF"), indexOf(s.events, "EXIT"); i < 0 || j < i {
		t.Fatalf("events %v", s.events)
	}
}

func TestPtyBackgroundJobDoesNotHoldSession(t *testing.T) {
	g := newGW(t)
	start := time.Now()
	s := g.open(1, map[string]any{"kind": "exec", "command": []byte("sleep 30 & echo started"), "pty": map[string]any{"term": "xterm", "cols": 80, "rows": 24}})
	g.waitClosed(s)
	if time.Since(start) > 5*time.Second || !strings.Contains(string(s.out), "started") {
		t.Fatalf("took %v, out %q", time.Since(start), s.out)
	}
}

func TestLoginShellAndSftp(t *testing.T) {
	g := newGW(t)
	s := g.open(1, map[string]any{"kind": "exec", "command": nil})
	g.send(protocol.TypeData, 1, []byte("echo $0\n"))
	g.send(protocol.TypeEOF, 1, nil)
	g.waitClosed(s)
	if string(s.out) != "-sh\n" {
		t.Fatalf("login shell said %q", s.out)
	}
	if _, err := os.Stat(sftpServers[0]); err != nil {
		t.Skip("no sftp-server on this host")
	}
	s = g.open(2, map[string]any{"kind": "exec", "subsystem": "sftp"})
	g.send(protocol.TypeData, 2, []byte{0, 0, 0, 5, 1, 0, 0, 0, 3}) // SSH_FXP_INIT v3
	g.waitFor("SSH_FXP_VERSION", func() bool { return len(s.out) >= 9 })
	if s.out[4] != 2 {
		t.Fatalf("sftp answered %x", s.out)
	}
	saved := sftpServers
	sftpServers = []string{"/nonexistent/sftp-server"}
	defer func() { sftpServers = saved }()
	f := g.open(3, map[string]any{"kind": "exec", "subsystem": "sftp"})
	if !has(f.events, "OPEN_FAIL") || !strings.Contains(string(f.open), "sftp-server") {
		t.Fatalf("%v %s", f.events, f.open)
	}
}

func TestHelloHangsUpOldStreams(t *testing.T) {
	g := newGW(t)
	s := g.open(1, map[string]any{"kind": "exec", "command": []byte("sleep 100"), "pty": map[string]any{"term": "xterm", "cols": 80, "rows": 24}})
	var pid struct{ Pid int }
	jsonUnmarshal(t, s.open, &pid)
	g.hello()
	deadline := time.Now().Add(5 * time.Second)
	for syscall.Kill(pid.Pid, 0) == nil {
		if time.Now().After(deadline) {
			t.Fatal("sleep 100 survived a new HELLO")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Id 1 is free again on the new connection.
	s2 := g.run(1, "echo again")
	if !strings.Contains(string(s2.out), "again") {
		t.Fatalf("out %q", s2.out)
	}
}

func TestCloseHangsUp(t *testing.T) {
	g := newGW(t)
	s := g.open(1, map[string]any{"kind": "exec", "command": []byte("sleep 100"), "pty": map[string]any{"term": "xterm"}})
	g.send(protocol.TypeClose, 1, nil)
	g.waitClosed(s)
	var pid struct{ Pid int }
	jsonUnmarshal(t, s.open, &pid)
	deadline := time.Now().Add(5 * time.Second)
	for syscall.Kill(pid.Pid, 0) == nil {
		if time.Now().After(deadline) {
			t.Fatal("sleep 100 survived CLOSE")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func indexOf(xs []string, x string) int {
	for i, y := range xs {
		if y == x {
			return i
		}
	}
	return -1
}

func TestSignalNames(t *testing.T) {
	for s, want := range map[syscall.Signal]string{syscall.SIGSEGV: "SEGV", syscall.SIGBUS: "BUS", 34: "RTMIN+0", 40: "RTMIN+6"} {
		if got := signalName(s); got != want {
			t.Errorf("%d: %q, want %q", s, got, want)
		}
	}
}
