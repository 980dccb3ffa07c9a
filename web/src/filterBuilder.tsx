// A visual editor for audience filters (docs/audiences.md: groups of "all"/"any" holding
// conditions {field, op, value} and nested groups, up to 5 levels).
import type { Dict } from "./api";

export type ValueType = "text" | "number" | "boolean";
export interface Cond { kind: "cond"; field: string; op: string; value: string; type: ValueType }
export interface Group { kind: "group"; mode: "all" | "any"; items: Node[] }
export type Node = Cond | Group;

export const OPS: [string, string][] = [
  ["equals", "is"], ["not_equals", "is not"], ["in", "is one of"], ["contains", "contains"],
  ["gt", ">"], ["gte", "≥"], ["lt", "<"], ["lte", "≤"], ["exists", "has a value"], ["not_exists", "has no value"],
];
const NO_VALUE = new Set(["exists", "not_exists"]);
const MAX_DEPTH = 5;
const SUGGESTED = ["email", "identifier.email", "profile.created_at", "profile.updated_at", "profile.id"];

export const emptyGroup = (): Group => ({ kind: "group", mode: "all", items: [] });
const newCond = (): Cond => ({ kind: "cond", field: "", op: "equals", value: "", type: "text" });

function scalarOut(text: string, type: ValueType): unknown {
  if (type === "number") { const n = Number(text); return text.trim() !== "" && Number.isFinite(n) ? n : text; }
  if (type === "boolean") return text === "true";
  return text;
}

export function toFilter(g: Group): Dict {
  return {
    [g.mode]: g.items.map((n) => {
      if (n.kind === "group") return toFilter(n);
      const out: Dict = { field: n.field.trim(), op: n.op };
      if (!NO_VALUE.has(n.op)) {
        out.value = n.op === "in"
          ? n.value.split(",").map((x) => x.trim()).filter(Boolean).map((x) => scalarOut(x, n.type))
          : scalarOut(n.value, n.type);
      }
      return out;
    }),
  };
}

function typeOf(v: unknown): ValueType {
  return typeof v === "number" ? "number" : typeof v === "boolean" ? "boolean" : "text";
}

/** The builder's model of a saved filter; null when it is not in the grammar (raw view then). */
export function fromFilter(f: unknown): Group | null {
  if (!f || typeof f !== "object" || Array.isArray(f)) return null;
  const keys = Object.keys(f);
  if (keys.length !== 1 || (keys[0] !== "all" && keys[0] !== "any")) return null;
  const mode = keys[0] as "all" | "any";
  const raw = (f as Dict)[mode];
  if (!Array.isArray(raw)) return null;
  const items: Node[] = [];
  for (const n of raw) {
    if (n && typeof n === "object" && ("all" in n || "any" in n)) {
      const g = fromFilter(n);
      if (!g) return null;
      items.push(g);
    } else if (n && typeof n === "object" && "field" in n && "op" in n) {
      const c = n as { field: unknown; op: unknown; value?: unknown };
      const v = c.value;
      const type = typeOf(Array.isArray(v) ? v[0] : v);
      items.push({ kind: "cond", field: String(c.field), op: String(c.op), type,
        value: v === undefined ? "" : Array.isArray(v) ? v.map(String).join(", ") : String(v) });
    } else return null;
  }
  return { kind: "group", mode, items };
}

function fieldsIn(g: Group, out: Set<string>): Set<string> {
  for (const n of g.items) { if (n.kind === "group") fieldsIn(n, out); else if (n.field) out.add(n.field); }
  return out;
}

/** Field suggestions: the fields imports wrote (read from a sample of profiles), the usual
 * references, and the fields other audiences use. */
export function suggestions(filters: unknown[], imported: string[] = []): string[] {
  const out = new Set([...SUGGESTED, ...imported]);
  for (const f of filters) { const g = fromFilter(f); if (g) fieldsIn(g, out); }
  return [...out].sort();
}

export function FilterBuilder({ value, onChange, errors, fields }: {
  value: Group; onChange: (g: Group) => void; errors: Record<string, string>; fields: string[];
}) {
  return (
    <div class="filter-builder" data-testid="filter-builder">
      <datalist id="fb-fields">{fields.map((f) => <option key={f} value={f} />)}</datalist>
      <GroupEditor group={value} onChange={onChange} path={`filter.${value.mode}`} depth={1} errors={errors} label="Profiles matching" />
    </div>
  );
}

