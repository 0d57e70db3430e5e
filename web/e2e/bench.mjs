// The UI's benchmark (measured, not asserted): a hub holding a large
// generated capture (`cargo xtask bench --only web` makes it with
// xtask/src/synth.rs and passes it here), driven in headless Chromium:
//
// - first rows: from navigation start to the first rows on screen
//   (the app's `kubetap:rows-shown` performance mark), cold and warm;
// - the whole history in the list, and the JS heap it takes per row;
// - scrolling: jumps across the list, time until the rows are drawn;
// - applying a filter: from Enter (`kubetap:filter-apply`) to its first rows
//   on screen, beside the hub's own time for the same first page, fetched
//   directly in the same run (the reference: what the UI adds to the API).
//
// Usage: KUBETAP_BENCH_CAPTURE=FILE KUBETAP_BIN=target/release/kubetap node e2e/bench.mjs
// Results: printed, and target/web-bench/results.json with screenshots.

import fs from 'node:fs';
import path from 'node:path';
import { api, artifactsDir, kubetapBin, launchBrowser, serveCapture, withToken } from './harness.mjs';

const capture = process.env.KUBETAP_BENCH_CAPTURE;
if (!capture || !fs.existsSync(capture)) {
  console.error('bench: set KUBETAP_BENCH_CAPTURE to a capture file (cargo xtask bench --only web does)');
  process.exit(2);
}
const out = artifactsDir('web-bench');
const bin = process.env.KUBETAP_BIN ?? kubetapBin('release');
const budget = process.env.KUBETAP_BENCH_BUDGET ?? '6GiB';

/** src/rows.ts's columns: six Float64Array, six Uint32Array, one Uint8Array. */
const TYPED_BYTES_PER_ROW = 6 * 8 + 6 * 4 + 1;

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const pct = (xs, p) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.ceil((p / 100) * xs.length) - 1)];
const ms = (x) => `${x.toFixed(1)} ms`;

