// Types for what patches/ssh2+1.17.0.patch adds to ssh2's server side.
// The patch is applied by patch-package on install (package.json "postinstall").
import 'ssh2';

declare module 'ssh2' {
  interface TerminalModes {
    /** RFC 8160: terminal input and output are UTF-8. */
    IUTF8?: number | undefined;
  }

  interface PseudoTtyInfo {
    /**
     * The "encoded terminal modes" string of the pty-req exactly as sent
     * (RFC 4254 §8: opcode byte + uint32 pairs, ending with TTY_OP_END),
     * including opcodes `modes` has no name for.
     */
    rawModes: Buffer;
  }

  interface ExecInfo {
    /** The command's bytes as sent; `command` is their UTF-8 decoding (invalid bytes become U+FFFD). */
    rawCommand: Buffer;
  }

  interface SetEnvInfo {
    /** The variable name's bytes as sent. */
    rawKey: Buffer;
    /** The value's bytes as sent; `val` is their UTF-8 decoding. */
    rawVal: Buffer;
  }

  interface SubsystemInfo {
    /** The subsystem name's bytes as sent. */
    rawName: Buffer;
  }

  /** RFC 4335 "break" channel request. */
  interface BreakInfo {
    /** Break length in milliseconds (OpenSSH's `~B` sends 1000). */
    length: number;
  }

  interface Session {
    /**
     * `eow@openssh.com`: the client can no longer write this session's output
     * (its stdout was closed, e.g. `ssh host yes | head -1`); sshd stops
     * reading the command's output then, so the command dies of SIGPIPE.
     * Only sent by OpenSSH clients to servers whose ident starts with "OpenSSH".
     */
    on(event: 'eow', listener: () => void): this;
    once(event: 'eow', listener: () => void): this;
    /**
     * RFC 4335 break. `accept`/`reject` are undefined when the client did not
     * ask for a reply (OpenSSH's `~B` does not).
     */
    on(
      event: 'break',
      listener: (accept: SessionAccept | undefined, reject: RejectConnection | undefined, info: BreakInfo) => void,
    ): this;
    once(
      event: 'break',
      listener: (accept: SessionAccept | undefined, reject: RejectConnection | undefined, info: BreakInfo) => void,
    ): this;
  }

  interface Connection {
    /**
     * Opens an `auth-agent@openssh.com` channel to the client (after the
     * session's 'auth-agent' request, i.e. `ssh -A`); the client connects it
     * to its own agent.
     */
    openssh_authAgent(callback: ServerCallback): this;
    /**
     * The largest inbound packet this connection takes from now on, in bytes
     * (default 256 KiB, OpenSSH's PACKET_MAX_SIZE); kept across rekeys.
     */
    setMaxPacketSize(bytes: number): void;
  }
}
