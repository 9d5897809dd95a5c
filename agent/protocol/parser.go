package protocol

import "bytes"

// helloPrefix is what a HELLO frame starts with: its 12-byte header and the
// magic. A desynchronised agent scans for it (docs: "Handshake and
// resynchronisation").
var helloPrefix = append([]byte{0, 0, 0, HelloSize, TypeHello, 0, 0, 0, 0, 0, 0, 0}, Magic...)

// Parser splits the byte stream from the gateway into frames. It starts
// desynchronised: nothing but a HELLO is acted on until one is found, and it
// returns to that state after any invalid frame (Desync) or end of file
// (Reset). Its buffer is bounded by one maximal frame plus one read.
type Parser struct {
	buf    []byte
	synced bool
}

// Feed appends bytes read from the transport.
func (p *Parser) Feed(b []byte) {
	p.buf = append(p.buf, b...)
}

// Synced reports whether the parser has found a HELLO since it last lost sync.
func (p *Parser) Synced() bool { return p.synced }

// Reset forgets buffered bytes and waits for a HELLO again (end of file).
func (p *Parser) Reset() {
	p.buf = nil
	p.synced = false
}

// Desync makes the parser scan for the next HELLO header (after a frame the
// agent could not accept, such as JSON it could not parse).
func (p *Parser) Desync() { p.synced = false }

// Next returns the next complete frame, ok=false when more bytes are needed,
// or a non-nil err describing a violation (the parser has then desynchronised
// itself and the caller should just log and carry on).
func (p *Parser) Next() (f Frame, ok bool, err error) {
	if !p.synced {
		i := bytes.Index(p.buf, helloPrefix)
		if i < 0 {
			// Keep a tail that may be the start of a HELLO split across reads.
			keep := len(helloPrefix) - 1
			if len(p.buf) > keep {
				p.buf = append(p.buf[:0], p.buf[len(p.buf)-keep:]...)
			}
			return Frame{}, false, nil
		}
		p.buf = p.buf[i:]
		p.synced = true
	}
	if len(p.buf) < HeaderSize {
		p.compact()
		return Frame{}, false, nil
	}
	typ, stream, length, herr := checkHeader(p.buf[:HeaderSize])
	if herr != nil {
		// Drop one byte so the scan cannot find this same spot again.
		p.buf = p.buf[1:]
		p.synced = false
		return Frame{}, false, herr
	}
	if len(p.buf) < HeaderSize+length {
		p.compact()
		return Frame{}, false, nil
	}
	f = Frame{Type: typ, Stream: stream, Payload: p.buf[HeaderSize : HeaderSize+length]}
	p.buf = p.buf[HeaderSize+length:]
	return f, true, nil
}

// compact moves a partial frame to the front of a fresh buffer once the
// consumed prefix is large, so memory does not grow with traffic.
func (p *Parser) compact() {
	if cap(p.buf) > 4*MaxData && len(p.buf) < cap(p.buf)/4 {
		p.buf = append([]byte(nil), p.buf...)
	}
}
