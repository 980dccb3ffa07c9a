// The schedule picker: once (now or at a time), every N minutes, daily, weekly, cron, and
// real-time for the exports that allow it; with the time zone and quiet hours the API
// supports (chalicelib/api/job_schemas.py: Schedule).
import { useState } from "preact/hooks";
import { ApiError, type Dict } from "./api";
import { Field } from "./ui";

export interface Schedule {
  type: "once" | "interval" | "daily" | "weekly" | "cron" | "realtime";
  cron: string; // an EventBridge cron expression, for power users
  every_minutes: number; at: string; day: string; timezone: string;
  quiet: boolean; quiet_start: string; quiet_end: string;
  once_at: string; // a datetime-local value in the browser's zone; "" = run now
}

export function browserZone(): string {
  try { return Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC"; } catch { return "UTC"; }
}

function zones(): string[] {
  try { return (Intl as unknown as { supportedValuesOf(k: string): string[] }).supportedValuesOf("timeZone"); } catch { return []; }
}

const pad = (n: number) => String(n).padStart(2, "0");
function localInput(iso: string): string {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return "";
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

export function newSchedule(): Schedule {
  return { type: "once", every_minutes: 60, at: "06:00", day: "mon", timezone: browserZone(), quiet: false,
    quiet_start: "22:00", quiet_end: "06:00", once_at: "", cron: "cron(0 9 ? * MON-FRI *)" };
}

/** The picker's state from a job's schedule as the API returns it: every part is kept. */
export function scheduleState(api: Dict | null): Schedule {
  const base = newSchedule();
  if (!api) return base;
  const qh = api.quiet_hours as { start: string; end: string } | null | undefined;
  return {
    ...base,
    type: (api.type as Schedule["type"]) ?? "once",
    every_minutes: typeof api.every_minutes === "number" ? api.every_minutes : base.every_minutes,
    at: api.type === "once" ? base.at : String(api.at ?? base.at),
    day: String(api.day ?? base.day),
    timezone: String(api.timezone ?? "UTC"),
    quiet: !!qh, quiet_start: qh?.start ?? base.quiet_start, quiet_end: qh?.end ?? base.quiet_end,
    once_at: api.type === "once" && api.at ? localInput(String(api.at)) : "",
    cron: api.type === "cron" ? String(api.expression ?? base.cron) : base.cron,
  };
}

export function scheduleBody(s: Schedule): Dict | null {
  const quiet = s.quiet ? { quiet_hours: { start: s.quiet_start, end: s.quiet_end } } : {};
  if (s.type === "once") return s.once_at ? { type: "once", at: new Date(s.once_at).toISOString() } : null;
  if (s.type === "interval") return { type: "interval", every_minutes: s.every_minutes, timezone: s.timezone, ...quiet };
  if (s.type === "daily") return { type: "daily", at: s.at, timezone: s.timezone, ...quiet };
  if (s.type === "cron") return { type: "cron", expression: s.cron.trim(), timezone: s.timezone };
  if (s.type === "realtime") return { type: "realtime" };
  return { type: "weekly", day: s.day, at: s.at, timezone: s.timezone };
}

/** A real-time export follows its audience change by change: it has no runs to schedule. */
export function isRealtime(api: Dict | null | undefined): boolean {
  return api?.type === "realtime";
}

/** Seconds behind, for people: "caught up", "12 s behind", "3 min 5 s behind". */
export function describeLag(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined) return "—";
  if (seconds < 1) return "caught up";
  const s = Math.round(seconds);
  if (s < 60) return `${s} s behind`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s behind`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min behind`;
}

/** One line for people: "daily at 06:00 (Europe/Paris), quiet 22:00–06:00". */
export function describeSchedule(api: Dict | null): string {
  if (isRealtime(api)) return "real-time";
  if (!api || api.type === "once") {
    return api?.at ? `once, at ${new Date(String(api.at)).toLocaleString()}` : "once";
  }
  const qh = api.quiet_hours as { start: string; end: string } | null | undefined;
  const tz = ` (${String(api.timezone ?? "UTC")})`;
  const quiet = qh ? `, quiet ${qh.start}–${qh.end}` : "";
  if (api.type === "interval") return `every ${String(api.every_minutes)} minutes${tz}${quiet}`;
  if (api.type === "daily") return `daily at ${String(api.at)}${tz}${quiet}`;
  if (api.type === "cron") return `${String(api.expression)}${tz}`;
  return `weekly on ${String(api.day)} at ${String(api.at)}${tz}`;
}

/** The next run starts of a schedule as the API computes them, in the schedule's time zone
 * (POST /jobs/preview in the wizard, PATCH /jobs/{id}?dry_run=true when editing). */
export type NextRuns = () => Promise<string[]>;

/** A refusal of "Show next runs" in words: the schedule's own problems, or what else is wrong. */
export function scheduleProblem(e: unknown): Error {
  if (!(e instanceof ApiError)) return e as Error;
  const own = Object.entries(e.fields).filter(([k]) => k.startsWith("schedule"));
  return new Error(own.length ? own.map(([, v]) => v).join("; ") : `Fill in the other fields first: ${e.message}`);
}

/** A run start as people read it in a given zone, e.g. "Jun 1, 2030, 9:00 AM". */
function inZone(iso: string, zone: string): string {
  try { return new Date(iso).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short", timeZone: zone }); }
  catch { return new Date(iso).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" }); }
}

const LABELS: Record<Schedule["type"], string> = {
  once: "Once", interval: "Every N minutes", daily: "Daily", weekly: "Weekly", cron: "Cron (advanced)", realtime: "Real-time",
};

/** `realtime`: the workflow accepts a real-time schedule (the catalog says so); a job that
 * already has one keeps the choice shown, so an edit never turns it into something else. */
export function SchedulePicker({ value, onChange, errors, nextRuns, realtime }: {
  value: Schedule; onChange: (s: Schedule) => void; errors: Record<string, string>; nextRuns?: NextRuns; realtime?: boolean;
}) {
  const up = (patch: Partial<Schedule>) => onChange({ ...value, ...patch });
  // The API names a schedule's fields with its type ("schedule.daily.timezone").
  const err = (k: string) => errors[`schedule.${value.type}.${k}`] ?? errors[`schedule.${k}`];
  const quietAllowed = value.type === "interval" || value.type === "daily";
  return (
    <fieldset class="schedule"><legend>Schedule</legend>
      <div class="row">
        {(["once", "interval", "daily", "weekly", "cron", "realtime"] as const)
          .filter((t) => t !== "realtime" || realtime || value.type === "realtime").map((t) => (
          <label key={t} class="radio"><input type="radio" name="sched" checked={value.type === t} onChange={() => up({ type: t })} />
            {LABELS[t]}</label>))}
      </div>
      {value.type === "realtime" && <p class="muted small" data-testid="realtime-hint">Each change of the audience is sent
        within seconds, one event per person who joins or leaves, in order for each person. No runs are scheduled.</p>}
      {(errors.schedule ?? errors["schedule.type"]) && <p class="field-error" role="alert">{errors.schedule ?? errors["schedule.type"]}</p>}
      {value.type === "once" && <Field id="sched-once" label="Run at (empty: now)" hint="Your browser's local time." error={err("at")}>
        <input id="sched-once" type="datetime-local" value={value.once_at} onInput={(e) => up({ once_at: (e.target as HTMLInputElement).value })} /></Field>}
      {value.type === "interval" && <Field id="sched-every" label="Every (minutes)" error={err("every_minutes")}>
        <input id="sched-every" type="number" min={5} max={10080} value={value.every_minutes} onInput={(e) => up({ every_minutes: Number((e.target as HTMLInputElement).value) })} /></Field>}
      {value.type === "weekly" && <Field id="sched-day" label="Day" error={err("day")}>
        <select id="sched-day" value={value.day} onChange={(e) => up({ day: (e.target as HTMLSelectElement).value })}>
          {["mon", "tue", "wed", "thu", "fri", "sat", "sun"].map((d) => <option key={d}>{d}</option>)}</select></Field>}
      {(value.type === "daily" || value.type === "weekly") && <Field id="sched-at" label="At" hint={`In ${value.timezone}.`} error={err("at")}>
        <input id="sched-at" type="time" value={value.at} onInput={(e) => up({ at: (e.target as HTMLInputElement).value })} /></Field>}
      {value.type === "cron" && <CronField value={value.cron} zone={value.timezone} onChange={(cron) => up({ cron })} error={err("expression")} nextRuns={nextRuns} />}
      {value.type !== "once" && value.type !== "realtime" && <ZonePicker value={value.timezone} onChange={(timezone) => up({ timezone })} error={err("timezone")} />}
      {quietAllowed && <div class="quiet">
        <label class="radio"><input type="checkbox" checked={value.quiet} onChange={(e) => up({ quiet: (e.target as HTMLInputElement).checked })} /> Quiet hours (no run starts)</label>
        {value.quiet && <div class="row">
          <Field id="sched-quiet-start" label="Quiet from" error={err("quiet_hours.start") ?? err("quiet_hours")}>
            <input id="sched-quiet-start" type="time" value={value.quiet_start} onInput={(e) => up({ quiet_start: (e.target as HTMLInputElement).value })} /></Field>
          <Field id="sched-quiet-end" label="Quiet until" error={err("quiet_hours.end")}>
            <input id="sched-quiet-end" type="time" value={value.quiet_end} onInput={(e) => up({ quiet_end: (e.target as HTMLInputElement).value })} /></Field>
        </div>}
      </div>}
    </fieldset>
  );
}

/** A select of the IANA zones the browser knows (so nothing else can be chosen), with a box
 * that narrows it: typing "par" leaves Europe/Paris. The current zone is always listed. */
function ZonePicker({ value, onChange, error }: { value: string; onChange: (z: string) => void; error?: string }) {
  const [q, setQ] = useState("");
  const all = zones();
  const words = q.trim().toLowerCase().replace(/\s+/g, "_");
  const shown = all.filter((z) => !words || z.toLowerCase().includes(words));
  const list = shown.includes(value) || !value ? shown : [value, ...shown];
  return (
    <Field id="sched-tz" label="Time zone" hint={`${shown.length} of ${all.length} zones listed`} error={error}>
      <div class="row tight">
        <input type="search" aria-label="Search time zones" placeholder="Search, e.g. Paris" value={q}
          onInput={(e) => {
            const t = (e.target as HTMLInputElement).value;
            setQ(t);
            const w = t.trim().toLowerCase().replace(/\s+/g, "_");
            const first = all.find((z) => z.toLowerCase().includes(w));
            if (w && first && !value.toLowerCase().includes(w)) onChange(first); // the select shows the first match
          }} />
        <select id="sched-tz" value={value} onChange={(e) => onChange((e.target as HTMLSelectElement).value)} aria-describedby="sched-tz-hint">
          {list.map((z) => <option key={z} value={z}>{z.replace(/_/g, " ")}</option>)}
        </select>
      </div>
    </Field>
  );
}

/** An EventBridge cron expression, checked by the API, with its next three run starts. */
function CronField({ value, zone, onChange, error, nextRuns }: { value: string; zone: string; onChange: (v: string) => void; error?: string; nextRuns?: NextRuns }) {
  // The runs hold only for the expression and zone they were asked for.
  const asked = `${value}|${zone}`;
  const [answer, setAnswer] = useState<{ asked: string; runs: string[] } | null>(null);
  const runs = answer?.asked === asked ? answer.runs : null;
  const [problem, setProblem] = useState("");
  const [busy, setBusy] = useState(false);
  const show = async () => {
    if (!nextRuns) return;
    setBusy(true); setProblem(""); setAnswer(null);
    try { setAnswer({ asked, runs: await nextRuns() }); } catch (e) { setProblem((e as Error).message); } finally { setBusy(false); }
  };
  return (
    <Field id="sched-cron" label="Cron expression" error={error}
      hint="EventBridge syntax: cron(minutes hours day-of-month month day-of-week year), one of the two days '?'. E.g. cron(0 9 ? * MON-FRI *): 09:00 on weekdays.">
      <div class="row tight">
        <input id="sched-cron" value={value} spellcheck={false} aria-describedby="sched-cron-hint"
          onInput={(e) => { onChange((e.target as HTMLInputElement).value); setProblem(""); }} />
        {nextRuns && <button type="button" onClick={show} disabled={busy}>Show next runs</button>}
      </div>
      {/* Shown in the schedule's own zone, the one the expression is read in. */}
      {runs && <p class="small" role="status" data-testid="next-runs">Next runs ({zone.replace(/_/g, " ")}): {runs.map((r, i) =>
        <span key={r}>{i > 0 && " · "}<time dateTime={r}>{inZone(r, zone)}</time></span>)}</p>}
      {problem && <p class="field-error small" role="alert">{problem}</p>}
    </Field>
  );
}
