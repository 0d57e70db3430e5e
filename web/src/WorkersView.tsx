// The workers panel (`/api/workers`): each worker's node, state, heartbeat,
// counters and drops, and the hub's own counters and store, refreshed every
// two seconds.

import { useEffect, useState } from 'preact/hooks';
import { ApiError, type TlsStatus, type Workers, workers as fetchWorkers } from './api';
import { bytes, count } from './format';

const COUNTERS: [Exclude<keyof Workers['workers'][0]['counters'], 'drops_by_cause'>, string, boolean][] = [
  ['kernel_packets', 'captured', false],
  ['kernel_drops', 'ring drops', true],
  ['duplicate_packets', 'copies skipped', false],
  ['offloaded_packets', 'offloaded', false],
  ['decapsulated_packets', 'unwrapped', false],
  ['redacted_entries', 'redacted entries', false],
  ['redacted_fields', 'redacted fields', false],
  ['blanked_packets', 'blanked packets', false],
  ['packets', 'packets', false],
  ['bytes', 'bytes', false],
  ['entries', 'entries', false],
  ['entries_sent', 'sent', false],
  ['queued', 'queued', false],
  ['parse_errors', 'parse errors', true],
  ['drops', 'drops', true],
  ['queue_drops', 'queue drops', true],
  ['lost_in_flight', 'lost in flight', true],
  ['gap_bytes', 'gap bytes', true],
  ['reconnects', 'reconnects', true],
];

function value(v: unknown): string {
  if (typeof v === 'number') return count(v);
  if (v === null || v === undefined) return '—';
  if (typeof v === 'object') {
    return Object.entries(v as Record<string, unknown>)
      .map(([k, x]) => `${k.replace(/_/g, ' ')} ${k.includes('bytes') && typeof x === 'number' ? bytes(x) : value(x)}`)
      .join(', ');
  }
  return String(v);
}

/** Every cause any worker reports, in a stable order. */
function causes(data: Workers): string[] {
  const all = new Set<string>();
  for (const w of data.workers) for (const c of Object.keys(w.counters?.drops_by_cause ?? {})) all.add(c);
  return [...all].sort();
}

