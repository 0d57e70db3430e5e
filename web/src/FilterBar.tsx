// The filter bar: a one-line CodeMirror editor for the hub's filter language,
// with highlighting (from filterlang's tokenizer), completion of field names,
// the hub's parse error underlined at its column as the user types, and
// example filters. Enter applies, Escape goes back to the applied filter.

import { useEffect, useRef, useState } from 'preact/hooks';
import { EditorState, type Extension, Prec, RangeSetBuilder, StateEffect } from '@codemirror/state';
import {
  Decoration,
  type DecorationSet,
  EditorView,
  keymap,
  placeholder,
  ViewPlugin,
  type ViewUpdate,
} from '@codemirror/view';
import {
  autocompletion,
  closeCompletion,
  type CompletionContext,
  type CompletionResult,
  completionStatus,
  selectedCompletion,
  acceptCompletion,
} from '@codemirror/autocomplete';
import { defaultKeymap, history, historyKeymap } from '@codemirror/commands';
import { setDiagnostics } from '@codemirror/lint';
import { ApiError, checkFilter } from './api';
import { protocolNames, useCatalogue } from './protocols';
import {
  EXAMPLES,
  HEADER_NAMES,
  fieldsAfter,
  tokenize,
  topLevel,
} from './filterlang';

const marks = new Map<string, Decoration>();
function mark(kind: string): Decoration {
  let m = marks.get(kind);
  if (!m) {
    m = Decoration.mark({ class: `tok-${kind}` });
    marks.set(kind, m);
  }
  return m;
}

function highlight(view: EditorView): DecorationSet {
  const b = new RangeSetBuilder<Decoration>();
  for (const t of tokenize(view.state.doc.toString())) {
    if (t.kind !== 'space' && t.text.length > 0) b.add(t.start, t.start + t.text.length, mark(t.kind));
  }
  return b.finish();
}

/** Highlights again without an edit: protocol names are known once the hub's catalogue arrives. */
const rehighlight = StateEffect.define<null>();

const highlighter = ViewPlugin.fromClass(
  class {
    decorations: DecorationSet;
    constructor(view: EditorView) {
      this.decorations = highlight(view);
    }
    update(u: ViewUpdate) {
      const asked = u.transactions.some((t) => t.effects.some((e) => e.is(rehighlight)));
      if (u.docChanged || asked) this.decorations = highlight(u.view);
    }
  },
  { decorations: (v) => v.decorations },
);

