import type { Command } from 'commander';
import { loadConfig } from '../config/load-config.js';
import { createLogger } from '../util/log.js';
import { existsSync, statSync } from 'node:fs';
import { imagePath, readImage } from '../image/catalogue.js';
import { importExt4 } from '../image/import-ext4.js';
import { join } from 'node:path';
import { catalogueImageSource, fixedImageSource, type GuestImage } from '../image/image.js';
import { ConsoleHub } from '../console/console-hub.js';
import { startConsoleTcpServer } from '../console/console-tcp-server.js';
import { isoSeconds } from '../console/marker.js';
import type { ServeConfig } from '../config/config-schema.js';
import { QemuDriver } from '../vm/qemu/qemu-driver.js';
import { resolveAccel } from '../vm/accel.js';
import { Store } from '../store/store.js';
import { VmManager } from '../manager/vm-manager.js';
import { gapMarker } from '../manager/reattach.js';
import { createAuthenticator } from '../ssh/authenticator.js';
import { loadOrCreateHostKey } from '../ssh/host-key.js';
import { PROTOCOL_MAX_VERSION, PROTOCOL_MIN_VERSION } from '../guest/agent-frames.js';
import { createSshServer } from '../ssh/server.js';
import { registerServeOptions } from '../config/load-config.js';
import { UserError } from '../util/errors.js';
import { AdminKeys } from '../ssh/admin-keys.js';
import { createVmOps } from '../ops/vm-ops.js';
import { describeImage } from '../ops/vm-status.js';
import { EXIT_USAGE, parseAdminCommand, runAdminCommand, type AdminOps } from '../ops/admin-commands.js';
import { startControlServer } from '../ops/control-socket.js';
import { SshvisorMetrics } from '../metrics/sshvisor-metrics.js';
import { checkHttpAddress, startHttpServer } from '../http/http-server.js';
import { ADMIN_TOKEN_FILE, loadOrCreateAdminToken, TokenAuth } from '../http/tokens.js';
import { parseMaxStartups, type MaxStartups } from '../ssh/connection-limits.js';

const OPEN_BANNER =
  'WARNING: this sshvisor runs with --auth open: any key can log in as any name.\r\n';

/** An image given as --kernel [--initrd] [--append], e.g. a unikernel built for QEMU. */
function customImage(config: ServeConfig): GuestImage {
  for (const f of [config.kernel, config.initrd]) {
    if (f && !existsSync(f)) throw new UserError(`${f} does not exist`);
  }
  return {
    name: 'custom',
    kernel: config.kernel!,
    initrd: config.initrd,
    append: (config.append ?? '').split(/\s+/).filter(Boolean),
    agent: !config.consoleOnly,
  };
}

/** The image `serve --rootfs FILE` makes of FILE (the ssh-hypervisor seed's `-rootfs`). */
const ROOTFS_IMAGE = 'rootfs';

/**
 * `--rootfs FILE`: import FILE as image `rootfs` the first time, and serve
 * it as the default image. A later start with the same file (same path and
 * size, not modified since the import) reuses the import; another file while
 * `rootfs` exists is refused, since VMs may be built on the old one.
 */
async function importRootfsOnce(dataDir: string, file: string, logger: ReturnType<typeof createLogger>): Promise<string> {
  const path = imagePath(dataDir, ROOTFS_IMAGE);
  if (existsSync(path)) {
    const info = readImage(dataDir, ROOTFS_IMAGE);
    const source = info.kind === 'ext4' && info.manifest.kind === 'rootfs' && info.manifest.source.type === 'ext4' ? info.manifest.source.file : undefined;
    const st = existsSync(file) ? statSync(file) : undefined;
    if (source !== file || !st || st.size !== info.manifest.files['rootfs.ext4']?.size || st.mtimeMs > Date.parse(info.createdAt)) {
      throw new UserError(`image ${ROOTFS_IMAGE} already exists (from ${source ?? info.kind}) and --rootfs ${file} differs from it; remove it with \`sshvisor image rm ${ROOTFS_IMAGE}\` or name it with --image`);
    }
    return ROOTFS_IMAGE;
  }
  const started = Date.now();
  await importExt4(dataDir, file, ROOTFS_IMAGE);
  logger.info({ event: 'rootfs-imported', file, image: ROOTFS_IMAGE, ms: Date.now() - started }, 'imported --rootfs as image rootfs');
  return ROOTFS_IMAGE;
}

