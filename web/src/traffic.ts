// The traffic list's data: history from `/api/rows` (newest first, in pages
// that grow from a small first one, so the first rows show at once) and new
// entries from the live stream (`/api/stream`), for one filter at a time.
//
// The stream is opened before the first history page is asked for, and a live
// entry is kept only when its id is above every id held: ids are the hub's
// sequence numbers, so an entry is never shown twice nor lost between the
// two. Changes are batched to one notification per animation frame.

import { ApiError, type RowTuple, rowsPage, streamProtocols, streamUrl } from './api';
import { RowStore } from './rows';

/** Rows the list holds at most; beyond, the oldest are let go (memory stays bounded). */
export const MAX_ROWS = 1_000_000;
/** Live entries held while paused; beyond, they are counted and fetched again on resume. */
const MAX_PENDING = 100_000;
const FIRST_PAGE = 100;
const PAGE_SIZES = [2_000, 20_000];

export type LiveState = 'connecting' | 'live' | 'paused' | 'down' | 'off';

export interface TrafficStatus {
  filter: string;
  /** History still loading. */
  loading: boolean;
  /** Entries the hub looked at for the history so far. */
  scanned: number;
  /** Every matching entry in the store is in the list (or MAX_ROWS were reached). */
  complete: boolean;
  capped: boolean;
  error: ApiError | null;
  live: LiveState;
  /** Live entries waiting while paused. */
  pending: number;
  /** Entries the hub could not send this client in time (`{"type":"dropped"}`). */
  liveDropped: number;
  /** performance.now() when the first page of this filter arrived (for the benchmark). */
  firstPageAt: number | null;
  startedAt: number;
}

export class Traffic {
  readonly store = new RowStore();
  status: TrafficStatus;
  private abort = new AbortController();
  private ws: WebSocket | null = null;
  private incoming: RowTuple[] = [];
  private pending: RowTuple[] = [];
  private pendingOverflow = false;
  private historyReady = false;
  private paused = false;
  private frame = 0;
  private retry: ReturnType<typeof setTimeout> | null = null;
  private retryDelay = 1000;
  private generation = 0;

  constructor(private readonly onChange: () => void) {
    this.status = this.fresh('');
  }

  private fresh(filter: string): TrafficStatus {
    return {
      filter,
      loading: true,
      scanned: 0,
      complete: false,
      capped: false,
      error: null,
      live: this.paused ? 'paused' : 'connecting',
      pending: 0,
      liveDropped: 0,
      firstPageAt: null,
      startedAt: performance.now(),
    };
  }

