import { beforeAll, describe, expect, test } from 'vitest';
import { isProtocol, protocolColour, protocolNames, setCatalogue, statusClass } from './protocols';

describe('the protocol catalogue', () => {
  test('before it arrives: no names, plain colours, no status classes', () => {
    expect(protocolNames()).toEqual([]);
    expect(isProtocol('http')).toBe(false);
    expect(protocolColour('http')).toBe('#8b949e');
    expect(statusClass('http', 500)).toBe('none');
  });

  describe('after', () => {
    beforeAll(() => {
      setCatalogue({
        entry: ['id'],
        endpoint: ['ip'],
        protocols: [
          {
            protocol: 'http',
            request: ['method'],
            response: ['status'],
            colour: '#58a6ff',
            status: { ok: [[0, 299]], redirect: [[300, 399]], client: [[400, 499]] },
          },
          {
            protocol: 'dns',
            request: ['name'],
            response: ['rcode'],
            colour: '#7ee787',
            status: { ok: [[0, 0]], redirect: [], client: [[3, 3]] },
          },
        ],
      });
    });

    test('names and colours are the hub\'s', () => {
      expect(protocolNames()).toEqual(['http', 'dns']);
      expect(isProtocol('dns')).toBe(true);
      expect(isProtocol('redis')).toBe(false);
      expect(protocolColour('dns')).toBe('#7ee787');
      expect(protocolColour('redis')).toBe('#8b949e');
    });

    test('a status is read by its protocol\'s ranges; outside them it is an error', () => {
      expect(['http', 'http', 'http', 'http', 'http'].map((p, i) => statusClass(p, [200, 302, 404, 503, 101][i])))
        .toEqual(['ok', 'redirect', 'client', 'error', 'ok']);
      expect([0, 3, 2].map((s) => statusClass('dns', s))).toEqual(['ok', 'client', 'error']);
      expect(statusClass('dns', null)).toBe('none');
      expect(statusClass('redis', 1)).toBe('none');
    });
  });
});
