// One entry in full, fetched when opened: request and response side by side
// (or as tabs), headers, bodies made readable, the protocol's other fields,
// timing, TLS, flags and redaction marks; "copy as curl" for HTTP. Captured
// data only ever goes into text nodes and attribute values.

import { useEffect, useMemo, useState } from 'preact/hooks';
import { ApiError, type Entry, entry as fetchEntry } from './api';
import {
  type Body,
  type BodyKind,
  bodyOf,
  bytesOf,
  decodeProtobuf,
  formPairs,
  hexDump,
  kindOf,
  prettyJson,
  prettyXml,
  protobufText,
} from './body';
import { curlCommand } from './curl';
import { endpointCondition, equals, fieldPath, learnFields, pathCondition, quote } from './filterlang';
import { bytes, duration } from './format';
import { protocolColour, statusClass } from './protocols';

/** Body text shown before "show all": a browser lays out a few hundred KiB quickly. */
const SHOW_LIMIT = 256 * 1024;

interface Props {
  id: string;
  onClose: () => void;
  onNarrow: (cond: string) => void;
}

type Layout = 'split' | 'tabs';

function savedLayout(): Layout {
  try {
    return localStorage.getItem('kubetap.layout') === 'tabs' ? 'tabs' : 'split';
  } catch {
    return 'split';
  }
}

export function EntryDetail({ id, onClose, onNarrow }: Props) {
  const [entry, setEntry] = useState<Entry | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [layout, setLayout] = useState<Layout>(savedLayout);
  const [tab, setTab] = useState<'request' | 'response' | 'timing' | 'json'>('request');
  const [curl, setCurl] = useState<string | null>(null);

  useEffect(() => {
    const ctl = new AbortController();
    setEntry(null);
    setError(null);
    fetchEntry(id, ctl.signal).then(
      (e) => {
        learnFields('request', e.request);
        learnFields('response', e.response);
        setEntry(e);
      },
      (e) => {
        if (ctl.signal.aborted) return;
        setError(e instanceof ApiError ? e.message : String(e));
      },
    );
    return () => ctl.abort();
  }, [id]);

  useEffect(() => {
    const onKey = (ev: KeyboardEvent) => {
      if (ev.key === 'Escape' && !(ev.target as HTMLElement).closest?.('.cm-editor')) {
        if (curl !== null) setCurl(null);
        else onClose();
      }
    };
    window.addEventListener('keydown', onKey);
    return () => window.removeEventListener('keydown', onKey);
  }, [onClose, curl]);

  const switchLayout = (l: Layout) => {
    setLayout(l);
    try {
      localStorage.setItem('kubetap.layout', l);
    } catch {
      // Private mode: the choice lasts for this page.
    }
  };

  if (error) {
    return (
      <aside class="detail" data-testid="detail">
        <div class="detail-head">
          <span class="error-banner">{error}</span>
          <button class="btn close" onClick={onClose} aria-label="close">
            ✕
          </button>
        </div>
      </aside>
    );
  }
  if (!entry) {
    return (
      <aside class="detail" data-testid="detail">
        <div class="detail-head">
          <span class="loading">loading entry {id}…</span>
          <button class="btn close" onClick={onClose} aria-label="close">
            ✕
          </button>
        </div>
      </aside>
    );
  }

  const req = entry.request;
  const resp = entry.response;
  const method = typeof req?.method === 'string' ? req.method : null;
  const path = typeof req?.path === 'string' ? req.path : null;
  const status = typeof resp?.status === 'number' ? resp.status : null;
  const st = statusClass(entry.protocol, status);
  const command = curlCommand(entry);

  const sides = (
    <>
      <Side title="Request" name="request" side={req} entry={entry} onNarrow={onNarrow} />
      <Side title="Response" name="response" side={resp} entry={entry} onNarrow={onNarrow} />
    </>
  );

  return (
    <aside class="detail" data-testid="detail" data-entry={entry.id}>
      <div class="detail-head">
        <span class="proto" style={{ '--proto': protocolColour(entry.protocol) }}>
          {entry.protocol}
        </span>
        {method !== null && (
          <span class="v method" onClick={() => onNarrow(`request.method == ${quote(method)}`)}>
            {method}
          </span>
        )}
        {path !== null && (
          <span class="v detail-path" data-testid="detail-path" onClick={() => onNarrow(pathCondition(path, false))}>
            {path}
          </span>
        )}
        {status !== null && (
          <span class={`v status s-${st}`} onClick={() => onNarrow(`response.status == ${status}`)}>
            {status}
            {typeof resp?.reason === 'string' && resp.reason ? ` ${resp.reason}` : ''}
          </span>
        )}
        <span class="grow" />
        {command !== null && (
          <button class="btn" data-testid="copy-curl" onClick={() => setCurl(command)}>
            Copy as curl
          </button>
        )}
        <div class="seg">
          <button class={`btn${layout === 'split' ? ' on' : ''}`} onClick={() => switchLayout('split')}>
            Side by side
          </button>
          <button class={`btn${layout === 'tabs' ? ' on' : ''}`} onClick={() => switchLayout('tabs')}>
            Tabs
          </button>
        </div>
        <button class="btn close" onClick={onClose} aria-label="close">
          ✕
        </button>
      </div>
      <div class="detail-meta">
        <span>
          {entry.src ? (
            <span class="v" onClick={() => onNarrow(endpointCondition('src', entry.src!))}>
              {describeEndpoint(entry.src)}
            </span>
          ) : (
            '?'
          )}
          {' → '}
          {entry.dst ? (
            <span class="v" onClick={() => onNarrow(endpointCondition('dst', entry.dst!))}>
              {describeEndpoint(entry.dst)}
            </span>
          ) : (
            '?'
          )}
        </span>
        <span>
          TLS: <b data-testid="tls">{entry.tls ? 'yes' : 'no'}</b>
        </span>
        <span>node {entry.node}</span>
        {entry.tunnel && (
          <span data-testid="tunnel">
            via{' '}
            <span class="v" onClick={() => onNarrow(`tunnel.kind == ${quote(entry.tunnel!.kind)}`)}>
              {entry.tunnel.kind}
              {entry.tunnel.vni !== null ? ` ${entry.tunnel.vni}` : ''}
            </span>{' '}
            {entry.tunnel.src} → {entry.tunnel.dst}
          </span>
        )}
        {entry.flags.length > 0 && (
          <span>
            flags:{' '}
            {entry.flags.map((f) => (
              <span key={f} class="v flag" onClick={() => onNarrow(`${quote(f)} in flags`)}>
                {f}
              </span>
            ))}
          </span>
        )}
        {entry.redacted.length > 0 && (
          <span class="redacted-list" data-testid="redacted">
            redacted: {entry.redacted.join(', ')}
          </span>
        )}
      </div>
      {layout === 'split' ? (
        <div class="detail-body">
          <div class="sides">{sides}</div>
          <Timing entry={entry} />
          <details class="raw">
            <summary>Entry as JSON</summary>
            <pre class="body">{JSON.stringify(entry, null, 2)}</pre>
          </details>
        </div>
      ) : (
        <div class="detail-body">
          <div class="tabs" role="tablist">
            {(['request', 'response', 'timing', 'json'] as const).map((t) => (
              <button key={t} role="tab" aria-selected={tab === t} class={`btn${tab === t ? ' on' : ''}`} onClick={() => setTab(t)}>
                {t === 'json' ? 'JSON' : t[0].toUpperCase() + t.slice(1)}
              </button>
            ))}
          </div>
          {tab === 'request' && <Side title="Request" name="request" side={req} entry={entry} onNarrow={onNarrow} />}
          {tab === 'response' && <Side title="Response" name="response" side={resp} entry={entry} onNarrow={onNarrow} />}
          {tab === 'timing' && <Timing entry={entry} />}
          {tab === 'json' && <pre class="body">{JSON.stringify(entry, null, 2)}</pre>}
        </div>
      )}
      {curl !== null && <CurlDialog command={curl} onClose={() => setCurl(null)} />}
    </aside>
  );
}