function complete(ctx: CompletionContext): CompletionResult | null {
  const before = ctx.state.doc.sliceString(0, ctx.pos);
  const toks = tokenize(before);
  const last = toks[toks.length - 1];
  let m = /(?:request|response)\.(?:headers|trailers)\[\s*["']([\w-]*)$/.exec(before);
  if (m) {
    return {
      from: ctx.pos - m[1].length,
      options: HEADER_NAMES.map((label) => ({ label, type: 'text' })),
      validFor: /^[\w-]*$/,
    };
  }
  m = /\bprotocol\s*(?:==|!=)\s*["'](\w*)$/.exec(before);
  if (m) {
    return {
      from: ctx.pos - m[1].length,
      options: protocolNames().map((label) => ({ label, type: 'constant' })),
      validFor: /^\w*$/,
    };
  }
  // No completion inside other strings, numbers and comments.
  if (last && (last.kind === 'string' || last.kind === 'number' || last.kind === 'comment')) {
    return null;
  }
  m = /([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)\.(\w*)$/.exec(before);
  if (m) {
    return { from: ctx.pos - m[2].length, options: fieldsAfter(m[1], before), validFor: /^\w*$/ };
  }
  m = /[A-Za-z_]\w*$/.exec(before);
  if (!m && !ctx.explicit) return null;
  return { from: ctx.pos - (m ? m[0].length : 0), options: topLevel(), validFor: /^\w*$/ };
}

/** The document position of a 1-based column counted in characters (code points), as the hub counts. */
export function positionOfColumn(text: string, column: number): number {
  let pos = 0;
  let col = 1;
  for (const ch of text) {
    if (col >= column) break;
    pos += ch.length;
    col++;
  }
  return Math.min(pos, text.length);
}

interface Props {
  /** The filter in force (from the URL). */
  value: string;
  /** An error the hub gave for the filter in force (a query's 400). */
  error: ApiError | null;
  onApply: (filter: string) => void;
}

export function FilterBar({ value, error, onApply }: Props) {
  const host = useRef<HTMLDivElement>(null);
  const view = useRef<EditorView | null>(null);
  const applied = useRef(value);
  const apply = useRef(onApply);
  apply.current = onApply;
  const [draftError, setDraftError] = useState<ApiError | null>(null);
  const [draft, setDraft] = useState(value);
  const [examples, setExamples] = useState(false);
  const checkSeq = useRef(0);

  const shownError = draft === value ? (error ?? draftError) : draftError;

  const catalogue = useCatalogue();
  useEffect(() => {
    view.current?.dispatch({ effects: rehighlight.of(null) });
  }, [catalogue]);

  useEffect(() => {
    const run = (v: EditorView) => {
      const text = v.state.doc.toString().trim();
      closeCompletion(v);
      performance.mark('kubetap:filter-apply', { detail: text });
      apply.current(text);
      return true;
    };
    const enter = (v: EditorView) => {
      if (completionStatus(v.state) === 'active') {
        const sel = selectedCompletion(v.state);
        const word = /[\w-]*$/.exec(v.state.doc.sliceString(0, v.state.selection.main.head))?.[0];
        if (sel && sel.label !== word) return acceptCompletion(v);
      }
      return run(v);
    };
    // The hub's policy lets only a style sheet with this page's nonce in (tap-hub/src/ui.rs).
    const nonce = document.querySelector<HTMLMetaElement>('meta[name=kubetap-csp-nonce]')?.content;
    const extensions: Extension[] = [
      ...(nonce && !nonce.startsWith('__') ? [EditorView.cspNonce.of(nonce)] : []),
      history(),
      Prec.highest(
        keymap.of([
          { key: 'Enter', run: enter },
          {
            key: 'Escape',
            run: (v) => {
              if (completionStatus(v.state) !== null) return false;
              v.dispatch({ changes: { from: 0, to: v.state.doc.length, insert: applied.current } });
              return true;
            },
          },
        ]),
      ),
      keymap.of([...defaultKeymap, ...historyKeymap]),
      // One line: pasted line breaks become spaces.
      EditorState.transactionFilter.of((tr) => {
        if (!tr.docChanged || tr.newDoc.lines === 1) return tr;
        const text = tr.newDoc.toString().replace(/\r?\n/g, ' ');
        return [tr, { changes: { from: 0, to: tr.newDoc.length, insert: text }, sequential: true }];
      }),
      highlighter,
      autocompletion({ override: [complete], icons: false }),
      placeholder('filter — e.g. http && response.status >= 500 (Enter applies)'),
      EditorView.contentAttributes.of({ 'aria-label': 'filter', spellcheck: 'false' }),
      EditorView.updateListener.of((u) => {
        if (u.docChanged) setDraft(u.state.doc.toString().trim());
      }),
    ];
    const v = new EditorView({
      state: EditorState.create({ doc: value, extensions }),
      parent: host.current!,
    });
    view.current = v;
    return () => v.destroy();
    // The editor lives as long as the bar; value changes are pushed below.
  }, []);

  // A filter set from outside (a click on a value, the URL) replaces the draft.
  useEffect(() => {
    applied.current = value;
    const v = view.current;
    if (v && v.state.doc.toString().trim() !== value) {
      v.dispatch({ changes: { from: 0, to: v.state.doc.length, insert: value } });
    }
    setDraft(value);
  }, [value]);

  // The hub checks the draft as it is typed.
  useEffect(() => {
    const seq = ++checkSeq.current;
    const ctl = new AbortController();
    const t = setTimeout(() => {
      checkFilter(draft, ctl.signal).then(
        () => seq === checkSeq.current && setDraftError(null),
        (e) => {
          if (seq !== checkSeq.current || (e instanceof DOMException && e.name === 'AbortError')) return;
          // A refused token says nothing about the filter; the app shows it above.
          if (e instanceof ApiError && e.status === 401) return setDraftError(null);
          setDraftError(e instanceof ApiError ? e : new ApiError(String(e), 0));
        },
      );
    }, 200);
    return () => {
      clearTimeout(t);
      ctl.abort();
    };
  }, [draft]);

  // The error underlined where the hub says it is.
  useEffect(() => {
    const v = view.current;
    if (!v) return;
    const text = v.state.doc.toString();
    const e = shownError;
    if (!e || e.column === undefined) {
      v.dispatch(setDiagnostics(v.state, []));
      return;
    }
    const from = positionOfColumn(text, e.column);
    const to = Math.min(text.length, from + Math.max(1, /^\S*/.exec(text.slice(from))![0].length));
    v.dispatch(
      setDiagnostics(v.state, [{ from: Math.min(from, to), to, severity: 'error', message: e.message }]),
    );
  }, [shownError]);

  const useExample = (f: string) => {
    setExamples(false);
    performance.mark('kubetap:filter-apply', { detail: f });
    onApply(f);
  };

  return (
    <div class="filterbar">
      <div class={`filter-input${shownError ? ' has-error' : ''}`} ref={host} data-testid="filter" />
      <button
        class="btn"
        title="Apply the filter (Enter)"
        onClick={() => {
          const v = view.current;
          if (v) {
            const text = v.state.doc.toString().trim();
            performance.mark('kubetap:filter-apply', { detail: text });
            onApply(text);
          }
        }}
      >
        Apply
      </button>
      <div class="examples">
        <button class="btn" aria-expanded={examples} onClick={() => setExamples(!examples)}>
          Examples ▾
        </button>
        {examples && (
          <ul class="examples-menu" role="menu">
            {EXAMPLES.map((ex) => (
              <li key={ex.filter} role="menuitem" onClick={() => useExample(ex.filter)}>
                <code>{ex.filter}</code>
                <span>{ex.says}</span>
              </li>
            ))}
          </ul>
        )}
      </div>
      {shownError && (
        <div class="filter-error" role="alert" data-column={shownError.column ?? ''}>
          {shownError.column !== undefined && (
            <FilterCaret text={draft === value ? value : draft} column={shownError.column} />
          )}
          <span class="filter-error-text">{shownError.message}</span>
        </div>
      )}
    </div>
  );
}

/** The filter with a caret under the column the hub named. */
function FilterCaret({ text, column }: { text: string; column: number }) {
  const chars = [...text];
  const at = Math.max(0, Math.min(column - 1, chars.length));
  return (
    <pre class="filter-caret">
      {chars.join('')}
      {'\n'}
      {' '.repeat(at)}^
    </pre>
  );
}