console.error(`bench: loading ${capture} into a hub (${bin})…`);
const loadStart = performance.now();
const hub = await serveCapture(capture, ['--memory-budget', budget], { bin, timeoutMs: 30 * 60_000 });
const loadSeconds = (performance.now() - loadStart) / 1000;
const browser = await launchBrowser({ width: 1400, height: 900 });
const results = { capture, loadSeconds };
try {
  const stats = await api(hub.url, '/api/workers');
  const entries = stats.hub.store.entries_in_memory;
  results.entries = entries;
  console.error(`bench: the hub holds ${entries} entries (loaded in ${loadSeconds.toFixed(1)} s)`);

  const page = await browser.context.newPage();
  const cdp = await browser.context.newCDPSession(page);
  const heap = async () => {
    await cdp.send('HeapProfiler.collectGarbage');
    return (await cdp.send('Runtime.getHeapUsage')).usedSize;
  };
  const marks = (name) =>
    page.evaluate((n) => performance.getEntriesByName(n).map((m) => ({ t: m.startTime, detail: m.detail })), name);
  const waitMark = async (name, pred = () => true, timeout = 60_000) => {
    const start = Date.now();
    for (;;) {
      const found = (await marks(name)).filter(pred);
      if (found.length) return found[found.length - 1];
      if (Date.now() - start > timeout) throw new Error(`no ${name} mark in ${timeout} ms`);
      await new Promise((r) => setTimeout(r, 5));
    }
  };
  const domRows = () => page.$$eval('.scroller .row', (r) => r.length);

  // First rows, cold (first visit) then warm.
  const firstRows = [];
  for (let run = 0; run < 5; run++) {
    await page.goto(withToken(`${hub.url}/`));
    const m = await waitMark('kubetap:rows-shown');
    firstRows.push(m.t);
  }
  results.firstRowsMs = { cold: firstRows[0], warm: median(firstRows.slice(1)), all: firstRows };
  results.domRowsAtFirstRender = await domRows();
  const heapFirst = await heap();
  await page.screenshot({ path: path.join(out, 'first-rows.png') });

  // The whole history.
  await page.waitForFunction(
    () => !document.querySelector('[data-testid=matched]')?.textContent.startsWith('≥'),
    null,
    { timeout: 10 * 60_000, polling: 100 },
  );
  const loadedAt = await page.evaluate(() => performance.now());
  const shown = Number((await page.textContent('[data-testid=shown]')).replace(/,/g, ''));
  const heapAll = await heap();
  results.history = {
    rows: shown,
    secondsToLoadAll: loadedAt / 1000,
    heapMiB: heapAll / 2 ** 20,
    heapBytesPerRow: (heapAll - heapFirst) / Math.max(1, shown - 100),
  };

  // Scrolling: jumps to positions across the list; time to the next frame with those rows drawn.
  results.scroll = await page.evaluate(async () => {
    const el = document.querySelector('[data-testid=rows]');
    const total = Number(document.querySelector('[data-testid=shown]').textContent.replace(/,/g, ''));
    const times = [];
    const frames = [];
    let maxRows = 0;
    const frame = () => new Promise((r) => requestAnimationFrame(r));
    for (let i = 0; i < 40; i++) {
      await frame();
      const target = ((i * 7919) % 40) / 40;
      const want = Math.floor(target * (total - 1));
      const t0 = performance.now();
      el.scrollTop = target * (el.scrollHeight - el.clientHeight);
      // Frames until a row near the target is in the DOM (the rows on screen).
      let n = 0;
      for (;;) {
        await frame();
        n++;
        const rows = [...document.querySelectorAll('.scroller .row')].map((r) => Number(r.dataset.index));
        if (rows.some((x) => Math.abs(x - want) < 60) || n > 30) break;
      }
      times.push(performance.now() - t0);
      frames.push(n);
      maxRows = Math.max(maxRows, document.querySelectorAll('.scroller .row').length);
    }
    el.scrollTop = el.scrollHeight;
    await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
    const last = [...document.querySelectorAll('.scroller .row')].map((r) => Number(r.dataset.index));
    return { times, frames, maxDomRows: maxRows, lastIndexShown: Math.max(...last) };
  });
  await page.screenshot({ path: path.join(out, 'scrolled-to-end.png') });

  // Filters: a path that exists, taken from the middle of the history.
  const mid = await api(hub.url, `/api/rows?limit=1&cursor=${Math.floor(entries / 2)}`);
  const somePath = mid.rows[0]?.[6] ?? '/api/v1/items/1?page=1';
  const filters = [
    'response.status == 404',
    'request.method == "POST"',
    `request.path == ${JSON.stringify(somePath)}`,
    'request.path == "/matches/nothing"',
    'request.headers["content-type"].contains("json") && response.status == 404',
  ];
  results.filters = [];
  for (const f of filters) {
    await page.click('[data-testid=filter] .cm-content');
    await page.keyboard.press('Control+A');
    await page.keyboard.press('Backspace');
    await page.keyboard.type(f);
    // Let the checks made while typing settle, then apply (none of these ends in a name to complete).
    await page.waitForTimeout(400);
    await page.keyboard.press('Enter');
    const applied = await waitMark('kubetap:filter-apply', (m) => m.detail === f);
    const rowsShown = await waitMark('kubetap:rows-shown', (m) => m.detail?.filter === f && m.t >= applied.t);
    // The reference: the hub's own answer to the same first page.
    const t0 = performance.now();
    const page1 = await api(hub.url, `/api/rows?limit=100&filter=${encodeURIComponent(f)}`);
    const apiMs = performance.now() - t0;
    results.filters.push({
      filter: f,
      uiMs: rowsShown.t - applied.t,
      apiMs,
      hubTookMs: page1.took_ms,
      firstPageRows: page1.rows.length,
    });
    // Let its history finish loading before the next one, as a reader would.
    await page.waitForFunction(
      () => !document.querySelector('[data-testid=matched]')?.textContent.startsWith('≥'),
      null,
      { timeout: 10 * 60_000, polling: 100 },
    );
  }
  await page.screenshot({ path: path.join(out, 'filtered.png') });
  results.bundle = Object.fromEntries(
    fs
      .readdirSync(path.join(path.dirname(new URL(import.meta.url).pathname), '../dist/assets'))
      .map((f) => [f, fs.statSync(path.join(path.dirname(new URL(import.meta.url).pathname), '../dist/assets', f)).size]),
  );
} finally {
  await browser.close();
  await hub.stop();
}

fs.writeFileSync(path.join(out, 'results.json'), JSON.stringify(results, null, 2));
const s = results.scroll;
console.log(`
web UI benchmark: ${results.entries.toLocaleString('en-US')} entries in the hub (loaded in ${results.loadSeconds.toFixed(1)} s)
  first rows on screen         cold ${ms(results.firstRowsMs.cold)}, warm ${ms(results.firstRowsMs.warm)} (goal < 1000 ms)
  DOM rows at first render     ${results.domRowsAtFirstRender}
  whole history in the list    ${results.history.rows.toLocaleString('en-US')} rows after ${results.history.secondsToLoadAll.toFixed(1)} s; JS heap ${results.history.heapMiB.toFixed(0)} MiB, ${results.history.heapBytesPerRow.toFixed(0)} B/row
                               (+ ${TYPED_BYTES_PER_ROW} B/row of typed-array columns, up to twice that with growth slack, outside the JS heap)
  scroll jumps (${s.times.length})            median ${ms(median(s.times))}, p95 ${ms(pct(s.times, 95))}, ${Math.max(...s.frames)} frame(s) at most; at most ${s.maxDomRows} rows in the DOM; last row index ${s.lastIndexShown}
  filter applied → first rows  (goal < 300 ms; API: the hub's own answer for the same first page)`);
for (const f of results.filters) {
  console.log(
    `    ${ms(f.uiMs).padStart(10)}  API ${ms(f.apiMs).padStart(9)}  UI/API ${(f.uiMs / f.apiMs).toFixed(1).padStart(4)}×  ${String(f.firstPageRows).padStart(3)} rows  ${f.filter}`,
  );
}
console.log(`  bundle: ${Object.entries(results.bundle).map(([f, b]) => `${f} ${(b / 1024).toFixed(0)} KiB`).join(', ')}`);
console.log(`  results: ${path.join(out, 'results.json')}`);
