// The web UI end to end, in headless Chromium, against `kubetap read --serve`
// of real traffic captured when the test starts (e2e/capture.sh: two Python
// HTTP servers and a Python client on loopback, tcpdump on lo). Every
// expected value comes from what the client sent and the servers answered
// (expected.json) or from the hub's API. Screenshots of each view go to
// target/web-artifacts/.
//
// Run: cargo xtask test (all tests), or `npm run e2e` in web/ as root after
// `cargo build -p tap-cli`.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  allRows,
  api,
  artifactsDir,
  freePort,
  launchBrowser,
  missingPrerequisite,
  pythonServer,
  root,
  serveCapture,
  token,
  webDir,
  withToken,
} from './harness.mjs';

const missing = missingPrerequisite();
if (missing && process.env.KUBETAP_REQUIRE_PEERS) {
  throw new Error(`the browser tests cannot run: ${missing}`);
}

const artifacts = artifactsDir();
let expected;
let hub;
let browser;
let page;
const events = { dialogs: [], pageErrors: [], consoleErrors: [] };

/** The requests the client sent, with their index (their X-Kubetap-Test header). */
const requests = () => expected.requests.map((r, i) => ({ ...r, i }));
const hex = (h) => Buffer.from(h, 'hex');

async function shot(name) {
  await page.screenshot({ path: path.join(artifacts, `${name}.png`) });
}

async function goto(pathAndQuery) {
  await page.goto(withToken(hub.url + pathAndQuery));
}

/** Waits until the list holds every entry matching its filter, and returns the counters. */
async function settled(count) {
  await page.waitForFunction(
    (n) => {
      const m = document.querySelector('[data-testid=matched]')?.textContent;
      return m !== undefined && !m.startsWith('≥') && (n === undefined || m === String(n));
    },
    count,
    { timeout: 15_000 },
  );
  return page.evaluate(() => ({
    shown: Number(document.querySelector('[data-testid=shown]').textContent.replace(/,/g, '')),
    matched: document.querySelector('[data-testid=matched]').textContent,
  }));
}

/** The rows in the DOM, top to bottom, as the user reads them. */
async function visibleRows() {
  return page.evaluate(() =>
    [...document.querySelectorAll('.scroller .row')]
      .map((r) => {
        const cells = [...r.children].map((c) => c.textContent);
        return {
          index: Number(r.dataset.index),
          id: Number(r.dataset.id),
          cls: r.className,
          time: cells[0],
          protocol: r.querySelector('[data-k=protocol]')?.textContent ?? null,
          src: r.querySelector('[data-k=src]')?.textContent ?? null,
          dst: r.querySelector('[data-k=dst]')?.textContent ?? null,
          method: r.querySelector('[data-k=method]')?.textContent ?? null,
          path: r.querySelector('[data-k=path]')?.textContent ?? null,
          status: r.querySelector('[data-k=status]')?.textContent ?? null,
        };
      })
      .sort((a, b) => a.index - b.index),
  );
}

async function typeFilter(text) {
  await page.click('[data-testid=filter] .cm-content');
  await page.keyboard.press('Control+A');
  await page.keyboard.press('Backspace');
  await page.keyboard.type(text);
}

async function applyFilter(text) {
  await typeFilter(text);
  await page.keyboard.press('Enter');
  await page.waitForFunction((f) => new URL(location.href).searchParams.get('filter') === f, text);
}

/** Nothing captured has run: no dialog, no marker, no handler attribute, no element from data. */
async function assertNothingRan(where) {
  assert.deepEqual(events.dialogs, [], `${where}: a dialog opened`);
  assert.deepEqual(events.pageErrors, [], `${where}: the page threw`);
  const dom = await page.evaluate(() => ({
    pwned: window.__pwned ?? null,
    handlers: [...document.querySelectorAll('*')]
      .filter((el) => [...el.attributes].some((a) => /^on/i.test(a.name)))
      .map((el) => el.outerHTML.slice(0, 120)),
    // CodeMirror's own cursor helpers are empty images without a source.
    media: [...document.querySelectorAll('img, svg, iframe, object, embed, video, audio, frame')]
      .filter((el) => !(el.matches('.cm-editor img.cm-widgetBuffer') && !el.hasAttribute('src')))
      .map(
      (el) => el.outerHTML.slice(0, 120),
    ),
    scripts: [...document.scripts].map((s) => s.getAttribute('src') ?? `inline: ${s.textContent.slice(0, 60)}`),
    jsUrls: [...document.querySelectorAll('[href], [src], [action], [formaction], [xlink\\:href]')]
      .map((el) => el.getAttribute('href') ?? el.getAttribute('src') ?? el.getAttribute('action') ?? '')
      .filter((u) => /^\s*(javascript|data|vbscript):/i.test(u)),
  }));
  assert.equal(dom.pwned, null, `${where}: captured script ran`);
  assert.deepEqual(dom.handlers, [], `${where}: elements with event handler attributes`);
  assert.deepEqual(dom.media, [], `${where}: elements made from captured markup`);
  assert.equal(dom.scripts.length, 1, `${where}: scripts ${dom.scripts}`);
  assert.match(dom.scripts[0], /^\/assets\/index-[\w-]+\.js$/);
  assert.deepEqual(dom.jsUrls, [], `${where}: script URLs in links`);
}

