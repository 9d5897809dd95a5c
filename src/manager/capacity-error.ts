import { UserError } from '../util/errors.js';

/** --max-vms is reached: a new VM would go over it. */
export class CapacityError extends UserError {
  constructor(readonly running: number) {
    super(`capacity reached (${running} VMs running); try again later`);
    this.name = 'CapacityError';
  }
}
