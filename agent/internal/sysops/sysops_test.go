package sysops

import (
	"os"
	"path/filepath"
	"testing"
)

func TestWriteIdentity(t *testing.T) {
	saved := IdentityFile
	defer func() { IdentityFile = saved }()
	IdentityFile = filepath.Join(t.TempDir(), "run", "identity")
	if err := WriteIdentity("vm-7"); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(IdentityFile)
	if string(b) != "hostname=vm-7\n" {
		t.Fatalf("%q", b)
	}
}

func TestRefusals(t *testing.T) {
	if err := AddEntropy(make([]byte, 31)); err == nil {
		t.Fatal("a 31-byte seed was accepted")
	}
	for _, h := range []string{"", "a b", "x/y", string(make([]byte, 65))} {
		if err := SetHostname(h); err == nil {
			t.Fatalf("hostname %q accepted", h)
		}
	}
	if BootID() == "" || UptimeMs() <= 0 {
		t.Fatal("no boot id or uptime")
	}
}