describe('kubetap web UI', { skip: missing ? `SKIPPED: ${missing}` : false }, () => {
  before(async () => {
    const capture = path.join(artifacts, 'capture');
    fs.rmSync(capture, { recursive: true, force: true });
    execFileSync('bash', [path.join(webDir, 'e2e/capture.sh'), capture], { stdio: 'inherit' });
    expected = JSON.parse(fs.readFileSync(path.join(capture, 'expected.json'), 'utf8'));
    hub = await serveCapture(path.join(capture, 'capture.pcap'), [], { log: path.join(artifacts, 'hub.log') });
    browser = await launchBrowser();
    page = await browser.context.newPage();
    page.on('dialog', (d) => {
      events.dialogs.push(d.message());
      void d.dismiss();
    });
    page.on('pageerror', (e) => events.pageErrors.push(e.message));
    page.on('console', (m) => m.type() === 'error' && events.consoleErrors.push(m.text()));
    await browser.context.addInitScript(() => {
      window.__csp = [];
      document.addEventListener('securitypolicyviolation', (e) =>
        window.__csp.push(`${e.violatedDirective} ${e.blockedURI}`),
      );
    });
  });

  after(async () => {
    await browser?.close();
    await hub?.stop();
  });

  test('the traffic list shows every request the client made, newest first', async () => {
    await goto('/');
    const { shown } = await settled(expected.requests.length);
    assert.equal(shown, expected.requests.length);
    const rows = await visibleRows();
    const want = requests().reverse();
    assert.equal(rows.length, want.length, 'every row fits on screen at this size');
    for (const [k, r] of rows.entries()) {
      const w = want[k];
      assert.equal(r.method, w.method, `row ${k}`);
      assert.equal(r.path, w.path, `row ${k}`);
      assert.equal(r.status, String(w.status), `row ${k}`);
      assert.equal(r.protocol, 'http');
      assert.match(r.src, /^127\.0\.0\.1:\d+$/);
      assert.equal(r.dst, `127.0.0.1:${w.port}`);
      // Colour by status: 4xx rows are marked as the client's error.
      assert.equal(r.cls.includes('st-client'), w.status >= 400 && w.status < 500, `row ${k}: ${r.cls}`);
      assert.match(r.time, /^\d\d:\d\d:\d\d\.\d{3}$/);
    }
    // The same entries as the API lists.
    const api_ = await allRows(hub.url);
    assert.deepEqual(rows.map((r) => r.id), api_.map((r) => r[0]));
    await shot('traffic');
    const csp = await page.evaluate(() => window.__csp);
    assert.deepEqual(csp, [], 'the UI itself breaks no rule of its Content-Security-Policy');
  });

  test('the list is virtual: only the rows on screen are in the DOM', async () => {
    await page.setViewportSize({ width: 1400, height: 420 });
    await goto('/');
    await settled(expected.requests.length);
    const first = await visibleRows();
    assert.ok(first.length < expected.requests.length, `${first.length} rows in the DOM for ${expected.requests.length}`);
    assert.equal(first[0].index, 0);
    await page.$eval('[data-testid=rows]', (el) => {
      el.scrollTop = el.scrollHeight;
    });
    await page.waitForFunction((n) => {
      const rows = [...document.querySelectorAll('.scroller .row')];
      return rows.some((r) => Number(r.dataset.index) === n - 1);
    }, expected.requests.length);
    const last = await visibleRows();
    assert.ok(last.length < expected.requests.length);
    assert.equal(last[last.length - 1].path, expected.requests[0].path, 'the oldest entry is at the bottom');
    await page.setViewportSize({ width: 1400, height: 900 });
  });

  test('a typed filter is highlighted, completed, applied and kept in the URL', async () => {
    await goto('/');
    await settled(expected.requests.length);
    // Completion of field names.
    await typeFilter('requ');
    await page.waitForSelector('.cm-tooltip-autocomplete');
    assert.ok((await page.textContent('.cm-tooltip-autocomplete')).includes('request'));
    await page.keyboard.type('est.pa');
    await page.waitForFunction(() =>
      [...document.querySelectorAll('.cm-tooltip-autocomplete li')].some((li) => li.textContent.startsWith('path')),
    );
    const filter = 'request.path.startsWith("/hello") && response.status == 200';
    await applyFilter(filter);
    const want = requests().filter((r) => r.path.startsWith('/hello') && r.status === 200);
    assert.ok(want.length > 0);
    const { shown } = await settled(want.length);
    assert.equal(shown, want.length);
    const rows = await visibleRows();
    assert.deepEqual(rows.map((r) => r.path), want.reverse().map((r) => r.path));
    // Highlighting: fields, strings, numbers and operators have their own classes.
    const kinds = await page.$$eval('[data-testid=filter] .cm-content [class^=tok-]', (els) =>
      els.map((e) => `${e.className}:${e.textContent}`),
    );
    assert.ok(kinds.includes('tok-field:request'), kinds.join(' '));
    assert.ok(kinds.includes('tok-string:"/hello"'), kinds.join(' '));
    assert.ok(kinds.includes('tok-number:200'), kinds.join(' '));
    assert.ok(kinds.includes('tok-operator:&&'), kinds.join(' '));
    await shot('traffic-filtered');
    // The URL is the view: opening it elsewhere (with a token of one's own:
    // the address bar no longer has it) shows the same rows.
    const url = page.url();
    assert.equal(new URL(url).searchParams.get('token'), null, url);
    const other = await browser.context.newPage();
    await other.goto(withToken(url));
    await other.waitForFunction((n) => document.querySelector('[data-testid=shown]')?.textContent === String(n), want.length);
    assert.equal(await other.textContent('[data-testid=filter] .cm-content'), filter);
    await other.close();
  });

  test('field completion comes from the hub and follows the protocol the filter names', async () => {
    await goto('/');
    const catalogue = await api(hub.url, '/api/fields');
    const redis = catalogue.protocols.find((p) => p.protocol === 'redis');
    assert.ok(redis.request.includes('command'), JSON.stringify(redis));
    const options = async () =>
      page.$$eval('.cm-tooltip-autocomplete li', (lis) => lis.map((li) => li.textContent));
    await typeFilter('redis && request.');
    await page.waitForSelector('.cm-tooltip-autocomplete');
    let shown = await options();
    assert.ok(shown.some((o) => o.startsWith('command')), shown.join(' '));
    assert.ok(!shown.some((o) => o.startsWith('sql')), `a PostgreSQL field offered for redis: ${shown.join(' ')}`);
    await typeFilter('protocol == "postgres" && request.');
    await page.waitForSelector('.cm-tooltip-autocomplete');
    await page.waitForFunction(() =>
      [...document.querySelectorAll('.cm-tooltip-autocomplete li')].some((li) => li.textContent.startsWith('sql')),
    );
    shown = await options();
    assert.ok(!shown.some((o) => o.startsWith('command')), shown.join(' '));
    await typeFilter('');
  });

  test("protocol badges are drawn in the hub's colour for the protocol", async () => {
    await goto('/');
    await settled(expected.requests.length);
    const catalogue = await api(hub.url, '/api/fields');
    const http = catalogue.protocols.find((p) => p.protocol === 'http');
    assert.match(http.colour, /^#[0-9a-f]{6}$/);
    const badge = await page.$eval('.scroller .row [data-k=protocol]', (b) => ({
      colour: b.style.getPropertyValue('--proto'),
      background: getComputedStyle(b).backgroundColor,
    }));
    assert.equal(badge.colour, http.colour);
    assert.notEqual(badge.background, 'rgba(0, 0, 0, 0)', 'the badge has a background');
  });

  test('clicking a value in a row narrows the filter to it', async () => {
    await goto('/');
    await settled(expected.requests.length);
    const notFound = requests().filter((r) => r.status === 404);
    await page.click('.scroller .row [data-k=status]:text-is("404")');
    await page.waitForFunction(() => new URL(location.href).searchParams.get('filter') === 'response.status == 404');
    assert.equal((await settled(notFound.length)).shown, notFound.length);
    // And a destination: the second server's address and port.
    const row = (await visibleRows()).find((r) => r.dst === `127.0.0.1:${expected.port_b}`);
    await page.click(`.scroller .row[data-id="${row.id}"] [data-k=dst]`);
    const both = notFound.filter((r) => r.port === expected.port_b);
    assert.equal((await settled(both.length)).shown, both.length);
    assert.equal(
      new URL(page.url()).searchParams.get('filter'),
      `response.status == 404 && dst.ip == "127.0.0.1" && dst.port == ${expected.port_b}`,
    );
  });

  test('a bad filter shows the hub\'s error at its column', async () => {
    await goto('/');
    await settled(expected.requests.length);
    const bad = 'http && src.podd == "/x"';
    await applyFilter(bad);
    const check = await fetch(`${hub.url}/api/filter/check?filter=${encodeURIComponent(bad)}`, {
      headers: { authorization: `Bearer ${token}` },
    });
    assert.equal(check.status, 400);
    const err = await check.json();
    assert.equal(typeof err.column, 'number');
    await page.waitForSelector('.filter-error');
    const shown = await page.$eval('.filter-error', (el) => ({
      column: el.dataset.column,
      text: el.querySelector('.filter-error-text').textContent,
      caret: el.querySelector('.filter-caret').textContent,
    }));
    assert.equal(shown.column, String(err.column));
    assert.equal(shown.text, err.error);
    // The caret stands under the column the hub named.
    const [line, caret] = shown.caret.split('\n');
    assert.equal(line, bad);
    assert.equal(caret.indexOf('^'), err.column - 1);
    assert.match(bad.slice(err.column - 1), /^(src\.)?podd/, `the hub's column ${err.column} names the unknown field`);
    // The editor underlines it too.
    await page.waitForSelector('[data-testid=filter] .cm-lintRange-error');
    await shot('filter-error');
    // While typing, the error follows the draft; a fix clears it.
    await typeFilter('http && response.status >= ');
    await page.waitForFunction(() => document.querySelector('.filter-error-text')?.textContent.includes('end of filter'));
    await typeFilter('http');
    await page.waitForFunction(() => !document.querySelector('.filter-error'));
  });

  test('an entry shows its headers, bodies, timing and TLS flag', async () => {
    const json = requests().find((r) => r.body_kind === 'json');
    await goto(`/?filter=${encodeURIComponent(`request.headers["x-kubetap-test"] == "${json.i}"`)}`);
    await settled(1);
    await page.click('.scroller .row .time');
    await page.waitForSelector('[data-testid=detail][data-entry]');
    const id = await page.$eval('[data-testid=detail]', (el) => el.dataset.entry);
    assert.equal(new URL(page.url()).searchParams.get('entry'), id);
    const entry = await api(hub.url, `/api/entries/${id}`);
    const headers = await page.$$eval('[data-testid=request-headers] tr', (trs) =>
      Object.fromEntries(trs.map((tr) => [tr.querySelector('th').textContent, tr.querySelector('td span').textContent])),
    );
    // The worker redacted the credential (its scheme stays); the view marks the row.
    const shown = (k, v) => (k === 'authorization' ? 'Bearer [REDACTED]' : v);
    for (const [k, v] of Object.entries(json.headers)) assert.equal(headers[k], shown(k, v), k);
    assert.ok(await page.$('[data-testid=request-headers] tr.redacted'), 'the redacted header is marked');
    assert.equal(headers['content-length'], String(json.request_body_size));
    const bodies = await page.$$eval('[data-testid=body]', (els) =>
      els.map((el) => ({ kind: el.dataset.kind, text: el.querySelector('pre.body')?.textContent })),
    );
    const sent = hex(json.request_body_hex).toString('utf8');
    assert.deepEqual(bodies[0], { kind: 'json', text: JSON.stringify(JSON.parse(sent), null, 2) });
    // The server echoed it: the response's body is the same JSON.
    assert.deepEqual(bodies[1], bodies[0]);
    assert.equal(await page.textContent('[data-testid=tls]'), 'no');
    assert.ok((await page.textContent('[data-testid=elapsed]')).includes(`(${entry.elapsed_us} µs)`));
    await shot('entry-json');

    // Copy as curl: the command sends the same request to a real server.
    await page.click('[data-testid=copy-curl]');
    const curl = await page.inputValue('[data-testid=curl]');
    assert.ok(curl.startsWith(`curl -X 'POST' 'http://127.0.0.1:${expected.port_a}/echo'`), curl);
    assert.ok(curl.includes(`-H 'content-type: application/json'`), curl);
    assert.ok(curl.includes(`-H 'authorization: Bearer [REDACTED]'`), curl);
    await shot('entry-curl');
    await page.keyboard.press('Escape');
    const echo = await pythonServer(expected.port_a);
    try {
      const out = execFileSync('bash', ['-c', `${curl} -s`], { encoding: 'utf8' });
      assert.equal(out, sent, 'the server got the body the curl command sends');
    } finally {
      echo.kill();
    }
  });

  test('bodies are decoded by type: form, XML, protobuf, binary, and cut ones say so', async () => {
    const open = async (r) => {
      await goto(`/?filter=${encodeURIComponent(`request.headers["x-kubetap-test"] == "${r.i}"`)}`);
      await settled(1);
      await page.click('.scroller .row .time');
      await page.waitForSelector('[data-testid=side-request] [data-testid=body]');
    };
    const form = requests().find((r) => r.body_kind === 'form');
    await open(form);
    const pairs = await page.$$eval('[data-testid=side-request] [data-testid=form] tr', (trs) =>
      trs.map((tr) => [tr.querySelector('th').textContent, tr.querySelector('td').textContent]),
    );
    assert.deepEqual(pairs, [...new URLSearchParams(hex(form.request_body_hex).toString())]);

    const xml = requests().find((r) => r.body_kind === 'xml');
    await open(xml);
    const xmlText = await page.textContent('[data-testid=side-request] [data-testid=body] pre');
    const lines = xmlText.split('\n');
    assert.equal(lines[0], '<order>');
    assert.ok(lines.includes('  <id>7</id>'), xmlText);
    assert.equal(lines[lines.length - 1], '</order>');
    assert.equal(lines.join('').replace(/\n|^\s+/gm, '').replace(/>\s+</g, '><'), hex(xml.request_body_hex).toString());

    const pb = requests().find((r) => r.body_kind === 'protobuf');
    await open(pb);
    const pbText = await page.textContent('[data-testid=side-request] [data-testid=body] pre');
    assert.equal(pbText, '1: 150\n2: "kubetap"\n3 {\n  1: 42\n}');
    await shot('entry-protobuf');

    const bin = requests().find((r) => r.body_kind === 'binary');
    await open(bin);
    const kind = await page.$eval('[data-testid=side-request] [data-testid=body]', (el) => el.dataset.kind);
    assert.equal(kind, 'binary');
    const dump = await page.textContent('[data-testid=side-request] [data-testid=body] pre');
    const bytes = hex(bin.request_body_hex);
    assert.equal(dump.split('\n').length, Math.ceil(bytes.length / 16));
    assert.ok(dump.startsWith('00000000  00 01 02 03 04 05 06 07  08 09 0a 0b 0c 0d 0e 0f  |................|'), dump.slice(0, 100));
    assert.ok(dump.includes('00000040  40 41 42 43 44 45 46 47  48 49 4a 4b 4c 4d 4e 4f  |@ABCDEFGHIJKLMNO|'));
    await shot('entry-binary');

    const huge = requests().find((r) => r.body_kind === 'huge');
    await open(huge);
    await page.waitForSelector('[data-testid=side-request] [data-testid=truncated]');
    const hugeEntry = await api(hub.url, `/api/entries/${await page.$eval('[data-testid=detail]', (el) => el.dataset.entry)}`);
    assert.equal(hugeEntry.request.body_truncated, true);
    assert.ok(hugeEntry.flags.includes('truncated'));
    const pre = await page.textContent('[data-testid=side-request] [data-testid=body] pre');
    assert.equal(pre.length, 256 * 1024, 'a long body shows its start, with a button for the rest');
    await page.click('[data-testid=side-request] [data-testid=body] button:text-matches("Show all")');
    await page.waitForFunction(
      (n) => document.querySelector('[data-testid=side-request] [data-testid=body] pre').textContent.length === n,
      hugeEntry.request.body.length,
    );
    await shot('entry-huge');
    assert.deepEqual(events.pageErrors, []);
  });

  test('captured HTML and JavaScript are shown as text and never run', async () => {
    const hostile = requests().filter((r) => /[<>]|javascript:/.test(r.path) || r.body_kind === 'hostile' || r.headers['x-evil']);
    assert.ok(hostile.length >= 4);
    await goto('/');
    await settled(expected.requests.length);
    await assertNothingRan('the list');
    await shot('hostile-list');
    for (const r of hostile) {
      await goto(`/?filter=${encodeURIComponent(`request.headers["x-kubetap-test"] == "${r.i}"`)}`);
      await settled(1);
      await page.click('.scroller .row .time');
      await page.waitForSelector('[data-testid=detail][data-entry]');
      assert.equal(await page.textContent('[data-testid=detail-path]'), r.path, 'the path, as text');
      for (const [k, v] of Object.entries(r.headers)) {
        const cell = await page.$$eval(
          '[data-testid=request-headers] tr',
          (trs, name) => trs.find((tr) => tr.querySelector('th').textContent === name)?.querySelector('td span').textContent,
          k,
        );
        assert.equal(cell, v, k);
      }
      if (r.headers['x-evil']) await shot('hostile-headers');
      if (r.body_kind === 'hostile') {
        await shot('hostile-body');
        const sent = hex(r.request_body_hex).toString();
        const bodies = await page.$$eval('[data-testid=body] pre', (els) => els.map((e) => e.textContent));
        assert.deepEqual(bodies, [sent, sent], 'the HTML body and its echo, as text');
        // Every way of showing it.
        for (const mode of ['hex', 'text']) {
          await page.click(`[data-testid=side-response] [data-testid=body] button:text-is("${mode}")`);
        }
        await page.click('details.raw summary');
      }
      // A click on the path puts it, quoted, in the filter.
      await page.click('[data-testid=detail-path]');
      await page.waitForFunction(() => new URL(location.href).searchParams.get('filter')?.includes('request.path =='));
      assert.ok(new URL(page.url()).searchParams.get('filter').endsWith(`request.path == ${JSON.stringify(r.path)}`));
      await settled(1);
      await assertNothingRan(`entry ${r.i} (${r.path})`);
    }
    await goto('/map');
    await page.waitForSelector('[data-testid=edges]');
    await assertNothingRan('the map');

    // Defence in depth: the hub's policy forbids inline and injected scripts.
    const res = await fetch(`${hub.url}/`);
    const csp = res.headers.get('content-security-policy');
    assert.match(csp, /(^|; )script-src 'self'(;|$)/);
    assert.doesNotMatch(csp.split(';').find((d) => d.trim().startsWith('script-src')), /unsafe/);
    assert.match(csp, /object-src 'none'/);
    const blocked = await page.evaluate(async () => {
      window.__csp = [];
      const s = document.createElement('script');
      s.textContent = 'window.__inline = "ran"';
      document.body.appendChild(s);
      await new Promise((r) => setTimeout(r, 100));
      s.remove();
      return { inline: window.__inline ?? null, violations: window.__csp };
    });
    assert.equal(blocked.inline, null, 'an inline script did not run');
    assert.doesNotMatch(csp, /unsafe-eval/);
    assert.ok(blocked.violations.some((v) => v.startsWith('script-src')), blocked.violations.join());
  });

  test('the service map shows the workloads and edges with their counts', async () => {
    await goto('/map');
    await page.waitForSelector('[data-testid=edges] tbody tr');
    const perPort = (p) => expected.requests.filter((r) => r.port === p).length;
    const map = await api(hub.url, '/api/servicemap');
    const want = [
      { target: `ip:127.0.0.1:${expected.port_a}`, requests: perPort(expected.port_a) },
      { target: `ip:127.0.0.1:${expected.port_b}`, requests: perPort(expected.port_b) },
    ].sort((a, b) => a.target.localeCompare(b.target));
    assert.deepEqual(
      map.edges.map((e) => ({ target: e.target, requests: e.requests })).sort((a, b) => a.target.localeCompare(b.target)),
      want,
    );
    // The table.
    const rows = await page.$$eval('[data-testid=edges] tbody tr', (trs) =>
      trs.map((tr) => ({
        source: tr.dataset.source,
        target: tr.dataset.target,
        protocol: tr.dataset.protocol,
        requests: Number(tr.querySelector('[data-testid=edge-requests]').textContent),
      })),
    );
    assert.deepEqual(
      rows.sort((a, b) => a.target.localeCompare(b.target)),
      want.map((w) => ({ source: 'ip:127.0.0.1', target: w.target, protocol: 'http', requests: w.requests })),
    );
    // The graph: nodes and edges, labelled with rate, errors and p95.
    await page.waitForFunction(() => window.kubetapMap?.edges().length > 0);
    const graph = await page.evaluate(() => ({
      nodes: window.kubetapMap.nodes().map((n) => [n.id(), n.data('label'), n.data('size')]),
      edges: window.kubetapMap.edges().map((e) => [e.data('source'), e.data('target'), e.data('label')]),
    }));
    assert.deepEqual(graph.nodes.map((n) => n[1]).sort(), [
      '127.0.0.1',
      `127.0.0.1:${expected.port_a}`,
      `127.0.0.1:${expected.port_b}`,
    ].sort());
    const size = Object.fromEntries(graph.nodes.map((n) => [n[0], n[2]]));
    const [big, small] = perPort(expected.port_a) > perPort(expected.port_b) ? [expected.port_a, expected.port_b] : [expected.port_b, expected.port_a];
    assert.ok(size[`ip:127.0.0.1:${big}`] > size[`ip:127.0.0.1:${small}`], 'node size follows traffic');
    for (const e of map.edges) {
      const label = graph.edges.find((g) => g[1] === e.target)[2];
      assert.ok(label.startsWith('http · '), label);
      assert.ok(label.includes('0% err'), label);
      assert.ok(label.includes(`p95 ${duration(e.latency_us.p95)}`), `${label} vs ${e.latency_us.p95} µs`);
    }
    await shot('service-map');

    // The time window applies: the capture is seconds old, so the last hour holds it all.
    await page.selectOption('[data-testid=window]', '1h');
    await page.waitForFunction(() => new URL(location.href).searchParams.get('window') === '1h');
    const windowed = await api(hub.url, '/api/servicemap?window=1h');
    assert.equal(windowed.window_s, 3600);
    assert.equal(windowed.entries, expected.requests.length);
    await page.waitForFunction(
      (n) => document.querySelector('[data-testid=map-summary]')?.textContent.includes(`entries ${n}`),
      expected.requests.length,
    );

    // A click on a workload opens the list of its entries.
    await page.click(`[data-testid=nodes] tr[data-id="ip:127.0.0.1:${expected.port_a}"]`);
    await page.waitForFunction(() => location.pathname === '/');
    assert.equal((await settled(perPort(expected.port_a))).shown, perPort(expected.port_a));
  });

  test('example filters apply with one click', async () => {
    await goto('/');
    await settled(expected.requests.length);
    await page.click('.examples button');
    await page.click('.examples-menu li:has-text("HTTP without health checks")');
    const example = 'http and not request.path.startsWith("/healthz")';
    await page.waitForFunction((f) => new URL(location.href).searchParams.get('filter') === f, example);
    const want = (await allRows(hub.url, example)).length;
    assert.equal(want, expected.requests.length, 'every request was HTTP, none a health check');
    assert.equal((await settled(want)).shown, want);
    assert.equal(await page.textContent('[data-testid=filter] .cm-content'), example);
  });

  test('clicking an edge in the graph opens the list filtered to it, and its PCAP holds exactly it', async () => {
    await goto('/map');
    await page.waitForFunction(() => window.kubetapMap?.edges().length > 0);
    const target = `ip:127.0.0.1:${expected.port_b}`;
    const point = await page.evaluate((t) => {
      const cy = window.kubetapMap;
      const e = cy.edges().filter((x) => x.data('target') === t)[0];
      const s = e.renderedSourceEndpoint();
      const d = e.renderedTargetEndpoint();
      const box = cy.container().getBoundingClientRect();
      // A point on the line, away from the label in its middle.
      return { x: box.left + s.x + (d.x - s.x) * 0.3, y: box.top + s.y + (d.y - s.y) * 0.3 };
    }, target);
    await page.mouse.click(point.x, point.y);
    await page.waitForFunction(() => location.pathname === '/' && new URL(location.href).searchParams.get('filter'));
    const filter = new URL(page.url()).searchParams.get('filter');
    assert.ok(filter.includes(`dst.port == ${expected.port_b}`), filter);
    const want = requests().filter((r) => r.port === expected.port_b);
    assert.equal((await settled(want.length)).shown, want.length);
    const rows = await visibleRows();
    assert.ok(rows.every((r) => r.dst === `127.0.0.1:${expected.port_b}`));
    await shot('edge-filtered');

    // PCAP of the current filter, checked with tshark.
    const [download] = await Promise.all([page.waitForEvent('download'), page.click('[data-testid=pcap]')]);
    const file = path.join(artifacts, 'edge.pcapng');
    await download.saveAs(file);
    await page.waitForSelector('[data-testid=pcap-note]');
    const tshark = (args) => execFileSync('tshark', ['-r', file, ...args], { encoding: 'utf8' });
    const uris = tshark(['-d', `tcp.port==${expected.port_b},http`, '-Y', 'http.request', '-T', 'fields', '-e', 'http.request.uri'])
      .split('\n')
      .filter(Boolean);
    assert.deepEqual(uris, want.map((r) => r.path));
    const other = tshark(['-Y', `tcp.port==${expected.port_a}`]).split('\n').filter(Boolean);
    assert.deepEqual(other, [], 'no packet of the other server');

    // With the encrypted packets asked for: the hub is asked so; this
    // capture decrypted nothing, so the file holds the same packets.
    await page.check('[data-testid=pcap-encrypted]');
    const [again, asked] = await Promise.all([
      page.waitForEvent('download'),
      page.waitForRequest((r) => new URL(r.url()).pathname === '/api/pcap'),
      page.click('[data-testid=pcap]'),
    ]);
    assert.equal(new URL(asked.url()).searchParams.get('encrypted'), 'true', asked.url());
    const encrypted = path.join(artifacts, 'edge-encrypted.pcapng');
    await again.saveAs(encrypted);
    assert.deepEqual(fs.readFileSync(encrypted), fs.readFileSync(file));
  });

  test('the token leaves the address bar; a page without it says what to do', async () => {
    await goto(`/?filter=${encodeURIComponent('http')}`);
    await settled();
    const url = new URL(page.url());
    assert.equal(url.searchParams.get('token'), null, url.href);
    assert.equal(url.searchParams.get('filter'), 'http');
    assert.equal(await page.evaluate(() => sessionStorage.getItem('kubetap.token')), token);
    // A reload keeps it, and the live stream (a WebSocket: the token as its subprotocol) opens.
    await page.reload();
    await settled();
    await page.waitForFunction(() => document.querySelector('[data-testid=live-state]')?.textContent.includes('live'));
    assert.equal(await page.$('[data-testid=auth-problem]'), null);
    // A new tab starts without it; with none, or a wrong one, the page says where the token is.
    for (const [what, address] of [
      ['no token', `${hub.url}/`],
      ['a wrong token', `${hub.url}/map?token=wrong-0123456789abcdef`],
    ]) {
      const fresh = await browser.context.newPage();
      try {
        await fresh.goto(address);
        const text = await fresh.textContent('[data-testid=auth-problem]', { timeout: 15_000 });
        assert.match(text, /\?token=/, what);
        assert.match(text, /KUBETAP_TOKEN/, what);
        // Said once, at the top: not again as a filter error or a view's error.
        await fresh.waitForTimeout(1000);
        const said = await fresh.$$eval('body *', (els) =>
          els.filter((e) => e.children.length === 0 && e.textContent.includes('no valid access token')).length,
        );
        assert.equal(said, 1, what);
        await fresh.screenshot({ path: path.join(artifacts, `no-token-${what.replace(/ /g, '-')}.png`) });
      } finally {
        await fresh.close();
      }
    }
  });

  test('a page of another origin cannot use the API, even with the token', async () => {
    const http = await import('node:http');
    const port = await freePort();
    const server = http.createServer((_, res) => {
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end('<!doctype html><title>elsewhere</title><p>another site');
    });
    await new Promise((resolve) => server.listen(port, '127.0.0.1', resolve));
    const elsewhere = await browser.context.newPage();
    try {
      await elsewhere.goto(`http://127.0.0.1:${port}/`);
      const tried = await elsewhere.evaluate(
        async ({ hubUrl, token }) => {
          const out = {};
          try {
            const r = await fetch(`${hubUrl}/api/entries`, { headers: { authorization: `Bearer ${token}` } });
            out.fetch = `answered ${r.status}`;
          } catch (e) {
            out.fetch = `failed: ${e.message}`;
          }
          out.ws = await new Promise((resolve) => {
            const ws = new WebSocket(`${hubUrl.replace(/^http/, 'ws')}/api/stream`, ['kubetap.v1', `kubetap.bearer.${token}`]);
            ws.onopen = () => resolve('open');
            ws.onerror = () => resolve('refused');
          });
          return out;
        },
        { hubUrl: hub.url, token },
      );
      // The preflight gets no Access-Control-Allow-Origin: the browser never sends the request.
      assert.match(tried.fetch, /^failed/, tried.fetch);
      assert.equal(tried.ws, 'refused');
      assert.match(hub.stderr(), /refused an API request.*foreign_origin/);
    } finally {
      await elsewhere.close();
      server.close();
    }
  });

  test('the workers panel shows the hub and its store', async () => {
    await goto('/workers');
    await page.waitForSelector('[data-testid=store]');
    const w = await api(hub.url, '/api/workers');
    // `read --serve` has no worker: the panel says so.
    assert.equal(w.workers.length, 0);
    await page.waitForSelector('[data-testid=no-workers]');
    const ingested = await page.textContent('[data-testid=hub] td[data-key=entries_ingested]');
    assert.equal(ingested, String(expected.requests.length));
    const inMemory = await page.textContent('[data-testid=store] td[data-key=entries_in_memory]');
    assert.equal(inMemory, String(w.hub.store.entries_in_memory));
    await shot('workers');
    assert.deepEqual(events.pageErrors, []);
  });
});

/** As the UI writes a duration (src/format.ts). */
function duration(us) {
  if (us < 1000) return `${us} µs`;
  if (us < 1_000_000) return `${(us / 1000).toFixed(us < 10_000 ? 2 : 1)} ms`;
  return `${(us / 1_000_000).toFixed(2)} s`;
}

