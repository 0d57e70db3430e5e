// Message bodies made readable: JSON pretty-printed, forms as name/value
// pairs, XML indented, protobuf decoded from its wire format (no schema),
// anything else binary as a hex dump. Every function returns plain strings
// or data; the UI puts them in text nodes, never in markup.

export type BodyKind = 'json' | 'form' | 'xml' | 'protobuf' | 'text' | 'binary' | 'empty';

export interface Body {
  /** The bytes as captured (after content-decoding), when the body was not text. */
  bytes: Uint8Array | null;
  /** The text, when the body was valid UTF-8. */
  text: string | null;
  size: number;
  wireSize: number | null;
  truncated: boolean;
  decodedFrom: string | null;
  contentType: string;
}

function base64Bytes(b64: string): Uint8Array | null {
  try {
    const bin = atob(b64);
    const out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  } catch {
    return null;
  }
}

/** The header value (case-insensitive name) of a side's `headers` object. */
export function header(side: Record<string, unknown> | null, name: string): string | null {
  const hs = side?.headers;
  if (typeof hs !== 'object' || hs === null) return null;
  for (const [k, v] of Object.entries(hs as Record<string, unknown>)) {
    if (k.toLowerCase() === name && typeof v === 'string') return v;
  }
  return null;
}

/** The body fields of a request or response (`body`, `body_encoding`, …), or null when it has none. */
export function bodyOf(side: Record<string, unknown> | null): Body | null {
  if (!side || !('body' in side) || side.body === null || side.body === undefined) return null;
  const raw = side.body;
  if (typeof raw !== 'string') return null;
  const base64 = side.body_encoding === 'base64';
  const bytes = base64 ? base64Bytes(raw) : null;
  const text = base64 ? null : raw;
  return {
    bytes,
    text,
    size: bytes ? bytes.length : new TextEncoder().encode(raw).length,
    wireSize: typeof side.body_size === 'number' ? side.body_size : null,
    truncated: side.body_truncated === true,
    decodedFrom: typeof side.body_decoded_from === 'string' ? side.body_decoded_from : null,
    contentType: (header(side, 'content-type') ?? '').toLowerCase(),
  };
}

/** How to show a body: by its content type, else by what it looks like. */
export function kindOf(body: Body): BodyKind {
  if (body.size === 0) return 'empty';
  const ct = body.contentType;
  if (/protobuf|grpc/.test(ct)) return body.bytes || body.text !== null ? 'protobuf' : 'binary';
  if (body.text === null) return 'binary';
  if (/json/.test(ct)) return 'json';
  if (/x-www-form-urlencoded/.test(ct)) return 'form';
  if (/xml/.test(ct)) return 'xml';
  const t = body.text.trimStart();
  if ((t.startsWith('{') || t.startsWith('[')) && prettyJson(body.text) !== null) return 'json';
  if (t.startsWith('<?xml')) return 'xml';
  return 'text';
}

/** The bytes of a body, text or not. */
export function bytesOf(body: Body): Uint8Array {
  return body.bytes ?? new TextEncoder().encode(body.text ?? '');
}

export function prettyJson(text: string): string | null {
  try {
    return JSON.stringify(JSON.parse(text), null, 2);
  } catch {
    return null;
  }
}

export function formPairs(text: string): [string, string][] {
  return [...new URLSearchParams(text).entries()];
}

/** XML with one element per line, indented by depth (text kept as is). */
export function prettyXml(text: string): string {
  const parts = text.replace(/>\s+</g, '><').match(/<[^>]*>|[^<]+/g) ?? [];
  const lines: string[] = [];
  let depth = 0;
  for (let i = 0; i < parts.length; i++) {
    const p = parts[i];
    const indent = '  '.repeat(Math.max(0, depth));
    if (p.startsWith('</')) {
      depth--;
      lines.push('  '.repeat(Math.max(0, depth)) + p);
    } else if (p.startsWith('<')) {
      const selfClosing = p.endsWith('/>') || p.startsWith('<?') || p.startsWith('<!');
      // <a>text</a> stays on one line.
      if (!selfClosing && parts[i + 2]?.startsWith('</') && !parts[i + 1].startsWith('<')) {
        lines.push(indent + p + parts[i + 1] + parts[i + 2]);
        i += 2;
        continue;
      }
      lines.push(indent + p);
      if (!selfClosing) depth++;
    } else if (p.trim()) {
      lines.push(indent + p.trim());
    }
  }
  return lines.join('\n');
}

