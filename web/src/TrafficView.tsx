// The traffic view: the virtualized list of entries (only the rows on screen
// are in the DOM, whatever the list holds), its counters, pause/resume, and
// the entry detail beside it. Clicking a value in a row narrows the filter.

import { useEffect, useLayoutEffect, useMemo, useRef, useState } from 'preact/hooks';
import { ApiError, type Workers, workers as fetchWorkers } from './api';
import { EntryDetail } from './EntryDetail';
import { and, endpointCondition, pathCondition, quote } from './filterlang';
import { bytes, clock, count, duration, fullTime } from './format';
import { protocolColour, statusClass, useCatalogue } from './protocols';
import { navigate, type Route } from './route';
import type { Row, RowStore } from './rows';
import { Traffic, type TrafficStatus } from './traffic';

export const ROW_HEIGHT = 24;
/** Past this height the scroll area is scaled: browsers cap an element's height (~17M px in Firefox). */
const MAX_SCROLL_PX = 8_000_000;
const OVERSCAN = 8;

interface Props {
  route: Route;
  traffic: Traffic;
  status: TrafficStatus;
  version: number;
}

export function TrafficView({ route, traffic, status, version }: Props) {
  // Rows are coloured by the protocols' status classes: drawn again when they arrive.
  useCatalogue();
  const store = traffic.store;
  const [drops, setDrops] = useState<{ workers: number; hub: number } | null>(null);
  const [dropsError, setDropsError] = useState<string | null>(null);

  // Dropped-by-workers counters, refreshed while the view is open.
  useEffect(() => {
    let alive = true;
    const load = () =>
      fetchWorkers().then(
        (w: Workers) => {
          if (!alive) return;
          let sum = 0;
          for (const x of w.workers) {
            const c = x.counters ?? ({} as Workers['workers'][0]['counters']);
            sum += (c.drops ?? 0) + (c.queue_drops ?? 0) + (c.lost_in_flight ?? 0);
          }
          setDrops({ workers: sum, hub: Number(w.hub.live_dropped ?? 0) });
          setDropsError(null);
        },
        (e) => alive && setDropsError(e instanceof ApiError && e.status === 401 ? null : String(e.message ?? e)),
      );
    void load();
    const t = setInterval(load, 5000);
    return () => {
      alive = false;
      clearInterval(t);
    };
  }, []);

  const narrow = (cond: string) => {
    performance.mark('kubetap:filter-apply', { detail: and(route.filter, cond) });
    navigate({ filter: and(route.filter, cond), entry: null });
  };

  const open = (id: number | null) => navigate({ entry: id === null ? null : String(id) }, id === null);

  const matched = status.complete
    ? `${count(store.length)}`
    : `≥ ${count(store.length)}`;

  return (
    <div class={`traffic${route.entry ? ' with-detail' : ''}`}>
      <div class="traffic-main">
        <div class="toolbar">
          <button
            class="btn"
            data-testid="pause"
            onClick={() => (traffic.isPaused ? traffic.resume() : traffic.pause())}
          >
            {traffic.isPaused ? `▶ Resume${status.pending ? ` (${count(status.pending)} new)` : ''}` : '❚❚ Pause'}
          </button>
          <span class={`live live-${status.live}`} data-testid="live-state">
            {liveText(status.live)}
          </span>
          <span class="counters" data-testid="counters">
            <span title="Rows in the list">
              shown <b data-testid="shown">{count(store.length)}</b>
            </span>
            <span title="Entries in the hub that match the filter (≥ while history loads)">
              matched <b data-testid="matched">{matched}</b>
            </span>
            <span title="Entries the hub looked at to find them">
              scanned <b>{count(status.scanned)}</b>
            </span>
            <span title="Entries the workers dropped at a bound (capture, queue, lost in flight)">
              dropped by workers <b data-testid="worker-drops">{drops ? count(drops.workers) : '…'}</b>
            </span>
            {(status.liveDropped > 0 || (drops && drops.hub > 0)) && (
              <span title="Live entries the hub could not send in time (this client / all clients)">
                live dropped <b>{count(status.liveDropped)}</b>
              </span>
            )}
            {status.loading && <span class="loading">loading history…</span>}
            {status.capped && <span class="warn">only the newest {count(store.length)} are kept; narrow the filter</span>}
            {dropsError && <span class="warn">{dropsError}</span>}
          </span>
        </div>
        {/* A filter error is shown in the filter bar, a refused token above everything. */}
        {status.error && status.error.status !== 400 && status.error.status !== 401 && (
          <div class="error-banner" role="alert">
            {status.error.message}
          </div>
        )}
        <EntryList
          store={store}
          version={version}
          status={status}
          selected={route.entry === null ? null : Number(route.entry)}
          onOpen={open}
          onNarrow={narrow}
        />
      </div>
      {route.entry && (
        <EntryDetail id={route.entry} onClose={() => open(null)} onNarrow={narrow} />
      )}
    </div>
  );
}

