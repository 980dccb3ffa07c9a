import type { ComponentChildren } from "preact";
import { useEffect, useRef, useState } from "preact/hooks";
import { ApiError } from "./api";
import { fieldLabel } from "./words";

export const STATUSES = ["running", "sleeping", "paused", "failed", "completed"];
export const JOB_TYPES = ["import", "export", "enrichment", "other"];

export function fmtTime(iso: string | null | undefined): string {
  if (!iso) return "—";
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : d.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

export function initials(name: string): string {
  const words = name.split(/[\s_]+/).filter(Boolean);
  if (words.length === 1) return (words[0] ?? "?").slice(0, 2).toUpperCase();
  return words.slice(0, 2).map((w) => w[0]!.toUpperCase()).join("");
}

export function ProviderMark({ id, name }: { id: string; name?: string }) {
  const label = name ?? id;
  return <span class="provider"><span class="logo" aria-hidden="true">{initials(label.replace(/^amazon /i, ""))}</span><span>{label}</span></span>;
}

export function StatusBadge({ status, faults, warning }: { status: string; faults?: number; warning?: string | null }) {
  return (
    <span class={`badge st-${status}`} data-testid="status-badge">
      {status}
      {faults ? <span class="faults" title={`${faults} fault(s) in a row`}> · {faults} fault{faults > 1 ? "s" : ""}</span> : null}
      {warning ? <span class="warn" title={warning} aria-label={`warning: ${warning}`}> ⚠</span> : null}
    </span>
  );
}

export function HealthBadge({ health }: { health: { status: string; reason: string | null } | null | undefined }) {
  const status = health?.status ?? "unknown";
  return <span class={`badge h-${status}`} title={health?.reason ?? ""} data-testid="health-badge">{status}</span>;
}

export function ErrorBox({ error }: { error: unknown }) {
  if (!error) return null;
  const e = error as ApiError;
  const fields = e.fields && Object.keys(e.fields).length ? e.fields : null;
  const blocking = (e.details?.blocking_jobs ?? null) as { id: string; label: string; status: string }[] | null;
  return (
    <div class="error" role="alert">
      <strong>{e.message || String(error)}</strong>
      {fields && <ul>{Object.entries(fields).map(([k, v]) => <li key={k}>{fieldLabel(k)}: {v}</li>)}</ul>}
      {blocking && <ul>{blocking.map((j) => <li key={j.id}><a href={`#/jobs/${j.id}`}>{j.label}</a> ({j.status})</li>)}</ul>}
    </div>
  );
}

export function Confirm({ title, children, confirmLabel, danger, onConfirm, onCancel }: {
  title: string; children?: ComponentChildren; confirmLabel: string; danger?: boolean;
  onConfirm: () => void; onCancel: () => void;
}) {
  const ref = useRef<HTMLDialogElement>(null);
  useEffect(() => { ref.current?.showModal(); }, []);
  return (
    <dialog ref={ref} aria-labelledby="dlg-title" onCancel={(e) => { e.preventDefault(); onCancel(); }}>
      <h2 id="dlg-title">{title}</h2>
      <div>{children}</div>
      <div class="row end">
        <button type="button" onClick={onCancel}>Cancel</button>
        <button type="button" class={danger ? "danger" : "primary"} onClick={onConfirm}>{confirmLabel}</button>
      </div>
    </dialog>
  );
}

export function Segmented<T extends string>({ value, options, onChange, label }: { value: T; options: T[]; onChange: (v: T) => void; label: string }) {
  return (
    <div class="segmented" role="group" aria-label={label}>
      {options.map((o) => <button type="button" key={o} aria-pressed={o === value} onClick={() => onChange(o)}>{o}</button>)}
    </div>
  );
}

/** Load something on mount / when deps change; reload() re-runs it. */
export function useLoad<T>(fn: () => Promise<T>, deps: unknown[]): { data: T | undefined; error: unknown; loading: boolean; reload: () => void; set: (v: T) => void } {
  const [data, setData] = useState<T | undefined>(undefined);
  const [error, setError] = useState<unknown>(null);
  const [loading, setLoading] = useState(true);
  const [tick, setTick] = useState(0);
  useEffect(() => {
    let live = true;
    setLoading(true);
    fn().then((v) => { if (live) { setData(v); setError(null); } }, (e) => { if (live) setError(e); })
      .finally(() => { if (live) setLoading(false); });
    return () => { live = false; };
  }, [...deps, tick]);
  return { data, error, loading, reload: () => setTick((t) => t + 1), set: setData };
}

export function Field({ id, label, hint, error, children }: { id: string; label: string; hint?: string; error?: string; children: ComponentChildren }) {
  return (
    <div class={`field${error ? " invalid" : ""}`}>
      <label for={id}>{label}</label>
      {children}
      {hint && <small id={`${id}-hint`}>{hint}</small>}
      {error && <small class="field-error" id={`${id}-err`} role="alert">{error}</small>}
    </div>
  );
}
