/**
 * What an image may be called (`sshvisor image ...`, `--image`,
 * `SSHVISOR_IMAGE`): 1-32 of a-z 0-9 . _ -, starting with a letter or
 * digit, so a name is always one safe directory under DATA_DIR/images.
 */
export const IMAGE_NAME_PATTERN = /^[a-z0-9][a-z0-9._-]{0,31}$/;

/** Whether `name` has the form of an image name (catalogue.ts also reserves a few suffixes). */
export function isImageNameForm(name: string): boolean {
  return IMAGE_NAME_PATTERN.test(name);
}
