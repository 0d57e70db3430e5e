// The hub's HTTP API (tap-hub/openapi.yaml), typed, with one error type: every
// failure — a 400 with the filter's column, a hub that is gone, an answer
// that is not what the API promises — becomes an ApiError whose message a
// person can read.

export class ApiError extends Error {
  readonly status: number;
  /** 1-based column (in characters) of a filter error, when the hub gave one. */
  readonly column?: number;
  constructor(message: string, status: number, column?: number) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.column = column;
  }
}

export interface Endpoint {
  ip: string;
  port: number;
  pod?: string | null;
  namespace?: string | null;
  service?: string | null;
}

/** An entry in its JSON form (docs/entries.md); request and response vary by protocol. */
export interface Entry {
  id: string;
  ts: string;
  node: string;
  protocol: string;
  src: Endpoint | null;
  dst: Endpoint | null;
  tls: boolean;
  elapsed_us: number | null;
  request_size: number;
  response_size: number;
  flow_id?: string;
  stream_id?: number;
  request: Record<string, unknown> | null;
  response: Record<string, unknown> | null;
  redacted: string[];
  flags: string[];
  /** The overlay hop the connection was unwrapped from, if any. */
  tunnel?: Tunnel | null;
}

/** An overlay tunnel between two nodes (docs/entries.md, `tunnel`). */
export interface Tunnel {
  kind: string;
  src: string;
  dst: string;
  vni: number | null;
}

/** `[ip, port, pod, namespace, service]` as `/api/rows` lists an endpoint. */
export type EndpointTuple = [string, number, string | null, string | null, string | null];

/** One row of `/api/rows`, in ROW_COLUMNS' order. */
export type RowTuple = [
  number, // id
  number, // ts_us
  string, // protocol
  EndpointTuple | null, // src
  EndpointTuple | null, // dst
  string | null, // method
  string | null, // path
  boolean, // path_cut
  number | null, // status
  number | null, // elapsed_us
  number, // request_size
  number, // response_size
  boolean, // tls
  string[], // flags
  string, // node
];

export const ROW_COLUMNS = [
  'id', 'ts_us', 'protocol', 'src', 'dst', 'method', 'path', 'path_cut', 'status',
  'elapsed_us', 'request_size', 'response_size', 'tls', 'flags', 'node',
];

export interface RowsPage {
  rows: RowTuple[];
  next_cursor: string | null;
  partial: boolean;
  scanned: number;
  took_ms: number;
}

export interface MapNode {
  id: string;
  name: string;
  namespace: string | null;
  kind: 'service' | 'pod' | 'ip';
  requests_in: number;
  requests_out: number;
}

export interface Latency {
  p50: number;
  p95: number;
  p99: number;
  max: number;
  measured: number;
  sampled: boolean;
}

export interface MapEdge {
  source: string;
  target: string;
  protocol: string;
  requests: number;
  errors: number;
  error_rate: number;
  request_bytes: number;
  response_bytes: number;
  latency_us: Latency | null;
}

export interface ServiceMap {
  nodes: MapNode[];
  edges: MapEdge[];
  entries: number;
  first_ts: string | null;
  last_ts: string | null;
  window_s: number | null;
}

export interface WorkerCounters {
  packets: number;
  bytes: number;
  entries: number;
  parse_errors: number;
  drops: number;
  queue_drops: number;
  lost_in_flight: number;
  entries_sent: number;
  queued: number;
  reconnects: number;
  gap_bytes: number;
  /** Live capture: packets the filters passed, those the full ring lost, and copies skipped. */
  kernel_packets: number;
  kernel_drops: number;
  duplicate_packets: number;
  offloaded_packets: number;
  decapsulated_packets: number;
  /** Redaction: entries with a value redacted, fields redacted, raw packets overwritten for PCAP export. */
  redacted_entries: number;
  redacted_fields: number;
  blanked_packets: number;
  /** Everything lost or skipped, one count per bound (`kernel_ring_full`, `queue_memory`, …). */
  drops_by_cause: Record<string, number>;
}

/** A worker's TLS probes (`--tls`): each library found, hooked or why not. */
export interface TlsStatus {
  state: 'on' | 'unavailable';
  reason: string | null;
  records: number;
  bytes: number;
  connections: number;
  mirrored_connections: number;
  encrypted_entries_replaced: number;
  /** Connections between no target pods: not dissected. */
  untargeted_connections: number;
  /** What works less well than it could here (no BTF: sockets from /proc). */
  degraded: string | null;
  libraries: {
    path: string;
    kind: string;
    hooked: boolean;
    functions: string[];
    reason: string | null;
    bytes: number;
    processes: { pid: number; command: string; pod: string | null; namespace: string | null; bytes: number }[];
  }[];
}