function liveText(s: TrafficStatus['live']): string {
  switch (s) {
    case 'live':
      return '● live';
    case 'paused':
      return '❚❚ paused';
    case 'connecting':
      return '○ connecting…';
    case 'down':
      return '○ live stream lost, reconnecting…';
    case 'off':
      return '○ no live stream';
  }
}

interface ListProps {
  store: RowStore;
  version: number;
  status: TrafficStatus;
  selected: number | null;
  onOpen: (id: number | null) => void;
  onNarrow: (cond: string) => void;
}

/** The condition a click on a row's value adds to the filter. */
function conditionFor(row: Row, key: string): string | null {
  switch (key) {
    case 'protocol':
      return `protocol == ${quote(row.protocol)}`;
    case 'src':
      return row.src ? endpointCondition('src', row.src) : null;
    case 'dst':
      return row.dst ? endpointCondition('dst', row.dst) : null;
    case 'method':
      return row.method === null ? null : `request.method == ${quote(row.method)}`;
    case 'path':
      return row.path === null ? null : pathCondition(row.path, row.pathCut);
    case 'status':
      return row.status === null ? null : `response.status == ${row.status}`;
    case 'node':
      return `node == ${quote(row.node)}`;
    default:
      return null;
  }
}

function EntryList({ store, version, status, selected, onOpen, onNarrow }: ListProps) {
  const scroller = useRef<HTMLDivElement>(null);
  const [scrollTop, setScrollTop] = useState(0);
  const [height, setHeight] = useState(600);
  const total = store.length;
  const lastTotal = useRef(total);
  const lastTopId = useRef<number | null>(null);
  const markedFor = useRef<number | null>(null);

  const fullHeight = total * ROW_HEIGHT;
  const virtualHeight = Math.min(fullHeight, MAX_SCROLL_PX);
  const scaled = fullHeight > MAX_SCROLL_PX;

  useLayoutEffect(() => {
    const el = scroller.current!;
    const ro = new ResizeObserver(() => setHeight(el.clientHeight));
    ro.observe(el);
    setHeight(el.clientHeight);
    return () => ro.disconnect();
  }, []);

  // New live rows above: keep what the user reads in place unless at the top.
  useLayoutEffect(() => {
    const el = scroller.current!;
    const topId = total > 0 ? store.idAt(0) : null;
    const prevTop = lastTopId.current;
    if (prevTop !== null && topId !== null && topId !== prevTop && el.scrollTop > 0 && !scaled) {
      const added = store.indexOf(prevTop);
      if (added > 0) el.scrollTop += added * ROW_HEIGHT;
    }
    if (total < lastTotal.current && total === 0) el.scrollTop = 0;
    lastTopId.current = topId;
    lastTotal.current = total;
  }, [version, total]);

  // A new filter starts at the top.
  useLayoutEffect(() => {
    if (scroller.current) scroller.current.scrollTop = 0;
    setScrollTop(0);
  }, [status.startedAt]);

  // The first rows of each filter on screen: a mark the benchmark reads
  // (Preact runs effects after the browser painted the render).
  useEffect(() => {
    if (status.firstPageAt === null || markedFor.current === status.startedAt) return;
    markedFor.current = status.startedAt;
    performance.mark('kubetap:rows-shown', { detail: { filter: status.filter, rows: total } });
  }, [status.firstPageAt, status.startedAt]);

  // Which rows are on screen.
  const offset = scaled
    ? (scrollTop / Math.max(1, virtualHeight - height)) * Math.max(0, fullHeight - height)
    : scrollTop;
  const first = Math.max(0, Math.floor(offset / ROW_HEIGHT) - OVERSCAN);
  const last = Math.min(total, Math.ceil((offset + height) / ROW_HEIGHT) + OVERSCAN);
  const rows = useMemo(() => {
    const out: Row[] = [];
    for (let i = first; i < last; i++) out.push(store.get(i));
    return out;
    // version: the store changed in place.
  }, [first, last, version, store]);

  const onScroll = () => {
    const el = scroller.current!;
    setScrollTop(el.scrollTop);
  };

  const onClick = (ev: MouseEvent) => {
    const target = ev.target as HTMLElement;
    const rowEl = target.closest<HTMLElement>('.row');
    if (!rowEl) return;
    const row = store.get(Number(rowEl.dataset.index));
    const valueEl = target.closest<HTMLElement>('[data-k]');
    if (valueEl) {
      const cond = conditionFor(row, valueEl.dataset.k!);
      if (cond) {
        ev.stopPropagation();
        onNarrow(cond);
        return;
      }
    }
    onOpen(row.id);
  };

  const onKey = (ev: KeyboardEvent) => {
    if (ev.key !== 'ArrowDown' && ev.key !== 'ArrowUp') return;
    ev.preventDefault();
    const at = selected === null ? -1 : store.indexOf(selected);
    const next = Math.max(0, Math.min(total - 1, at + (ev.key === 'ArrowDown' ? 1 : -1)));
    if (total === 0) return;
    onOpen(store.idAt(next));
    const el = scroller.current!;
    if (!scaled) {
      const top = next * ROW_HEIGHT;
      if (top < el.scrollTop) el.scrollTop = top;
      else if (top + ROW_HEIGHT > el.scrollTop + el.clientHeight - ROW_HEIGHT) {
        el.scrollTop = top - el.clientHeight + 2 * ROW_HEIGHT;
      }
    }
  };

  return (
    <div class="list" role="table" aria-label="entries" aria-rowcount={total}>
      <div class="row head" role="row">
        <span role="columnheader">time</span>
        <span role="columnheader">protocol</span>
        <span role="columnheader">source → destination</span>
        <span role="columnheader">method</span>
        <span role="columnheader">path</span>
        <span role="columnheader">status</span>
        <span role="columnheader" class="num">elapsed</span>
        <span role="columnheader" class="num">size</span>
      </div>
      <div
        class="scroller"
        ref={scroller}
        onScroll={onScroll}
        onClick={onClick}
        onKeyDown={onKey}
        tabIndex={0}
        data-testid="rows"
      >
        <div class="spacer" style={{ height: `${virtualHeight}px` }}>
          {rows.map((r) => (
            <RowView
              key={r.id}
              row={r}
              top={scrollTop + (r.index * ROW_HEIGHT - offset)}
              selected={r.id === selected}
            />
          ))}
        </div>
        {total === 0 && !status.loading && !status.error && (
          <div class="empty">No entries match{status.filter ? ' this filter' : ' yet'}.</div>
        )}
      </div>
    </div>
  );
}

