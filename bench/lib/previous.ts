/**
 * Reference numbers from the last run before sessions went through the guest
 * agent, when every session was a second SSH login from the gateway into the
 * guest's dropbear (slirp-forwarded guest port). NOT measured by this run:
 * printed beside the new measurements, labelled as such, so the change can be
 * read off one table. Same 2-core TCG development machine, 256 MiB guests;
 * sources: README.md's Performance section as it stood (commit 58b8baf and
 * before) and the issue that asked for the agent rows.
 */

/** bench:startup, `ssh NAME@host true`, median ms. */
export const PREVIOUS_STARTUP_MS = {
  /** README: 6462 in its table, "since brought to about 4.0 s" by waiting for the guest's ready line. */
  cold: '~4000',
  /** Issue: new user (template clone) 727 ms (sshd 190 ms in that run); README's table: 751. */
  clone: '727',
  /** Issue: a clone's first resume 1612 ms; README: 1586. */
  resumeRamInState: '1612',
  /** Issue: returning user 603 ms; README: 547. */
  resumeRamFile: '603',
  /** Issue: running VM 101-142 ms; README: 118. */
  running: '101-142',
  /** Issue: sshd 190 ms; README: 211. */
  baseline: '190',
} as const;

/** bench:ssh, TCG, 128 MiB transfers (README's table; the issue: bulk 10-13 MB/s with QEMU's vCPU at 100%). */
export const PREVIOUS_SSH = {
  firstLoginMs: '6431',
  loginMs: '119',
  loginSameKexMs: '130',
  uploadMBps: '7.2',
  downloadMBps: '6.3',
  sftpMBps: '6.1',
} as const;

export const PREVIOUS_LABEL = 'previous (dropbear, earlier run)';
