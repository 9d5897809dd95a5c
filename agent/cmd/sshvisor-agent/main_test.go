package main

import (
	"encoding/binary"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"sshvisor/agent/protocol"
)

// The test binary doubles as the agent: run with this variable set, it is
// `sshvisor-agent --stdio`.
func TestMain(m *testing.M) {
	if os.Getenv("SSHVISOR_AGENT_TEST_MAIN") == "1" {
		os.Args = []string{"sshvisor-agent", "--stdio"}
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func readFrame(t *testing.T, r io.Reader) (byte, uint32, []byte) {
	t.Helper()
	h := make([]byte, 12)
	if _, err := io.ReadFull(r, h); err != nil {
		t.Fatal(err)
	}
	p := make([]byte, binary.BigEndian.Uint32(h))
	if _, err := io.ReadFull(r, p); err != nil {
		t.Fatal(err)
	}
	return h[4], binary.BigEndian.Uint32(h[8:]), p
}

func TestStdioAgent(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "SSHVISOR_AGENT_TEST_MAIN=1")
	in, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	timer := time.AfterFunc(20*time.Second, func() { cmd.Process.Kill() })
	defer timer.Stop()

	// Bytes of an older connection first: the agent must skip them.
	in.Write([]byte("\x00\x00\x00\x02\x30\x00\x00\x00"))
	in.Write(protocol.Encode(protocol.TypeHello, 0, protocol.EncodeHello(1, 3, [16]byte{42})))
	typ, _, p := readFrame(t, out)
	if typ != protocol.TypeHelloAck || string(p[:8]) != protocol.Magic || binary.BigEndian.Uint16(p[8:]) != 1 || p[10] != 42 {
		t.Fatalf("HELLO_ACK %x", p)
	}
	var info protocol.HelloAckInfo
	if err := json.Unmarshal(p[protocol.HelloAckHeader:], &info); err != nil || info.Agent != "sshvisor-agent "+version || info.MaxVersion != 1 {
		t.Fatalf("%s %v", p[protocol.HelloAckHeader:], err)
	}
	o, _ := json.Marshal(map[string]any{"kind": "exec", "command": []byte("echo hi")})
	in.Write(protocol.Encode(protocol.TypeOpen, 1, o))
	// EXIT and the output may come in either order (the child can be reaped before its pipe is read dry).
	var got []string
	var data, exit string
	for {
		typ, id, p := readFrame(t, out)
		if id != 1 {
			t.Fatalf("frame 0x%x on %d", typ, id)
		}
		got = append(got, string(p))
		switch typ {
		case protocol.TypeData:
			data += string(p)
		case protocol.TypeExit:
			exit = string(p)
		}
		if typ == protocol.TypeClose {
			break
		}
	}
	if data != "hi\n" || exit != `{"code":0}` {
		t.Fatalf("%q", got)
	}
	in.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("agent: %v\n%s", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), version) || strings.Count(stderr.String(), "\n") > 2 {
		t.Fatalf("stderr %q", stderr.String())
	}
}