function RowView({ row, top, selected }: { row: Row; top: number; selected: boolean }) {
  const st = statusClass(row.protocol, row.status);
  const flags = row.flags.length > 0 ? row.flags.join(', ') : '';
  return (
    <div
      class={`row st-${st}${selected ? ' selected' : ''}`}
      role="row"
      data-index={row.index}
      data-id={row.id}
      style={{ top: `${top}px` }}
    >
      <span class="time" title={fullTime(row.tsUs)}>
        {clock(row.tsUs)}
      </span>
      <span>
        <span class="v proto" data-k="protocol" style={{ '--proto': protocolColour(row.protocol) }}>
          {row.protocol}
        </span>
        {row.tls && <span class="tag">TLS</span>}
      </span>
      <span class="ends">
        {row.src ? (
          <span class="v" data-k="src" title={`${row.src.ip}:${row.src.port}`}>
            {row.src.label}
          </span>
        ) : (
          <span class="dim">?</span>
        )}
        <span class="arrow"> → </span>
        {row.dst ? (
          <span class="v" data-k="dst" title={`${row.dst.ip}:${row.dst.port}`}>
            {row.dst.label}
          </span>
        ) : (
          <span class="dim">?</span>
        )}
      </span>
      <span>
        {row.method !== null && (
          <span class="v method" data-k="method">
            {row.method}
          </span>
        )}
      </span>
      <span class="path" title={flags ? `flags: ${flags}` : undefined}>
        {row.path !== null && (
          <span class="v" data-k="path">
            {row.path}
            {row.pathCut ? '…' : ''}
          </span>
        )}
        {flags && <span class="flag">{flags}</span>}
      </span>
      <span>
        {row.status !== null && (
          <span class={`v status s-${st}`} data-k="status">
            {row.status}
          </span>
        )}
      </span>
      <span class="num">{duration(row.elapsedUs)}</span>
      <span class="num">{bytes(row.requestSize + row.responseSize)}</span>
    </div>
  );
}
