import { EventEmitter } from 'node:events';
import { existsSync, renameSync, rmSync } from 'node:fs';
import type { Socket } from 'node:net';
import { join } from 'node:path';
import { UserError } from '../../util/errors.js';
import { ensurePrivateDir } from '../../util/paths.js';
import type { ExitInfo, Vm, VmEvents, VmSpec, VmState, VmStatus } from '../driver.js';
import type { QemuRuntimePaths } from './qemu-args.js';
import { QmpClient, type QmpEvent } from './qmp-client.js';
import { adoptQemu, launchQemu, type QemuProcess } from './qemu-process.js';
import { classifyExit, lastLogLine, type EndRequest } from './qemu-exit.js';
import { runtimePath, writeRuntime } from './qemu-runtime.js';
import { loadState, saveState } from './migration.js';
import { jailFor, removeJail } from './qemu-jail.js';
import type { VmUser } from './vm-user.js';
import { connectUnix } from '../../util/unix-socket.js';
import { TELNET_BREAK, TelnetInitStripper, escapeTelnet } from './console-telnet.js';
import { fsyncDir, fsyncFile } from '../../util/atomic-write.js';

const PANIC_TEXT = 'Kernel panic - not syncing';
const START_TIMEOUT_MS = 15_000;

export interface QemuVmOptions {
  qemuBinary: string;
  tscKhz?: number;
  /** Run QEMU as this user, chrooted (sshvisor is root); see qemu-jail.ts. */
  user?: VmUser;
  /** QEMU outlives this Node process (see spawnQemu); a later gateway takes it over with QemuDriver.attach. */
  survivesGateway?: boolean;
}

/** A QEMU an earlier gateway process left running, to be taken over by start(). */
export interface Adoption {
  pid: number;
  startedAt: number;
}

export class QemuVm extends EventEmitter<VmEvents> implements Vm {
  readonly name: string;
  readonly exited: Promise<ExitInfo>;
  private _state: VmState = 'created';
  private proc?: QemuProcess;
  private qmp?: QmpClient;
  private consoleSocket?: Socket;
  private shutdownReason?: string;
  private panicSeen = false;
  /** The guest said so itself, through pvpanic (a unikernel has no console text QEMU would know). */
  private guestPanicked = false;
  private consoleTail = '';
  private endRequest?: EndRequest;
  private exitInfo?: ExitInfo;
  private startedAt?: Date;
  private resolveExited!: (info: ExitInfo) => void;
  private _agentSocket?: string;
  readonly paths: QemuRuntimePaths & { stderrLog: string };

  constructor(
    readonly spec: VmSpec,
    private readonly opts: QemuVmOptions,
    private readonly adoption?: Adoption,
  ) {
    super();
    this.name = spec.name;
    this.exited = new Promise((resolve) => (this.resolveExited = resolve));
    this.paths = {
      qmpSocket: join(spec.dir, 'qmp.sock'),
      consoleSocket: join(spec.dir, 'console.sock'),
      agentSocket: join(spec.dir, 'agent.sock'),
      pidFile: join(spec.dir, 'qemu.pid'),
      stderrLog: join(spec.dir, 'qemu.stderr.log'),
    };
  }

  private get survives(): boolean {
    return !!this.opts.survivesGateway && !this.spec.ephemeral;
  }

  get state(): VmState {
    return this._state;
  }
  get pid(): number | undefined {
    return this.proc?.pid;
  }
  get agentSocket(): string | undefined {
    return this._agentSocket;
  }

  async start(): Promise<void> {
    if (this._state !== 'created') throw new Error(`VM ${this.name} was already started`);
    this.setState('starting');
    if (this.adoption) return this.takeOver(this.adoption);
    ensurePrivateDir(this.spec.dir);
    this.removeRuntimeFiles();
    this.proc = launchQemu(this.spec, this.paths, { ...this.opts, logFile: this.paths.stderrLog, survivesGateway: this.survives });
    this.proc.onExit((code, signal) => this.onExit(code, signal));

    try {
      await this.waitForSockets();
      await this.connectSockets();
      const restore = this.spec.restoreFrom;
      if (restore) await loadState(this.qmp!, restore.stateFile, this.proc.incoming!, restore.ramInState);
      this.startedAt = new Date();
      // Before the guest runs: a later gateway must never find it running without this record.
      if (this.survives && this.proc.pid) {
        const { restoreFrom: _, ...spec } = this.spec;
        writeRuntime(this.spec.dir, { pid: this.proc.pid, startedAt: this.startedAt.getTime(), spec });
      }
      await this.qmp!.execute('cont');
    } catch (err) {
      if (!this.exitInfo) await this.kill();
      const why = this.stderrTail() || (err as Error).message;
      throw new UserError(`VM ${this.name} failed to start: ${why}`);
    }
    if (this.spec.agent) this._agentSocket = this.paths.agentSocket;
    this.setState('running');
  }

