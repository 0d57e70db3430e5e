// The view, filter, time window and open entry live in the URL, so a view can
// be shared, reloaded, and walked with the browser's back button.

import { useEffect, useState } from 'preact/hooks';

export type View = 'traffic' | 'map' | 'workers';

export interface Route {
  view: View;
  filter: string;
  window: string;
  entry: string | null;
}

const PATHS: Record<View, string> = { traffic: '/', map: '/map', workers: '/workers' };

export function parseRoute(loc: { pathname: string; search: string }): Route {
  const q = new URLSearchParams(loc.search);
  const view: View = loc.pathname.startsWith('/map')
    ? 'map'
    : loc.pathname.startsWith('/workers')
      ? 'workers'
      : 'traffic';
  const entry = q.get('entry');
  return {
    view,
    filter: q.get('filter') ?? '',
    window: q.get('window') ?? '',
    entry: entry && /^\d+$/.test(entry) ? entry : null,
  };
}

export function href(r: Route): string {
  const q = new URLSearchParams();
  if (r.filter) q.set('filter', r.filter);
  if (r.window) q.set('window', r.window);
  if (r.entry && r.view === 'traffic') q.set('entry', r.entry);
  const s = q.toString();
  return PATHS[r.view] + (s ? `?${s}` : '');
}

const listeners = new Set<() => void>();

export function navigate(change: Partial<Route>, replace = false) {
  const next = { ...parseRoute(location), ...change };
  const url = href(next);
  if (url === location.pathname + location.search) return;
  if (replace) history.replaceState(null, '', url);
  else history.pushState(null, '', url);
  for (const l of listeners) l();
}

export function useRoute(): Route {
  const [route, setRoute] = useState(() => parseRoute(location));
  useEffect(() => {
    const update = () => setRoute(parseRoute(location));
    listeners.add(update);
    window.addEventListener('popstate', update);
    return () => {
      listeners.delete(update);
      window.removeEventListener('popstate', update);
    };
  }, []);
  return route;
}
