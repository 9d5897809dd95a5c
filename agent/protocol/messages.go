package protocol

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
)

// Hello is the gateway's HELLO payload.
type Hello struct {
	MinVersion uint16
	MaxVersion uint16
	Nonce      [16]byte
}

// ParseHello decodes a HELLO payload (exactly 28 bytes, starting with Magic).
func ParseHello(p []byte) (Hello, error) {
	var h Hello
	if len(p) != HelloSize || string(p[:8]) != Magic {
		return h, errors.New("malformed HELLO")
	}
	h.MinVersion = binary.BigEndian.Uint16(p[8:10])
	h.MaxVersion = binary.BigEndian.Uint16(p[10:12])
	copy(h.Nonce[:], p[12:28])
	return h, nil
}

// ChooseVersion picks the highest version both sides speak, or 0.
func (h Hello) ChooseVersion() uint16 {
	if h.MinVersion <= Version && Version <= h.MaxVersion {
		return Version
	}
	return 0
}

// HelloAckInfo is the JSON part of HELLO_ACK.
type HelloAckInfo struct {
	Agent      string `json:"agent"`
	MinVersion int    `json:"minVersion"`
	MaxVersion int    `json:"maxVersion"`
	BootID     string `json:"bootId,omitempty"`
	UptimeMs   int64  `json:"uptimeMs"`
}

// EncodeHelloAck builds the HELLO_ACK payload: magic, chosen version, the
// echoed nonce, then the JSON.
func EncodeHelloAck(version uint16, nonce [16]byte, info HelloAckInfo) []byte {
	j, _ := json.Marshal(info)
	b := make([]byte, HelloAckHeader, HelloAckHeader+len(j))
	copy(b, Magic)
	binary.BigEndian.PutUint16(b[8:10], version)
	copy(b[10:26], nonce[:])
	return append(b, j...)
}

// EncodeHello builds a HELLO payload (the gateway's side; used by tests).
func EncodeHello(min, max uint16, nonce [16]byte) []byte {
	b := make([]byte, HelloSize)
	copy(b, Magic)
	binary.BigEndian.PutUint16(b[8:10], min)
	binary.BigEndian.PutUint16(b[10:12], max)
	copy(b[12:], nonce[:])
	return b
}

// Request is a control REQUEST. Fields of every op share one struct; each op
// reads the ones it needs.
type Request struct {
	ID       uint32 `json:"id"`
	Op       string `json:"op"`
	UnixMs   *int64 `json:"unixMs,omitempty"`
	Hostname string `json:"hostname,omitempty"`
	Seed     []byte `json:"seed,omitempty"`
}

// EnvVar is one client-supplied environment variable; the value need not be
// UTF-8, so it travels as base64.
type EnvVar struct {
	Name  string `json:"name"`
	Value []byte `json:"value"`
}

// PtyRequest describes the pty of an exec stream.
type PtyRequest struct {
	Term   string `json:"term"`
	Cols   uint32 `json:"cols"`
	Rows   uint32 `json:"rows"`
	Width  uint32 `json:"width"`
	Height uint32 `json:"height"`
	Modes  []byte `json:"modes"`
}

// Open is the OPEN payload of every stream kind.
type Open struct {
	Kind string `json:"kind"`
	// exec; Command is a pointer so that null (login shell) and "" (an empty
	// command, which sshd runs as `sh -c ''`) differ.
	Command      *[]byte     `json:"command,omitempty"`
	Subsystem    *string     `json:"subsystem,omitempty"`
	Env          []EnvVar    `json:"env,omitempty"`
	Pty          *PtyRequest `json:"pty,omitempty"`
	AgentForward bool        `json:"agentForward,omitempty"`
	// Cwd is where the command starts (an image's WorkingDir); absent, or
	// not a directory: root's home, as sshd.
	Cwd *string `json:"cwd,omitempty"`
	// tcp-connect, tcp-listen
	Host string `json:"host,omitempty"`
	Port int    `json:"port,omitempty"`
	// tcp-accepted
	Listener   uint32 `json:"listener,omitempty"`
	OriginHost string `json:"originHost,omitempty"`
	OriginPort int    `json:"originPort,omitempty"`
	// auth-agent
	Session uint32 `json:"session,omitempty"`
}

// StreamRequest is a STREAM_REQUEST on an exec stream.
type StreamRequest struct {
	Op     string `json:"op"`
	Cols   uint32 `json:"cols"`
	Rows   uint32 `json:"rows"`
	Width  uint32 `json:"width"`
	Height uint32 `json:"height"`
	Name   string `json:"name"`
	Ms     uint32 `json:"ms"`
}

// Exit is the EXIT payload: a code, or a signal name (without "SIG") and
// whether a core was dumped.
type Exit struct {
	Code   int
	Signal string
	Core   bool
}

// MarshalJSON emits exactly one of the two shapes the doc allows.
func (e Exit) MarshalJSON() ([]byte, error) {
	if e.Signal != "" {
		return json.Marshal(struct {
			Signal string `json:"signal"`
			Core   bool   `json:"core"`
		}{e.Signal, e.Core})
	}
	return json.Marshal(struct {
		Code int `json:"code"`
	}{e.Code})
}

// UnmarshalJSON reads either shape (tests decode what the agent sent).
func (e *Exit) UnmarshalJSON(b []byte) error {
	var v struct {
		Code   *int   `json:"code"`
		Signal string `json:"signal"`
		Core   bool   `json:"core"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*e = Exit{Signal: v.Signal, Core: v.Core}
	if v.Code != nil {
		e.Code = *v.Code
	}
	return nil
}

// ErrorPayload is the JSON of OPEN_FAIL.
type ErrorPayload struct {
	Error string `json:"error"`
}

// Window encodes a WINDOW payload.
func Window(n uint32) []byte {
	b := make([]byte, 4)
	binary.BigEndian.PutUint32(b, n)
	return b
}

// ParseWindow decodes a WINDOW payload; credit must be positive.
func ParseWindow(p []byte) (uint32, error) {
	if len(p) != 4 {
		return 0, errors.New("malformed WINDOW")
	}
	n := binary.BigEndian.Uint32(p)
	if n == 0 {
		return 0, errors.New("WINDOW of 0")
	}
	return n, nil
}

// ParseJSON decodes a JSON object payload; anything but an object is refused.
func ParseJSON(p []byte, v any) error {
	if t := bytes.TrimLeft(p, " \t\r\n"); len(t) == 0 || t[0] != '{' {
		return errors.New("payload is not a JSON object")
	}
	return json.Unmarshal(p, v)
}
