import { beforeAll, describe, expect, test } from 'vitest';
import { setCatalogue } from './protocols';
import {
  and,
  edgeCondition,
  endpointCondition,
  fieldPath,
  fieldsAfter,
  nodeCondition,
  nodeSideCondition,
  quote,
  tokenize,
} from './filterlang';

// Protocol names come from the hub's catalogue; a small one, as /api/fields writes it.
beforeAll(() => {
  const side = { request: [], response: [], colour: '#58a6ff', status: { ok: [], redirect: [], client: [] } };
  setCatalogue({
    entry: [],
    endpoint: ['ip', 'port'],
    tunnel: ['dst', 'kind', 'src', 'vni'],
    protocols: [
      { protocol: 'http', ...side },
      { protocol: 'grpc', ...side },
    ],
  });
});

const kinds = (src: string) => tokenize(src).filter((t) => t.kind !== 'space').map((t) => `${t.kind}:${t.text}`);

describe('tokens', () => {
  test('fields, protocols, keywords, strings, numbers, functions', () => {
    expect(kinds('http and request.path.startsWith("/a\\"b") || response.status >= 500')).toEqual([
      'protocol:http', 'keyword:and', 'field:request', 'punct:.', 'field:path', 'punct:.',
      'function:startsWith', 'punct:(', 'string:"/a\\"b"', 'punct:)', 'operator:||', 'field:response',
      'punct:.', 'field:status', 'operator:>=', 'number:500',
    ]);
  });
  test('raw and triple-quoted strings, comments, the unknown', () => {
    expect(kinds(`r"\\d+" '''a'b''' // note`)).toEqual(['string:r"\\d+"', "string:'''a'b'''", 'comment:// note']);
    expect(kinds('a # b')).toEqual(['name:a', 'invalid:#', 'name:b']);
    expect(kinds('"open')).toEqual(['string:"open']);
  });
  test('positions cover the text', () => {
    const src = 'src.pod == "x" && ts > now()';
    expect(tokenize(src).map((t) => t.text).join('')).toBe(src);
    for (const t of tokenize(src)) expect(src.slice(t.start, t.start + t.text.length)).toBe(t.text);
  });
});

describe('narrowing', () => {
  test('adds a condition, with parentheses only when needed', () => {
    expect(and('', 'a == 1')).toBe('a == 1');
    expect(and('http', 'a == 1')).toBe('http && a == 1');
    expect(and('http || dns', 'a == 1')).toBe('(http || dns) && a == 1');
    expect(and('http or dns', 'a == 1')).toBe('(http or dns) && a == 1');
    expect(and('(http || dns) && b', 'a == 1')).toBe('(http || dns) && b && a == 1');
    expect(and('x == "a || b"', 'a == 1')).toBe('x == "a || b" && a == 1');
    expect(and('http && a == 1', 'a == 1')).toBe('http && a == 1');
  });
  test('strings are quoted exactly', () => {
    expect(quote('a"b\\c\nd')).toBe('"a\\"b\\\\c\\nd"');
    expect(quote('<script>')).toBe('"<script>"');
  });
  test('field paths', () => {
    expect(fieldPath(['request', 'headers', 'x-y'])).toBe('request.headers["x-y"]');
    expect(fieldPath(['request', 'topics', 0, 'name'])).toBe('request.topics[0].name');
    expect(fieldPath(['response', 'in'])).toBe('response["in"]');
  });
  test('endpoints: the pod, else the address (the callee with its port)', () => {
    expect(endpointCondition('src', { ip: '10.0.0.1', port: 4000 })).toBe('src.ip == "10.0.0.1"');
    expect(endpointCondition('dst', { ip: '::1', port: 80 })).toBe('dst.ip == "::1" && dst.port == 80');
    expect(endpointCondition('dst', { ip: '10.0.0.1', port: 80, pod: 'web-1' })).toBe('dst.pod == "web-1"');
  });
});

describe('service map nodes as filters', () => {
  const svc = { id: 'svc:shop/cat', name: 'cat', namespace: 'shop', kind: 'service' };
  const pod = { id: 'pod:shop/front', name: 'front', namespace: 'shop', kind: 'pod' };
  const caller = { id: 'ip:10.0.0.1', name: '10.0.0.1', namespace: null, kind: 'ip' };
  const callee = { id: 'ip:[fd00::7]:53', name: '[fd00::7]:53', namespace: null, kind: 'ip' };
  test('each kind of node', () => {
    expect(nodeSideCondition('dst', svc)).toBe('dst.service == "cat" && dst.namespace == "shop"');
    expect(nodeSideCondition('src', pod)).toBe(
      '(src.service == null || src.service == "") && (src.pod == "front" || src.pod.matches("^front-[4-9bcdf]{6,10}-[bcdfghjklmnpqrstvwxz2456789]{5}$")) && src.namespace == "shop"',
    );
    expect(nodeSideCondition('src', caller)).toBe(
      '(src.service == null || src.service == "") && (src.pod == null || src.pod == "") && src.ip == "10.0.0.1"',
    );
    expect(nodeSideCondition('dst', caller)).toBeNull();
    expect(nodeSideCondition('src', callee)).toBeNull();
    expect(nodeSideCondition('dst', callee)).toContain('dst.ip == "fd00::7" && dst.port == 53');
    expect(nodeCondition(callee)).toBe(nodeSideCondition('dst', callee));
    expect(nodeCondition({ id: 'ip:unknown', name: 'unknown', namespace: null, kind: 'ip' })).toBe('false');
  });
  test('an edge: protocol, caller, callee', () => {
    expect(edgeCondition(caller, svc, 'grpc')).toBe(
      `protocol == "grpc" && ${nodeSideCondition('src', caller)} && dst.service == "cat" && dst.namespace == "shop"`,
    );
  });
});

describe('completion', () => {
  test("after an endpoint or the tunnel, their fields from the hub's catalogue", () => {
    const labels = (prefix: string) => fieldsAfter(prefix).map((c) => c.label);
    expect(labels('src')).toEqual(['ip', 'port']);
    expect(labels('tunnel')).toEqual(['dst', 'kind', 'src', 'vni']);
  });
});
