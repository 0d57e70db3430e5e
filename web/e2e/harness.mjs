// What the browser tests and the benchmark share: the kubetap binary, a hub
// started from it, headless Chromium (Debian's, driven by playwright-core:
// no browser download), free ports, and the artifacts folder under target/.

import { spawn, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const webDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const root = path.resolve(webDir, '..');
export const targetDir = process.env.CARGO_TARGET_DIR
  ? path.resolve(process.env.CARGO_TARGET_DIR)
  : path.join(root, 'target');
export const chromiumPath = process.env.KUBETAP_CHROMIUM ?? '/usr/bin/chromium';

/** The API token of every hub started here (KUBETAP_TOKEN in their environment). */
export const token = process.env.KUBETAP_TOKEN || crypto.randomBytes(32).toString('hex');

/** `url` with the token in its query, as kubetap prints the UI's address. */
export function withToken(url) {
  const u = new URL(url);
  u.searchParams.set('token', token);
  return u.toString();
}

export function kubetapBin(profile = 'debug') {
  return process.env.KUBETAP_BIN ?? path.join(targetDir, profile, 'kubetap');
}

export function artifactsDir(name = 'web-artifacts') {
  const dir = process.env.KUBETAP_WEB_ARTIFACTS ?? path.join(targetDir, name);
  fs.mkdirSync(dir, { recursive: true });
  return dir;
}

/** Why the browser tests cannot run here, or null. */
export function missingPrerequisite({ capture = true } = {}) {
  if (!fs.existsSync(chromiumPath)) return `no Chromium at ${chromiumPath} (cargo xtask setup installs Debian's chromium)`;
  if (!fs.existsSync(kubetapBin())) return `no kubetap binary at ${kubetapBin()} (cargo build -p tap-cli)`;
  if (capture) {
    if (process.getuid?.() !== 0) return 'capturing on lo needs root';
    if (spawnSync('sh', ['-c', 'command -v tcpdump']).status !== 0) return 'tcpdump is not installed';
  }
  return null;
}

export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.unref();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/**
 * Starts kubetap with `args` and resolves once its stderr has a line
 * containing `ready`; rejects with its output if it exits or takes longer
 * than `timeoutMs`.
 */
export function startKubetap(args, { ready, timeoutMs = 120_000, bin = kubetapBin(), log } = {}) {
  return new Promise((resolve, reject) => {
    const proc = spawn(bin, args, {
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { ...process.env, KUBETAP_TOKEN: token },
    });
    let stderr = '';
    const logStream = log ? fs.createWriteStream(log) : null;
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`kubetap ${args.join(' ')} was not ready in ${timeoutMs} ms:\n${stderr}`));
    }, timeoutMs);
    const stop = () =>
      new Promise((done) => {
        if (proc.exitCode !== null || proc.signalCode !== null) return done();
        proc.once('exit', () => done());
        proc.kill('SIGTERM');
        setTimeout(() => proc.kill('SIGKILL'), 5000).unref();
      });
    proc.stderr.on('data', (chunk) => {
      logStream?.write(chunk);
      if (stderr.length < 1 << 16) stderr += chunk;
      if (stderr.includes(ready)) {
        clearTimeout(timer);
        resolve({ proc, stop, stderr: () => stderr });
      }
    });
    proc.on('exit', (code, signal) => {
      clearTimeout(timer);
      logStream?.end();
      reject(new Error(`kubetap ${args.join(' ')} exited (${code ?? signal}):\n${stderr}`));
    });
    proc.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}

/** `kubetap read FILE --serve` on a free port; resolves with the hub's URL once every entry is in. */
export async function serveCapture(file, extra = [], opts = {}) {
  const port = await freePort();
  const hub = await startKubetap(
    ['read', file, '--serve', '--no-browser', '--port', String(port), ...extra],
    { ready: 'all entries loaded', ...opts },
  );
  return { ...hub, url: `http://127.0.0.1:${port}` };
}

/** Headless Chromium with a fresh, empty profile, removed on close. */
export async function launchBrowser(viewport = { width: 1400, height: 900 }) {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'kubetap-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: chromiumPath,
    headless: true,
    viewport,
    acceptDownloads: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  return {
    context,
    async close() {
      await context.close().catch(() => {});
      fs.rmSync(profile, { recursive: true, force: true });
    },
  };
}

/** GETs a JSON document from the hub, with the token. */
export async function api(base, pathAndQuery) {
  const res = await fetch(base + pathAndQuery, { headers: { authorization: `Bearer ${token}` } });
  const body = await res.json();
  if (!res.ok) throw Object.assign(new Error(`${pathAndQuery}: ${res.status} ${body.error}`), { body, status: res.status });
  return body;
}

/** Every row `/api/rows` gives for a filter, newest first. */
export async function allRows(base, filter = '') {
  const rows = [];
  let cursor = '';
  for (;;) {
    const q = new URLSearchParams({ filter, limit: '50000' });
    if (cursor) q.set('cursor', cursor);
    const page = await api(base, `/api/rows?${q}`);
    for (const r of page.rows) rows.push(r);
    if (!page.next_cursor) return rows;
    cursor = page.next_cursor;
  }
}

/** Waits until the traffic view's "shown" counter reads `n`. */
export async function waitShown(page, n, timeout = 15_000) {
  await page.waitForFunction((want) => document.querySelector('[data-testid=shown]')?.textContent === String(want), n, {
    timeout,
  });
}

/** The paths of the rows the traffic list draws, top to bottom. */
export async function rowPaths(page) {
  return page.$$eval('.scroller .row', (rows) =>
    rows
      .sort((a, b) => Number(a.dataset.index) - Number(b.dataset.index))
      .map((r) => r.querySelector('[data-k=path]')?.textContent),
  );
}

/**
 * The tests' Python HTTP server (`tap-cli/tests/peers/http_server.py`) on
 * `port`; resolves with its process once it is ready.
 */
export function pythonServer(port) {
  return new Promise((resolve, reject) => {
    const p = spawn('python3', [path.join(root, 'tap-cli/tests/peers/http_server.py'), String(port)], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    p.stdout.on('data', (d) => d.toString().includes('ready') && resolve(p));
    p.on('exit', (code) => reject(new Error(`the Python server on ${port} exited (${code})`)));
  });
}
