/**
 * The gateway's side of the handshake (docs/guest-protocol.md, "Handshake
 * and resynchronisation" and "Compatibility"): send HELLO, discard bytes
 * until the HELLO_ACK with our nonce, check the chosen version.
 */
import { randomBytes } from 'node:crypto';
import type { Duplex } from 'node:stream';
import { encodeHello, HelloAckScanner, NONCE_BYTES, PROTOCOL_MAX_VERSION, PROTOCOL_MIN_VERSION } from './agent-frames.js';
import { helloAckJson, parsePayload } from './agent-messages.js';

/** What the agent said about itself in HELLO_ACK. */
export interface AgentHello {
  /** The protocol version chosen. */
  version: number;
  /** The agent's name and version (`sshvisor-agent 1.0.0`). */
  agent: string;
  /** The guest's boot id, if given. */
  bootId?: string;
}

/** A handshake failure that retrying will not fix (version mismatch, a malformed HELLO_ACK). */
export class HandshakeRefused extends Error {
  override name = 'HandshakeRefused';
}

/** Result of {@link handshake}: the agent's hello and the bytes that followed HELLO_ACK. */
export interface HandshakeResult {
  hello: AgentHello;
  rest: Buffer;
}

const ourRange = `${PROTOCOL_MIN_VERSION}..${PROTOCOL_MAX_VERSION}`;

/**
 * Send HELLO on `duplex` and wait for the matching HELLO_ACK until `deadline`
 * (ms since epoch) or until `abort` resolves. On success the duplex is left
 * paused with no listeners of ours but an 'error' sink; on failure it is not
 * destroyed (the caller does that).
 * @throws HandshakeRefused on version 0 (naming both ranges), a version
 * outside ours, or invalid HELLO_ACK JSON; Error on timeout, abort, or the
 * socket closing first.
 */
export function handshake(duplex: Duplex, deadline: number, abort?: Promise<unknown>): Promise<HandshakeResult> {
  return new Promise((resolve, reject) => {
    const nonce = randomBytes(NONCE_BYTES);
    const scanner = new HelloAckScanner(nonce);
    let done = false;
    const finish = (err: Error | undefined, result?: HandshakeResult) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      duplex.pause();
      duplex.off('data', onData);
      duplex.off('close', onClosed);
      duplex.off('end', onClosed);
      if (err) reject(err);
      else resolve(result!);
    };
    const onClosed = () => finish(new Error('the agent socket closed before HELLO_ACK'));
    const onData = (chunk: Buffer) => {
      let found;
      try {
        found = scanner.push(chunk);
      } catch (e) {
        return finish(e as Error);
      }
      if (!found) return;
      const parsed = parsePayload(helloAckJson, found.json);
      if (found.version === 0) {
        const theirs = parsed.ok ? `${parsed.value.minVersion}..${parsed.value.maxVersion}` : 'unknown';
        return finish(new HandshakeRefused(`the guest agent speaks protocol versions ${theirs}, the gateway ${ourRange}: none in common`));
      }
      if (found.version < PROTOCOL_MIN_VERSION || found.version > PROTOCOL_MAX_VERSION) {
        return finish(new HandshakeRefused(`the guest agent chose protocol version ${found.version}, outside the gateway's ${ourRange}`));
      }
      if (!parsed.ok) return finish(new HandshakeRefused(`protocol error: HELLO_ACK ${parsed.error}`));
      const { agent, bootId } = parsed.value;
      finish(undefined, {
        hello: bootId === undefined ? { version: found.version, agent } : { version: found.version, agent, bootId },
        rest: found.rest,
      });
    };
    duplex.on('error', () => {}); // errors also close the socket; 'close' reports them
    duplex.on('data', onData);
    duplex.once('close', onClosed);
    duplex.once('end', onClosed);
    const waitMs = Math.max(0, deadline - Date.now());
    const timer = setTimeout(() => finish(new Error(`no HELLO_ACK from the guest agent within ${waitMs} ms`)), waitMs);
    abort?.then(
      () => finish(new Error('the VM went away while waiting for its guest agent')),
      () => finish(new Error('the VM went away while waiting for its guest agent')),
    );
    if (duplex.destroyed) return onClosed();
    duplex.write(encodeHello(nonce));
  });
}
