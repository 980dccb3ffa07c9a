// A form generated from a JSON Schema (the catalog's config and credentials schemas).
import { useEffect, useRef, useState } from "preact/hooks";
import type { Dict, JsonSchema, Option } from "./api";
import { Field } from "./ui";

/** The non-null branch of `anyOf: [X, {type: null}]`. */
export function unwrap(s: JsonSchema): JsonSchema {
  if (s.anyOf) {
    const inner = s.anyOf.find((x) => x.type !== "null");
    if (inner) return { ...inner, title: s.title, description: s.description ?? inner.description, default: s.default };
  }
  return s;
}

export function defaults(schema: JsonSchema): Dict {
  const out: Dict = {};
  for (const [k, s] of Object.entries(schema.properties ?? {})) {
    if (s.default !== undefined && s.default !== null) out[k] = s.default;
  }
  return out;
}

function mappingText(v: unknown): string {
  return Object.entries((v ?? {}) as Record<string, string>).map(([a, b]) => `${a}=${b}`).join("\n");
}
function parseMapping(t: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of t.split("\n")) {
    const [a, b] = line.split("=").map((x) => x.trim());
    if (a && b) out[a] = b;
  }
  return out;
}

export interface OptionSource { field: string; load: (value: Dict) => Promise<Option[]> }

export function SchemaForm({ schema, value, onChange, errors, prefix, idPrefix, options, custom }: {
  schema: JsonSchema; value: Dict; onChange: (v: Dict) => void; errors: Record<string, string>;
  prefix: string; idPrefix: string; options?: Record<string, (v: Dict) => Promise<Option[]>>;
  custom?: Record<string, (id: string, v: unknown, set: (x: unknown) => void) => preact.JSX.Element>;
}) {
  const required = new Set(schema.required ?? []);
  const set = (k: string, v: unknown) => {
    const next = { ...value };
    if (v === undefined || v === "") delete next[k]; else next[k] = v;
    onChange(next);
  };
  return (
    <div class="schema-form">
      {Object.entries(schema.properties ?? {}).map(([k, raw]) => {
        const s = unwrap(raw);
        const id = `${idPrefix}-${k}`;
        const label = (s.title ?? k) + (required.has(k) ? " *" : "");
        const err = errors[`${prefix}${k}`] ?? errors[k];
        const v = value[k];
        const common = { id, "aria-describedby": `${id}-hint`, "aria-invalid": err ? true : undefined, required: required.has(k) };
        let input;
        if (custom?.[k]) input = custom[k]!(id, v, (x) => set(k, x));
        else if (s.enum) {
          input = <select {...common} value={String(v ?? "")} onChange={(e) => set(k, (e.target as HTMLSelectElement).value)}>
            {!required.has(k) && s.default === undefined && <option value="">—</option>}
            {s.enum.map((o) => <option key={String(o)} value={String(o)}>{String(o)}</option>)}</select>;
        } else if (s.type === "boolean") {
          input = <input type="checkbox" {...common} checked={Boolean(v)} onChange={(e) => set(k, (e.target as HTMLInputElement).checked)} />;
        } else if (s.type === "integer" || s.type === "number") {
          input = <input type="number" {...common} min={s.minimum} max={s.maximum} value={v === undefined ? "" : String(v)}
            onInput={(e) => { const t = (e.target as HTMLInputElement).value; set(k, t === "" ? undefined : Number(t)); }} />;
        } else if (s.type === "array") {
          input = <TextAs common={common} value={v} show={(x) => (Array.isArray(x) ? x.join(", ") : "")} placeholder="comma-separated"
            parse={(t) => { const l = t.split(",").map((x) => x.trim()).filter(Boolean); return l.length ? l : undefined; }} onChange={(x) => set(k, x)} />;
        } else if (s.type === "object") {
          input = <TextAs common={common} multiline value={v} show={mappingText} placeholder="source_column=profile_field, one per line"
            parse={(t) => { const m = parseMapping(t); return Object.keys(m).length ? m : undefined; }} onChange={(x) => set(k, x)} />;
        } else {
          const secret = s.format === "password" || s["x-secret"] || s.writeOnly;
          input = <OptionInput common={common} secret={!!secret} value={v === undefined || v === null ? "" : String(v)}
            onInput={(t) => set(k, t)} load={options?.[k] ? () => options[k]!(value) : undefined} />;
        }
        return <Field key={k} id={id} label={label} hint={s.description} error={err}>{input}</Field>;
      })}
    </div>
  );
}

/** A text box for a list or a mapping: the value is parsed on every keystroke, but the box
 * keeps what was typed (re-showing the parsed value would eat a trailing comma, "=" or new
 * line while typing); it shows the value afresh only when it changes from outside. */
function TextAs({ common, value, show, parse, onChange, placeholder, multiline }: {
  common: Record<string, unknown>; value: unknown; show: (v: unknown) => string; parse: (t: string) => unknown;
  onChange: (v: unknown) => void; placeholder: string; multiline?: boolean;
}) {
  const cur = useRef({ text: show(value), sent: JSON.stringify(value) });
  const [, bump] = useState(0);
  if (JSON.stringify(value) !== cur.current.sent) cur.current = { text: show(value), sent: JSON.stringify(value) };
  const input = (e: Event) => {
    const t = (e.target as HTMLInputElement | HTMLTextAreaElement).value;
    const v = parse(t);
    cur.current = { text: t, sent: JSON.stringify(v) };
    bump((n) => n + 1);
    onChange(v);
  };
  return multiline ? <textarea {...common} placeholder={placeholder} value={cur.current.text} onInput={input} />
    : <input {...common} placeholder={placeholder} value={cur.current.text} onInput={input} />;
}

/** A text box with "Load choices": the choices read through the authorization replace the
 * box with a select (the typed value stays one of its options); "Type a value" goes back. */
function OptionInput({ common, secret, value, onInput, load }: {
  common: Record<string, unknown>; secret: boolean; value: string; onInput: (v: string) => void; load?: () => Promise<Option[]>;
}) {
  const [opts, setOpts] = useState<Option[] | null>(null);
  const [note, setNote] = useState("");
  useEffect(() => { setOpts(null); }, [load === undefined]);
  const fetchOpts = async () => {
    if (!load) return;
    setNote("loading…");
    try {
      const o = await load();
      setOpts(o.length ? o : null);
      setNote(o.length ? `${o.length} choice${o.length === 1 ? "" : "s"}` : "no choices found: type a value");
    } catch (e) { setNote((e as Error).message); }
  };
  const typed = (e: Event) => onInput((e.target as HTMLInputElement).value);
  let box;
  if (secret) box = <input {...common} type="password" autocomplete="new-password" value={value} onInput={typed} />;
  else if (opts) {
    const known = opts.some((o) => o.value === value);
    box = <select {...common} value={value} onChange={(e) => onInput((e.target as HTMLSelectElement).value)}>
      {!value && <option value="">choose…</option>}
      {!known && value && <option value={value}>{value}</option>}
      {opts.map((o) => <option key={o.value} value={o.value}>{o.label}</option>)}
    </select>;
  } else box = <input {...common} type="text" autocomplete="off" value={value} onInput={typed} />;
  return (
    <div class="row tight">
      {box}
      {load && (opts
        ? <button type="button" onClick={() => { setOpts(null); setNote(""); }}>Type a value</button>
        : <button type="button" onClick={fetchOpts}>Load choices</button>)}
      {note && <small aria-live="polite">{note}</small>}
    </div>
  );
}