export interface Worker {
  node: string;
  instance: string;
  version: string;
  state: string;
  remote: string | null;
  connected_at: string;
  disconnected_at: string | null;
  last_heartbeat: string | null;
  heartbeat_age_s: number | null;
  sessions: number;
  restarts: number;
  batches: number;
  entries_received: number;
  last_error: string | null;
  counters: WorkerCounters;
  /** Absent when the worker runs without --tls. */
  tls: TlsStatus | null;
}

export interface Workers {
  workers: Worker[];
  hub: Record<string, unknown> & { live_dropped?: number; store?: Record<string, unknown> };
}

// The API token (tap-hub/src/access.rs). kubetap prints the UI's URL with
// `?token=…`; the page takes it from there once, keeps it in this tab's
// sessionStorage and takes it out of the address bar, so it is not in
// screenshots, bookmarks or shared links. sessionStorage rather than
// localStorage: the token lives as long as the tab, is not written to disk
// for good, and is not handed to whatever else runs on this origin
// (127.0.0.1:8899) later; a reload keeps it.

const TOKEN_KEY = 'kubetap.token';
/** When sessionStorage is refused (some privacy settings), the token lives here. */
let memoryToken: string | null = null;
let unauthorized: string | null = null;
const authListeners = new Set<() => void>();

export const UNAUTHORIZED =
  'This page has no valid access token for the hub. Open the address kubetap or tap-hub printed when it started ' +
  '(it ends in ?token=…), or add ?token=<your KUBETAP_TOKEN> to this address.';

/** Moves `?token=` from the address into this tab's storage. Call once, before the route is read. */
export function adoptToken(): void {
  const url = new URL(location.href);
  const t = url.searchParams.get('token');
  if (t === null) return;
  memoryToken = t;
  try {
    sessionStorage.setItem(TOKEN_KEY, t);
  } catch {
    // Kept in memory only: a reload will need the token again.
  }
  url.searchParams.delete('token');
  history.replaceState(history.state, '', url.pathname + url.search + url.hash);
}

function token(): string | null {
  try {
    return sessionStorage.getItem(TOKEN_KEY) ?? memoryToken;
  } catch {
    return memoryToken;
  }
}

function authHeaders(): Record<string, string> {
  const t = token();
  return t ? { authorization: `Bearer ${t}` } : {};
}

/** The message to show when the hub refused the token (null: it never did). */
export function authProblem(): string | null {
  return unauthorized;
}

/** Calls `f` when the hub first refuses this page's token; returns the unsubscribe. */
export function onAuthProblem(f: () => void): () => void {
  authListeners.add(f);
  return () => authListeners.delete(f);
}

function refused(): ApiError {
  if (unauthorized === null) {
    unauthorized = UNAUTHORIZED;
    for (const f of authListeners) f();
  }
  return new ApiError(UNAUTHORIZED, 401);
}

function query(params: Record<string, string | number | null | undefined>): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== null && v !== undefined && v !== '') q.set(k, String(v));
  }
  const s = q.toString();
  return s ? `?${s}` : '';
}

/** The error a non-2xx answer carries, read from its `{"error", "column"}` body. */
async function errorOf(res: Response, what: string): Promise<ApiError> {
  if (res.status === 401) return refused();
  let text = '';
  try {
    text = await res.text();
  } catch {
    // The body is gone with the connection; the status says enough.
  }
  try {
    const body = JSON.parse(text) as { error?: unknown; column?: unknown };
    if (typeof body.error === 'string') {
      const column = typeof body.column === 'number' ? body.column : undefined;
      return new ApiError(body.error, res.status, column);
    }
  } catch {
    // Not JSON: a proxy's page, or a hub of another version.
  }
  const snippet = text.slice(0, 200).trim();
  return new ApiError(`${what}: HTTP ${res.status}${snippet ? ` (${snippet})` : ''}`, res.status);
}

