package device

import (
	"os"
	"path/filepath"
	"testing"
)

func TestFind(t *testing.T) {
	dir := t.TempDir()
	for port, name := range map[string]string{"vport0p1": "org.qemu.guest_agent.0", "vport0p2": PortName} {
		os.MkdirAll(filepath.Join(dir, port), 0o755)
		os.WriteFile(filepath.Join(dir, port, "name"), []byte(name+"\n"), 0o644)
	}
	if got := Find(dir, PortName); got != "/dev/vport0p2" {
		t.Fatalf("got %q", got)
	}
	if got := Find(dir, "nope"); got != "" {
		t.Fatalf("got %q", got)
	}
}
