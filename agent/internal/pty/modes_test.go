package pty

import (
	"encoding/binary"
	"syscall"
	"testing"
)

func enc(ops ...uint32) []byte {
	var b []byte
	for i := 0; i < len(ops); i += 2 {
		b = append(b, byte(ops[i]))
		if i+1 < len(ops) {
			b = binary.BigEndian.AppendUint32(b, ops[i+1])
		}
	}
	return b
}

func TestParseModes(t *testing.T) {
	var tio syscall.Termios
	tio.Iflag = 0o400 // ICRNL set, to be cleared
	ParseModes(&tio, enc(1, 11, 3, 255, 42, 1, 36, 0, 53, 1, 91, 1, 20, 77, 128, 38400, 129, 12345, 0))
	if tio.Cc[vINTR] != 11 || tio.Cc[vERASE] != 0 {
		t.Fatalf("cc %v", tio.Cc[:17])
	}
	if tio.Iflag&0o40000 == 0 || tio.Iflag&0o400 != 0 {
		t.Fatalf("iflag %o", tio.Iflag)
	}
	if tio.Lflag&0o10 == 0 || tio.Cflag&0o60 != 0o60 {
		t.Fatalf("lflag %o cflag %o", tio.Lflag, tio.Cflag)
	}
	if tio.Ispeed != 0o17 || tio.Ospeed != 0o15 || tio.Cflag&cBAUD != 0o15 {
		t.Fatalf("speeds %o %o cflag %o", tio.Ispeed, tio.Ospeed, tio.Cflag)
	}
}

func TestParseModesStops(t *testing.T) {
	var tio syscall.Termios
	// Opcode 160 ends parsing (as sshd): the VQUIT after it is not applied.
	ParseModes(&tio, append(enc(1, 3), append([]byte{160}, enc(2, 28)...)...))
	if tio.Cc[vINTR] != 3 || tio.Cc[vQUIT] != 0 {
		t.Fatalf("cc %v", tio.Cc[:4])
	}
	// A truncated value ends it too.
	ParseModes(&tio, []byte{2, 0, 0})
	if tio.Cc[vQUIT] != 0 {
		t.Fatal("truncated mode applied")
	}
}

func TestPtyRoundTrip(t *testing.T) {
	m, s, err := Open()
	if err != nil {
		t.Skip("no ptys here:", err)
	}
	defer m.Close()
	defer s.Close()
	if err := ApplyModes(s, enc(1, 11, 42, 1, 0)); err != nil {
		t.Fatal(err)
	}
	tio, err := GetAttr(s)
	if err != nil || tio.Cc[vINTR] != 11 || tio.Iflag&0o40000 == 0 {
		t.Fatalf("%v %+v", err, tio)
	}
	if err := SetSize(m, 100, 40, 0, 0); err != nil {
		t.Fatal(err)
	}
}