/** A classic hex dump: offset, 16 bytes in hex, the printable ones as text. */
export function hexDump(bytes: Uint8Array, max = bytes.length): string {
  const n = Math.min(bytes.length, max);
  const lines: string[] = [];
  for (let off = 0; off < n; off += 16) {
    const row = bytes.subarray(off, Math.min(off + 16, n));
    let hex = '';
    let text = '';
    for (let i = 0; i < 16; i++) {
      if (i < row.length) {
        hex += row[i].toString(16).padStart(2, '0') + ' ';
        text += row[i] >= 0x20 && row[i] < 0x7f ? String.fromCharCode(row[i]) : '.';
      } else {
        hex += '   ';
      }
      if (i === 7) hex += ' ';
    }
    lines.push(`${off.toString(16).padStart(8, '0')}  ${hex} |${text}|`);
  }
  if (n < bytes.length) lines.push(`… ${bytes.length - n} more bytes`);
  return lines.join('\n');
}

// --- Protobuf wire format -------------------------------------------------

export type ProtoValue =
  | { varint: string }
  | { fixed64: string }
  | { fixed32: number }
  | { string: string }
  | { bytes: string }
  | { message: ProtoField[] };

export interface ProtoField {
  field: number;
  wire: number;
  value: ProtoValue;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

function readVarint(b: Uint8Array, pos: number): [bigint, number] | null {
  let v = 0n;
  let shift = 0n;
  for (let i = pos; i < b.length && i < pos + 10; i++) {
    v |= BigInt(b[i] & 0x7f) << shift;
    if ((b[i] & 0x80) === 0) return [v, i + 1];
    shift += 7n;
  }
  return null;
}

function printable(s: string): boolean {
  // eslint-disable-next-line no-control-regex
  return !/[\u0000-\u0008\u000e-\u001f\u007f]/.test(s);
}

/**
 * The fields of a protobuf message read without its schema, or null when
 * the bytes are not one. A length-delimited field is shown as a nested
 * message when it parses as one, else as text when it is printable UTF-8,
 * else as hex. Nesting is bounded.
 */
export function decodeProtobuf(b: Uint8Array, depth = 0): ProtoField[] | null {
  if (depth > 16) return null;
  const fields: ProtoField[] = [];
  let pos = 0;
  while (pos < b.length) {
    const key = readVarint(b, pos);
    if (!key) return null;
    const [tag, afterKey] = key;
    const field = Number(tag >> 3n);
    const wire = Number(tag & 7n);
    if (field < 1 || field > 536_870_911) return null;
    pos = afterKey;
    switch (wire) {
      case 0: {
        const v = readVarint(b, pos);
        if (!v) return null;
        fields.push({ field, wire, value: { varint: v[0].toString() } });
        pos = v[1];
        break;
      }
      case 1: {
        if (pos + 8 > b.length) return null;
        const v = new DataView(b.buffer, b.byteOffset + pos, 8).getBigUint64(0, true);
        fields.push({ field, wire, value: { fixed64: v.toString() } });
        pos += 8;
        break;
      }
      case 5: {
        if (pos + 4 > b.length) return null;
        const v = new DataView(b.buffer, b.byteOffset + pos, 4).getUint32(0, true);
        fields.push({ field, wire, value: { fixed32: v } });
        pos += 4;
        break;
      }
      case 2: {
        const len = readVarint(b, pos);
        if (!len) return null;
        const n = Number(len[0]);
        pos = len[1];
        if (pos + n > b.length) return null;
        const inner = b.subarray(pos, pos + n);
        pos += n;
        const nested = n > 0 ? decodeProtobuf(inner, depth + 1) : null;
        let text: string | null = null;
        try {
          text = utf8.decode(inner);
        } catch {
          text = null;
        }
        if (text !== null && printable(text) && (nested === null || /^[\x20-\x7e]*$/.test(text))) {
          fields.push({ field, wire, value: { string: text } });
        } else if (nested !== null) {
          fields.push({ field, wire, value: { message: nested } });
        } else {
          fields.push({ field, wire, value: { bytes: hexString(inner) } });
        }
        break;
      }
      default:
        return null;
    }
  }
  return fields;
}

function hexString(b: Uint8Array): string {
  let s = '';
  for (const x of b) s += x.toString(16).padStart(2, '0');
  return s;
}

/** Decoded protobuf fields as indented text: `1: "kubetap"`, `2 {` … `}`. */
export function protobufText(fields: ProtoField[], indent = ''): string {
  const lines: string[] = [];
  for (const f of fields) {
    const v = f.value;
    if ('message' in v) {
      lines.push(`${indent}${f.field} {`);
      lines.push(protobufText(v.message, indent + '  '));
      lines.push(`${indent}}`);
    } else if ('string' in v) {
      lines.push(`${indent}${f.field}: ${JSON.stringify(v.string)}`);
    } else if ('bytes' in v) {
      lines.push(`${indent}${f.field}: 0x${v.bytes}`);
    } else if ('varint' in v) {
      lines.push(`${indent}${f.field}: ${v.varint}`);
    } else if ('fixed64' in v) {
      lines.push(`${indent}${f.field}: ${v.fixed64} (fixed64)`);
    } else {
      lines.push(`${indent}${f.field}: ${v.fixed32} (fixed32)`);
    }
  }
  return lines.join('\n');
}
