// Package pty opens Linux pseudo-terminals and applies what an SSH client
// asks of them (size, terminal modes, break) with plain ioctls, so the agent
// needs no cgo and no golang.org/x/sys.
package pty

import (
	"fmt"
	"os"
	"syscall"
	"unsafe"
)

// Linux ioctl numbers; identical on amd64 and arm64 (asm-generic).
const (
	ioctlTCGETS     = 0x5401
	ioctlTCSETS     = 0x5402
	ioctlTCSBRK     = 0x5409
	ioctlTIOCSWINSZ = 0x5414
	ioctlTIOCGPTN   = 0x80045430
	ioctlTIOCSPTLCK = 0x40045431
)

func ioctl(fd, req, arg uintptr) error {
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, fd, req, arg); e != 0 {
		return e
	}
	return nil
}

// Open returns a new pty's master (non-blocking, so reads can have deadlines
// through Go's poller) and its slave (blocking, for the child).
func Open() (master, slave *os.File, err error) {
	mfd, err := syscall.Open("/dev/ptmx", syscall.O_RDWR|syscall.O_NOCTTY|syscall.O_CLOEXEC|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("open /dev/ptmx: %w", err)
	}
	var unlock int32
	if err := ioctl(uintptr(mfd), ioctlTIOCSPTLCK, uintptr(unsafe.Pointer(&unlock))); err != nil {
		syscall.Close(mfd)
		return nil, nil, fmt.Errorf("unlockpt: %w", err)
	}
	var n uint32
	if err := ioctl(uintptr(mfd), ioctlTIOCGPTN, uintptr(unsafe.Pointer(&n))); err != nil {
		syscall.Close(mfd)
		return nil, nil, fmt.Errorf("ptsname: %w", err)
	}
	name := fmt.Sprintf("/dev/pts/%d", n)
	master = os.NewFile(uintptr(mfd), "/dev/ptmx")
	slave, err = os.OpenFile(name, os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		master.Close()
		return nil, nil, err
	}
	return master, slave, nil
}

// control runs fn with f's descriptor without switching f to blocking mode
// (which File.Fd would do, disabling read deadlines).
func control(f *os.File, fn func(fd uintptr) error) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = fn(fd) }); err != nil {
		return err
	}
	return ferr
}

// SetSize sets the window size; the kernel sends SIGWINCH to the foreground
// process group when it changes.
func SetSize(f *os.File, cols, rows, width, height uint32) error {
	ws := [4]uint16{clamp16(rows), clamp16(cols), clamp16(width), clamp16(height)}
	return control(f, func(fd uintptr) error {
		return ioctl(fd, ioctlTIOCSWINSZ, uintptr(unsafe.Pointer(&ws)))
	})
}

// SendBreak is tcsendbreak(fd, 0): TCSBRK with argument 0.
func SendBreak(f *os.File) error {
	return control(f, func(fd uintptr) error { return ioctl(fd, ioctlTCSBRK, 0) })
}

// GetAttr reads the terminal attributes (tcgetattr).
func GetAttr(f *os.File) (*syscall.Termios, error) {
	var t syscall.Termios
	err := control(f, func(fd uintptr) error {
		return ioctl(fd, ioctlTCGETS, uintptr(unsafe.Pointer(&t)))
	})
	return &t, err
}

// SetAttr writes the terminal attributes (tcsetattr TCSANOW).
func SetAttr(f *os.File, t *syscall.Termios) error {
	return control(f, func(fd uintptr) error {
		return ioctl(fd, ioctlTCSETS, uintptr(unsafe.Pointer(t)))
	})
}

func clamp16(v uint32) uint16 {
	if v > 0xffff {
		return 0xffff
	}
	return uint16(v)
}
