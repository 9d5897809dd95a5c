package agent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sshvisor/agent/protocol"
)

// makeRoot builds a tiny image root: busybox as /usr/bin/busybox, /bin a
// link to usr/bin (usrmerge), sh a relative link, and a passwd naming a
// shell the image does not have.
func makeRoot(t *testing.T, passwd string) string {
	t.Helper()
	busybox, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Skip("no /bin/busybox on this host")
	}
	root := t.TempDir()
	for _, d := range []string{"usr/bin", "etc", "root", "tmp", "srv"} {
		os.MkdirAll(filepath.Join(root, d), 0o755)
	}
	os.WriteFile(filepath.Join(root, "usr/bin/busybox"), busybox, 0o755)
	os.Symlink("busybox", filepath.Join(root, "usr/bin/sh"))
	os.Symlink("usr/bin", filepath.Join(root, "bin"))
	os.WriteFile(filepath.Join(root, "etc/passwd"), []byte(passwd), 0o644)
	return root
}

func withRoot(t *testing.T, root string) {
	t.Helper()
	savedRoot, savedPasswd := sessionRootFile, passwdFile
	f := filepath.Join(t.TempDir(), "session-root")
	os.WriteFile(f, []byte(root+"\n"), 0o644)
	sessionRootFile, passwdFile = f, "/etc/passwd"
	t.Cleanup(func() { sessionRootFile, passwdFile = savedRoot, savedPasswd })
}

func TestSessionRootShellChoice(t *testing.T) {
	root := makeRoot(t, "root:x:0:0:root:/root:/bin/zsh\n")
	cmd := []byte("true")
	c, err := buildCommand(&protocol.Open{Kind: "exec", Command: &cmd}, root, nil)
	if err != nil || c.path != "/bin/sh" || c.chroot != root || c.dir != "/root" {
		t.Fatalf("missing shell: %+v %v", c, err)
	}
	if !strings.HasSuffix(envOf(c, "PATH"), ":"+guestToolsDir) {
		t.Fatalf("PATH %q", envOf(c, "PATH"))
	}
	// An image with bash gets it, though its passwd says sh.
	os.Symlink("busybox", filepath.Join(root, "usr/bin/bash"))
	os.WriteFile(filepath.Join(root, "etc/passwd"), []byte("root:x:0:0:root:/root:/bin/sh\n"), 0o644)
	cwd := "/srv"
	c, _ = buildCommand(&protocol.Open{Kind: "exec", Command: &cmd, Cwd: &cwd}, root, nil)
	if c.path != "/bin/bash" || c.dir != "/srv" {
		t.Fatalf("bash/cwd: %+v", c)
	}
	// A WorkingDir the image lacks: home, as sshd with a missing directory.
	gone := "/nonexistent"
	c, _ = buildCommand(&protocol.Open{Kind: "exec", Command: &cmd, Cwd: &gone}, root, nil)
	if c.dir != "/root" {
		t.Fatalf("missing cwd: %+v", c)
	}
}

func TestSessionRootRunsInTheImage(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("chroot needs root")
	}
	root := makeRoot(t, "root:x:0:0:root:/root:/bin/sh\n")
	os.WriteFile(filepath.Join(root, "etc/only-in-image"), []byte("yes\n"), 0o644)
	withRoot(t, root)
	g := newGW(t)
	s := g.run(1, "read x < /etc/only-in-image; echo $x; pwd; echo $HOME")
	if string(s.out) != "yes\n/root\n/root\n" || s.exit.Code != 0 {
		t.Fatalf("out %q err %q exit %+v", s.out, s.err, s.exit)
	}
	// A root that could not be mounted is an error, never the agent's own root.
	for i, bad := range []string{"unmounted\n", "relative/path\n", "/nonexistent\n", "/\n"} {
		os.WriteFile(sessionRootFile, []byte(bad), 0o644)
		if r, err := sessionRoot(); err == nil || r != "" {
			t.Fatalf("%q accepted as %q", bad, r)
		}
		f := g.open(uint32(2+i), map[string]any{"kind": "exec", "command": []byte("true")})
		if !has(f.events, "OPEN_FAIL") || !strings.Contains(string(f.open), "not mounted") {
			t.Fatalf("%q: events %v open %q", bad, f.events, f.open)
		}
	}
}

func envOf(c command, k string) string {
	for _, kv := range c.env {
		if strings.HasPrefix(kv, k+"=") {
			return kv[len(k)+1:]
		}
	}
	return ""
}
