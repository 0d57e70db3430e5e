// The live stream survives its hub: a `tap-hub` keeping its entries on disk
// and a `tap-worker` capturing lo; the page shows requests live, the hub is
// killed (the page says the stream is lost, the worker keeps its entries
// queued), requests are made while it is down, the hub comes back on the
// same disk and ports and the worker ships what it queued while the page is
// kept offline: back online, the page reconnects by itself, catches up on
// what it missed, and goes on live, every request exactly once, in the
// hub's order.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  allRows,
  artifactsDir,
  freePort,
  kubetapBin,
  launchBrowser,
  missingPrerequisite,
  pythonServer,
  rowPaths,
  startKubetap,
  waitShown as waitShownOn,
  withToken,
} from './harness.mjs';

const missing = missingPrerequisite();
if (missing && process.env.KUBETAP_REQUIRE_PEERS) {
  throw new Error(`the browser tests cannot run: ${missing}`);
}

const artifacts = artifactsDir();
const bin = (name) => path.join(path.dirname(kubetapBin()), name);
let server;
let serverPort;
let hub;
let worker;
let browser;
let page;
let disk;
let certs;
let ports;
const pageErrors = [];

function curl(p) {
  execFileSync('curl', ['-s', '-o', '/dev/null', `http://127.0.0.1:${serverPort}${p}`]);
}

function startHub() {
  return startKubetap(
    ['--grpc', `127.0.0.1:${ports.grpc}`, '--listen', `127.0.0.1:${ports.http}`, '--disk', disk, '--certs', certs],
    { bin: bin('tap-hub'), ready: 'tap-hub: workers connect', log: path.join(artifacts, 'reconnect-hub.log') },
  );
}

const waitShown = (n) => waitShownOn(page, n, 30_000);
const paths = () => rowPaths(page);

async function liveState(text) {
  await page.waitForFunction((t) => document.querySelector('[data-testid=live-state]')?.textContent.includes(t), text, {
    timeout: 30_000,
  });
}

describe('kubetap web UI, live stream across a hub restart', { skip: missing ? `SKIPPED: ${missing}` : false }, () => {
  before(async () => {
    serverPort = await freePort();
    server = await pythonServer(serverPort);
    disk = fs.mkdtempSync(path.join(os.tmpdir(), 'kubetap-reconnect-'));
    // The hub makes a set of certificates here on its first start; the worker uses it.
    certs = fs.mkdtempSync(path.join(os.tmpdir(), 'kubetap-reconnect-certs-'));
    ports = { grpc: await freePort(), http: await freePort() };
    hub = await startHub();
    const workerArgs = ['--hub', `https://127.0.0.1:${ports.grpc}`, '--certs', certs, '--node', 'e2e-reconnect', '-i', 'lo'];
    worker = await startKubetap(workerArgs, {
      bin: bin('tap-worker'),
      ready: 'tap-worker: capturing',
      log: path.join(artifacts, 'reconnect-worker.log'),
    });
    browser = await launchBrowser();
    page = await browser.context.newPage();
    page.on('pageerror', (e) => pageErrors.push(e.message));
  });

  after(async () => {
    await browser?.close();
    await worker?.stop();
    await hub?.stop();
    server?.kill();
    if (disk) fs.rmSync(disk, { recursive: true, force: true });
    if (certs) fs.rmSync(certs, { recursive: true, force: true });
  });

  test('the page reconnects, catches up on what it missed and goes on live', async () => {
    const filter = `dst.port == ${serverPort}`;
    const url = `http://127.0.0.1:${ports.http}`;
    await page.goto(withToken(`${url}/?filter=${encodeURIComponent(filter)}`));
    await liveState('live');
    for (let i = 0; i < 2; i++) curl(`/before?i=${i}`);
    await waitShown(2);

    // The hub dies: the page notices; the worker keeps what it captures.
    hub.proc.kill('SIGKILL');
    await liveState('lost');
    await page.screenshot({ path: path.join(artifacts, 'reconnect-lost.png') });
    for (let i = 0; i < 3; i++) curl(`/down?i=${i}`);

    // Back on the same disk and ports, while the page cannot reach it: the
    // worker ships what it queued, so the page must catch up on it (the
    // live stream only carries what is stored after it opens).
    await browser.context.setOffline(true);
    hub = await startHub();
    const deadline = Date.now() + 30_000;
    while ((await allRows(url, filter)).length < 5) {
      assert.ok(Date.now() < deadline, 'the worker never shipped what it queued');
      await new Promise((r) => setTimeout(r, 200));
    }
    assert.ok((await page.textContent('[data-testid=live-state]')).includes('lost'));
    await browser.context.setOffline(false);
    await liveState('live');
    await waitShown(5);
    for (let i = 0; i < 2; i++) curl(`/after?i=${i}`);
    await waitShown(7);

    const want = [
      ...[1, 0].map((i) => `/after?i=${i}`),
      ...[2, 1, 0].map((i) => `/down?i=${i}`),
      ...[1, 0].map((i) => `/before?i=${i}`),
    ];
    assert.deepEqual(await paths(), want);
    // The same rows as the hub's, in its order, none twice.
    const rows = await allRows(url, filter);
    assert.deepEqual(
      rows.map((r) => r[6]),
      want,
    );
    await page.screenshot({ path: path.join(artifacts, 'reconnect-live.png') });
    assert.deepEqual(pageErrors, []);
  });
});
