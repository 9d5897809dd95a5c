// Package protocol is the wire format of the sshvisor guest agent protocol
// (docs/guest-protocol.md): 12-byte frame headers, the binary HELLO and
// HELLO_ACK payloads, and the JSON messages. It does no I/O.
package protocol

import (
	"encoding/binary"
	"fmt"
)

// Frame types (docs/guest-protocol.md, "Frames").
const (
	TypeHello         byte = 0x01
	TypeHelloAck      byte = 0x02
	TypeRequest       byte = 0x10
	TypeResponse      byte = 0x11
	TypeOpen          byte = 0x20
	TypeOpenOK        byte = 0x21
	TypeOpenFail      byte = 0x22
	TypeData          byte = 0x30
	TypeStderr        byte = 0x31
	TypeWindow        byte = 0x32
	TypeEOF           byte = 0x33
	TypeClose         byte = 0x34
	TypeStreamRequest byte = 0x40
	TypeExit          byte = 0x41
)

// Sizes and limits of version 1.
const (
	HeaderSize     = 12
	MaxPayload     = 1 << 20 // 1,048,576: the largest payload any frame may carry
	MaxData        = 65536   // DATA and STDERR payloads
	InitialWindow  = 262144  // each direction of each stream starts with this credit
	HelloSize      = 28
	HelloAckHeader = 26
	Version        = 1
	// FirstAgentStream is the lowest id of a stream the agent opens; the
	// gateway uses 1 .. FirstAgentStream-1.
	FirstAgentStream uint32 = 1 << 31
)

// Magic starts the HELLO and HELLO_ACK payloads.
const Magic = "sshvAGNT"

// Frame is one decoded frame. Payload aliases the parser's buffer only until
// the next call to Parser.Next; receivers that keep it must copy.
type Frame struct {
	Type    byte
	Stream  uint32
	Payload []byte
}

// Encode returns the bytes of one frame: header then payload.
func Encode(typ byte, stream uint32, payload []byte) []byte {
	b := make([]byte, HeaderSize+len(payload))
	PutHeader(b, typ, stream, len(payload))
	copy(b[HeaderSize:], payload)
	return b
}

// PutHeader writes a frame header into b[:12]. Stream pumps use it to read a
// child's output straight into the frame buffer, saving a copy.
func PutHeader(b []byte, typ byte, stream uint32, length int) {
	binary.BigEndian.PutUint32(b[0:4], uint32(length))
	b[4] = typ
	b[5], b[6], b[7] = 0, 0, 0
	binary.BigEndian.PutUint32(b[8:12], stream)
}

// maxPayloadFor is the largest payload the agent accepts for a type it may
// receive; 0 with ok=false means the type is never sent to the agent (or is
// unknown), which is a protocol violation.
func maxPayloadFor(typ byte) (min, max int, ok bool) {
	switch typ {
	case TypeHello:
		return HelloSize, HelloSize, true
	case TypeOpen:
		return 0, MaxPayload, true
	case TypeRequest, TypeOpenOK, TypeOpenFail, TypeStreamRequest, TypeData:
		return 0, MaxData, true
	case TypeWindow:
		return 4, 4, true
	case TypeEOF, TypeClose:
		return 0, 0, true
	}
	return 0, 0, false
}

// checkHeader validates a header the agent received, before its payload is
// buffered.
func checkHeader(h []byte) (typ byte, stream uint32, length int, err error) {
	length64 := binary.BigEndian.Uint32(h[0:4])
	typ = h[4]
	stream = binary.BigEndian.Uint32(h[8:12])
	if h[5] != 0 || h[6] != 0 || h[7] != 0 {
		return 0, 0, 0, fmt.Errorf("non-zero reserved bytes in frame type 0x%02x", typ)
	}
	min, max, ok := maxPayloadFor(typ)
	if !ok {
		return 0, 0, 0, fmt.Errorf("unexpected frame type 0x%02x", typ)
	}
	if length64 > uint32(max) || int(length64) < min {
		return 0, 0, 0, fmt.Errorf("frame type 0x%02x with %d payload bytes", typ, length64)
	}
	control := typ == TypeHello || typ == TypeRequest
	if control != (stream == 0) {
		return 0, 0, 0, fmt.Errorf("frame type 0x%02x on stream %d", typ, stream)
	}
	return typ, stream, int(length64), nil
}
