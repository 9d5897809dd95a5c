import { UserError } from '../util/errors.js';

/** VM names: what may appear in a path under DATA_DIR/vms/ and on a kernel command line. */
export const VM_NAME_PATTERN = /^[a-z][a-z0-9-]{0,31}$/;

export function isValidVmName(name: string): boolean {
  return VM_NAME_PATTERN.test(name);
}

export function assertVmName(name: string): string {
  if (!isValidVmName(name)) {
    throw new UserError(
      `invalid VM name ${JSON.stringify(name.slice(0, 40))}: use 1-32 characters, a lowercase letter first, then lowercase letters, digits or '-'`,
    );
  }
  return name;
}
