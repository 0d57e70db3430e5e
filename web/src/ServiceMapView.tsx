// The service map: workloads and who calls whom (`/api/servicemap`), drawn
// with cytoscape.js (labels are drawn on a canvas, never parsed as markup).
// Node size follows traffic, edges carry protocol, request rate, error rate
// and p95 latency. The filter and the time window apply; a click on a node or
// an edge (in the graph or the table) opens the traffic list filtered to it.

import { useEffect, useRef, useState } from 'preact/hooks';
import type cytoscape from 'cytoscape';
import { ApiError, type MapEdge, type MapNode, type ServiceMap, serviceMap } from './api';
import { and, edgeCondition, nodeCondition } from './filterlang';
import { count, duration, rate } from './format';
import { protocolColour, useCatalogue } from './protocols';
import { navigate, type Route } from './route';

export const WINDOWS: { value: string; label: string }[] = [
  { value: '', label: 'all stored' },
  { value: '1m', label: 'last minute' },
  { value: '5m', label: 'last 5 minutes' },
  { value: '15m', label: 'last 15 minutes' },
  { value: '1h', label: 'last hour' },
  { value: '6h', label: 'last 6 hours' },
  { value: '24h', label: 'last day' },
];

/** Seconds the map's entries cover: the window, else from the first to the last entry. */
export function spanSeconds(m: ServiceMap): number | null {
  if (m.window_s) return m.window_s;
  if (!m.first_ts || !m.last_ts) return null;
  const s = (Date.parse(m.last_ts) - Date.parse(m.first_ts)) / 1000;
  return s > 0 ? s : null;
}

export function edgeLabel(e: MapEdge, span: number | null): string {
  const parts = [e.protocol];
  if (span) parts.push(rate(e.requests / span));
  else parts.push(`${count(e.requests)} req`);
  parts.push(`${(e.error_rate * 100).toFixed(e.error_rate > 0 && e.error_rate < 0.01 ? 2 : 0)}% err`);
  if (e.latency_us) parts.push(`p95 ${duration(e.latency_us.p95)}`);
  return parts.join(' · ');
}

interface Props {
  route: Route;
}

type Cytoscape = typeof cytoscape;
let library: Promise<Cytoscape> | null = null;

/** cytoscape.js is most of the UI's code: it loads with the first map, not with the page. */
function loadCytoscape(): Promise<Cytoscape> {
  library ??= import('cytoscape').then((m) => m.default);
  return library;
}