async function getJson<T>(url: string, what: string, signal?: AbortSignal): Promise<T> {
  let res: Response;
  try {
    res = await fetch(url, { signal, headers: { accept: 'application/json', ...authHeaders() } });
  } catch (e) {
    if (e instanceof DOMException && e.name === 'AbortError') throw e;
    throw new ApiError(`${what}: the hub does not answer (${(e as Error).message})`, 0);
  }
  if (!res.ok) throw await errorOf(res, what);
  try {
    return (await res.json()) as T;
  } catch (e) {
    if (e instanceof DOMException && e.name === 'AbortError') throw e;
    throw new ApiError(`${what}: the hub's answer is not JSON (${(e as Error).message})`, res.status);
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export async function rowsPage(
  filter: string,
  cursor: string | null,
  limit: number,
  signal?: AbortSignal,
): Promise<RowsPage> {
  const page = await getJson<unknown>(
    `/api/rows${query({ filter, cursor, limit })}`,
    'loading entries',
    signal,
  );
  if (!isObject(page) || !Array.isArray(page.rows) || !Array.isArray(page.columns)) {
    throw new ApiError('loading entries: the hub answered without rows', 200);
  }
  if (page.columns.join(',') !== ROW_COLUMNS.join(',')) {
    throw new ApiError(
      `loading entries: the hub lists other columns than this UI knows (${page.columns.join(', ')}); reload the page`,
      200,
    );
  }
  return {
    rows: page.rows as RowTuple[],
    next_cursor: typeof page.next_cursor === 'string' ? page.next_cursor : null,
    partial: page.partial === true,
    scanned: typeof page.scanned === 'number' ? page.scanned : 0,
    took_ms: typeof page.took_ms === 'number' ? page.took_ms : 0,
  };
}

export async function entry(id: string | number, signal?: AbortSignal): Promise<Entry> {
  const e = await getJson<unknown>(
    `/api/entries/${encodeURIComponent(String(id))}`,
    `loading entry ${id}`,
    signal,
  );
  if (!isObject(e) || typeof e.id !== 'string' || typeof e.protocol !== 'string') {
    throw new ApiError(`loading entry ${id}: the hub's answer is not an entry`, 200);
  }
  const entry = e as unknown as Entry;
  entry.redacted = Array.isArray(e.redacted) ? (e.redacted as string[]) : [];
  entry.flags = Array.isArray(e.flags) ? (e.flags as string[]) : [];
  return entry;
}

export async function serviceMap(
  filter: string,
  window: string,
  signal?: AbortSignal,
): Promise<ServiceMap> {
  const m = await getJson<unknown>(
    `/api/servicemap${query({ filter, window })}`,
    'loading the service map',
    signal,
  );
  if (!isObject(m) || !Array.isArray(m.nodes) || !Array.isArray(m.edges)) {
    throw new ApiError('loading the service map: the hub answered without nodes and edges', 200);
  }
  return m as unknown as ServiceMap;
}

export async function workers(signal?: AbortSignal): Promise<Workers> {
  const w = await getJson<unknown>('/api/workers', 'loading the workers', signal);
  if (!isObject(w) || !Array.isArray(w.workers) || !isObject(w.hub)) {
    throw new ApiError('loading the workers: the hub answered without workers', 200);
  }
  return w as unknown as Workers;
}

/** The hub's field catalogue for completion (`/api/fields`). */
/** One protocol as the hub's registry describes it. */
export interface ProtocolInfo {
  protocol: string;
  request: string[];
  response: string[];
  /** CSS colour of its badge and service-map edges. */
  colour: string;
  /** Inclusive ranges of `response.status` per class; any other value is an error. */
  status: { ok: [number, number][]; redirect: [number, number][]; client: [number, number][] };
}

export interface Fields {
  entry: string[];
  endpoint: string[];
  /** The fields of an entry's `tunnel` (its overlay hop). */
  tunnel?: string[];
  protocols: ProtocolInfo[];
}

export async function fields(signal?: AbortSignal): Promise<Fields> {
  const f = await getJson<unknown>('/api/fields', 'loading the field names', signal);
  if (!isObject(f) || !Array.isArray(f.entry) || !Array.isArray(f.endpoint) || !Array.isArray(f.protocols)) {
    throw new ApiError('loading the field names: the hub answered without them', 200);
  }
  return f as unknown as Fields;
}

/** Resolves when the filter parses; rejects with the hub's error and column. */
export async function checkFilter(filter: string, signal?: AbortSignal): Promise<void> {
  await getJson<unknown>(`/api/filter/check${query({ filter })}`, 'checking the filter', signal);
}

export interface Pcap {
  blob: Blob;
  connections: string | null;
  packets: string | null;
  problems: string | null;
}

/**
 * The pcapng of the connections of the entries the filter (and window)
 * select; `encrypted`: a decrypted connection's captured packets too.
 */
export async function pcap(filter: string, window: string, encrypted = false): Promise<Pcap> {
  let res: Response;
  try {
    const q = query({ filter, window, encrypted: encrypted ? 'true' : null });
    res = await fetch(`/api/pcap${q}`, { headers: authHeaders() });
  } catch (e) {
    throw new ApiError(`PCAP export: the hub does not answer (${(e as Error).message})`, 0);
  }
  if (!res.ok) throw await errorOf(res, 'PCAP export');
  return {
    blob: await res.blob(),
    connections: res.headers.get('x-kubetap-connections'),
    packets: res.headers.get('x-kubetap-packets'),
    problems: res.headers.get('x-kubetap-problems'),
  };
}

/** The live stream's WebSocket URL on this page's origin. */
export function streamUrl(filter: string): string {
  const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${proto}//${location.host}/api/stream${query({ filter, format: 'rows' })}`;
}

/**
 * The live stream's subprotocols: a browser cannot set a WebSocket's
 * headers, so the token travels as `kubetap.bearer.<token>`, offered beside
 * `kubetap.v1`, which the hub selects.
 */
export function streamProtocols(): string[] {
  const t = token();
  return t ? ['kubetap.v1', `kubetap.bearer.${t}`] : ['kubetap.v1'];
}
