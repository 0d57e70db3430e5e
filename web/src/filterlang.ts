// The filter language as the UI needs it: a tokenizer for highlighting, the
// names autocompletion offers, and filters built from values the user
// clicks. The hub parses and checks every filter (tap-hub/src/filter/); the
// UI never decides what a filter means, it only writes filters.

import { getCatalogue, isProtocol, protocolNames } from './protocols';

export const KEYWORDS = ['and', 'or', 'not', 'in', 'true', 'false', 'null'];

/** Functions called on a value: `request.path.startsWith("/api")`. */
export const METHODS = ['contains', 'startsWith', 'endsWith', 'matches', 'size', 'exists', 'all', 'exists_one'];

/** Functions called alone: `has(src.pod)`, `now() - duration("5m")`. */
export const FUNCTIONS = ['has', 'size', 'now', 'duration', 'timestamp', 'int', 'uint', 'double', 'string'];

/**
 * The entry's own fields (tap-hub/src/filter/mod.rs, "Fields"), for
 * highlighting before the hub's catalogue (`/api/fields`) has arrived.
 */
export const TOP_FIELDS = [
  'id', 'ts', 'node', 'protocol', 'tls', 'elapsed_us', 'request_size', 'response_size',
  'flow_id', 'stream_id', 'flags', 'redacted', 'src', 'dst', 'request', 'response',
];

export const HEADER_NAMES = [
  'host', 'content-type', 'content-length', 'user-agent', 'accept', 'authorization',
  'cookie', 'set-cookie', 'location', 'cache-control', 'content-encoding', 'x-request-id',
  'x-forwarded-for', 'referer', 'origin', 'server', 'etag', 'grpc-status',
];

const learned = { request: new Set<string>(), response: new Set<string>() };

/** Remembers the field names of an opened entry for autocompletion. */
export function learnFields(side: 'request' | 'response', obj: Record<string, unknown> | null) {
  if (!obj) return;
  for (const k of Object.keys(obj)) {
    if (/^[A-Za-z_]\w*$/.test(k)) learned[side].add(k);
  }
}

export interface Completion {
  label: string;
  type: 'property' | 'keyword' | 'function' | 'method' | 'constant' | 'text';
  detail?: string;
}

/**
 * What may follow `prefix.` (`src.` → ip, port, …). Under `request` and
 * `response`: the fields of the protocols the filter names (`redis && …`,
 * `protocol == "dns" && …`), or of every protocol when it names none.
 */