export function ServiceMapView({ route }: Props) {
  const box = useRef<HTMLDivElement>(null);
  const cy = useRef<cytoscape.Core | null>(null);
  const [map, setMap] = useState<ServiceMap | null>(null);
  const [error, setError] = useState<ApiError | null>(null);
  const [auto, setAuto] = useState(true);
  const [tick, setTick] = useState(0);
  const [lib, setLib] = useState<Cytoscape | null>(null);

  useEffect(() => {
    loadCytoscape().then(
      (c) => setLib(() => c),
      (e) => setError(new ApiError(`cannot load the graph library: ${(e as Error).message}`, 0)),
    );
  }, []);

  useEffect(() => {
    const ctl = new AbortController();
    serviceMap(route.filter, route.window, ctl.signal).then(
      (m) => {
        setMap(m);
        setError(null);
      },
      (e) => {
        if (ctl.signal.aborted) return;
        setError(e instanceof ApiError ? e : new ApiError(String(e), 0));
      },
    );
    return () => ctl.abort();
  }, [route.filter, route.window, tick]);

  useEffect(() => {
    if (!auto) return;
    const t = setInterval(() => setTick((n) => n + 1), 5000);
    return () => clearInterval(t);
  }, [auto]);

  const nodes = new Map((map?.nodes ?? []).map((n) => [n.id, n]));
  const openNode = (n: MapNode) =>
    navigate({ view: 'traffic', filter: and(route.filter, nodeCondition(n)), entry: null });
  const openEdge = (e: MapEdge) => {
    const s = nodes.get(e.source);
    const t = nodes.get(e.target);
    if (!s || !t) return;
    navigate({ view: 'traffic', filter: and(route.filter, edgeCondition(s, t, e.protocol)), entry: null });
  };
  const handlers = useRef({ openNode, openEdge });
  handlers.current = { openNode, openEdge };

  // Edge colours are the protocols' own, from the hub's catalogue.
  const catalogue = useCatalogue();

  // The graph, drawn again when the map's shape changes.
  const shape = map
    ? JSON.stringify([map.nodes.map((n) => n.id), map.edges.map((e) => [e.source, e.target, e.protocol])])
    : '';
  useEffect(() => {
    if (!map || !box.current || !lib) return;
    const span = spanSeconds(map);
    const traffic = (n: MapNode) => n.requests_in + n.requests_out;
    const maxTraffic = Math.max(1, ...map.nodes.map(traffic));
    const maxReq = Math.max(1, ...map.edges.map((e) => e.requests));
    const elements: cytoscape.ElementDefinition[] = [
      ...map.nodes.map((n) => ({
        data: {
          id: n.id,
          label: n.namespace ? `${n.namespace}/${n.name}` : n.name,
          size: 24 + 48 * (Math.log1p(traffic(n)) / Math.log1p(maxTraffic)),
          colour: n.kind === 'service' ? '#1f6feb' : n.kind === 'pod' ? '#238636' : '#6e7681',
        },
      })),
      ...map.edges.map((e, i) => ({
        data: {
          id: `e${i}`,
          index: i,
          source: e.source,
          target: e.target,
          label: edgeLabel(e, span),
          width: 1.5 + 6 * (Math.log1p(e.requests) / Math.log1p(maxReq)),
          colour: e.error_rate > 0.05 ? '#f85149' : protocolColour(e.protocol),
        },
      })),
    ];
    if (cy.current) {
      // Same shape: labels and sizes change in place, the layout stays.
      const c = cy.current;
      if (c.scratch('shape') === shape) {
        for (const el of elements) c.getElementById(el.data.id!).data(el.data);
        return;
      }
      c.destroy();
    }
    const c = lib({
      container: box.current,
      elements,
      style: [
        {
          selector: 'node',
          style: {
            'background-color': 'data(colour)',
            label: 'data(label)',
            width: 'data(size)',
            height: 'data(size)',
            color: '#e6edf3',
            'font-size': 12,
            'text-valign': 'bottom',
            'text-margin-y': 4,
            'text-outline-color': '#0d1117',
            'text-outline-width': 2,
          },
        },
        {
          selector: 'edge',
          style: {
            width: 'data(width)',
            'line-color': 'data(colour)',
            'target-arrow-color': 'data(colour)',
            'target-arrow-shape': 'triangle',
            'curve-style': 'bezier',
            label: 'data(label)',
            'font-size': 11,
            color: '#e6edf3',
            'text-rotation': 'autorotate',
            'text-background-color': '#0d1117',
            'text-background-opacity': 0.85,
            'text-background-padding': '2px',
          },
        },
        { selector: ':selected', style: { 'overlay-opacity': 0.2, 'overlay-color': '#58a6ff' } },
      ],
      layout:
        map.nodes.length > 3
          ? { name: 'cose', animate: false, nodeDimensionsIncludeLabels: true, padding: 40 }
          : { name: 'breadthfirst', directed: true, padding: 60, spacingFactor: 1.4 },
    });
    c.scratch('shape', shape);
    c.on('tap', 'node', (ev) => {
      const n = nodes.get(ev.target.id());
      if (n) handlers.current.openNode(n);
    });
    c.on('tap', 'edge', (ev) => {
      const e = map.edges[ev.target.data('index') as number];
      if (e) handlers.current.openEdge(e);
    });
    cy.current = c;
    // A handle for debugging in the console and for the browser tests, which
    // click an edge where the graph draws it.
    (window as unknown as { kubetapMap?: cytoscape.Core }).kubetapMap = c;
  }, [map, shape, lib, catalogue]);

  useEffect(
    () => () => {
      cy.current?.destroy();
      cy.current = null;
      delete (window as unknown as { kubetapMap?: cytoscape.Core }).kubetapMap;
    },
    [],
  );

  const span = map ? spanSeconds(map) : null;
  return (
    <div class="mapview">
      <div class="toolbar">
        <label>
          window{' '}
          <select
            value={route.window}
            data-testid="window"
            onChange={(e) => navigate({ window: (e.target as HTMLSelectElement).value })}
          >
            {WINDOWS.map((w) => (
              <option key={w.value} value={w.value}>
                {w.label}
              </option>
            ))}
          </select>
        </label>
        <label>
          <input type="checkbox" checked={auto} onChange={() => setAuto(!auto)} /> refresh every 5 s
        </label>
        <button class="btn" onClick={() => setTick(tick + 1)}>
          Refresh
        </button>
        {map && (
          <span class="counters" data-testid="map-summary">
            <span>
              entries <b>{count(map.entries)}</b>
            </span>
            <span>
              workloads <b>{map.nodes.length}</b>
            </span>
            <span>
              edges <b>{map.edges.length}</b>
            </span>
            {span && <span>over {span >= 120 ? `${(span / 60).toFixed(1)} min` : `${span.toFixed(1)} s`}</span>}
          </span>
        )}
      </div>
      {error && error.status !== 401 && (
        <div class="error-banner" role="alert">
          {error.message}
        </div>
      )}
      <div class="graph" ref={box} data-testid="graph" />
      {map && map.nodes.length === 0 && <div class="empty">No entries match: nothing to draw.</div>}
      {map && map.edges.length > 0 && (
        <div class="map-tables">
          <table class="grid" data-testid="edges">
            <thead>
              <tr>
                <th>caller</th>
                <th>callee</th>
                <th>protocol</th>
                <th class="num">requests</th>
                <th class="num">rate</th>
                <th class="num">errors</th>
                <th class="num">p50</th>
                <th class="num">p95</th>
                <th class="num">p99</th>
              </tr>
            </thead>
            <tbody>
              {map.edges.map((e, i) => (
                <tr
                  key={i}
                  class="clickable"
                  data-source={e.source}
                  data-target={e.target}
                  data-protocol={e.protocol}
                  onClick={() => openEdge(e)}
                >
                  <td>{nodes.get(e.source)?.name ?? e.source}</td>
                  <td>{nodes.get(e.target)?.name ?? e.target}</td>
                  <td>{e.protocol}</td>
                  <td class="num" data-testid="edge-requests">
                    {e.requests}
                  </td>
                  <td class="num">{span ? rate(e.requests / span) : '—'}</td>
                  <td class="num">
                    {e.errors} ({(e.error_rate * 100).toFixed(1)}%)
                  </td>
                  <td class="num">{e.latency_us ? duration(e.latency_us.p50) : '—'}</td>
                  <td class="num">{e.latency_us ? duration(e.latency_us.p95) : '—'}</td>
                  <td class="num">{e.latency_us ? duration(e.latency_us.p99) : '—'}</td>
                </tr>
              ))}
            </tbody>
          </table>
          <table class="grid" data-testid="nodes">
            <thead>
              <tr>
                <th>workload</th>
                <th>kind</th>
                <th class="num">in</th>
                <th class="num">out</th>
              </tr>
            </thead>
            <tbody>
              {map.nodes.map((n) => (
                <tr key={n.id} class="clickable" data-id={n.id} onClick={() => openNode(n)}>
                  <td>{n.namespace ? `${n.namespace}/${n.name}` : n.name}</td>
                  <td>{n.kind}</td>
                  <td class="num">{n.requests_in}</td>
                  <td class="num">{n.requests_out}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </div>
  );
}