  /**
   * Take over a QEMU an earlier gateway process started: connect QMP and the
   * console again (their server sockets accept a new client). A guest left
   * paused (a suspend cut short) stays paused: the caller decides.
   */
  private async takeOver(a: Adoption): Promise<void> {
    this.proc = adoptQemu(a.pid);
    this.proc.onExit((code, signal) => this.onExit(code, signal));
    let status: string;
    try {
      await this.connectSockets();
      status = (await this.qmp!.execute('query-status')).status;
      if (!['running', 'paused', 'postmigrate'].includes(status)) throw new Error(`it is in state ${status}`);
    } catch (err) {
      if (!this.exitInfo) await this.kill();
      throw new UserError(`VM ${this.name} could not be taken over: ${(err as Error).message}`);
    }
    if (this.spec.agent) this._agentSocket = this.paths.agentSocket;
    this.startedAt = new Date(a.startedAt);
    this.setState(status === 'running' ? 'running' : 'paused');
  }

  private async connectSockets(): Promise<void> {
    this.qmp = await QmpClient.connect(this.paths.qmpSocket);
    this.qmp.on('event', (e) => this.onQmpEvent(e));
    this.consoleSocket = await connectUnix(this.paths.consoleSocket);
    // Each connection starts with QEMU's telnet negotiation (console-telnet.ts), not console output.
    const telnet = new TelnetInitStripper();
    this.consoleSocket.on('data', (b: Buffer) => {
      const bytes = telnet.push(b);
      if (bytes.length > 0) this.onConsole(bytes);
    });
    this.consoleSocket.on('error', () => {});
  }

