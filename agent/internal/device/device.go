// Package device finds and opens the virtio-serial port the gateway talks to.
package device

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// PortName is the virtio-serial port name QEMU gives the agent's channel.
const PortName = "org.sshvisor.agent.0"

// Find returns /dev/<vportNpM> for the port named name, or "" when no such
// port exists yet.
func Find(sysDir, name string) string {
	dirs, _ := filepath.Glob(filepath.Join(sysDir, "*", "name"))
	for _, p := range dirs {
		b, err := os.ReadFile(p)
		if err == nil && strings.TrimSpace(string(b)) == name {
			return "/dev/" + filepath.Base(filepath.Dir(p))
		}
	}
	return ""
}

// Wait polls every 100 ms until the port appears: it shows up only once the
// virtio_console module has loaded, which may be after the agent started.
func Wait(name string) string {
	for {
		if p := Find("/sys/class/virtio-ports", name); p != "" {
			if _, err := os.Stat(p); err == nil {
				return p
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Port is an open character device used with blocking read(2) and write(2)
// on their own threads: a virtio port's write blocks while no host is
// connected, which is exactly what the agent wants, and read returns 0 when
// the host disconnects.
type Port struct{ fd int }

// Open opens the port read-write.
func Open(path string) (*Port, error) {
	fd, err := syscall.Open(path, syscall.O_RDWR|syscall.O_CLOEXEC|syscall.O_NOCTTY, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	return &Port{fd: fd}, nil
}

// Read reads; a return of 0 bytes is io.EOF (the host went away).
func (p *Port) Read(b []byte) (int, error) {
	for {
		n, err := syscall.Read(p.fd, b)
		if err == syscall.EINTR {
			continue
		}
		if err == syscall.EAGAIN {
			time.Sleep(50 * time.Millisecond)
			continue
		}
		if err != nil {
			return 0, err
		}
		if n == 0 {
			return 0, io.EOF
		}
		return n, nil
	}
}

// Write writes all of b once; EAGAIN and EPIPE (no host connected) are
// reported as ErrNotConnected so the caller can retry after a pause.
func (p *Port) Write(b []byte) (int, error) {
	n, err := syscall.Write(p.fd, b)
	if n < 0 {
		n = 0
	}
	switch err {
	case nil:
		return n, nil
	case syscall.EINTR:
		return n, nil
	case syscall.EAGAIN, syscall.EPIPE, syscall.ENODEV:
		return n, ErrNotConnected
	}
	return n, err
}

// ErrNotConnected means the host end is not there right now.
var ErrNotConnected = errors.New("host not connected")
