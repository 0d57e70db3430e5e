import { execFileSync } from 'node:child_process';
import { expect, test } from 'vitest';
import type { Entry } from './api';
import { curlCommand, printfFormat, shellQuote } from './curl';

const sh = (script: string) => execFileSync('sh', ['-c', script]);

test('shell quoting survives any string', () => {
  for (const s of ["it's", '$(rm -rf /)', '`x`', 'a\nb', '"\\', "'; echo pwned; '"]) {
    expect(sh(`printf %s ${shellQuote(s)}`).toString()).toBe(s);
  }
});

test('printf formats give back every byte', () => {
  const bytes = new Uint8Array(256).map((_, i) => i);
  expect([...sh(`printf ${shellQuote(printfFormat(bytes))}`)]).toEqual([...bytes]);
});

const entry = (request: Record<string, unknown>, extra: Partial<Entry> = {}): Entry => ({
  id: '1', ts: '2026-11-24T19:36:50.123456789Z', node: 'n', protocol: 'http',
  src: { ip: '10.0.0.1', port: 4000 }, dst: { ip: '10.0.0.2', port: 8080 }, tls: false,
  elapsed_us: 1, request_size: 1, response_size: 1, request, response: null, redacted: [], flags: [],
  ...extra,
});

test('curl for an HTTP request: method, URL, headers, body', () => {
  const cmd = curlCommand(
    entry({
      method: 'POST', path: '/a?b=1', version: '1.1',
      headers: { host: 'shop', 'content-type': 'application/json', 'content-length': '7', 'x-q': "it's" },
      body: '{"a":1}',
    }),
  );
  expect(cmd).toBe(
    `curl -X 'POST' 'http://shop/a?b=1' -H 'content-type: application/json' -H 'x-q: it'\\''s' --data-binary '{"a":1}'`,
  );
  expect(curlCommand(entry({ method: 'GET', path: '/', version: '1.1', headers: {} }, { tls: true }))).toBe(
    `curl 'https://10.0.0.2:8080/'`,
  );
  expect(curlCommand(entry({ command: 'GET' }, { protocol: 'redis' }))).toBeNull();
});

test('binary bodies go through printf; decoded ones drop their encoding', () => {
  const cmd = curlCommand(
    entry({
      method: 'PUT', path: '/b', version: '1.1',
      headers: { 'content-encoding': 'gzip' }, body: 'AP8=', body_encoding: 'base64', body_decoded_from: 'gzip',
    }),
  )!;
  expect(cmd).toBe(`printf '\\000\\377' | curl -X 'PUT' 'http://10.0.0.2:8080/b' --data-binary @-`);
});
