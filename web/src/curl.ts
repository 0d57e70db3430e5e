// "Copy as curl" for an HTTP entry: a POSIX shell command that sends the same
// request — method, URL, headers and body byte for byte.

import type { Entry } from './api';
import { bodyOf, bytesOf } from './body';

/** `s` as one single-quoted shell word. */
export function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** Headers curl writes itself from the command (or that describe the captured framing). */
const SKIP = new Set(['host', 'content-length', 'transfer-encoding', 'connection', 'expect']);

/** Bytes as a printf format string made only of octal escapes and safe characters. */
export function printfFormat(bytes: Uint8Array): string {
  let out = '';
  for (const b of bytes) {
    const c = String.fromCharCode(b);
    if (b >= 0x20 && b < 0x7f && c !== '\\' && c !== "'" && c !== '%') out += c;
    else out += `\\${b.toString(8).padStart(3, '0')}`;
  }
  return out;
}

export function isHttp(e: Entry): boolean {
  return (
    (e.protocol === 'http' || e.protocol === 'http2' || e.protocol === 'graphql') &&
    typeof e.request?.method === 'string' &&
    typeof e.request?.path === 'string'
  );
}

/** The curl command for an HTTP entry's request, or null for other protocols. */
export function curlCommand(e: Entry): string | null {
  if (!isHttp(e) || !e.request) return null;
  const req = e.request;
  const headers = (typeof req.headers === 'object' && req.headers !== null
    ? req.headers
    : {}) as Record<string, unknown>;
  const host =
    (typeof headers.host === 'string' && headers.host) ||
    (typeof headers[':authority'] === 'string' && (headers[':authority'] as string)) ||
    (e.dst ? (e.dst.ip.includes(':') ? `[${e.dst.ip}]:${e.dst.port}` : `${e.dst.ip}:${e.dst.port}`) : 'localhost');
  const path = String(req.path);
  const url = `${e.tls ? 'https' : 'http'}://${host}${path.startsWith('/') ? path : `/${path}`}`;
  const args: string[] = ['curl'];
  if (e.protocol === 'http2') args.push('--http2-prior-knowledge');
  if (req.version === '1.0') args.push('--http1.0');
  const method = String(req.method);
  const body = bodyOf(req);
  if (method === 'HEAD') args.push('-I');
  else if (method !== 'GET' || body) args.push('-X', shellQuote(method));
  args.push(shellQuote(url));
  for (const [name, value] of Object.entries(headers)) {
    if (SKIP.has(name.toLowerCase()) || name.startsWith(':') || typeof value !== 'string') continue;
    // The body is kept decoded: sent as it is, it must not claim an encoding.
    if (body?.decodedFrom && name.toLowerCase() === 'content-encoding') continue;
    args.push('-H', shellQuote(`${name}: ${value}`));
  }
  let cmd = args.join(' ');
  if (body && body.size > 0) {
    if (body.text !== null && !body.text.includes('\0')) {
      cmd += ` --data-binary ${shellQuote(body.text)}`;
    } else {
      cmd = `printf ${shellQuote(printfFormat(bytesOf(body)))} | ${cmd} --data-binary @-`;
    }
    if (body.truncated) cmd += '  # the body was cut at the capture limit: this sends only its start';
  }
  return cmd;
}
