// kubetap's web UI: the traffic list, the service map and the workers panel,
// under one filter bar. Served by the hub (tap-hub/src/ui.rs); talks only to
// the hub's API on the same origin.

import { render } from 'preact';
import { useEffect, useLayoutEffect, useMemo, useState } from 'preact/hooks';
import { adoptToken, authProblem, fields, onAuthProblem, pcap } from './api';
import { FilterBar } from './FilterBar';
import { setCatalogue, useCatalogue } from './protocols';
import { navigate, type Route, useRoute, type View } from './route';
import { ServiceMapView } from './ServiceMapView';
import { Traffic, type TrafficStatus } from './traffic';
import { TrafficView } from './TrafficView';
import { WorkersView } from './WorkersView';
import './style.css';

// Before anything reads the address: `?token=` leaves it for this tab's storage.
adoptToken();

const TABS: { view: View; label: string }[] = [
  { view: 'traffic', label: 'Traffic' },
  { view: 'map', label: 'Service map' },
  { view: 'workers', label: 'Workers' },
];

function App() {
  const route = useRoute();
  // The hub's protocol catalogue: names, fields, colours, status classes.
  // Without it the UI still works, with plain badges and no completion.
  useCatalogue();
  useEffect(() => {
    const ctl = new AbortController();
    fields(ctl.signal).then(setCatalogue, () => {});
    return () => ctl.abort();
  }, []);
  const [version, setVersion] = useState(0);
  const traffic = useMemo(() => new Traffic(() => setVersion((v) => v + 1)), []);
  const [status, setStatus] = useState<TrafficStatus>(traffic.status);

  // The list follows the filter, whichever view is shown, so going back to it
  // is instant; started before the browser paints, so no frame is lost.
  useLayoutEffect(() => {
    traffic.start(route.filter);
    return () => traffic.stop();
  }, [route.filter]);
  useEffect(() => setStatus({ ...traffic.status }), [version]);

  useEffect(() => {
    document.title = route.filter ? `kubetap — ${route.filter}` : 'kubetap';
  }, [route.filter]);

  const filterError = status.error?.status === 400 ? status.error : null;
  const [auth, setAuth] = useState(authProblem());
  useEffect(() => onAuthProblem(() => setAuth(authProblem())), []);

  return (
    <div class="app">
      <header class="top">
        <a
          class="brand"
          href="/"
          onClick={(e) => {
            e.preventDefault();
            navigate({ view: 'traffic', entry: null });
          }}
        >
          kubetap
        </a>
        <nav class="tabs" role="tablist">
          {TABS.map((t) => (
            <a
              key={t.view}
              role="tab"
              aria-selected={route.view === t.view}
              class={`tab${route.view === t.view ? ' on' : ''}`}
              href={t.view === 'traffic' ? '/' : `/${t.view}`}
              data-testid={`tab-${t.view}`}
              onClick={(e) => {
                e.preventDefault();
                navigate({ view: t.view });
              }}
            >
              {t.label}
            </a>
          ))}
        </nav>
        <PcapButton route={route} />
      </header>
      {auth && (
        <div class="error-banner" role="alert" data-testid="auth-problem">
          {auth}
        </div>
      )}
      <FilterBar
        value={route.filter}
        error={filterError}
        onApply={(f) => navigate({ filter: f, entry: null })}
      />
      <main class="content">
        {route.view === 'traffic' && (
          <TrafficView route={route} traffic={traffic} status={status} version={version} />
        )}
        {route.view === 'map' && <ServiceMapView route={route} />}
        {route.view === 'workers' && <WorkersView />}
      </main>
    </div>
  );
}

/** Downloads a pcapng of the entries the filter (and window) select. */
function PcapButton({ route }: { route: Route }) {
  const [busy, setBusy] = useState(false);
  const [encrypted, setEncrypted] = useState(false);
  const [note, setNote] = useState<string | null>(null);
  const download = async () => {
    setBusy(true);
    setNote(null);
    try {
      const p = await pcap(route.filter, route.window, encrypted);
      const url = URL.createObjectURL(p.blob);
      const a = document.createElement('a');
      a.href = url;
      a.download = 'kubetap.pcapng';
      document.body.appendChild(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60_000);
      setNote(
        `${p.connections ?? '?'} connections, ${p.packets ?? '?'} packets` +
          (p.problems ? ` — some nodes could not send everything: ${p.problems}` : ''),
      );
    } catch (e) {
      setNote(e instanceof Error ? e.message : String(e));
    } finally {
      setBusy(false);
    }
  };
  return (
    <div class="pcap">
      <button
        class="btn"
        data-testid="pcap"
        disabled={busy}
        title="A pcapng of the connections of the entries the filter selects"
        onClick={() => void download()}
      >
        {busy ? 'Exporting…' : '⇩ PCAP'}
      </button>
      <label title="With a decrypted (TLS) connection's plaintext, its captured encrypted packets too (first in the file)">
        <input
          type="checkbox"
          data-testid="pcap-encrypted"
          checked={encrypted}
          onChange={() => setEncrypted(!encrypted)}
        />{' '}
        encrypted
      </label>
      {note && (
        <span class="pcap-note" data-testid="pcap-note">
          {note}
        </span>
      )}
    </div>
  );
}

render(<App />, document.getElementById('app')!);