export function fieldsAfter(prefix: string, filter = ''): Completion[] {
  const props = (names: Iterable<string>, detail?: string): Completion[] =>
    [...new Set(names)].map((label) => ({ label, type: 'property', detail }));
  // The hub's catalogue (`/api/fields`, protocols.ts): the entry's fields, an
  // endpoint's, and each protocol's under `request` and `response`, as the
  // JSON form writes them; fields seen in opened entries are added to it.
  const catalogue = getCatalogue();
  if (prefix === 'src' || prefix === 'dst') return props(catalogue?.endpoint ?? []);
  if (prefix === 'tunnel') return props(catalogue?.tunnel ?? []);
  if (prefix === 'request' || prefix === 'response') {
    const named = new Set(
      tokenize(filter)
        .filter((t) => t.kind === 'protocol' || t.kind === 'string')
        .map((t) => t.text.replace(/^["']|["']$/g, ''))
        .filter(isProtocol),
    );
    const protocols = (catalogue?.protocols ?? []).filter((p) => named.size === 0 || named.has(p.protocol));
    return props([...protocols.flatMap((p) => p[prefix]), ...learned[prefix]]);
  }
  // A value: its methods.
  return METHODS.map((label) => ({ label, type: 'method' }));
}

export function topLevel(): Completion[] {
  return [
    ...(getCatalogue()?.entry ?? TOP_FIELDS).map((label): Completion => ({ label, type: 'property' })),
    ...protocolNames().map((label): Completion => ({ label, type: 'constant', detail: 'protocol' })),
    ...FUNCTIONS.map((label): Completion => ({ label, type: 'function' })),
    ...KEYWORDS.map((label): Completion => ({ label, type: 'keyword' })),
  ];
}

export const EXAMPLES: { filter: string; says: string }[] = [
  { filter: 'http && response.status >= 500', says: 'HTTP server errors' },
  { filter: 'http and not request.path.startsWith("/healthz")', says: 'HTTP without health checks' },
  { filter: 'response.status == 404', says: 'not found (any protocol with that status)' },
  { filter: 'elapsed_us > 100000', says: 'slower than 100 ms' },
  { filter: 'src.pod.matches("^front")', says: 'from pods named front…' },
  { filter: 'request.headers["content-type"].contains("json")', says: 'JSON requests' },
  { filter: 'grpc && response.status != 0', says: 'failed gRPC calls' },
  { filter: 'dns && response.rcode_name == "NXDOMAIN"', says: 'names that do not exist' },
  { filter: 'ts > now() - duration("5m")', says: 'the last five minutes' },
  { filter: '"no_response" in flags || "gap" in flags', says: 'unanswered or with capture gaps' },
];

// --- Tokens ---------------------------------------------------------------

export type TokenKind =
  | 'space' | 'string' | 'number' | 'keyword' | 'protocol' | 'field' | 'function'
  | 'operator' | 'punct' | 'comment' | 'name' | 'invalid';

export interface Token {
  kind: TokenKind;
  text: string;
  start: number;
}

const OPERATORS = ['&&', '||', '==', '!=', '<=', '>=', '<', '>', '!', '+', '-', '*', '/', '%', '?', ':'];

/** Splits a filter into tokens (never fails: what is not understood is `invalid`). */
export function tokenize(src: string): Token[] {
  const out: Token[] = [];
  let i = 0;
  let afterDot = false;
  while (i < src.length) {
    const start = i;
    const c = src[i];
    const push = (kind: TokenKind) => out.push({ kind, text: src.slice(start, i), start });
    if (/\s/.test(c)) {
      while (i < src.length && /\s/.test(src[i])) i++;
      push('space');
      continue;
    }
    if (c === '/' && src[i + 1] === '/') {
      while (i < src.length && src[i] !== '\n') i++;
      push('comment');
      continue;
    }
    const strPrefix = /^(?:[rRbB]|[rR][bB]|[bB][rR])?(?:'''|"""|'|")/.exec(src.slice(i, i + 5));
    if (strPrefix && (strPrefix[0].length > 1 ? !/\w/.test(src[i - 1] ?? '') : true)) {
      const quote = strPrefix[0].replace(/^[rRbB]+/, '');
      const raw = /[rR]/.test(strPrefix[0].slice(0, strPrefix[0].length - quote.length));
      i += strPrefix[0].length;
      while (i < src.length) {
        if (!raw && src[i] === '\\') {
          i += 2;
          continue;
        }
        if (src.startsWith(quote, i)) {
          i += quote.length;
          break;
        }
        if (src[i] === '\n' && quote.length === 1) break;
        i++;
      }
      push('string');
      afterDot = false;
      continue;
    }
    if (/[0-9]/.test(c)) {
      while (i < src.length && /[\w.]/.test(src[i])) i++;
      push('number');
      afterDot = false;
      continue;
    }
    if (/[A-Za-z_]/.test(c)) {
      while (i < src.length && /\w/.test(src[i])) i++;
      const word = src.slice(start, i);
      let j = i;
      while (j < src.length && src[j] === ' ') j++;
      let kind: TokenKind;
      if (src[j] === '(') kind = 'function';
      else if (afterDot) kind = 'field';
      else if (KEYWORDS.includes(word)) kind = 'keyword';
      else if (isProtocol(word)) kind = 'protocol';
      else if (TOP_FIELDS.includes(word)) kind = 'field';
      else kind = 'name';
      push(kind);
      afterDot = false;
      continue;
    }
    const op = OPERATORS.find((o) => src.startsWith(o, i));
    if (op) {
      i += op.length;
      push('operator');
      afterDot = false;
      continue;
    }
    i++;
    if ('()[]{},.'.includes(c)) {
      push('punct');
      afterDot = c === '.';
    } else {
      push('invalid');
      afterDot = false;
    }
  }
  return out;
}

/** Whether `||`, `or` or `?:` stands outside brackets: `a || b && c` needs parentheses to be narrowed. */
function hasTopLevelAlternative(src: string): boolean {
  let depth = 0;
  for (const t of tokenize(src)) {
    if (t.kind === 'punct' && '([{'.includes(t.text)) depth++;
    else if (t.kind === 'punct' && ')]}'.includes(t.text)) depth--;
    else if (depth === 0 && (t.text === '||' || t.text === 'or' || t.text === '?')) return true;
  }
  return false;
}

/** `current` narrowed by `condition`. */
export function and(current: string, condition: string): string {
  const cur = current.trim();
  if (!cur) return condition;
  if (cur.split(/\s*&&\s*/).includes(condition)) return cur;
  return hasTopLevelAlternative(cur) ? `(${cur}) && ${condition}` : `${cur} && ${condition}`;
}

/** A CEL string literal holding exactly `s`. */
export function quote(s: string): string {
  // JSON's escapes (\" \\ \n \uXXXX) are CEL's too.
  return JSON.stringify(s);
}

/** A field path in the filter language: `request.headers["x-y"]`, `request.topics[0].name`. */
export function fieldPath(parts: (string | number)[]): string {
  let out = '';
  for (const p of parts) {
    if (typeof p === 'number') out += `[${p}]`;
    else if (/^[A-Za-z_]\w*$/.test(p) && !KEYWORDS.includes(p)) out += out ? `.${p}` : p;
    else out += `[${quote(p)}]`;
  }
  return out;
}

/** `path == value` for a scalar value a user clicked in an entry. */
export function equals(path: string, value: unknown): string | null {
  if (typeof value === 'string') return `${path} == ${quote(value)}`;
  if (typeof value === 'number' && Number.isFinite(value)) return `${path} == ${value}`;
  if (typeof value === 'boolean') return `${path} == ${value}`;
  return null;
}

export interface EndpointLike {
  ip: string;
  port: number;
  pod?: string | null;
}

/** The filter for one side of an entry: its pod when known, else its address. */
export function endpointCondition(side: 'src' | 'dst', ep: EndpointLike): string {
  if (ep.pod) return `${side}.pod == ${quote(ep.pod)}`;
  // A caller's port is ephemeral: its address says who it is.
  if (side === 'src') return `${side}.ip == ${quote(ep.ip)}`;
  return `${side}.ip == ${quote(ep.ip)} && ${side}.port == ${ep.port}`;
}

/** `request.path == …`, or a prefix match when the list only has its start. */
export function pathCondition(path: string, cut: boolean): string {
  return cut ? `request.path.startsWith(${quote(path)})` : `request.path == ${quote(path)}`;
}

// --- Service map nodes and edges --------------------------------------------

function regexEscape(s: string): string {
  return s.replace(/[\\^$.*+?()[\]{}|]/g, '\\$&');
}

/**
 * The entries whose `side` endpoint the service map counts on this node
 * (tap-hub/src/servicemap.rs, "Nodes": service, else the pod's workload,
 * else the address, the port only for callees). Null when no endpoint of
 * that side can be this node.
 */
export function nodeSideCondition(
  side: 'src' | 'dst',
  node: { id: string; name: string; namespace: string | null; kind: string },
): string | null {
  const none = (f: string) => `(${side}.${f} == null || ${side}.${f} == "")`;
  const ns = node.namespace ? `${side}.namespace == ${quote(node.namespace)}` : none('namespace');
  if (node.kind === 'service') return `${side}.service == ${quote(node.name)} && ${ns}`;
  if (node.kind === 'pod') {
    // A Deployment's pods are named <workload>-<hash>-<suffix>.
    const shape = `^${regexEscape(node.name)}-[4-9bcdf]{6,10}-[bcdfghjklmnpqrstvwxz2456789]{5}$`;
    return `${none('service')} && (${side}.pod == ${quote(node.name)} || ${side}.pod.matches(${quote(shape)})) && ${ns}`;
  }
  if (node.id === 'ip:unknown') return null;
  const addr = node.id.slice('ip:'.length);
  const m = /^\[(.*)\]:(\d+)$/.exec(addr) ?? /^([^:]*):(\d+)$/.exec(addr);
  const anon = `${none('service')} && ${none('pod')}`;
  if (m) {
    if (side === 'src') return null;
    return `${anon} && ${side}.ip == ${quote(m[1])} && ${side}.port == ${m[2]}`;
  }
  if (side === 'dst') return null;
  return `${anon} && ${side}.ip == ${quote(addr)}`;
}

type MapNodeLike = { id: string; name: string; namespace: string | null; kind: string };

/** Entries the node takes part in, as caller or callee. */
export function nodeCondition(node: MapNodeLike): string {
  const parts = (['src', 'dst'] as const)
    .map((side) => nodeSideCondition(side, node))
    .filter((c): c is string => c !== null);
  if (parts.length === 0) return 'false';
  return parts.length === 1 ? parts[0] : `((${parts[0]}) || (${parts[1]}))`;
}

/** The entries of one edge: this caller, this callee, this protocol. */
export function edgeCondition(source: MapNodeLike, target: MapNodeLike, protocol: string): string {
  const src = nodeSideCondition('src', source) ?? 'false';
  const dst = nodeSideCondition('dst', target) ?? 'false';
  return `protocol == ${quote(protocol)} && ${src} && ${dst}`;
}
