import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { debianSourceLines, hostAptSources, parseDeb822Sources, parseOneLineSources } from '../../src/image/apt-sources.js';
import { chooseImage, inspectOciSource, readOciConfig } from '../../src/image/oci-source.js';
import { UserError } from '../../src/util/errors.js';

const root = mkdtempSync(join(tmpdir(), 'sshvisor-image-sources-'));
after(() => rmSync(root, { recursive: true, force: true }));

describe("the host's apt sources", () => {
  const deb822 = [
    'Types: deb',
    '# http://snapshot.debian.org/archive/debian/20250520T000000Z',
    'URIs: http://deb.debian.org/debian',
    'Suites: bookworm bookworm-updates',
    'Components: main',
    'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg',
    '',
    'Types: deb',
    'URIs: http://deb.debian.org/debian-security',
    'Suites: bookworm-security',
    'Components: main',
    '',
    'Types: deb-src',
    'URIs: http://deb.debian.org/debian',
    'Suites: bookworm',
    'Components: main',
    '',
    'Types: deb',
    'Enabled: no',
    'URIs: http://off.example/debian',
    'Suites: bookworm',
    'Components: main',
  ].join('\n');

  test('deb822 and one-line formats', () => {
    assert.deepEqual(parseDeb822Sources(deb822), [
      { uri: 'http://deb.debian.org/debian', suites: ['bookworm', 'bookworm-updates'], components: ['main'] },
      { uri: 'http://deb.debian.org/debian-security', suites: ['bookworm-security'], components: ['main'] },
    ]);
    assert.deepEqual(parseOneLineSources('# c\ndeb [arch=amd64 signed-by=/k.gpg] https://m.example/debian bookworm main contrib # x\ndeb-src http://s bookworm main\n'), [
      { uri: 'https://m.example/debian', suites: ['bookworm'], components: ['main', 'contrib'] },
    ]);
  });

  test('an apt dir with both', () => {
    const apt = join(root, 'apt');
    mkdirSync(join(apt, 'sources.list.d'), { recursive: true });
    writeFileSync(join(apt, 'sources.list'), 'deb https://nodesource.example/node nodistro main\n');
    writeFileSync(join(apt, 'sources.list.d', 'debian.sources'), deb822);
    writeFileSync(join(apt, 'sources.list.d', 'ignored.txt'), 'deb http://x y z\n');
    assert.deepEqual(hostAptSources(apt).map((s) => s.uri), ['https://nodesource.example/node', 'http://deb.debian.org/debian', 'http://deb.debian.org/debian-security']);
  });

  test('the suite, its -updates and -security from the host; other suites from its Debian mirror; --mirror alone', () => {
    const sources = [{ uri: 'https://nodesource.example/node', suites: ['nodistro'], components: ['main'] }, ...parseDeb822Sources(deb822)];
    assert.deepEqual(debianSourceLines('bookworm', sources), {
      mirror: 'http://deb.debian.org/debian',
      lines: ['deb http://deb.debian.org/debian bookworm main', 'deb http://deb.debian.org/debian bookworm-updates main', 'deb http://deb.debian.org/debian-security bookworm-security main'],
    });
    assert.deepEqual(debianSourceLines('trixie', sources), { mirror: 'http://deb.debian.org/debian', lines: ['deb http://deb.debian.org/debian trixie main'] });
    assert.deepEqual(debianSourceLines('bookworm', []), { mirror: 'http://deb.debian.org/debian', lines: ['deb http://deb.debian.org/debian bookworm main'] });
    assert.deepEqual(debianSourceLines('bookworm', sources, 'http://mirror.example/debian'), { mirror: 'http://mirror.example/debian', lines: ['deb http://mirror.example/debian bookworm main'] });
  });
});

