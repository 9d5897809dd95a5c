package agent

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"sshvisor/agent/protocol"
)

// defaultPath is the PATH sshd gives root (the doc's "Streams / exec").
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// sftpServers are searched in this order, like the images' sshd configs.
var sftpServers = []string{
	"/usr/lib/openssh/sftp-server",
	"/usr/lib/ssh/sftp-server",
	"/usr/libexec/sftp-server",
	"/usr/libexec/openssh/sftp-server",
	"/usr/lib/sftp-server",
}

// passwdFile is where root's shell and home come from (tests point it elsewhere).
var passwdFile = "/etc/passwd"

// user is root's login shell and home.
type user struct{ shell, home string }

// rootUser reads root's entry from the passwd file under root (the session
// root, or "" for the agent's own). An image is anyone's: a shell its passwd
// names but it lacks falls back to /bin/sh, and a plain sh gives way to the
// image's own bash where it has one (a busybox or Alpine root names /bin/sh
// or /bin/ash even with bash installed).
func rootUser(root string) user {
	u := user{shell: "/bin/sh", home: "/root"}
	if f, err := os.Open(inRoot(root, passwdFile)); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fields := strings.Split(sc.Text(), ":")
			if len(fields) < 7 || fields[0] != "root" {
				continue
			}
			if fields[5] != "" {
				u.home = fields[5]
			}
			if fields[6] != "" {
				u.shell = fields[6]
			}
			break
		}
		f.Close()
	}
	if root == "" {
		return u
	}
	if !existsInRoot(root, u.shell, false) {
		u.shell = "/bin/sh"
	}
	if b := filepath.Base(u.shell); (b == "sh" || b == "ash") && existsInRoot(root, "/bin/bash", false) {
		u.shell = "/bin/bash"
	}
	return u
}

// command is what an exec stream runs.
type command struct {
	path string
	args []string
	env  []string
	dir  string
	// chroot is the session root the command runs in ("" for none); path and dir are inside it.
	chroot string
}

// buildCommand turns an exec OPEN into argv, environment and directory, as
// sshd's do_child does. extraEnv holds the server-owned variables that depend
// on the session (TERM, SSH_TTY, SSH_AUTH_SOCK), in order.
func buildCommand(o *protocol.Open, root string, extraEnv [][2]string) (command, error) {
	u := rootUser(root)
	c := command{dir: u.home, chroot: root}
	if !existsInRoot(root, u.home, true) {
		c.dir = "/"
	}
	if o.Cwd != nil && *o.Cwd != "" && existsInRoot(root, *o.Cwd, true) {
		c.dir = *o.Cwd
	}
	base := filepath.Base(u.shell)
	switch {
	case o.Subsystem != nil:
		if *o.Subsystem != "sftp" {
			return c, fmt.Errorf("unknown subsystem %q", *o.Subsystem)
		}
		servers := sftpServers
		if root != "" {
			// An image without OpenSSH's sftp-server gets the default image's.
			servers = append(append([]string{}, sftpServers...), guestToolsDir+"/sftp-server")
		}
		for _, p := range servers {
			if existsInRoot(root, p, false) {
				c.path, c.args = p, []string{p}
				break
			}
		}
		if c.path == "" {
			return c, fmt.Errorf("no sftp-server in this image (install openssh-sftp-server)")
		}
	case o.Command != nil:
		c.path, c.args = u.shell, []string{base, "-c", cString(*o.Command)}
	default:
		c.path, c.args = u.shell, []string{"-" + base}
	}
	e := newEnv()
	e.set("PATH", defaultPath)
	for _, v := range o.Env {
		if v.Name == "" || strings.ContainsAny(v.Name, "=\x00") {
			continue
		}
		e.set(v.Name, cString(v.Value))
	}
	e.set("HOME", u.home)
	e.set("USER", "root")
	e.set("LOGNAME", "root")
	e.set("SHELL", u.shell)
	e.set("MAIL", "/var/mail/root")
	for _, kv := range extraEnv {
		e.set(kv[0], kv[1])
	}
	if root != "" {
		// Last on PATH: the image's own scp, rsync and sftp-server win where it has them.
		e.set("PATH", e.vals["PATH"]+":"+guestToolsDir)
	}
	c.env = e.list()
	return c, nil
}

// cString is what a C program sees of b: the bytes up to the first NUL
// (execve cannot pass more, and Go refuses strings with NULs).
func cString(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

// env is an ordered environment where a later set replaces the value but
// keeps the first position.
type env struct {
	keys []string
	vals map[string]string
}

func newEnv() *env { return &env{vals: map[string]string{}} }

func (e *env) set(k, v string) {
	if _, ok := e.vals[k]; !ok {
		e.keys = append(e.keys, k)
	}
	e.vals[k] = v
}

func (e *env) list() []string {
	out := make([]string, 0, len(e.keys))
	for _, k := range e.keys {
		out = append(out, k+"="+e.vals[k])
	}
	return out
}