function describeEndpoint(ep: NonNullable<Entry['src']>): string {
  const addr = ep.ip.includes(':') ? `[${ep.ip}]:${ep.port}` : `${ep.ip}:${ep.port}`;
  const who = [ep.namespace, ep.pod].filter(Boolean).join('/');
  const svc = ep.service ? ` svc ${ep.service}` : '';
  return who ? `${who} (${addr})${svc}` : `${addr}${svc}`;
}

function Timing({ entry }: { entry: Entry }) {
  const start = Date.parse(entry.ts.replace(/\.(\d{1,3})\d*Z$/, '.$1Z'));
  const end =
    entry.elapsed_us !== null && !Number.isNaN(start)
      ? new Date(start + entry.elapsed_us / 1000).toISOString()
      : null;
  return (
    <section class="timing" data-testid="timing">
      <h3>Timing</h3>
      <table class="kv">
        <tbody>
          <tr>
            <th>request</th>
            <td>{entry.ts}</td>
          </tr>
          <tr>
            <th>elapsed</th>
            <td data-testid="elapsed">
              {entry.elapsed_us === null ? 'no response time' : `${duration(entry.elapsed_us)} (${entry.elapsed_us} µs)`}
            </td>
          </tr>
          {end && (
            <tr>
              <th>response (about)</th>
              <td>{end}</td>
            </tr>
          )}
          <tr>
            <th>sizes</th>
            <td>
              request {bytes(entry.request_size)}, response {bytes(entry.response_size)}
            </td>
          </tr>
          {entry.flow_id && (
            <tr>
              <th>flow</th>
              <td>
                {entry.flow_id}
                {entry.stream_id ? ` stream ${entry.stream_id}` : ''}
              </td>
            </tr>
          )}
        </tbody>
      </table>
    </section>
  );
}

