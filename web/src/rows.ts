// The traffic list's rows, newest first, kept in columns (typed arrays and
// interned strings) so that half a million rows take tens of megabytes, not
// hundreds: the list shows a summary, the full entry is fetched when opened.
//
// Rows arrive from two ends: history pages (newest first, appended below)
// and the live stream (newer entries, added above). Each end is a Segment;
// row i of the list is in the live segment first (reversed), then history.

import type { Endpoint, EndpointTuple, RowTuple } from './api';

/** An endpoint as the list shows it, shared by every row that has it. */
export interface EndpointInfo extends Endpoint {
  /** The pod's name when known, else ip:port. */
  label: string;
}

/** One row, materialized only for the rows on screen. */
export interface Row {
  index: number;
  id: number;
  tsUs: number;
  protocol: string;
  src: EndpointInfo | null;
  dst: EndpointInfo | null;
  method: string | null;
  path: string | null;
  pathCut: boolean;
  status: number | null;
  elapsedUs: number | null;
  requestSize: number;
  responseSize: number;
  tls: boolean;
  flags: string[];
  node: string;
}

class Interner<T> {
  private readonly index = new Map<string, number>();
  readonly values: T[] = [];
  constructor(private readonly make: (key: string) => T) {}
  id(key: string): number {
    let i = this.index.get(key);
    if (i === undefined) {
      i = this.values.length;
      this.values.push(this.make(key));
      this.index.set(key, i);
    }
    return i;
  }
}

/** Strings that repeat across rows: protocols, methods, nodes, flag sets. */
class Strings extends Interner<string> {
  constructor() {
    super((s) => s);
  }
}

const NONE = 0xffffffff;
const TLS = 1;
const PATH_CUT = 2;

function endpointLabel(ep: Endpoint): string {
  if (ep.pod) return ep.pod;
  return ep.ip.includes(':') ? `[${ep.ip}]:${ep.port}` : `${ep.ip}:${ep.port}`;
}

/** Rows of one end of the list, in arrival order, in growable columns. */
class Segment {
  length = 0;
  private capacity = 0;
  id = new Float64Array(0);
  ts = new Float64Array(0);
  proto = new Uint32Array(0);
  src = new Uint32Array(0);
  dst = new Uint32Array(0);
  method = new Uint32Array(0);
  path: (string | null)[] = [];
  status = new Float64Array(0);
  elapsed = new Float64Array(0);
  reqSize = new Float64Array(0);
  respSize = new Float64Array(0);
  bits = new Uint8Array(0);
  flags = new Uint32Array(0);
  node = new Uint32Array(0);

  private grow(min: number) {
    const cap = Math.max(min, this.capacity * 2, 1024);
    const f64 = (a: Float64Array) => {
      const b = new Float64Array(cap);
      b.set(a.subarray(0, this.length));
      return b;
    };
    const u32 = (a: Uint32Array) => {
      const b = new Uint32Array(cap);
      b.set(a.subarray(0, this.length));
      return b;
    };
    this.id = f64(this.id);
    this.ts = f64(this.ts);
    this.proto = u32(this.proto);
    this.src = u32(this.src);
    this.dst = u32(this.dst);
    this.method = u32(this.method);
    this.status = f64(this.status);
    this.elapsed = f64(this.elapsed);
    this.reqSize = f64(this.reqSize);
    this.respSize = f64(this.respSize);
    const bits = new Uint8Array(cap);
    bits.set(this.bits.subarray(0, this.length));
    this.bits = bits;
    this.flags = u32(this.flags);
    this.node = u32(this.node);
    this.capacity = cap;
  }

  reserve(n: number) {
    if (this.length + n > this.capacity) this.grow(this.length + n);
  }

  /** Forgets the rows from `length` on (the oldest, in the history segment). */
  truncate(length: number) {
    if (length >= this.length) return;
    this.length = length;
    this.path.length = length;
  }
}

