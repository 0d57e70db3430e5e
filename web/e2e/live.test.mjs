// The UI's live side, against `kubetap tap --local -i lo`: requests curl makes
// to a real Python server while the page is open appear in the list over the
// live stream; pause holds them back and counts them; resume shows them; the
// workers panel shows the capturing worker and its counters.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  api,
  artifactsDir,
  freePort,
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
const NODE = 'e2e-live';
let server;
let serverPort;
let hub;
let hubUrl;
let browser;
let page;
const pageErrors = [];

function curl(p) {
  execFileSync('curl', ['-s', '-o', '/dev/null', `http://127.0.0.1:${serverPort}${p}`]);
}

async function shown() {
  return Number((await page.textContent('[data-testid=shown]')).replace(/,/g, ''));
}

const waitShown = (n) => waitShownOn(page, n);
const paths = () => rowPaths(page);

describe('kubetap web UI, live', { skip: missing ? `SKIPPED: ${missing}` : false }, () => {
  before(async () => {
    serverPort = await freePort();
    server = await pythonServer(serverPort);
    const port = await freePort();
    hubUrl = `http://127.0.0.1:${port}`;
    hub = await startKubetap(['tap', '--local', '-i', 'lo', '--port', String(port), '--no-browser', '--node', NODE], {
      ready: 'kubetap: capturing',
      log: path.join(artifacts, 'live-hub.log'),
    });
    browser = await launchBrowser();
    page = await browser.context.newPage();
    page.on('pageerror', (e) => pageErrors.push(e.message));
  });

  after(async () => {
    await browser?.close();
    await hub?.stop();
    server?.kill();
  });

  test('requests made while the page is open appear live; pause holds them, resume shows them', async () => {
    // The filter keeps the UI's own API traffic, captured on lo too, out of the list.
    await page.goto(withToken(`${hubUrl}/?filter=${encodeURIComponent(`dst.port == ${serverPort}`)}`));
    await page.waitForFunction(() => document.querySelector('[data-testid=live-state]')?.textContent.includes('live'));
    await waitShown(0);
    for (let i = 0; i < 3; i++) curl(`/hello?live=${i}`);
    await waitShown(3);
    assert.deepEqual(await paths(), ['/hello?live=2', '/hello?live=1', '/hello?live=0']);

    await page.click('[data-testid=pause]');
    await page.waitForFunction(() => document.querySelector('[data-testid=live-state]')?.textContent.includes('paused'));
    for (let i = 3; i < 5; i++) curl(`/hello?live=${i}`);
    await page.waitForFunction(() => document.querySelector('[data-testid=pause]')?.textContent.includes('(2 new)'), null, {
      timeout: 15_000,
    });
    assert.equal(await shown(), 3, 'nothing is added while paused');
    await page.screenshot({ path: path.join(artifacts, 'live-paused.png') });

    await page.click('[data-testid=pause]');
    await waitShown(5);
    assert.deepEqual(await paths(), [4, 3, 2, 1, 0].map((i) => `/hello?live=${i}`));
    // The live rows are the hub's entries, in its order.
    const rows = (await api(hubUrl, `/api/rows?filter=${encodeURIComponent(`dst.port == ${serverPort}`)}`)).rows;
    assert.deepEqual(rows.map((r) => r[6]), await paths());
    await page.screenshot({ path: path.join(artifacts, 'live.png') });
    assert.deepEqual(pageErrors, []);
  });

  test('the workers panel shows the capturing worker, its counters and drops', async () => {
    const before_ = await api(hubUrl, '/api/workers');
    await page.goto(withToken(`${hubUrl}/workers`));
    await page.waitForSelector(`[data-testid=workers] tr[data-node=${NODE}]`);
    const row = await page.$eval(`[data-testid=workers] tr[data-node=${NODE}]`, (tr) => ({
      state: tr.children[1].textContent,
      counters: Object.fromEntries(
        [...tr.querySelectorAll('[data-counter]')].map((td) => [td.dataset.counter, td.textContent]),
      ),
    }));
    const after_ = await api(hubUrl, '/api/workers');
    const w0 = before_.workers.find((w) => w.node === NODE);
    const w1 = after_.workers.find((w) => w.node === NODE);
    assert.equal(row.state, 'connected');
    const num = (s) => Number(s.replace(/,/g, ''));
    // The capture goes on (the page's own requests are on lo): the panel's
    // value lies between the API's before and after it was read.
    for (const k of ['kernel_packets', 'kernel_drops', 'duplicate_packets', 'packets', 'entries', 'drops', 'queue_drops', 'parse_errors']) {
      const v = num(row.counters[k]);
      assert.ok(v >= w0.counters[k] && v <= w1.counters[k], `${k}: ${v} not in ${w0.counters[k]}..${w1.counters[k]}`);
    }
    assert.ok(num(row.counters.packets) > 0);
    // Every drop cause the worker reports has its row, with the API's count.
    const causes = await page.$$eval('[data-testid=drops-by-cause] tr[data-cause]', (trs) =>
      Object.fromEntries(trs.map((tr) => [tr.dataset.cause, tr.querySelector(`td[data-node]`).textContent])),
    );
    assert.deepEqual(Object.keys(causes).sort(), Object.keys(w1.counters.drops_by_cause).sort());
    assert.ok(Object.keys(causes).length >= 10, JSON.stringify(causes));
    for (const [cause, shown] of Object.entries(causes)) {
      const v = num(shown);
      assert.ok(
        v >= (w0.counters.drops_by_cause[cause] ?? 0) && v <= w1.counters.drops_by_cause[cause],
        `${cause}: ${v}`,
      );
    }
    await page.screenshot({ path: path.join(artifacts, 'workers-live.png') });

    // The traffic view's counter of what workers dropped is the API's sum.
    await page.goto(withToken(`${hubUrl}/?filter=${encodeURIComponent(`dst.port == ${serverPort}`)}`));
    await page.waitForFunction(() => /^\d/.test(document.querySelector('[data-testid=worker-drops]')?.textContent ?? ''));
    const shownDrops = num(await page.textContent('[data-testid=worker-drops]'));
    const w = (await api(hubUrl, '/api/workers')).workers.find((x) => x.node === NODE);
    assert.equal(shownDrops, w.counters.drops + w.counters.queue_drops + w.counters.lost_in_flight);
  });
});
