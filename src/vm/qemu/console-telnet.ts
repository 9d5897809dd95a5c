/**
 * The console chardev runs in QEMU's telnet mode only so that the gateway
 * can send a serial break: QEMU turns `IAC BREAK` from its socket client
 * into CHR_EVENT_BREAK, which the emulated UART delivers as a break (Linux's
 * Magic SysRq on a serial console). What that costs, per QEMU's
 * chardev/char-socket.c:
 *
 * - on every connection QEMU first sends a fixed 12-byte negotiation
 *   (`IAC WILL ECHO, IAC WILL SGA, IAC WILL BINARY, IAC DO BINARY`), which
 *   must not reach the console history;
 * - input is parsed for IAC sequences, so a 0xFF byte typed by a user must
 *   be sent doubled (`IAC IAC`);
 * - output is not escaped: the guest's bytes arrive as they are.
 */

/** What QEMU sends first on each console connection in telnet mode. */
export const TELNET_INIT = Buffer.from([0xff, 0xfb, 0x01, 0xff, 0xfb, 0x03, 0xff, 0xfb, 0x00, 0xff, 0xfd, 0x00]);
/** Telnet BREAK (RFC 854), which QEMU turns into a serial break. */
export const TELNET_BREAK = Buffer.from([0xff, 0xf3]);

/**
 * Drops TELNET_INIT from the start of one connection's byte stream, however
 * it is split across reads. Bytes that do not match it (an older QEMU
 * without telnet mode) are passed through untouched.
 */
export class TelnetInitStripper {
  private matched = 0;
  private done = false;

  /** The console bytes of `chunk`, without any part of the negotiation. */
  push(chunk: Buffer): Buffer {
    if (this.done) return chunk;
    let i = 0;
    while (i < chunk.length && this.matched < TELNET_INIT.length && chunk[i] === TELNET_INIT[this.matched]) {
      i++;
      this.matched++;
    }
    if (this.matched === TELNET_INIT.length) {
      this.done = true;
      return chunk.subarray(i);
    }
    if (i < chunk.length) {
      // Not the negotiation after all: give back what was held as its prefix.
      this.done = true;
      const held = TELNET_INIT.subarray(0, this.matched - i);
      return Buffer.concat([held, chunk]);
    }
    return Buffer.alloc(0);
  }
}

/** `data` with every 0xFF doubled, as telnet input must be (RFC 854: IAC IAC is a data byte 255). */
export function escapeTelnet(data: Buffer): Buffer {
  if (!data.includes(0xff)) return data;
  const out: number[] = [];
  for (const b of data) {
    out.push(b);
    if (b === 0xff) out.push(0xff);
  }
  return Buffer.from(out);
}