export class RowStore {
  private live = new Segment();
  private history = new Segment();
  private readonly protocols = new Strings();
  private readonly strings = new Strings();
  private readonly endpoints = new Interner<EndpointInfo>((key) => {
    const [ip, port, pod, namespace, service] = JSON.parse(key) as EndpointTuple;
    const ep: EndpointInfo = { ip, port, pod, namespace, service, label: '' };
    ep.label = endpointLabel(ep);
    return ep;
  });
  private readonly flagSets = new Interner<string[]>((key) => (key ? key.split('\n') : []));
  /** The largest id held, for telling live entries from those history has. */
  newestId = -1;

  get length(): number {
    return this.live.length + this.history.length;
  }

  get historyLength(): number {
    return this.history.length;
  }

  clear() {
    this.live = new Segment();
    this.history = new Segment();
    this.newestId = -1;
  }

  private endpointId(ep: EndpointTuple | null): number {
    if (!ep) return NONE;
    return this.endpoints.id(JSON.stringify(ep));
  }

  private push(seg: Segment, r: RowTuple) {
    const i = seg.length;
    seg.id[i] = r[0];
    seg.ts[i] = r[1];
    seg.proto[i] = this.protocols.id(r[2]);
    seg.src[i] = this.endpointId(r[3]);
    seg.dst[i] = this.endpointId(r[4]);
    seg.method[i] = r[5] === null ? NONE : this.strings.id(r[5]);
    seg.path[i] = r[6];
    seg.status[i] = r[8] ?? NaN;
    seg.elapsed[i] = r[9] ?? NaN;
    seg.reqSize[i] = r[10];
    seg.respSize[i] = r[11];
    seg.bits[i] = (r[12] ? TLS : 0) | (r[7] ? PATH_CUT : 0);
    seg.flags[i] = this.flagSets.id(r[13].join('\n'));
    seg.node[i] = this.strings.id(r[14]);
    seg.length = i + 1;
    if (r[0] > this.newestId) this.newestId = r[0];
  }

  /** Adds older rows (a history page, newest first) below the list. */
  appendOlder(rows: RowTuple[]) {
    this.history.reserve(rows.length);
    for (const r of rows) this.push(this.history, r);
  }

  /** Adds newer rows (oldest first) above the list. */
  prependNewer(rows: RowTuple[]) {
    this.live.reserve(rows.length);
    for (const r of rows) this.push(this.live, r);
  }

  /** Keeps at most `max` rows, forgetting the oldest. */
  cap(max: number) {
    if (this.length <= max) return;
    this.history.truncate(Math.max(0, max - this.live.length));
  }

  private locate(index: number): [Segment, number] {
    const live = this.live.length;
    return index < live ? [this.live, live - 1 - index] : [this.history, index - live];
  }

  idAt(index: number): number {
    const [seg, i] = this.locate(index);
    return seg.id[i];
  }

  /** The index of the row with this id, or -1 (a binary search: ids descend down the list). */
  indexOf(id: number): number {
    let lo = 0;
    let hi = this.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const v = this.idAt(mid);
      if (v === id) return mid;
      if (v > id) lo = mid + 1;
      else hi = mid - 1;
    }
    return -1;
  }

  get(index: number): Row {
    const [seg, i] = this.locate(index);
    const ep = (n: number) => (n === NONE ? null : this.endpoints.values[n]);
    const status = seg.status[i];
    const elapsed = seg.elapsed[i];
    return {
      index,
      id: seg.id[i],
      tsUs: seg.ts[i],
      protocol: this.protocols.values[seg.proto[i]],
      src: ep(seg.src[i]),
      dst: ep(seg.dst[i]),
      method: seg.method[i] === NONE ? null : this.strings.values[seg.method[i]],
      path: seg.path[i],
      pathCut: (seg.bits[i] & PATH_CUT) !== 0,
      status: Number.isNaN(status) ? null : status,
      elapsedUs: Number.isNaN(elapsed) ? null : elapsed,
      requestSize: seg.reqSize[i],
      responseSize: seg.respSize[i],
      tls: (seg.bits[i] & TLS) !== 0,
      flags: this.flagSets.values[seg.flags[i]],
      node: this.strings.values[seg.node[i]],
    };
  }
}
