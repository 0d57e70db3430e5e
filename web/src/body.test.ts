import { describe, expect, test } from 'vitest';
import { bodyOf, decodeProtobuf, hexDump, kindOf, prettyXml, protobufText } from './body';

const varint = (n: number): number[] => {
  const out: number[] = [];
  do {
    const b = n & 0x7f;
    n = Math.floor(n / 128);
    out.push(n ? b | 0x80 : b);
  } while (n);
  return out;
};
const field = (num: number, wire: number, payload: number[]) => [...varint((num << 3) | wire), ...payload];
const bytes = (s: string) => [...new TextEncoder().encode(s)];

describe('protobuf wire format', () => {
  test('decodes every wire type and nested messages', () => {
    const inner = field(1, 0, varint(42));
    const msg = new Uint8Array([
      ...field(1, 0, varint(150)),
      ...field(2, 2, [...varint(7), ...bytes('kubetap')]),
      ...field(3, 2, [...varint(inner.length), ...inner]),
      ...field(4, 5, [1, 0, 0, 0]),
      ...field(5, 1, [2, 0, 0, 0, 0, 0, 0, 0]),
      ...field(6, 2, [2, 0xff, 0xfe]),
    ]);
    const fields = decodeProtobuf(msg)!;
    expect(protobufText(fields)).toBe(
      '1: 150\n2: "kubetap"\n3 {\n  1: 42\n}\n4: 1 (fixed32)\n5: 2 (fixed64)\n6: 0xfffe',
    );
  });

  test('varints beyond 2^53 keep every digit', () => {
    const max = new Uint8Array([...field(1, 0, [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01])]);
    expect(decodeProtobuf(max)).toEqual([{ field: 1, wire: 0, value: { varint: '18446744073709551615' } }]);
  });

  test('bytes that are not protobuf are refused, not guessed', () => {
    for (const b of [
      [0xff, 0xff], // a varint that never ends
      [0x0a, 0x05, 0x61], // a length past the end
      [0x0b], // wire type 3 (groups)
      [0x00, 0x01], // field number 0
      [0x0d, 1, 2], // fixed32 cut short
    ]) {
      expect(decodeProtobuf(new Uint8Array(b)), JSON.stringify(b)).toBeNull();
    }
  });

  test('nesting is bounded', () => {
    let msg: number[] = field(1, 0, [1]);
    for (let i = 0; i < 40; i++) msg = field(1, 2, [...varint(msg.length), ...msg]);
    const fields = decodeProtobuf(new Uint8Array(msg));
    // Deep levels are shown as bytes rather than decoded without end.
    expect(fields).not.toBeNull();
    expect(JSON.stringify(fields)).toContain('bytes');
  });
});

test('hex dump: offset, 16 bytes in two groups, printable text', () => {
  const b = new Uint8Array([...bytes('Hello, kubetap!\n'), 0, 1, 0x7f]);
  expect(hexDump(b)).toBe(
    '00000000  48 65 6c 6c 6f 2c 20 6b  75 62 65 74 61 70 21 0a  |Hello, kubetap!.|\n' +
      '00000010  00 01 7f                                          |...|',
  );
  expect(hexDump(b, 16).split('\n')[1]).toBe('… 3 more bytes');
});

test('XML is indented by depth, leaf elements on one line', () => {
  expect(prettyXml('<?xml version="1.0"?><a x="1"><b>t</b><c/><d><e>u</e></d></a>')).toBe(
    '<?xml version="1.0"?>\n<a x="1">\n  <b>t</b>\n  <c/>\n  <d>\n    <e>u</e>\n  </d>\n</a>',
  );
});

describe('body kinds', () => {
  const side = (body: string, ct?: string, base64 = false) => ({
    body,
    ...(base64 ? { body_encoding: 'base64' } : {}),
    body_size: 10,
    headers: ct ? { 'content-type': ct } : {},
  });
  test('by content type, then by content', () => {
    expect(kindOf(bodyOf(side('{"a":1}', 'application/json'))!)).toBe('json');
    expect(kindOf(bodyOf(side('a=1', 'application/x-www-form-urlencoded'))!)).toBe('form');
    expect(kindOf(bodyOf(side('<a/>', 'application/soap+xml'))!)).toBe('xml');
    expect(kindOf(bodyOf(side('CAE=', 'application/x-protobuf', true))!)).toBe('protobuf');
    expect(kindOf(bodyOf(side('AAEC', 'application/octet-stream', true))!)).toBe('binary');
    expect(kindOf(bodyOf(side('[1, 2]'))!)).toBe('json');
    expect(kindOf(bodyOf(side('[1, 2'))!)).toBe('text');
    expect(kindOf(bodyOf(side('<script>alert(1)</script>', 'text/html'))!)).toBe('text');
    expect(kindOf(bodyOf(side(''))!)).toBe('empty');
    expect(bodyOf({ body: null })).toBeNull();
  });
  test('base64 bodies are bytes', () => {
    const b = bodyOf(side('AAEC/w==', undefined, true))!;
    expect([...b.bytes!]).toEqual([0, 1, 2, 255]);
    expect(b.text).toBeNull();
    expect(b.size).toBe(4);
  });
});
