import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { SshvisorServer } from '../helpers/sshvisor-server.js';

const CHROMIUM = '/usr/bin/chromium';
/** Headless, and nothing that would talk to anything but the page on loopback. */
const CHROMIUM_ARGS = [
  '--headless=new',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-dev-shm-usage',
  '--disable-background-networking',
  '--no-first-run',
  '--disable-extensions',
  '--disable-sync',
  '--metrics-recording-only',
  '--disable-default-apps',
  '--disable-component-update',
  '--no-proxy-server',
  // Any name the browser might look up resolves nowhere; only the loopback address is reachable by name.
  '--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1',
];
/** dist/test/e2e → the repository's test-output/ (gitignored). */
const OUTPUT_DIR = resolve(import.meta.dirname, '..', '..', '..', 'test-output');

/**
 * The web page in a real browser (Debian's chromium driven by
 * playwright-core) against a real server and VM: the VM list, then its live
 * console, which shows a line the guest printed after the page loaded and
 * takes keystrokes with an owner token; a read-only token only watches.
 */
describe('web console in a browser', () => {
  let server: SshvisorServer;
  let alice: string;
  let browser: Browser | undefined;

  /** What the terminal shows: xterm's DOM renderer draws the visible rows only. */
  const rowsText = (page: Page): Promise<string> => page.locator('#terminal .xterm-rows').innerText();
  const waitForConsole = async (page: Page, text: string, timeoutMs = 60_000): Promise<void> => {
    const deadline = Date.now() + timeoutMs;
    // xterm's DOM renderer writes spaces as no-break spaces.
    while (!(await rowsText(page)).replace(/\u00a0/g, ' ').includes(text)) {
      if (Date.now() > deadline) throw new Error(`"${text}" did not appear in the web console; it shows:\n${await rowsText(page)}`);
      await page.waitForTimeout(200);
    }
  };

  before(async () => {
    server = new SshvisorServer([], { http: true });
    alice = server.makeKey('alice');
    await server.start();
    const r = await server.ssh('alice', alice, ['echo booted']);
    assert.equal(r.code, 0, r.stderr);
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS, timeout: 60_000 });
  });
  after(async () => {
    await browser?.close();
    await server.stop();
  });

  it('lists the VM and follows its console live; an owner token types into it', async (t) => {
    const owner = (await server.ssh('alice+token', alice, ['rw'])).stdout.trim();
    const page = await browser!.newPage({ viewport: { width: 1200, height: 800 } });
    const requests: string[] = [];
    page.on('request', (req) => requests.push(req.url()));
    await page.goto(`${server.httpUrl}/#token=${owner}`);
    assert.equal(new URL(page.url()).hash, '', 'the token leaves the address bar');
    const row = page.locator('#vm-rows tr[data-vm="alice"]');
    await row.waitFor({ timeout: 30_000 });
    assert.equal(await row.locator('.state').innerText(), 'running');
    // Each VM's image and shape (issue 12).
    assert.equal(await row.locator('.image').innerText(), 'default');
    assert.match(await row.locator('.shape').innerText(), /^1 vCPU, \d+ MiB, \d+ MiB disk$/);
    await row.getByRole('button', { name: 'console' }).click();
    await page.locator('#console-mode', { hasText: 'interactive' }).waitFor({ timeout: 30_000 });
    // The replayed history is there (the viewport shows its last rows).
    await waitForConsole(page, 'root@alice');

    // Printed by the guest after the page has loaded and attached.
    const mark = `web-mark-${randomBytes(4).toString('hex')}`;
    const r = await server.ssh('alice', alice, [`echo ${mark} > /dev/ttyS0`]);
    assert.equal(r.code, 0, r.stderr);
    const printed = Date.now();
    await waitForConsole(page, mark);
    t.diagnostic(`the line showed in the browser within ${Date.now() - printed} ms of the ssh command returning (200 ms polls)`);

    await page.locator('#terminal').click();
    await page.keyboard.type('echo typed-$((6*7))-in-browser\n');
    await waitForConsole(page, 'typed-42-in-browser');

    mkdirSync(OUTPUT_DIR, { recursive: true });
    const shot = join(OUTPUT_DIR, 'web-console.png');
    await page.screenshot({ path: shot, fullPage: true });
    t.diagnostic(`screenshot: ${shot}`);
    const offLoopback = requests.filter((u) => !u.startsWith(server.httpUrl) && !u.startsWith(`ws://127.0.0.1:${server.httpPort}`));
    assert.deepEqual(offLoopback, [], 'the page loads nothing from elsewhere');
    await page.close();
  });

  it('a read-only token watches but cannot type or see the controls', async () => {
    const reader = (await server.ssh('alice+token', alice)).stdout.trim();
    const page = await browser!.newPage();
    await page.goto(`${server.httpUrl}/#token=${reader}`);
    await page.locator('#vm-rows tr[data-vm="alice"] button').click();
    await page.locator('#console-mode', { hasText: 'read-only' }).waitFor({ timeout: 30_000 });
    await waitForConsole(page, 'typed-42-in-browser', 30_000);
    assert.equal(await page.locator('[data-action="stop"]').isVisible(), false);
    await page.locator('#terminal').click();
    await page.keyboard.type('echo ignored-$((6*7))\n');
    const mark = `after-${randomBytes(4).toString('hex')}`;
    assert.equal((await server.ssh('alice', alice, [`echo ${mark} > /dev/ttyS0`])).code, 0);
    await waitForConsole(page, mark);
    assert.ok(!(await rowsText(page)).includes('ignored-42'), 'keystrokes of a read-only viewer never reach the guest');
    await page.close();
  });

  it('states update live: suspend from the page, and the list follows', async () => {
    const owner = (await server.ssh('alice+token', alice, ['rw'])).stdout.trim();
    const page = await browser!.newPage();
    await page.goto(`${server.httpUrl}/#token=${owner}`);
    const state = page.locator('#vm-rows tr[data-vm="alice"] .state');
    await state.filter({ hasText: 'running' }).waitFor({ timeout: 30_000 });
    await page.locator('#vm-rows tr[data-vm="alice"] button').click();
    await page.locator('[data-action="suspend"]').click();
    await page.locator('#console-action', { hasText: 'suspend: suspended' }).waitFor({ timeout: 120_000 });
    await state.filter({ hasText: 'suspended' }).waitFor({ timeout: 30_000 });
    // Resumed behind the page's back (by a login): the list shows it without a reload.
    assert.equal((await server.ssh('alice', alice, ['true'])).code, 0);
    await state.filter({ hasText: 'running' }).waitFor({ timeout: 30_000 });
    await page.close();
  });
});
