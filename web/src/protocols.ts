// What the UI knows about protocols, all of it from the hub's catalogue
// (`/api/fields`, built from tap-dissect's registry): their names, their
// fields under `request` and `response`, the colour they are drawn in and
// what their `response.status` values mean. No protocol is named here:
// a protocol added to the registry appears in the UI as it is.

import { useEffect, useState } from 'preact/hooks';
import type { Fields, ProtocolInfo } from './api';

let catalogue: Fields | null = null;
let byName = new Map<string, ProtocolInfo>();
const listeners = new Set<() => void>();

/** Installs the hub's catalogue; components using `useCatalogue` re-render. */
export function setCatalogue(f: Fields) {
  catalogue = f;
  byName = new Map(f.protocols.map((p) => [p.protocol, p]));
  for (const l of listeners) l();
}

export function getCatalogue(): Fields | null {
  return catalogue;
}

/** Re-renders the calling component when the catalogue arrives. */
export function useCatalogue(): Fields | null {
  const [, bump] = useState(0);
  useEffect(() => {
    const l = () => bump((n) => n + 1);
    listeners.add(l);
    return () => void listeners.delete(l);
  }, []);
  return catalogue;
}

/** Every protocol's name, in the registry's order (empty until the catalogue arrives). */
export function protocolNames(): string[] {
  return catalogue?.protocols.map((p) => p.protocol) ?? [];
}

export function isProtocol(word: string): boolean {
  return byName.has(word);
}

/** The colour the protocol is drawn in (its badge, its service-map edges). */
export function protocolColour(protocol: string): string {
  return byName.get(protocol)?.colour ?? '#8b949e';
}

export type StatusClass = 'ok' | 'redirect' | 'client' | 'error' | 'none';

const within = (ranges: [number, number][], n: number) => ranges.some(([lo, hi]) => n >= lo && n <= hi);

/**
 * Whether a status is success, a redirect, the caller's fault or a failure,
 * as the protocol reads it (its `status` classes; anything outside them is a
 * failure). `none` without a status, or before the catalogue arrives.
 */
export function statusClass(protocol: string, status: number | null): StatusClass {
  if (status === null) return 'none';
  const classes = byName.get(protocol)?.status;
  if (!classes) return 'none';
  if (within(classes.ok, status)) return 'ok';
  if (within(classes.redirect, status)) return 'redirect';
  if (within(classes.client, status)) return 'client';
  return 'error';
}