describe('OCI sources', () => {
  const tar = (name: string, files: Record<string, string>): string => {
    const dir = join(root, `${name}.d`);
    mkdirSync(dir, { recursive: true });
    for (const [f, c] of Object.entries(files)) writeFileSync(join(dir, f), c);
    const file = join(root, name);
    execFileSync('tar', ['-cf', file, '-C', dir, '.']);
    return file;
  };
  const index = (...tags: (string | undefined)[]): string =>
    JSON.stringify({ schemaVersion: 2, manifests: tags.map((t) => ({ digest: 'sha256:x', annotations: t ? { 'org.opencontainers.image.ref.name': t } : {} })) });

  test('an OCI archive, a docker archive, a layout dir; their tags', async () => {
    assert.deepEqual(await inspectOciSource(tar('oci.tar', { 'oci-layout': '{}', 'index.json': index('v1') })), { format: 'oci-archive', tags: ['v1'], images: 1 });
    const docker = tar('docker.tar', { 'manifest.json': JSON.stringify([{ RepoTags: ['docker.io/library/alpine:3'] }, { RepoTags: null }]) });
    assert.deepEqual(await inspectOciSource(docker), { format: 'docker-archive', tags: ['docker.io/library/alpine:3'], images: 2 });
    const layout = join(root, 'layout');
    mkdirSync(layout);
    writeFileSync(join(layout, 'oci-layout'), '{}');
    writeFileSync(join(layout, 'index.json'), index('a', 'b'));
    assert.deepEqual(await inspectOciSource(layout), { format: 'oci-layout', tags: ['a', 'b'], images: 2 });
  });

  test('what is not an image: one line each', async () => {
    const rejects = (p: Promise<unknown>, re: RegExp): Promise<void> => assert.rejects(p, (err: unknown) => err instanceof UserError && re.test(err.message));
    await rejects(inspectOciSource(join(root, 'missing'), 'missing'), /^missing: no such file or directory$/);
    writeFileSync(join(root, 'junk'), Buffer.alloc(3000, 9));
    await rejects(inspectOciSource(join(root, 'junk'), 'junk'), /^junk is not a readable tar archive \(tar: This does not look like a tar archive\)$/);
    const big = tar('big.tar', { 'oci-layout': '{}', 'index.json': index('v1'), blob: 'z'.repeat(200_000) });
    execFileSync('truncate', ['-s', '100000', big]);
    await rejects(inspectOciSource(big, 'big.tar'), /^big\.tar is a truncated tar archive \(tar: Unexpected EOF in archive\)$/);
    await rejects(inspectOciSource(tar('plain.tar', { hello: 'x' }), 'plain.tar'), /^plain\.tar is a tar archive but neither an OCI archive/);
    await rejects(inspectOciSource(tar('empty.tar', { 'oci-layout': '{}', 'index.json': index() }), 'e.tar'), /^e\.tar holds no image/);
    await rejects(inspectOciSource(tar('badjson.tar', { 'oci-layout': '{}', 'index.json': '{' }), 'b.tar'), /^b\.tar's index\.json is not JSON/);
    await rejects(inspectOciSource(root, 'somedir'), /^somedir is a directory but not an OCI image layout/);
  });

  test('choosing the image: the only one, a tag, or a refusal listing the tags', () => {
    const one = { format: 'oci-archive' as const, tags: ['v1'], images: 1 };
    assert.deepEqual(chooseImage(one, '/w/input', 'x.tar'), { skopeoRef: 'oci-archive:/w/input', ref: 'v1' });
    assert.deepEqual(chooseImage(one, '/w/input', 'x.tar', 'v1'), { skopeoRef: 'oci-archive:/w/input:v1', ref: 'v1' });
    assert.throws(() => chooseImage(one, '/w/input', 'x.tar', 'v2'), /^UserError: x\.tar has no image tagged v2 \(tags: v1\)$/);
    const two = { format: 'oci-layout' as const, tags: ['a', 'b'], images: 2 };
    assert.throws(() => chooseImage(two, '/w/input', 'dir'), /^UserError: dir holds 2 images \(tags: a, b\): pick one with --ref$/);
    assert.deepEqual(chooseImage(two, '/w/input', 'dir', 'b'), { skopeoRef: 'oci:/w/input:b', ref: 'b' });
    const docker = { format: 'docker-archive' as const, tags: ['docker.io/library/alpine:3'], images: 1 };
    assert.deepEqual(chooseImage(docker, '/w/input', 'd.tar', 'alpine:3'), { skopeoRef: 'docker-archive:/w/input:alpine:3', ref: 'alpine:3' });
    assert.throws(() => chooseImage(docker, '/w/input', 'd.tar', 'bad ref'), /^UserError: bad --ref/);
  });

  test('Env and WorkingDir exactly as the image config has them', () => {
    const layout = join(root, 'cfg');
    mkdirSync(join(layout, 'blobs', 'sha256'), { recursive: true });
    const put = (name: string, obj: unknown): string => {
      const digest = name.repeat(64);
      writeFileSync(join(layout, 'blobs', 'sha256', digest), JSON.stringify(obj));
      return `sha256:${digest}`;
    };
    const config = put('c', { config: { Env: ['PATH=/opt/bin', 'A=b=c', 'EMPTY='], WorkingDir: '/srv' } });
    const manifest = put('d', { config: { digest: config } });
    writeFileSync(join(layout, 'index.json'), JSON.stringify({ manifests: [{ digest: manifest }] }));
    assert.deepEqual(readOciConfig(layout), { env: ['PATH=/opt/bin', 'A=b=c', 'EMPTY='], workingDir: '/srv' });
    put('c', { config: {} });
    assert.deepEqual(readOciConfig(layout), { env: [] });
  });
});
