/**
 * An error whose message is meant for the person running sshvisor (or an SSH
 * client): one line, specific, no stack trace. Anything else that escapes to
 * the top level is a bug and is printed with its stack.
 */
export class UserError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'UserError';
  }
}

/** A host program sshvisor needs is not installed. */
export class MissingToolError extends UserError {
  constructor(
    readonly tool: string,
    readonly debianPackage: string,
  ) {
    super(`${tool} not found: install it with \`apt-get install ${debianPackage}\` (or run \`npm run setup\`)`);
    this.name = 'MissingToolError';
  }
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
