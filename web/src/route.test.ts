import { expect, test } from 'vitest';
import { href, parseRoute } from './route';

test('views, filter, window and entry round-trip through the URL', () => {
  const r = { view: 'map' as const, filter: 'http && request.path == "/a&b"', window: '5m', entry: null };
  const url = new URL(href(r), 'http://h');
  expect(url.pathname).toBe('/map');
  expect(parseRoute(url)).toEqual(r);
  expect(parseRoute({ pathname: '/', search: '?entry=12' }).entry).toBe('12');
  expect(parseRoute({ pathname: '/', search: '?entry=javascript:x' }).entry).toBeNull();
  expect(parseRoute({ pathname: '/workers', search: '' }).view).toBe('workers');
  expect(href({ view: 'traffic', filter: '', window: '', entry: null })).toBe('/');
});
