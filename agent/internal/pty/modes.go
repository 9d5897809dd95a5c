package pty

import (
	"encoding/binary"
	"os"
	"syscall"
)

// Linux termios values (asm-generic termbits, the same on amd64 and arm64),
// spelled out because package syscall lacks some of them on some arches.
const (
	vINTR, vQUIT, vERASE, vKILL, vEOF          = 0, 1, 2, 3, 4
	vSTART, vSTOP, vSUSP, vEOL                 = 8, 9, 10, 11
	vREPRINT, vDISCARD, vWERASE, vLNEXT, vEOL2 = 12, 13, 14, 15, 16

	cBAUD = 0o010017
)

// Where a TTYMODE flag lives.
const (
	iflag = iota
	oflag
	cflag
	lflag
)

type flagMode struct {
	field int
	bit   uint32
}

// charModes maps RFC 4254 §8 opcodes to c_cc indices: OpenSSH's ttymodes.h
// TTYCHAR lines that exist on Linux (VDSUSP 11, VFLUSH 15, VSWTCH 16 and
// VSTATUS 17 do not, so sshd skips them, and so do we).
var charModes = map[byte]int{
	1: vINTR, 2: vQUIT, 3: vERASE, 4: vKILL, 5: vEOF, 6: vEOL, 7: vEOL2,
	8: vSTART, 9: vSTOP, 10: vSUSP, 12: vREPRINT, 13: vWERASE, 14: vLNEXT,
	18: vDISCARD,
}

// flagModes maps opcodes to termios flag bits: ttymodes.h's TTYMODE lines.
var flagModes = map[byte]flagMode{
	30: {iflag, 0o4}, 31: {iflag, 0o10}, 32: {iflag, 0o20}, 33: {iflag, 0o40}, // IGNPAR PARMRK INPCK ISTRIP
	34: {iflag, 0o100}, 35: {iflag, 0o200}, 36: {iflag, 0o400}, 37: {iflag, 0o1000}, // INLCR IGNCR ICRNL IUCLC
	38: {iflag, 0o2000}, 39: {iflag, 0o4000}, 40: {iflag, 0o10000}, 41: {iflag, 0o20000}, // IXON IXANY IXOFF IMAXBEL
	42: {iflag, 0o40000},                                                    // IUTF8
	50: {lflag, 0o1}, 51: {lflag, 0o2}, 52: {lflag, 0o4}, 53: {lflag, 0o10}, // ISIG ICANON XCASE ECHO
	54: {lflag, 0o20}, 55: {lflag, 0o40}, 56: {lflag, 0o100}, 57: {lflag, 0o200}, // ECHOE ECHOK ECHONL NOFLSH
	58: {lflag, 0o400}, 59: {lflag, 0o100000}, 60: {lflag, 0o1000}, 61: {lflag, 0o4000}, // TOSTOP IEXTEN ECHOCTL ECHOKE
	62: {lflag, 0o40000},                                                    // PENDIN
	70: {oflag, 0o1}, 71: {oflag, 0o2}, 72: {oflag, 0o4}, 73: {oflag, 0o10}, // OPOST OLCUC ONLCR OCRNL
	74: {oflag, 0o20}, 75: {oflag, 0o40}, // ONOCR ONLRET
	90: {cflag, 0o40}, 91: {cflag, 0o60}, 92: {cflag, 0o400}, 93: {cflag, 0o1000}, // CS7 CS8 PARENB PARODD
}

const (
	opEnd    = 0
	opISpeed = 128
	opOSpeed = 129
)

// speeds is OpenSSH's baud_to_speed table for Linux; anything else is 9600.
var speeds = map[uint32]uint32{
	0: 0, 50: 1, 75: 2, 110: 3, 134: 4, 150: 5, 200: 6, 300: 7, 600: 0o10,
	1200: 0o11, 1800: 0o12, 2400: 0o13, 4800: 0o14, 9600: 0o15, 19200: 0o16,
	38400: 0o17, 57600: 0o10001, 115200: 0o10002, 230400: 0o10003,
}

// ParseModes applies RFC 4254 §8 encoded modes to t the way OpenSSH's
// tty_parse_modes does: opcodes 1..159 it does not know skip their u32,
// opcode 0 or 160+ ends the list, and what was parsed so far is kept (sshd
// gives up on a truncated list; keeping the prefix is the kinder choice).
func ParseModes(t *syscall.Termios, modes []byte) {
	for len(modes) > 0 {
		op := modes[0]
		modes = modes[1:]
		if op == opEnd || op >= 160 {
			return
		}
		if len(modes) < 4 {
			return
		}
		v := binary.BigEndian.Uint32(modes)
		modes = modes[4:]
		switch {
		case op == opISpeed || op == opOSpeed:
			sp, ok := speeds[v]
			if !ok {
				sp = 0o15 // B9600, as baud_to_speed's default
			}
			// glibc's cfset[io]speed both land in CBAUD on Linux.
			t.Cflag = t.Cflag&^cBAUD | sp
			if op == opISpeed {
				t.Ispeed = sp
			} else {
				t.Ospeed = sp
			}
		default:
			if idx, ok := charModes[op]; ok {
				t.Cc[idx] = specialChar(v)
				continue
			}
			m, ok := flagModes[op]
			if !ok {
				continue // known to the protocol, not to Linux: value skipped
			}
			f := field(t, m.field)
			if v != 0 {
				*f |= m.bit
			} else {
				*f &^= m.bit
			}
		}
	}
}

// specialChar is OpenSSH's special_char_decode: 255 disables the character
// (_POSIX_VDISABLE is 0 on Linux).
func specialChar(v uint32) uint8 {
	if v == 255 {
		return 0
	}
	return uint8(v)
}

func field(t *syscall.Termios, which int) *uint32 {
	switch which {
	case iflag:
		return &t.Iflag
	case oflag:
		return &t.Oflag
	case cflag:
		return &t.Cflag
	}
	return &t.Lflag
}

// ApplyModes reads the terminal's attributes, applies modes and writes them
// back. Like sshd it leaves the terminal alone when there are no modes.
func ApplyModes(f *os.File, modes []byte) error {
	if len(modes) == 0 {
		return nil
	}
	t, err := GetAttr(f)
	if err != nil {
		return err
	}
	ParseModes(t, modes)
	return SetAttr(f, t)
}