  private changed() {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.flushIncoming();
      this.onChange();
    });
  }

  /** Shows the entries matching `filter`: history, then live. */
  start(filter: string) {
    this.stop();
    const gen = ++this.generation;
    this.abort = new AbortController();
    this.store.clear();
    this.incoming = [];
    this.pending = [];
    this.pendingOverflow = false;
    this.historyReady = false;
    this.status = this.fresh(filter);
    this.onChange();
    void this.run(filter, gen, this.abort.signal);
  }

  stop() {
    this.generation++;
    this.abort.abort();
    if (this.retry) clearTimeout(this.retry);
    this.retry = null;
    if (this.ws) {
      this.ws.onclose = null;
      this.ws.close();
      this.ws = null;
    }
  }

  private async run(filter: string, gen: number, signal: AbortSignal) {
    await this.connect(filter, gen);
    if (gen !== this.generation) return;
    try {
      let cursor: string | null = null;
      let size = FIRST_PAGE;
      let pageNo = 0;
      for (;;) {
        const page = await rowsPage(filter, cursor, size, signal);
        if (gen !== this.generation) return;
        this.store.appendOlder(page.rows);
        this.status.scanned += page.scanned;
        if (pageNo === 0) {
          this.status.firstPageAt = performance.now();
          this.historyReady = true;
          this.flushIncoming();
          // The first rows are drawn at once, not at the next frame.
          this.onChange();
        }
        pageNo++;
        cursor = page.next_cursor;
        if (this.store.length >= MAX_ROWS) {
          this.store.cap(MAX_ROWS);
          this.status.capped = cursor !== null;
          break;
        }
        if (cursor === null) break;
        size = PAGE_SIZES[Math.min(pageNo - 1, PAGE_SIZES.length - 1)];
        this.changed();
        // Let the page breathe between pages: scrolling stays smooth while history loads.
        await new Promise((r) => setTimeout(r, 0));
      }
      this.status.complete = true;
    } catch (e) {
      if (signal.aborted || gen !== this.generation) return;
      this.status.error =
        e instanceof ApiError ? e : new ApiError(`loading entries: ${(e as Error).message}`, 0);
      // A filter the hub refused has no live stream either.
      if (this.status.error.status === 400) this.closeLive();
    }
    this.status.loading = false;
    this.changed();
  }

  private closeLive() {
    if (this.ws) {
      this.ws.onclose = null;
      this.ws.close();
      this.ws = null;
    }
    this.status.live = 'off';
  }

  /** Opens the live stream; resolves once it is open (or failed, or after 1.5 s). */
  private connect(filter: string, gen: number): Promise<void> {
    return new Promise((resolve) => {
      let ws: WebSocket;
      try {
        ws = new WebSocket(streamUrl(filter), streamProtocols());
      } catch {
        this.status.live = 'down';
        resolve();
        return;
      }
      this.ws = ws;
      const timer = setTimeout(resolve, 1500);
      ws.onopen = () => {
        clearTimeout(timer);
        if (gen !== this.generation) return;
        this.retryDelay = 1000;
        this.status.live = this.paused ? 'paused' : 'live';
        this.changed();
        resolve();
      };
      ws.onmessage = (ev) => this.message(ev.data, gen);
      ws.onerror = () => {
        clearTimeout(timer);
        resolve();
      };
      ws.onclose = () => {
        clearTimeout(timer);
        resolve();
        if (gen !== this.generation) return;
        this.ws = null;
        this.status.live = 'down';
        this.changed();
        this.retry = setTimeout(() => void this.reconnect(filter, gen), this.retryDelay);
        this.retryDelay = Math.min(this.retryDelay * 2, 30_000);
      };
    });
  }

  /** After the stream broke: open it again, then fetch what arrived meanwhile. */
  private async reconnect(filter: string, gen: number) {
    if (gen !== this.generation) return;
    this.status.live = 'connecting';
    this.historyReady = false;
    await this.connect(filter, gen);
    if (gen !== this.generation) return;
    await this.catchUp(filter, gen);
  }

  /** Adds the entries newer than every row held, from the top of the history. */
  private async catchUp(filter: string, gen: number) {
    const newer: RowTuple[] = [];
    let cursor: string | null = null;
    try {
      outer: for (;;) {
        const page = await rowsPage(filter, cursor, 5_000, this.abort.signal);
        if (gen !== this.generation) return;
        for (const r of page.rows) {
          if (r[0] <= this.store.newestId) break outer;
          newer.push(r);
        }
        cursor = page.next_cursor;
        if (cursor === null || newer.length >= MAX_ROWS) break;
      }
    } catch (e) {
      if (gen !== this.generation) return;
      this.status.error =
        e instanceof ApiError ? e : new ApiError(`catching up: ${(e as Error).message}`, 0);
    }
    newer.reverse();
    this.store.prependNewer(newer);
    this.store.cap(MAX_ROWS);
    this.historyReady = true;
    this.changed();
  }

  private message(data: unknown, gen: number) {
    if (gen !== this.generation || typeof data !== 'string') return;
    let msg: { type?: unknown; row?: unknown; count?: unknown };
    try {
      msg = JSON.parse(data);
    } catch {
      return;
    }
    if (msg.type === 'dropped' && typeof msg.count === 'number') {
      this.status.liveDropped += msg.count;
      this.changed();
      return;
    }
    // Rows come built by the hub (`format=rows`), as `/api/rows` has them.
    if (msg.type !== 'row' || !Array.isArray(msg.row)) return;
    const row = msg.row as RowTuple;
    if (!Number.isFinite(row[0])) return;
    if (this.paused) {
      if (this.pending.length < MAX_PENDING) this.pending.push(row);
      else this.pendingOverflow = true;
      this.status.pending = this.pending.length;
    } else {
      this.incoming.push(row);
    }
    this.changed();
  }

  private flushIncoming() {
    if (!this.historyReady || this.incoming.length === 0) return;
    const fresh = this.incoming.filter((r) => r[0] > this.store.newestId);
    this.incoming = [];
    this.store.prependNewer(fresh);
    this.store.cap(MAX_ROWS);
  }

  get isPaused(): boolean {
    return this.paused;
  }

  /** Stops adding live entries to the list (they wait, counted). */
  pause() {
    this.paused = true;
    if (this.status.live === 'live') this.status.live = 'paused';
    this.changed();
  }

  resume() {
    this.paused = false;
    if (this.status.live === 'paused') this.status.live = this.ws ? 'live' : 'down';
    const waiting = this.pending;
    this.pending = [];
    this.status.pending = 0;
    if (this.pendingOverflow) {
      this.pendingOverflow = false;
      void this.catchUp(this.status.filter, this.generation);
    } else {
      this.incoming = this.incoming.concat(waiting);
    }
    this.changed();
  }
}
