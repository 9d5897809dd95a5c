import type { ConsoleHub } from '../console/console-hub.js';
import type { VmManager } from '../manager/vm-manager.js';
import type { Store } from '../store/store.js';
import type { AdminOps } from './admin-commands.js';
import { collectStatus, isKnownVm, listVmNames, type StatusSources } from './vm-status.js';

export interface VmOpsOptions {
  dataDir: string;
  /** describeImage(image) of the default image's kernel */
  kernel: string;
  defaults: StatusSources['defaults'];
  manager: Pick<VmManager, 'inspect' | 'names' | 'stop' | 'suspend' | 'resume' | 'remove' | 'restartInfo' | 'create'>;
  store: Pick<Store, 'getVm' | 'listVms' | 'ownersOf' | 'forgetVm'>;
  hub: Pick<ConsoleHub, 'history' | 'get' | 'drop'>;
}

/** The operator's commands and the status report, against the running server's manager, store and console hub. */
export function createVmOps(opts: VmOpsOptions): AdminOps & { sources: StatusSources } {
  const sources: StatusSources = {
    dataDir: opts.dataDir,
    kernel: opts.kernel,
    defaults: opts.defaults,
    manager: opts.manager,
    store: opts.store,
    console: {
      history: (name, o) => opts.hub.history(name, o),
      viewers: (name) => opts.hub.get(name)?.viewerCount ?? 0,
    },
  };
  return {
    sources,
    names: () => listVmNames(sources),
    isKnown: (name) => isKnownVm(sources, name),
    report: (name, o) => collectStatus(sources, name, o),
    stop: (name) => opts.manager.stop(name),
    suspend: (name) => opts.manager.suspend(name),
    async resume(name) {
      const found = await opts.manager.resume(name);
      return { already: found === 'running', report: collectStatus(sources, name, { consoleLines: 0 }) };
    },
    remove: (name) =>
      opts.manager.remove(name, async () => {
        await opts.hub.drop(name);
        opts.store.forgetVm(name);
      }),
    history: (name) => opts.hub.history(name),
    create: (name, request) => opts.manager.create(name, request),
  };
}