export function WorkersView() {
  const [data, setData] = useState<Workers | null>(null);
  const [error, setError] = useState<string | null>(null);

  useEffect(() => {
    let alive = true;
    const load = () =>
      fetchWorkers().then(
        (w) => {
          if (!alive) return;
          setData(w);
          setError(null);
        },
        (e) => alive && setError(e instanceof ApiError ? e.message : String(e)),
      );
    void load();
    const t = setInterval(load, 2000);
    return () => {
      alive = false;
      clearInterval(t);
    };
  }, []);

  const store = (data?.hub.store ?? {}) as Record<string, unknown>;
  const hub = Object.entries(data?.hub ?? {}).filter(([k]) => k !== 'store');
  return (
    <div class="workersview">
      {error && (
        <div class="error-banner" role="alert">
          {error}
        </div>
      )}
      <h2>Workers</h2>
      {data && data.workers.length === 0 && (
        <p class="dim" data-testid="no-workers">
          No worker has connected to this hub. (kubetap read --serve fills the hub from a file, without a worker.)
        </p>
      )}
      {data && data.workers.length > 0 && (
        <div class="scroll-x">
          <table class="grid" data-testid="workers">
            <thead>
              <tr>
                <th>node</th>
                <th>state</th>
                <th>remote</th>
                <th>heartbeat</th>
                <th class="num">received</th>
                {COUNTERS.map(([k, label]) => (
                  <th key={k} class="num">
                    {label}
                  </th>
                ))}
                <th>last error</th>
              </tr>
            </thead>
            <tbody>
              {data.workers.map((w) => (
                <tr key={w.node} data-node={w.node}>
                  <td>{w.node}</td>
                  <td class={w.state === 'connected' ? 'ok' : 'bad'}>{w.state}</td>
                  <td>{w.remote ?? '—'}</td>
                  <td>{w.heartbeat_age_s === null ? '—' : `${w.heartbeat_age_s.toFixed(1)} s ago`}</td>
                  <td class="num">{count(w.entries_received)}</td>
                  {COUNTERS.map(([k, , isDrop]) => {
                    const v = w.counters?.[k] ?? 0;
                    return (
                      <td key={k} class={`num${isDrop && v > 0 ? ' bad' : ''}`} data-counter={k}>
                        {k === 'bytes' || k === 'gap_bytes' ? bytes(v) : count(v)}
                      </td>
                    );
                  })}
                  <td>{w.last_error ?? ''}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {data && data.workers.length > 0 && (
        <>
          <h3>Drops by cause</h3>
          <div class="scroll-x">
            <table class="grid" data-testid="drops-by-cause">
              <thead>
                <tr>
                  <th>cause</th>
                  {data.workers.map((w) => (
                    <th key={w.node} class="num">
                      {w.node}
                    </th>
                  ))}
                </tr>
              </thead>
              <tbody>
                {causes(data).map((cause) => (
                  <tr key={cause} data-cause={cause}>
                    <td>{cause.replace(/_/g, ' ')}</td>
                    {data.workers.map((w) => {
                      const v = w.counters?.drops_by_cause?.[cause] ?? 0;
                      return (
                        <td key={w.node} class={`num${v > 0 ? ' bad' : ''}`} data-node={w.node}>
                          {count(v)}
                        </td>
                      );
                    })}
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        </>
      )}
      {data && data.workers.some((w) => w.tls) && (
        <>
          <h3>TLS</h3>
          {data.workers.map((w) => w.tls && <TlsPanel key={w.node} node={w.node} tls={w.tls} />)}
        </>
      )}
      <h2>Hub</h2>
      {data && (
        <div class="hub-panels">
          <table class="kv" data-testid="hub">
            <tbody>
              {hub.map(([k, v]) => (
                <tr key={k}>
                  <th>{k.replace(/_/g, ' ')}</th>
                  <td data-key={k}>{value(v)}</td>
                </tr>
              ))}
            </tbody>
          </table>
          <table class="kv" data-testid="store">
            <tbody>
              {Object.entries(store).map(([k, v]) => (
                <tr key={k}>
                  <th>store {k.replace(/_/g, ' ')}</th>
                  <td data-key={k}>{/bytes|budget/.test(k) && typeof v === 'number' ? bytes(v) : value(v)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </div>
  );
}

/** One worker's TLS probes: each library found, hooked or why not, and who uses it. */
function TlsPanel({ node, tls }: { node: string; tls: TlsStatus }) {
  return (
    <div class="tls-status" data-testid="tls-status" data-node={node}>
      <p>
        <strong>{node}</strong>{' '}
        {tls.state === 'on' ? (
          <span class="ok" data-key="tls-state">
            on: {count(tls.connections)} connections, {bytes(tls.bytes)} of plaintext in {count(tls.records)} calls
            {tls.encrypted_entries_replaced > 0 && `, ${count(tls.encrypted_entries_replaced)} encrypted entries replaced`}
            {tls.untargeted_connections > 0 &&
              `, ${count(tls.untargeted_connections)} connections of pods not targeted left out`}
          </span>
        ) : (
          <span class="bad" data-key="tls-state">
            unavailable: {tls.reason}
          </span>
        )}
      </p>
      {tls.degraded && (
        <p class="bad" data-key="tls-degraded">
          {tls.degraded}
        </p>
      )}
      {tls.libraries.length > 0 && (
        <div class="scroll-x">
          <table class="grid" data-testid="tls-libraries">
            <thead>
              <tr>
                <th>library</th>
                <th>hooked</th>
                <th>processes</th>
                <th class="num">plaintext</th>
              </tr>
            </thead>
            <tbody>
              {tls.libraries.map((l) => (
                <tr key={l.path} data-library={l.path}>
                  <td>
                    {l.path} <span class="dim">({l.kind})</span>
                  </td>
                  <td class={l.hooked ? 'ok' : 'bad'}>{l.hooked ? l.functions.join(', ') : `no: ${l.reason ?? 'unknown'}`}</td>
                  <td>
                    {l.processes
                      .map((p) => `${p.command} (${p.pid})${p.pod ? ` in ${p.namespace ? `${p.namespace}/` : ''}${p.pod}` : ''}`)
                      .join(', ')}
                  </td>
                  <td class="num">{bytes(l.bytes)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </div>
  );
}
