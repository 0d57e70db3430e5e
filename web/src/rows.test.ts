import { expect, test } from 'vitest';
import type { RowTuple } from './api';
import { RowStore } from './rows';

const row = (id: number, path = `/p${id}`): RowTuple => [
  id, 1_000_000 + id, 'http', ['10.0.0.1', 4000, null, null, null], ['10.0.0.2', 80, 'web-1', 'shop', null],
  'GET', path, false, 200, 12, 100, 200, false, [], 'node-1',
];

test('history below, live above, newest first', () => {
  const s = new RowStore();
  s.appendOlder([row(5), row(4)]);
  s.appendOlder([row(3)]);
  s.prependNewer([row(6), row(7)]);
  expect(s.length).toBe(5);
  expect([0, 1, 2, 3, 4].map((i) => s.idAt(i))).toEqual([7, 6, 5, 4, 3]);
  expect(s.newestId).toBe(7);
  expect(s.indexOf(4)).toBe(3);
  expect(s.indexOf(42)).toBe(-1);
  const r = s.get(0);
  expect(r).toMatchObject({ id: 7, path: '/p7', status: 200, elapsedUs: 12, method: 'GET', node: 'node-1' });
  expect(r.src!.label).toBe('10.0.0.1:4000');
  expect(r.dst!.label).toBe('web-1');
  // Endpoints are shared between rows, not copied.
  expect(s.get(1).dst).toBe(r.dst);
  s.cap(3);
  expect([0, 1, 2].map((i) => s.idAt(i))).toEqual([7, 6, 5]);
});

test('columns grow past their first capacity', () => {
  const s = new RowStore();
  const rows: RowTuple[] = [];
  for (let i = 5000; i > 0; i--) rows.push(row(i));
  s.appendOlder(rows);
  expect(s.length).toBe(5000);
  expect(s.get(4999).path).toBe('/p1');
  const nulls: RowTuple = [9000, 1, 'tcp', null, null, null, null, false, null, null, 0, 0, true, ['gap', 'rst'], 'n'];
  s.prependNewer([nulls]);
  expect(s.get(0)).toMatchObject({ src: null, method: null, path: null, status: null, elapsedUs: null, tls: true, flags: ['gap', 'rst'] });
});