/** Refuse, before any VM boots, an image whose agent speaks no protocol version this gateway does (docs/guest-protocol.md). */
function checkAgentProtocol(image: GuestImage): void {
  const agent = image.manifest?.guest.agent;
  if (!image.agent || !agent) return;
  if (agent.maxVersion < PROTOCOL_MIN_VERSION || agent.minVersion > PROTOCOL_MAX_VERSION) {
    throw new UserError(
      `the guest image's agent speaks protocol ${agent.minVersion}-${agent.maxVersion}, this sshvisor ${PROTOCOL_MIN_VERSION}-${PROTOCOL_MAX_VERSION}; rebuild it with \`sshvisor image build\``,
    );
  }
}

export function registerServeCommand(program: Command): void {
  const cmd = program.command('serve').description('run the SSH server: `ssh NAME@host` gets NAME its own microVM');
  registerServeOptions(cmd);
  cmd.action(async (flags: Record<string, unknown>) => {
    const config = loadConfig({ flags, env: process.env });
    // Everything sshvisor and QEMU create (guest RAM, snapshots, logs) is the server user's alone.
    process.umask(0o077);
    const logger = createLogger(config.logLevel);
    // Everything that can fail on bad setup fails here, before the port opens.
    if (config.http) checkHttpAddress(config.http, config.httpPublic);
    if (config.rootfs && config.image !== 'default') {
      throw new UserError(`--rootfs makes image ${ROOTFS_IMAGE} the default image, and --image names ${config.image}: give one of them`);
    }
    const defaultImage = config.rootfs ? await importRootfsOnce(config.dataDir, config.rootfs, logger) : config.image;
    const images = config.kernel
      ? fixedImageSource(customImage(config))
      : catalogueImageSource(config.dataDir, defaultImage, { defaultDir: config.imageDir, consoleOnly: config.consoleOnly });
    const image = images.load(images.defaultName);
    checkAgentProtocol(image);
    for (const name of config.userImages) images.load(name);
    // VMs outlive this process (a crash, kill -9): the next `serve` takes them over. SIGTERM still suspends them.
    const driver = new QemuDriver({ survivesGateway: true });
    const accel = resolveAccel(config.accel);
    const adminKeys = config.adminKeys ? new AdminKeys(config.adminKeys, logger) : undefined;
    const store = Store.open(config.dataDir);
    const hostKey = loadOrCreateHostKey(config.dataDir);
    // Before any VM starts: a second server on the same data dir stops here.
    let ops: AdminOps | undefined;
    const control = await startControlServer({
      dataDir: config.dataDir,
      logger,
      run: async (req, io) => {
        if (!ops) {
          io.err('the server is still starting; try again in a moment');
          return 1;
        }
        const parsed = parseAdminCommand(req.argv);
        const log = logger.child({ event: 'control-command', argv: req.argv.slice(0, 8) });
        if (!parsed.ok) {
          io.err(parsed.error);
          log.info({ exit: EXIT_USAGE }, 'bad control command');
          return EXIT_USAGE;
        }
        const started = Date.now();
        const code = await runAdminCommand(parsed.command, ops, io);
        log.info({ exit: code, ms: Date.now() - started }, 'control command');
        return code;
      },
    });
    const manager = new VmManager({
      driver,
      images,
      store,
      logger,
      dataDir: config.dataDir,
      accel,
      memoryMiB: config.memory,
      cpus: config.cpus,
      diskSizeMiB: config.diskSize,
      maxMemoryMiB: config.maxMemory,
      maxCpus: config.maxCpus,
      maxDiskSizeMiB: config.maxDiskSize,
      maxVms: config.maxVms,
      allowInternet: config.allowInternet,
      idleTimeoutSec: config.idleTimeout,
      snapshotRetentionSec: config.snapshotRetention,
      templates: config.templates,
      bootTimeoutSec: config.bootTimeout,
      hungTimeoutSec: config.hungTimeout,
      restart: { policy: config.restart, maxRestarts: config.restartMax, windowSec: config.restartWindow },
    });
    const hub = new ConsoleHub({
      dataDir: config.dataDir,
      capacity: config.consoleBuffer,
      log: { maxBytes: config.consoleLogSize },
      onError: (vm, err) => logger.warn({ vm, err: String(err) }, 'console log write failed'),
    });
    // Attach before the VM starts, so its console is captured from the first byte.
    manager.on('vm-created', (vm, { resumedFrom, cloned, reattached }) =>
      hub.attach(
        vm,
        reattached
          ? gapMarker(reattached.lostSince)
          : resumedFrom ? `VM resumed from the snapshot taken at ${isoSeconds(resumedFrom)}` : cloned ? 'VM started from the template' : 'VM started',
      ),
    );
    manager.on('vm-note', (name, text) => hub.get(name)?.mark(text));
    manager.on('vm-gone', (name, detail) => hub.channel(name).mark(`VM exited: ${detail}`));
    // Before the SSH port opens: a login must find its VM already taken over, not boot a second one.
    await manager.reattach();
    const authenticator = createAuthenticator({ mode: config.auth, store, keysDir: config.keysDir, logger });
    const vmOps = createVmOps({
      dataDir: config.dataDir,
      kernel: describeImage(image),
      defaults: { image: images.defaultName, memoryMiB: config.memory, cpus: config.cpus, diskMiB: config.diskSize },
      manager,
      store,
      hub,
    });
    ops = vmOps;
    const metrics = new SshvisorMetrics({
      vmStates: () => vmOps.names().map((n) => vmOps.report(n, { consoleLines: 0 }).state),
      console: hub,
    });
    metrics.watchManager(manager);
    const tokens = config.http ? new TokenAuth(loadOrCreateAdminToken(config.dataDir), store) : undefined;
    const consoleAccess = { hub, acquire: (name: string, options?: Parameters<VmManager['acquire']>[1]) => manager.acquire(name, options), replayLines: config.consoleReplay };
    const server = createSshServer({
      hostKey: hostKey.privateKey,
      authenticator,
      acquire: (name, options) => manager.acquire(name, options),
      logger,
      banner: config.auth === 'open' ? OPEN_BANNER : undefined,
      console: consoleAccess,
      consoleOnly: !image.agent,
      agentForwarding: config.agentForwarding === 'on',
      remoteForwarding: config.remoteForwarding === 'on',
      userImages: [...new Set([images.defaultName, ...config.userImages])],
      status: { report: (name) => vmOps.report(name) },
      admin: adminKeys && { isAdminKey: (blob) => adminKeys.isAdminKey(blob), ops: vmOps, console: consoleAccess },
      tokens,
      stats: metrics.ssh,
      limits: {
        loginGraceTime: config.loginGraceTime,
        // Validated by the config schema.
        maxStartups: parseMaxStartups(config.maxStartups) as MaxStartups,
        maxAuthTries: config.maxAuthTries,
        maxAuthFailures: config.maxAuthFailures,
        authFailureWindow: config.authFailureWindow,
        maxSessions: config.maxSessions,
        maxChannels: config.maxChannels,
        maxUserSessions: config.maxUserSessions,
      },
    });

    const consoleTcp = config.consoleTcp
      ? await startConsoleTcpServer({ address: config.consoleTcp, allowPublic: config.consoleTcpPublic, hub, replayLines: config.consoleReplay, logger })
      : undefined;
    const http =
      config.http && tokens
        ? await startHttpServer({
            address: config.http,
            allowPublic: config.httpPublic,
            ops: vmOps,
            history: (name, o) => hub.history(name, o),
            channel: (name) => hub.channel(name),
            isKnown: (name) => vmOps.isKnown(name),
            replayLines: config.consoleReplay,
            auth: tokens,
            metrics,
            logger,
          })
        : undefined;
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err: NodeJS.ErrnoException) =>
        reject(new UserError(`cannot listen on ${config.listen}:${config.port}: ${err.code ?? err.message}`)),
      );
      server.listen(config.port, config.listen, () => resolve());
    });
    const address = server.address();
    const port = typeof address === 'object' && address ? address.port : config.port;
    logger.info(
      { event: 'listening', listen: config.listen, port, accel, auth: config.auth, dataDir: config.dataDir, hostKey: hostKey.fingerprint, kernel: image.manifest?.kernel.release, consoleTcpPort: consoleTcp?.port, httpPort: http?.port, httpAdminToken: http && join(config.dataDir, ADMIN_TOKEN_FILE), controlSocket: control.path, adminKeys: adminKeys?.count },
      `sshvisor listening on ${config.listen}:${port}`,
    );

    let stopping = false;
    const stop = (signal: string): void => {
      if (stopping) return;
      stopping = true;
      logger.info({ event: 'shutdown', signal }, 'shutting down: suspending VMs');
      // QEMU processes are detached and unref'd (they outlive us): nothing else may be left to keep the
      // event loop alive while a suspend waits for its QEMU to quit, so hold it open until the end.
      setInterval(() => undefined, 1000);
      server.close();
      void control
        .close()
        .then(() => consoleTcp?.close())
        .then(() => http?.close())
        .then(() => manager.shutdown())
        .catch((err) => logger.error({ err: String(err) }, 'error while suspending VMs'))
        .then(() => hub.close())
        .finally(() => {
          store.close();
          logger.flush();
          process.exit(0);
        });
    };
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGINT', () => stop('SIGINT'));
  });
}