function GroupEditor({ group, onChange, onRemove, path, depth, errors, label }: {
  group: Group; onChange: (g: Group) => void; onRemove?: () => void; path: string; depth: number;
  errors: Record<string, string>; label: string;
}) {
  const setItem = (i: number, n: Node | null) => {
    const items = [...group.items];
    if (n) items[i] = n; else items.splice(i, 1);
    onChange({ ...group, items });
  };
  const err = errors[path] ?? errors[path.replace(/\.(all|any)$/, "")];
  return (
    <fieldset class={`fb-group depth-${depth}`}>
      <legend>
        {label}{" "}
        <select aria-label={`${label}: combine conditions with`} value={group.mode}
          onChange={(e) => onChange({ ...group, mode: (e.target as HTMLSelectElement).value as "all" | "any" })}>
          <option value="all">all of (and)</option><option value="any">any of (or)</option>
        </select>
        {onRemove && <button type="button" class="link" onClick={onRemove}>Remove group</button>}
      </legend>
      {group.items.length === 0 && <p class="muted small">{depth === 1 ? "No condition: every profile." : "Empty: add a condition."}</p>}
      {group.items.map((n, i) => {
        const p = `${path}[${i}]`;
        return n.kind === "group"
          ? <GroupEditor key={i} group={n} path={`${p}.${n.mode}`} depth={depth + 1} errors={errors} label={`Group ${i + 1}`}
              onChange={(g) => setItem(i, g)} onRemove={() => setItem(i, null)} />
          : <CondEditor key={i} cond={n} n={i + 1} path={p} errors={errors} onChange={(c) => setItem(i, c)} onRemove={() => setItem(i, null)} />;
      })}
      {err && <small class="field-error" role="alert">{err}</small>}
      <div class="row">
        <button type="button" onClick={() => onChange({ ...group, items: [...group.items, newCond()] })}>Add condition</button>
        {depth < MAX_DEPTH && <button type="button" onClick={() => onChange({ ...group, items: [...group.items, { kind: "group", mode: "any", items: [newCond()] }] })}>Add group</button>}
      </div>
    </fieldset>
  );
}

function CondEditor({ cond, n, path, errors, onChange, onRemove }: {
  cond: Cond; n: number; path: string; errors: Record<string, string>; onChange: (c: Cond) => void; onRemove: () => void;
}) {
  const id = `fb-${path.replace(/[^a-z0-9]+/gi, "-").replace(/-+$/, "")}`;
  const msgs = ["field", "op", "value"].map((k) => errors[`${path}.${k}`] && `${k}: ${errors[`${path}.${k}`]}`)
    .concat(errors[path] ? [errors[path]!] : []).filter(Boolean);
  const needsValue = !NO_VALUE.has(cond.op);
  return (
    <div class={`fb-cond${msgs.length ? " invalid" : ""}`} role="group" aria-label={`Condition ${n}`}>
      <label for={`${id}-field`} class="sr">Field {n}</label>
      <input id={`${id}-field`} list="fb-fields" placeholder="field, e.g. plan" value={cond.field} aria-invalid={errors[`${path}.field`] ? true : undefined}
        onInput={(e) => onChange({ ...cond, field: (e.target as HTMLInputElement).value })} />
      <label for={`${id}-op`} class="sr">Operator {n}</label>
      <select id={`${id}-op`} value={cond.op} onChange={(e) => onChange({ ...cond, op: (e.target as HTMLSelectElement).value })}>
        {OPS.map(([v, l]) => <option key={v} value={v}>{l}</option>)}</select>
      {needsValue && <>
        <label for={`${id}-value`} class="sr">Value {n}</label>
        {cond.type === "boolean"
          ? <select id={`${id}-value`} value={cond.value === "true" ? "true" : "false"} onChange={(e) => onChange({ ...cond, value: (e.target as HTMLSelectElement).value })}>
              <option value="true">yes</option><option value="false">no</option></select>
          : <input id={`${id}-value`} placeholder={cond.op === "in" ? "a, b, c" : "value"} value={cond.value} aria-invalid={errors[`${path}.value`] ? true : undefined}
              inputMode={cond.type === "number" ? "decimal" : undefined} onInput={(e) => onChange({ ...cond, value: (e.target as HTMLInputElement).value })} />}
        <label for={`${id}-type`} class="sr">Value type {n}</label>
        <select id={`${id}-type`} value={cond.type} onChange={(e) => onChange({ ...cond, type: (e.target as HTMLSelectElement).value as ValueType })}>
          <option value="text">text</option><option value="number">number</option><option value="boolean">yes/no</option></select>
      </>}
      <button type="button" class="link" aria-label={`Remove condition ${n}`} onClick={onRemove}>Remove</button>
      {msgs.length > 0 && <small class="field-error" role="alert">{msgs.join("; ")}</small>}
    </div>
  );
}