const BODY_KEYS = new Set(['headers', 'trailers', 'body', 'body_encoding', 'body_size', 'body_truncated', 'body_decoded_from']);

interface SideProps {
  title: string;
  name: 'request' | 'response';
  side: Record<string, unknown> | null;
  entry: Entry;
  onNarrow: (cond: string) => void;
}

function Side({ title, name, side, entry, onNarrow }: SideProps) {
  if (!side) {
    return (
      <section class="side" data-testid={`side-${name}`}>
        <h3>{title}</h3>
        <p class="dim">none</p>
      </section>
    );
  }
  const body = bodyOf(side);
  const others = Object.entries(side).filter(([k]) => !BODY_KEYS.has(k));
  return (
    <section class="side" data-testid={`side-${name}`}>
      <h3>{title}</h3>
      {others.length > 0 && (
        <FieldTree value={Object.fromEntries(others)} path={[name]} onNarrow={onNarrow} />
      )}
      <Headers title="Headers" which="headers" name={name} side={side} entry={entry} onNarrow={onNarrow} />
      <Headers title="Trailers" which="trailers" name={name} side={side} entry={entry} onNarrow={onNarrow} />
      {body && <BodyView body={body} />}
      {!body && 'body' in side && <p class="dim">no body</p>}
    </section>
  );
}

function Headers(props: SideProps & { which: 'headers' | 'trailers' }) {
  const hs = props.side?.[props.which];
  if (typeof hs !== 'object' || hs === null || Array.isArray(hs)) return null;
  const list = Object.entries(hs as Record<string, unknown>);
  if (list.length === 0) return null;
  return (
    <div class="headers">
      <h4>{props.title}</h4>
      <table class="kv" data-testid={`${props.name}-${props.which}`}>
        <tbody>
          {list.map(([k, v]) => {
            const redacted = props.entry.redacted.includes(`${props.name}.${props.which}.${k}`);
            const cond = equals(fieldPath([props.name, props.which, k]), v);
            return (
              <tr key={k} class={redacted ? 'redacted' : undefined}>
                <th>{k}</th>
                <td>
                  <span class={cond ? 'v' : undefined} onClick={cond ? () => props.onNarrow(cond) : undefined}>
                    {String(v)}
                  </span>
                  {redacted && <span class="tag redacted-tag">redacted</span>}
                </td>
              </tr>
            );
          })}
        </tbody>
      </table>
    </div>
  );
}

