// Package sysops holds the agent's housekeeping operations on the guest
// kernel: the clock, the hostname, the RNG, sync, and the facts `info` and
// HELLO_ACK report.
package sysops

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"unsafe"
)

// Entropy ioctls of /dev/random (linux/random.h), identical on all arches.
const (
	ioctlRNDADDENTROPY = 0x40085203
	ioctlRNDRESEEDCRNG = 0x5207
)

// IdentityFile is what a template's init waits for before it goes on.
var IdentityFile = "/run/sshvisor/identity"

// Sync flushes the guest's filesystems (sync(2)), so a snapshot taken next is
// consistent.
func Sync() { syscall.Sync() }

// SetClock sets the wall clock (settimeofday): a resumed guest's clock stood
// still while it was suspended.
func SetClock(unixMs int64) error {
	tv := syscall.NsecToTimeval(unixMs * 1e6)
	if err := syscall.Settimeofday(&tv); err != nil {
		return fmt.Errorf("settimeofday: %w", err)
	}
	return nil
}

// SetHostname validates and sets the hostname.
func SetHostname(name string) error {
	if name == "" || len(name) > 64 || strings.ContainsAny(name, "\x00\n/ ") {
		return fmt.Errorf("invalid hostname %q", name)
	}
	if err := syscall.Sethostname([]byte(name)); err != nil {
		return fmt.Errorf("sethostname: %w", err)
	}
	return nil
}

// AddEntropy mixes seed into the kernel RNG, credited (RNDADDENTROPY), then
// asks the CRNG to reseed from it at once (RNDRESEEDCRNG) so that clones of
// one snapshot stop sharing a random stream immediately.
func AddEntropy(seed []byte) error {
	if len(seed) < 32 || len(seed) > 512 {
		return fmt.Errorf("seed must be 32..512 bytes, not %d", len(seed))
	}
	f, err := os.OpenFile("/dev/random", os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	// struct rand_pool_info { int entropy_count; int buf_size; __u32 buf[]; }
	// in native byte order, with buf padded to whole u32s.
	words := (len(seed) + 3) / 4
	info := make([]byte, 8+4*words)
	*(*int32)(unsafe.Pointer(&info[0])) = int32(len(seed) * 8)
	*(*int32)(unsafe.Pointer(&info[4])) = int32(len(seed))
	copy(info[8:], seed)
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, f.Fd(), ioctlRNDADDENTROPY, uintptr(unsafe.Pointer(&info[0]))); e != 0 {
		return fmt.Errorf("RNDADDENTROPY: %w", e)
	}
	// Kernels before 5.11 lack RNDRESEEDCRNG; the entropy is in either way.
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, f.Fd(), ioctlRNDRESEEDCRNG, 0); e != 0 && e != syscall.EINVAL && e != syscall.ENOTTY {
		return fmt.Errorf("RNDRESEEDCRNG: %w", e)
	}
	return nil
}

// WriteIdentity writes IdentityFile atomically (a template's init polls it).
func WriteIdentity(hostname string) error {
	dir := IdentityFile[:strings.LastIndexByte(IdentityFile, '/')]
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	tmp := IdentityFile + ".tmp"
	if err := os.WriteFile(tmp, []byte("hostname="+hostname+"\n"), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, IdentityFile)
}

// BootID is the kernel's boot id, or "" when /proc is not there.
func BootID() string {
	b, _ := os.ReadFile("/proc/sys/kernel/random/boot_id")
	return strings.TrimSpace(string(b))
}

// UptimeMs is the time since boot, including time suspended.
func UptimeMs() int64 {
	var ts syscall.Timespec
	const clockBoottime = 7
	if _, _, e := syscall.Syscall(syscall.SYS_CLOCK_GETTIME, clockBoottime, uintptr(unsafe.Pointer(&ts)), 0); e == 0 {
		return ts.Nano() / 1e6
	}
	b, err := os.ReadFile("/proc/uptime")
	if err != nil {
		return 0
	}
	f, _ := strconv.ParseFloat(strings.Fields(string(b) + " 0")[0], 64)
	return int64(f * 1000)
}

// Hostname is the current hostname.
func Hostname() string {
	h, _ := os.Hostname()
	return h
}
