package agent

import (
	"crypto/rand"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"sshvisor/agent/protocol"
)

// authSocket is the SSH_AUTH_SOCK of an exec stream opened with
// agentForward: a unix socket in a private /tmp/ssh-XXXXXXXX directory, as
// sshd makes; each connection to it becomes an auth-agent stream. In a
// session root the directory is made in the root's /tmp, and path is what
// the session sees.
type authSocket struct {
	session *stream
	dir     string
	path    string
	l       *net.UnixListener
	once    sync.Once
}

const nameChars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

func newAuthSocket(session *stream, root string) (*authSocket, error) {
	var dir string
	for tries := 0; ; tries++ {
		b := make([]byte, 8)
		if _, err := rand.Read(b); err != nil {
			return nil, err
		}
		for i := range b {
			b[i] = nameChars[int(b[i])%len(nameChars)]
		}
		dir = inRoot(root, "/tmp/ssh-"+string(b))
		err := os.Mkdir(dir, 0o700)
		if err == nil {
			break
		}
		if !os.IsExist(err) || tries > 10 {
			return nil, err
		}
	}
	path := filepath.Join(dir, "agent."+strconv.Itoa(os.Getpid()))
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	l.SetUnlinkOnClose(true)
	seen := path
	if root != "" {
		seen = "/" + strings.TrimPrefix(strings.TrimPrefix(path, root), "/")
	}
	return &authSocket{session: session, dir: dir, path: seen, l: l}, nil
}

// serve accepts until close; each connection waits for the gateway to take
// the auth-agent stream.
func (a *authSocket) serve() {
	alive := func() bool { return !a.session.isDead() }
	for {
		if !a.session.a.waitSlot(a.session.gen, alive) {
			return
		}
		c, err := a.l.AcceptUnix()
		if err != nil {
			return
		}
		go func() {
			s := a.session.a.openAgentStream(a.session.gen, alive, protocol.Open{Kind: "auth-agent", Session: a.session.id})
			if s == nil {
				c.Close()
				return
			}
			relay(s, c)
		}()
	}
}

// close removes the socket and its directory.
func (a *authSocket) close() {
	a.once.Do(func() {
		a.l.Close()
		os.RemoveAll(a.dir)
		a.session.a.wakeSlots()
	})
}