/** A protocol's own fields (DNS answers, gRPC messages, SQL results, …); leaves narrow the filter. */
function FieldTree({ value, path, onNarrow }: { value: unknown; path: (string | number)[]; onNarrow: (c: string) => void }) {
  if (Array.isArray(value)) {
    if (value.length === 0) return <span class="dim">[]</span>;
    return (
      <ol class="tree" start={0}>
        {value.slice(0, 500).map((v, i) => (
          <li key={i}>
            <FieldTree value={v} path={[...path, i]} onNarrow={onNarrow} />
          </li>
        ))}
        {value.length > 500 && <li class="dim">… {value.length - 500} more</li>}
      </ol>
    );
  }
  if (typeof value === 'object' && value !== null) {
    return (
      <table class="kv tree">
        <tbody>
          {Object.entries(value as Record<string, unknown>).map(([k, v]) => (
            <tr key={k}>
              <th>{k}</th>
              <td>
                <FieldTree value={v} path={[...path, k]} onNarrow={onNarrow} />
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    );
  }
  if (value === null) return <span class="dim">null</span>;
  const cond = equals(fieldPath(path), value);
  const text = typeof value === 'string' ? value : String(value);
  return (
    <span class={cond ? 'v' : undefined} onClick={cond ? () => onNarrow(cond) : undefined}>
      {text.length > 2000 ? `${text.slice(0, 2000)}…` : text}
    </span>
  );
}

/** The frames of a gRPC-style body (5-byte prefix: compressed flag, length), or the whole body. */
function protobufMessages(b: Uint8Array, grpc: boolean): Uint8Array[] {
  if (!grpc) return [b];
  const out: Uint8Array[] = [];
  let pos = 0;
  while (pos + 5 <= b.length) {
    const len = new DataView(b.buffer, b.byteOffset + pos + 1, 4).getUint32(0, false);
    if (b[pos] > 1 || pos + 5 + len > b.length) return [b];
    out.push(b.subarray(pos + 5, pos + 5 + len));
    pos += 5 + len;
  }
  return pos === b.length ? out : [b];
}

function BodyView({ body }: { body: Body }) {
  const auto = useMemo(() => kindOf(body), [body]);
  const [mode, setMode] = useState<BodyKind | 'hex'>(auto);
  const [all, setAll] = useState(false);
  useEffect(() => setMode(auto), [auto]);

  const modes: (BodyKind | 'hex')[] = useMemo(() => {
    const m: (BodyKind | 'hex')[] = [auto];
    if (body.text !== null && auto !== 'text') m.push('text');
    if (auto !== 'protobuf' && auto !== 'empty' && body.bytes) m.push('protobuf');
    if (auto !== 'binary' && auto !== 'empty') m.push('hex');
    return m;
  }, [auto, body]);

  const rendered = useMemo((): { text?: string; pairs?: [string, string][]; note?: string } => {
    const text = body.text ?? '';
    switch (mode) {
      case 'empty':
        return { text: '' };
      case 'json':
        return { text: prettyJson(text) ?? text, note: prettyJson(text) === null ? 'not valid JSON (cut?): shown as text' : undefined };
      case 'form':
        return { pairs: formPairs(text) };
      case 'xml':
        return { text: prettyXml(text) };
      case 'protobuf': {
        const grpc = /grpc/.test(body.contentType);
        const msgs = protobufMessages(bytesOf(body), grpc);
        const decoded = msgs.map((m) => decodeProtobuf(m));
        if (decoded.some((d) => d === null)) {
          return { text: hexDump(bytesOf(body), all ? undefined : SHOW_LIMIT / 4), note: 'not protobuf wire format: shown in hex' };
        }
        const parts = decoded.map((d, i) => (msgs.length > 1 ? `# message ${i}\n` : '') + protobufText(d!));
        return { text: parts.join('\n'), note: 'decoded without its schema: field numbers and wire types' };
      }
      case 'binary':
      case 'hex':
        return { text: hexDump(bytesOf(body), all ? undefined : SHOW_LIMIT / 4) };
      default:
        return { text };
    }
  }, [mode, body, all]);

  const long = rendered.text !== undefined && rendered.text.length > SHOW_LIMIT && !all;
  const shown = long ? rendered.text!.slice(0, SHOW_LIMIT) : rendered.text;
  return (
    <div class="bodyview" data-testid="body" data-kind={mode}>
      <h4>
        Body <span class="dim">{bytes(body.size)}</span>
        {body.wireSize !== null && body.wireSize !== body.size && (
          <span class="dim"> ({bytes(body.wireSize)} on the wire)</span>
        )}
        {body.decodedFrom && <span class="tag">decoded from {body.decodedFrom}</span>}
        {body.truncated && (
          <span class="tag warn" data-testid="truncated">
            truncated at capture
          </span>
        )}
        <span class="seg">
          {modes.map((m) => (
            <button key={m} class={`btn small${m === mode ? ' on' : ''}`} onClick={() => setMode(m)}>
              {m === 'binary' ? 'hex' : m}
            </button>
          ))}
        </span>
      </h4>
      {rendered.note && <p class="dim">{rendered.note}</p>}
      {rendered.pairs ? (
        <table class="kv" data-testid="form">
          <tbody>
            {rendered.pairs.map(([k, v], i) => (
              <tr key={i}>
                <th>{k}</th>
                <td>{v}</td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : (
        <pre class={`body${mode === 'hex' || mode === 'binary' ? ' hex' : ''}`}>{shown}</pre>
      )}
      {(long || (mode === 'hex' || mode === 'binary') && !all && bytesOf(body).length > SHOW_LIMIT / 4) && (
        <button class="btn" onClick={() => setAll(true)}>
          Show all ({bytes(rendered.text!.length)} of text)
        </button>
      )}
    </div>
  );
}

function CurlDialog({ command, onClose }: { command: string; onClose: () => void }) {
  const [copied, setCopied] = useState<string | null>(null);
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(command);
      setCopied('copied to the clipboard');
    } catch {
      setCopied('the browser refused the clipboard: select the text and copy it');
    }
  };
  useEffect(() => {
    void copy();
    // Copy once, when opened.
  }, [command]);
  return (
    <div class="dialog" role="dialog" aria-label="curl command">
      <div class="dialog-box">
        <h3>curl</h3>
        <textarea readOnly data-testid="curl" rows={8} value={command} onFocus={(e) => (e.target as HTMLTextAreaElement).select()} />
        <div class="dialog-foot">
          <span class="dim">{copied}</span>
          <button class="btn" onClick={() => void copy()}>
            Copy
          </button>
          <button class="btn" onClick={onClose}>
            Close
          </button>
        </div>
      </div>
    </div>
  );
}