  async stop(options: { timeoutMs?: number } = {}): Promise<ExitInfo> {
    if (this.exitInfo) return this.exitInfo;
    const timeoutMs = options.timeoutMs ?? 10_000;
    this.endRequest = 'stop';
    this.setState('stopping');
    try {
      // A paused guest cannot see the power button.
      if (this.qmp && !this.qmp.isClosed) {
        const { running } = await this.qmp.execute('query-status');
        if (!running) await this.qmp.execute('cont');
        await this.qmp.execute('system_powerdown');
      }
    } catch {
      // QMP gone: the kill below still ends it.
    }
    let timer: NodeJS.Timeout | undefined;
    const timedOut = await Promise.race([
      this.exited.then(() => false),
      new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), timeoutMs))),
    ]);
    clearTimeout(timer);
    if (timedOut) {
      this.endRequest = 'stop-forced';
      this.proc?.kill('SIGKILL');
    }
    return this.exited;
  }

  async suspend(stateFile: string, options: { beforeQuit?: () => void } = {}): Promise<ExitInfo> {
    if (!this.spec.memoryFile) throw new Error(`VM ${this.name} has no memory file; it cannot be suspended`);
    const qmp = this.requireQmp();
    const before = this._state;
    const tmp = `${stateFile}.partial`;
    this.setState('stopping');
    try {
      await qmp.execute('stop');
      await saveState(qmp, tmp, jailFor(this.spec.dir, this.opts.user).saveChannel, this.spec.memoryPrivate);
      // The state must be on disk before the process that could rewrite it is gone.
      fsyncFile(tmp);
      renameSync(tmp, stateFile);
      fsyncDir(this.spec.dir);
      options.beforeQuit?.();
    } catch (err) {
      rmSync(tmp, { force: true });
      // Leave the VM as it was: a failed suspend must not take the guest down.
      if (!this.exitInfo) {
        if (before === 'running') await qmp.execute('cont').catch(() => undefined);
        this._state = before;
        this.emit('state', before);
      }
      throw new UserError(`suspending VM ${this.name} failed: ${(err as Error).message}`);
    }
    this.endRequest = 'suspend';
    await qmp.execute('quit').catch(() => undefined);
    const info = await this.exited;
    // The RAM file too must be on disk before the process that could rewrite it is gone.
    if (!this.spec.memoryPrivate) fsyncFile(this.spec.memoryFile);
    return info;
  }

  get hypervisorVersion(): string | undefined {
    const v = this.qmp?.version;
    return v ? `qemu ${v.major}.${v.minor}.${v.micro}` : undefined;
  }

  async kill(): Promise<ExitInfo> {
    if (this.exitInfo) return this.exitInfo;
    if (!this.proc) {
      this.onExit(null, null);
      return this.exited;
    }
    this.endRequest ??= 'kill';
    this.proc.kill('SIGKILL');
    return this.exited;
  }

  async pause(): Promise<void> {
    await this.requireQmp().execute('stop');
    this.setState('paused');
  }

  async resume(): Promise<void> {
    await this.requireQmp().execute('cont');
    this.setState('running');
  }

  async status(): Promise<VmStatus> {
    const base: VmStatus = { state: this._state, pid: this.pid, startedAt: this.startedAt, exit: this.exitInfo };
    if (!this.qmp || this.qmp.isClosed || this.exitInfo) return base;
    try {
      const s = await this.qmp.execute('query-status');
      return { ...base, hypervisorState: s.status };
    } catch {
      return base;
    }
  }

  writeConsole(data: Buffer | string): void {
    if (this.consoleSocket && !this.consoleSocket.destroyed) this.consoleSocket.write(escapeTelnet(Buffer.from(data)));
  }

  sendBreak(): void {
    if (this.consoleSocket && !this.consoleSocket.destroyed) this.consoleSocket.write(TELNET_BREAK);
  }

  private requireQmp(): QmpClient {
    if (!this.qmp || this.qmp.isClosed) throw new UserError(`VM ${this.name} is not running`);
    return this.qmp;
  }

  private setState(state: VmState): void {
    if (this._state === state || this._state === 'exited') return;
    this._state = state;
    this.emit('state', state);
  }

  private onConsole(chunk: Buffer): void {
    if (!this.panicSeen) {
      const text = this.consoleTail + chunk.toString('latin1');
      if (text.includes(PANIC_TEXT)) this.panicSeen = true;
      this.consoleTail = text.slice(-PANIC_TEXT.length);
    }
    this.emit('console', chunk);
  }

  private onQmpEvent(e: QmpEvent): void {
    if (e.event === 'SHUTDOWN') this.shutdownReason = String(e.data?.reason ?? '');
    if (e.event === 'GUEST_PANICKED') this.guestPanicked = true;
  }

  private async waitForSockets(): Promise<void> {
    const deadline = Date.now() + START_TIMEOUT_MS;
    while (!(existsSync(this.paths.qmpSocket) && existsSync(this.paths.consoleSocket))) {
      if (this.exitInfo) throw new Error('qemu exited during start-up');
      if (Date.now() > deadline) throw new Error(`qemu created no QMP socket within ${START_TIMEOUT_MS} ms`);
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  private stderrTail(): string {
    return lastLogLine(this.paths.stderrLog);
  }

  private onExit(code: number | null, signal: NodeJS.Signals | null): void {
    if (this.exitInfo) return;
    const facts = {
      endRequest: this.endRequest,
      panicSeen: this.panicSeen,
      guestPanicked: this.guestPanicked,
      shutdownReason: this.shutdownReason,
      adopted: !!this.proc?.adopted,
      logTail: () => this.stderrTail(),
    };
    this.exitInfo = { ...classifyExit(code, signal, facts), code, signal, at: new Date() };
    this.qmp?.close();
    this.consoleSocket?.destroy();
    this.removeRuntimeFiles();
    this._agentSocket = undefined;
    this.setState('exited');
    this.emit('exit', this.exitInfo);
    this.resolveExited(this.exitInfo);
  }

  private removeRuntimeFiles(): void {
    for (const f of [this.paths.qmpSocket, this.paths.consoleSocket, this.paths.agentSocket, this.paths.pidFile, runtimePath(this.spec.dir)]) rmSync(f, { force: true });
    // After the privilege drop QEMU can remove none of these itself; the jail goes with them.
    removeJail(this.spec.dir);
  }
}
