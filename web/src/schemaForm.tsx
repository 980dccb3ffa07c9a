// A form generated from a JSON Schema (the catalog's config and credentials schemas).
import { useEffect, useState } from "preact/hooks";
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
          input = <input {...common} value={Array.isArray(v) ? v.join(", ") : ""} placeholder="comma-separated"
            onInput={(e) => { const t = (e.target as HTMLInputElement).value; set(k, t.trim() ? t.split(",").map((x) => x.trim()).filter(Boolean) : undefined); }} />;
        } else if (s.type === "object") {
          input = <textarea {...common} placeholder="source_column=profile_field, one per line" value={mappingText(v)}
            onInput={(e) => { const m = parseMapping((e.target as HTMLTextAreaElement).value); set(k, Object.keys(m).length ? m : undefined); }} />;
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

function OptionInput({ common, secret, value, onInput, load }: {
  common: Record<string, unknown>; secret: boolean; value: string; onInput: (v: string) => void; load?: () => Promise<Option[]>;
}) {
  const [opts, setOpts] = useState<Option[] | null>(null);
  const [note, setNote] = useState("");
  const listId = `${String(common.id)}-options`;
  useEffect(() => { setOpts(null); }, [load === undefined]);
  const fetchOpts = async () => {
    if (!load) return;
    setNote("loading…");
    try { const o = await load(); setOpts(o); setNote(o.length ? `${o.length} choice(s)` : "no choices found"); }
    catch (e) { setNote((e as Error).message); }
  };
  return (
    <div class="row tight">
      {secret
        ? <input {...common} type="password" autocomplete="new-password" value={value} onInput={(e) => onInput((e.target as HTMLInputElement).value)} />
        : <input {...common} type="text" autocomplete="off" list={opts ? listId : undefined} value={value} onInput={(e) => onInput((e.target as HTMLInputElement).value)} />}
      {opts && <datalist id={listId}>{opts.map((o) => <option key={o.value} value={o.value}>{o.label}</option>)}</datalist>}
      {load && <button type="button" onClick={fetchOpts}>Load choices</button>}
      {note && <small aria-live="polite">{note}</small>}
    </div>
  );
}
