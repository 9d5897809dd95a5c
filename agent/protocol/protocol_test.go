package protocol

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func hello() []byte {
	return Encode(TypeHello, 0, EncodeHello(1, 1, [16]byte{1, 2, 3}))
}

func TestRoundTrip(t *testing.T) {
	var p Parser
	in := append(hello(), Encode(TypeData, 7, []byte("abc"))...)
	in = append(in, Encode(TypeWindow, 7, Window(5))...)
	// Feed byte by byte: frames split anywhere must still parse.
	var got []Frame
	for _, b := range in {
		p.Feed([]byte{b})
		for {
			f, ok, err := p.Next()
			if err != nil {
				t.Fatal(err)
			}
			if !ok {
				break
			}
			f.Payload = append([]byte(nil), f.Payload...)
			got = append(got, f)
		}
	}
	if len(got) != 3 || got[0].Type != TypeHello || got[1].Stream != 7 || string(got[1].Payload) != "abc" {
		t.Fatalf("got %+v", got)
	}
	h, err := ParseHello(got[0].Payload)
	if err != nil || h.MinVersion != 1 || h.Nonce[2] != 3 || h.ChooseVersion() != 1 {
		t.Fatalf("hello %+v %v", h, err)
	}
	if n, err := ParseWindow(got[2].Payload); n != 5 || err != nil {
		t.Fatal(n, err)
	}
	if _, err := ParseWindow(Window(0)); err == nil {
		t.Fatal("WINDOW 0 accepted")
	}
}

func TestHelloAck(t *testing.T) {
	ack := EncodeHelloAck(1, [16]byte{9}, HelloAckInfo{Agent: "x", MinVersion: 1, MaxVersion: 1})
	if string(ack[:8]) != Magic || ack[9] != 1 || ack[10] != 9 || ack[HelloAckHeader] != '{' {
		t.Fatalf("%x", ack)
	}
	if (Hello{MinVersion: 2, MaxVersion: 3}).ChooseVersion() != 0 {
		t.Fatal("version 2..3 should have nothing in common")
	}
}

func TestNothingBeforeHello(t *testing.T) {
	var p Parser
	p.Feed(Encode(TypeRequest, 0, []byte(`{"id":1,"op":"ping"}`)))
	if _, ok, err := p.Next(); ok || err != nil {
		t.Fatal("a REQUEST before HELLO was delivered")
	}
	// Garbage, then a HELLO split across feeds.
	p.Feed([]byte("garbage\x00\x00\x00"))
	h := hello()
	p.Feed(h[:5])
	if _, ok, _ := p.Next(); ok {
		t.Fatal("half a HELLO delivered")
	}
	p.Feed(h[5:])
	f, ok, err := p.Next()
	if !ok || err != nil || f.Type != TypeHello {
		t.Fatal(f, ok, err)
	}
	if !p.Synced() {
		t.Fatal("not synced after HELLO")
	}
}

func TestRejections(t *testing.T) {
	bad := map[string][]byte{
		"reserved":       func() []byte { b := Encode(TypeData, 1, nil); b[6] = 1; return b }(),
		"unknown type":   Encode(0x77, 1, nil),
		"agent's type":   Encode(TypeExit, 1, []byte("{}")),
		"data too long":  Encode(TypeData, 1, make([]byte, MaxData+1)),
		"open too long":  Encode(TypeOpen, 1, make([]byte, MaxPayload+1)),
		"request long":   Encode(TypeRequest, 0, make([]byte, MaxData+1)),
		"window size":    Encode(TypeWindow, 1, []byte{0, 0, 1}),
		"data stream 0":  Encode(TypeData, 0, []byte("x")),
		"request on 5":   Encode(TypeRequest, 5, []byte("{}")),
		"close payload":  Encode(TypeClose, 1, []byte("x")),
		"hello too long": Encode(TypeHello, 0, make([]byte, 29)),
	}
	for name, frame := range bad {
		var p Parser
		p.Feed(hello())
		if _, ok, err := p.Next(); !ok || err != nil {
			t.Fatal(name, err)
		}
		p.Feed(frame)
		p.Feed(Encode(TypeRequest, 0, []byte(`{"id":1}`))) // ignored: desynced
		_, ok, err := p.Next()
		if ok || err == nil {
			t.Fatalf("%s: accepted", name)
		}
		for {
			f, ok, err := p.Next()
			if ok {
				t.Fatalf("%s: delivered %+v after a violation", name, f)
			}
			if !ok && err == nil {
				break
			}
		}
		// A new HELLO resynchronises.
		p.Feed(hello())
		if f, ok, err := p.Next(); !ok || err != nil || f.Type != TypeHello {
			t.Fatalf("%s: no resync: %v %v", name, ok, err)
		}
	}
}

func TestParserMemoryBounded(t *testing.T) {
	var p Parser
	junk := bytes.Repeat([]byte{0xaa}, 1<<20)
	for i := 0; i < 8; i++ {
		p.Feed(junk)
		p.Next()
	}
	if cap(p.buf) > 2<<20 {
		t.Fatalf("buffer grew to %d while scanning", cap(p.buf))
	}
}

func TestMessages(t *testing.T) {
	var o Open
	if err := ParseJSON([]byte(` {"kind":"exec","command":"AP9h","subsystem":null,"env":[{"name":"A","value":"/w=="}],"pty":{"term":"xterm","cols":80,"modes":"AQAAAAsA"},"extra":1}`), &o); err != nil {
		t.Fatal(err)
	}
	if o.Command == nil || !bytes.Equal(*o.Command, []byte{0, 0xff, 0x61}) || o.Subsystem != nil || o.Env[0].Value[0] != 0xff || o.Pty.Modes[4] != 11 {
		t.Fatalf("%+v", o)
	}
	var n Open
	ParseJSON([]byte(`{"kind":"exec","command":null}`), &n)
	if n.Command != nil {
		t.Fatal("null command decoded as non-nil")
	}
	var e Open
	ParseJSON([]byte(`{"kind":"exec","command":""}`), &e)
	if e.Command == nil || len(*e.Command) != 0 {
		t.Fatal("empty command not kept apart from null")
	}
	if err := ParseJSON([]byte(`[1]`), &o); err == nil {
		t.Fatal("array accepted")
	}
	for _, x := range []Exit{{Code: 3}, {Signal: "SEGV", Core: true}, {Signal: "TERM"}} {
		b, _ := json.Marshal(x)
		var y Exit
		if err := json.Unmarshal(b, &y); err != nil || y != x {
			t.Fatalf("%s -> %+v", b, y)
		}
		if x.Signal == "TERM" && !strings.Contains(string(b), `"core":false`) {
			t.Fatalf("core missing: %s", b)
		}
	}
}
