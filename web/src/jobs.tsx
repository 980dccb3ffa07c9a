import { useEffect, useMemo, useState } from "preact/hooks";
import { api, ApiError, type Dict, type EditPreview, type Granularity, type JobRow, type JobSummary, type Page, type Provider, type Run, type Workflow } from "./api";
import { BarChart } from "./chart";
import { ConfigSummary, useConfigSupport } from "./configForm";
import { SchemaForm } from "./schemaForm";
import { describeLag, describeSchedule, isRealtime, type Schedule, scheduleBody, SchedulePicker, scheduleProblem, scheduleState } from "./schedule";
import { useCanEdit, loadCatalog, useOwnerName } from "./session";
import { changeWords, methodName, omittedWords, providerName, withNames, workflowName } from "./words";
import { Confirm, ErrorBox, Field, fmtTime, HealthBadge, JOB_TYPES, ProviderMark, Segmented, STATUSES, StatusBadge, useLoad } from "./ui";
import { CollectionPanel } from "./collection";

function useCatalog(): Provider[] {
  const { data } = useLoad(() => loadCatalog(api.providers), []);
  return data ?? [];
}


export function JobsPage() {
  const canEdit = useCanEdit();
  const owner = useOwnerName();
  const catalog = useCatalog();
  const [filters, setFilters] = useState({ status: "", provider: "", job_type: "", authorization_id: "" });
  const [search, setSearch] = useState("");
  const [cursors, setCursors] = useState<(string | null)[]>([null]);
  const [sort, setSort] = useState<{ key: "label" | "created_at" | "status"; dir: 1 | -1 }>({ key: "created_at", dir: -1 });
  const cursor = cursors[cursors.length - 1];
  const [pageNo, setPageNo] = useState(0);
  const auths = useLoad(() => api.authorizations({ limit: 200 }), []);
  // The API pages jobs newest first and has no label search or other orders: searching or
  // sorting another way loads every job matching the filters (up to WIDE_MAX) and pages here.
  const wide = !!search.trim() || !(sort.key === "created_at" && sort.dir === -1);
  // The rows shown stay until the next answer arrives; `stale` marks them (and holds the
  // pager: the cursor of another filter's page would open a wrong page).
  const key = JSON.stringify([filters, wide ? "all" : cursor, wide]);
  const { data: loaded, error, loading } = useLoad(async () => ({ key, page: await (wide ? allJobs(filters) : api.jobs({ ...filters, cursor, limit: PAGE })) }), [key]);
  const data = loaded?.page;
  const stale = loaded?.key !== key;
  const setFilter = (k: keyof typeof filters, v: string) => { setFilters({ ...filters, [k]: v }); setCursors([null]); setPageNo(0); };
  // An authorization missing from the account's list was deleted (the job keeps its id).
  const authOf = (id: string) => auths.data?.data.find((a) => a.id === id);
  const matching = useMemo(() => {
    const q = search.trim().toLowerCase();
    const list = (data?.data ?? []).filter((j) => !q || j.label.toLowerCase().includes(q));
    return [...list].sort((a, b) => (a[sort.key] < b[sort.key] ? -1 : a[sort.key] > b[sort.key] ? 1 : 0) * sort.dir);
  }, [data, search, sort]);
  const rows = wide ? matching.slice(pageNo * PAGE, (pageNo + 1) * PAGE) : matching;
  const capped = wide && !!data?.next_cursor;
  const th = (key: typeof sort.key, label: string) => (
    <th aria-sort={sort.key === key ? (sort.dir === 1 ? "ascending" : "descending") : "none"}>
      <button type="button" class="link" onClick={() => { setSort({ key, dir: sort.key === key ? (-sort.dir as 1 | -1) : 1 }); setPageNo(0); }}>{label}</button>
    </th>
  );
  const filtered = Object.values(filters).some(Boolean) || search;
  return (
    <section>
      <div class="row between">
        <h1>Jobs</h1>
        {canEdit && <a class="button primary" href="#/jobs/new">Create job</a>}
      </div>
      <div class="filters" role="search">
        <label>Search by label <input type="search" value={search} onInput={(e) => { setSearch((e.target as HTMLInputElement).value); setPageNo(0); }} /></label>
        <label>Status <select value={filters.status} onChange={(e) => setFilter("status", (e.target as HTMLSelectElement).value)}>
          <option value="">any</option>{STATUSES.map((s) => <option key={s}>{s}</option>)}</select></label>
        <label>Provider <select value={filters.provider} onChange={(e) => setFilter("provider", (e.target as HTMLSelectElement).value)}>
          <option value="">any</option>{catalog.map((p) => <option key={p.id} value={p.id}>{p.name}</option>)}</select></label>
        <label>Type <select value={filters.job_type} onChange={(e) => setFilter("job_type", (e.target as HTMLSelectElement).value)}>
          <option value="">any</option>{JOB_TYPES.map((s) => <option key={s}>{s}</option>)}</select></label>
        <label>Authorization <select value={filters.authorization_id} onChange={(e) => setFilter("authorization_id", (e.target as HTMLSelectElement).value)}>
          <option value="">any</option>{(auths.data?.data ?? []).map((a) => <option key={a.id} value={a.id}>{a.label}</option>)}</select></label>
      </div>
      <ErrorBox error={error} />
      <div aria-busy={stale} data-testid="jobs-list">
      {loading && !data ? <p class="loading">Loading…</p> : rows.length === 0 ? (
        <div class="empty">
          {filtered ? <p>No job matches these filters.</p> : <>
            <p>No jobs yet. A job moves profiles between Switchyard and a provider.</p>
            {canEdit && <a class="button primary" href="#/jobs/new">Create job</a>}
          </>}
        </div>
      ) : (
        <div class="table-wrap"><table class="data">
          <thead><tr>{th("label", "Label")}<th>Provider</th><th>Type</th><th>Workflow</th><th>Authorization</th>{th("status", "Status")}<th>Owner</th>{th("created_at", "Created")}<th>Last run</th><th>Next run</th></tr></thead>
          <tbody>{rows.map((j) => (
            <tr key={j.id}>
              <td><a class="trunc" href={`#/jobs/${j.id}`} title={j.label}>{j.label}</a></td>
              <td><ProviderMark id={j.provider} name={providerName(catalog, j.provider)} /></td>
              <td>{j.job_type}</td><td>{workflowName(catalog, j.provider, j.workflow)}</td>
              <td>{authOf(j.authorization_id) ? <a href={`#/authorizations/${j.authorization_id}`}>{authOf(j.authorization_id)!.label}</a>
                : auths.data ? <span class="muted" data-testid="auth-deleted">deleted</span> : "…"}</td>
              <td><StatusBadge status={j.status} faults={j.fault_count} warning={j.warning} /></td>
              <td class="muted">{owner(j.owner)}</td>
              <td>{fmtTime(j.created_at)}</td>
              <td>{j.last_run ? <>{j.last_run.status} <span class="muted">{fmtTime(j.last_run.finished_at ?? j.last_run.started_at)}</span></> : "—"}</td>
              <td>{isRealtime(j.schedule) ? <span class="badge" data-testid="job-realtime">real-time</span> : fmtTime(j.next_run_at)}</td>
            </tr>))}
          </tbody>
        </table></div>
      )}
      </div>
      {wide ? (
        <div class="row pager">
          <button type="button" disabled={stale || pageNo === 0} onClick={() => setPageNo(pageNo - 1)}>Previous page</button>
          <button type="button" disabled={stale || (pageNo + 1) * PAGE >= matching.length} onClick={() => setPageNo(pageNo + 1)}>Next page</button>
          <span class="muted small" role="status">{matching.length} job{matching.length === 1 ? "" : "s"}{capped && ` among the first ${WIDE_MAX}; narrow the filters to search the rest`}</span>
        </div>
      ) : (
        <div class="row pager">
          <button type="button" disabled={stale || cursors.length < 2} onClick={() => setCursors(cursors.slice(0, -1))}>Previous page</button>
          <button type="button" disabled={stale || !data?.next_cursor} onClick={() => setCursors([...cursors, data!.next_cursor])}>Next page</button>
        </div>
      )}
    </section>
  );
}

const PAGE = 25;
const WIDE_MAX = 1000;

/** Every job matching the filters, up to WIDE_MAX (5 requests of 200); next_cursor set when capped. */
async function allJobs(filters: Record<string, string>): Promise<Page<JobRow>> {
  const out: JobRow[] = [];
  let cursor: string | null = null;
  do {
    const p: Page<JobRow> = await api.jobs({ ...filters, cursor, limit: 200 });
    out.push(...p.data);
    cursor = p.next_cursor;
  } while (cursor && out.length < WIDE_MAX);
  return { data: out, next_cursor: cursor };
}

function InlineText({ label, value, multiline, onSave, canEdit }: { label: string; value: string; multiline?: boolean; onSave: (v: string) => Promise<void>; canEdit: boolean }) {
  const [editing, setEditing] = useState(false);
  const [draft, setDraft] = useState(value);
  const [error, setError] = useState<unknown>(null);
  const id = `edit-${label.toLowerCase()}`;
  if (!editing) {
    return <div class="inline-text"><span class="k">{label}</span> <span data-testid={id}>{value || <em class="muted">none</em>}</span>
      {canEdit && <button type="button" class="link" aria-label={`Edit ${label.toLowerCase()}`} onClick={() => { setDraft(value); setEditing(true); }}>Edit</button>}</div>;
  }
  const save = async (e: Event) => {
    e.preventDefault();
    try { await onSave(draft); setEditing(false); setError(null); } catch (err) { setError(err); }
  };
  return (
    <form class="inline-text" onSubmit={save}>
      <label for={id}>{label}</label>
      {multiline ? <textarea id={id} value={draft} onInput={(e) => setDraft((e.target as HTMLTextAreaElement).value)} />
        : <input id={id} value={draft} onInput={(e) => setDraft((e.target as HTMLInputElement).value)} />}
      <button type="submit" class="primary">Save</button><button type="button" onClick={() => setEditing(false)}>Cancel</button>
      <ErrorBox error={error} />
    </form>
  );
}

function ChangeAuthorization({ job, onDone }: { job: JobSummary; onDone: (j: JobSummary) => void }) {
  const catalog = useCatalog();
  const auths = useLoad(() => api.authorizations({ limit: 200 }), []);
  const [target, setTarget] = useState("");
  const [preview, setPreview] = useState<{ allowed: boolean; problems: string[]; changes: string[] } | null>(null);
  const [error, setError] = useState<unknown>(null);
  const check = async () => {
    setError(null); setPreview(null);
    try { setPreview(await editJob(job, { authorization_id: target }, true) as EditPreview); } catch (e) { setError(e); }
  };
  const apply = async () => {
    try { onDone(await editJob(job, { authorization_id: target }, false) as JobSummary); } catch (e) { setError(e); }
  };
  return (
    <div class="panel" data-testid="change-auth">
      <h3>Change authorization</h3>
      <div class="row">
        <label>New authorization <select value={target} onChange={(e) => { setTarget((e.target as HTMLSelectElement).value); setPreview(null); }}>
          <option value="">choose…</option>
          {(auths.data?.data ?? []).filter((a) => a.id !== job.authorization_id).map((a) => <option key={a.id} value={a.id}>{a.label} ({providerName(catalog, a.provider)}, {methodName(catalog, a.provider, a.method)})</option>)}
        </select></label>
        <button type="button" disabled={!target} onClick={check}>Check (dry run)</button>
      </div>
      {preview && (
        <div class={preview.allowed ? "ok" : "error"} role="status" data-testid="dry-run">
          <strong>{preview.allowed ? "This change is allowed." : "This change is refused."}</strong>
          {preview.problems.length > 0 && <ul>{preview.problems.map((p) => <li key={p}>{p}</li>)}</ul>}
          {preview.changes.length > 0 && <p class="small">Would change: {changeWords(preview.changes)}</p>}
          {preview.allowed && <button type="button" class="primary" onClick={apply}>Confirm change</button>}
        </div>
      )}
      <ErrorBox error={error} />
    </div>
  );
}

/** PATCH with the version the user saw. Runs bump the version too: when the stale-version
 * conflict comes from a change to other fields than the ones edited, retry once on the fresh
 * version; when someone changed the same fields, the conflict is shown. */
async function editJob(j: JobSummary, body: Record<string, unknown>, dryRun: boolean): Promise<JobSummary | EditPreview> {
  const send = (version: number) => (dryRun ? api.previewJobEdit(j.id, { ...body, version }) : api.patchJob(j.id, { ...body, version }));
  try { return await send(j.version); } catch (e) {
    if (!(e instanceof ApiError && e.status === 409 && "version" in e.fields)) throw e;
    const fresh = await api.job(j.id);
    const key = (k: string) => JSON.stringify((fresh as unknown as Record<string, unknown>)[k]) === JSON.stringify((j as unknown as Record<string, unknown>)[k]);
    if (!Object.keys(body).every(key)) throw e;
    return send(fresh.version);
  }
}

function EditConfig({ job, workflow, onDone, onCancel }: { job: JobSummary; workflow: Workflow; onDone: (j: JobSummary) => void; onCancel: () => void }) {
  // The same choices as in the wizard: audiences by name, "Load choices" through the job's authorization.
  const support = useConfigSupport(job.provider, workflow, job.authorization_id);
  const [config, setConfig] = useState<Dict>(job.config);
  const [schedule, setSchedule] = useState<Schedule>(scheduleState(job.schedule));
  const [touched, setTouched] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const save = async (e: Event) => {
    e.preventDefault(); setError(null);
    // The schedule is sent only when it was edited: what the job has stays as it is.
    const body = touched ? { config, schedule: scheduleBody(schedule) } : { config };
    try { onDone(await editJob(job, body, false) as JobSummary); } catch (err) { setError(err); }
  };
  // "Show next runs": a dry run of the schedule edit; the API computes them in the job's zone.
  const nextRuns = async (): Promise<string[]> => {
    try { return (await editJob(job, { schedule: scheduleBody(schedule) }, true) as EditPreview).next_runs; } catch (e) { throw scheduleProblem(e); }
  };
  const fields = error instanceof ApiError ? error.fields : {};
  return (
    <form class="panel" onSubmit={save} aria-labelledby="edit-config-h">
      <h3 id="edit-config-h">Edit configuration</h3>
      <SchemaForm schema={workflow.config_schema} value={config} onChange={setConfig} errors={fields} prefix="config." idPrefix="edit-cfg"
        options={support.options} custom={support.custom} />
      <SchedulePicker value={schedule} onChange={(v) => { setSchedule(v); setTouched(true); }} errors={fields} nextRuns={nextRuns}
        realtime={workflow.realtime} />
      <ErrorBox error={error} />
      <div class="row"><button type="submit" class="primary">Save configuration</button><button type="button" onClick={onCancel}>Cancel</button></div>
    </form>
  );
}

/** What resuming does, said before it is done (services/jobs.py `act`): a one-time job whose
 * start time is ahead waits for it; any other job runs at once, then follows its schedule. */
function resumeWords(j: JobSummary): string {
  const sched = j.schedule;
  const at = sched?.type === "once" && sched.at ? Date.parse(String(sched.at)) : NaN;
  if (at > Date.now()) return `It waits for its start time, ${fmtTime(String(sched!.at))}: no run starts now.`;
  const then = sched && sched.type !== "once" ? `, then the schedule goes on (${describeSchedule(sched)})` : "";
  return `A run starts as soon as you resume${then}.`;
}

/** What a re-send of every member does at this job's destination, in words. */
export function resyncWords(j: JobSummary, live: boolean): string {
  const what: Record<string, string> = {
    amazon_s3: "A new folder for this run gets every current member as an add row, plus a remove row for each member who left since the last run.",
    mailchimp: "Every current member is written to the Mailchimp audience again: existing contacts are updated, none is duplicated.",
  };
  const events = "Every current member is sent again as an add event, with new event ids: a consumer that drops repeats by event id sees them as new.";
  const how = live
    ? "The members as of the last change delivered go out first, then the changes after it, in order."
    : "The run reads every profile of the account, like the job's first run, so it costs as much; later runs send only what changes.";
  return `${what[j.provider] ?? events} ${how}`;
}

function RunRow({ run }: { run: Run }) {
  const p = run.progress;
  const pct = p.total ? Math.min(100, Math.round((100 * p.read) / p.total)) : null;
  return (
    <tr>
      <td>{fmtTime(run.started_at)}</td><td>{run.trigger}{run.resync && <span data-testid="run-resync"> · re-send</span>}</td>
      <td><StatusBadge status={run.status} />{run.error && <div class="muted small">{run.error}</div>}</td>
      <td class="num">{run.added}</td><td class="num">{run.removed}</td>
      <td class="num">{run.omitted}{omittedWords(run.omitted_reasons) && <div class="muted small" data-testid="omitted-reasons">{omittedWords(run.omitted_reasons)}</div>}</td>
      <td>{run.status === "running" ? (pct !== null
        ? <progress max={100} value={pct} aria-label="run progress">{pct}%</progress>
        : <span>{p.processed} {p.unit === "bytes" ? "records" : p.unit}</span>) : `${p.processed} processed`}</td>
      <td class="num" title={Object.entries(run.cost).map(([k, v]) => `${k}: ${v}`).join("\n")}>${run.cost_usd.toFixed(6)}</td>
    </tr>
  );
}

function Activity({ jobId, refresh }: { jobId: string; refresh: number }) {
  const [g, setG] = useState<Granularity>("hour");
  const { data, error } = useLoad(() => api.jobActivity(jobId, g), [jobId, g, refresh]);
  const series = useMemo(() => data ? [
    { label: "added", color: "#1a7f37", values: data.series.map((p) => p.added) },
    { label: "removed", color: "#b42318", values: data.series.map((p) => p.removed) },
    { label: "omitted", color: "#8a6d00", values: data.series.map((p) => p.omitted) },
  ] : [], [data]);
  return (
    <section class="panel" aria-labelledby="activity-h">
      <div class="row between"><h2 id="activity-h">Activity</h2><Segmented label="Granularity" value={g} options={["hour", "day", "week"]} onChange={setG} /></div>
      <ErrorBox error={error} />
      {data && <BarChart title="Profiles per period" starts={data.series.map((p) => p.start)} series={series} granularity={g} />}
    </section>
  );
}

function AlertRules({ jobId, canEdit }: { jobId: string; canEdit: boolean }) {
  const rules = useLoad(() => api.alertRules(jobId), [jobId]);
  const blank = { metric: "added", granularity: "day", min: "", max: "", allowable_violations: "0" };
  const [draft, setDraft] = useState(blank);
  const [adding, setAdding] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const fields = error instanceof ApiError ? error.fields : {};
  const num = (v: string) => (v.trim() === "" ? null : Number(v));
  const add = async (e: Event) => {
    e.preventDefault(); setError(null);
    try {
      await api.createAlertRule(jobId, { metric: draft.metric, granularity: draft.granularity, min: num(draft.min), max: num(draft.max),
        allowable_violations: num(draft.allowable_violations) ?? 0 });
      setDraft(blank); setAdding(false); rules.reload();
    } catch (err) { setError(err); }
  };
  const del = async (id: string) => { setError(null); try { await api.deleteAlertRule(jobId, id); rules.reload(); } catch (err) { setError(err); } };
  const set = (k: keyof typeof blank) => (e: Event) => setDraft({ ...draft, [k]: (e.target as HTMLInputElement).value });
  const list = rules.data?.data ?? [];
  return (
    <section class="panel" aria-labelledby="rules-h">
      <div class="row between"><h2 id="rules-h">Alert rules</h2>
        {canEdit && !adding && <button type="button" onClick={() => setAdding(true)}>Add alert rule</button>}</div>
      <p class="muted small">An alert (e-mail, webhooks: see <a href="#/alerts">Alerts</a>) when a metric per period leaves its bounds more often in a row than allowed.</p>
      <ErrorBox error={rules.error} />
      {list.length === 0 ? <p class="muted">No rule.</p> : (
        <table class="data small" data-testid="alert-rules"><thead><tr><th>Metric</th><th>Per</th><th>Min</th><th>Max</th><th>Allowed in a row</th><th>State</th>{canEdit && <th><span class="sr">Actions</span></th>}</tr></thead>
          <tbody>{list.map((r) => <tr key={r.id}><td>{r.metric}</td><td>{r.granularity}</td><td>{r.min ?? "—"}</td><td>{r.max ?? "—"}</td><td>{r.allowable_violations}</td>
            <td><span class={`badge ${r.alert_state === "breached" ? "h-unhealthy" : "h-healthy"}`}>{r.alert_state}</span></td>
            {canEdit && <td><button type="button" class="link" aria-label={`Delete rule ${r.metric} per ${r.granularity}`} onClick={() => del(r.id)}>Delete</button></td>}</tr>)}</tbody></table>)}
      {adding && <form onSubmit={add} class="row" aria-label="New alert rule">
        <Field id="rule-metric" label="Metric" error={fields.metric}><select id="rule-metric" value={draft.metric} onChange={set("metric")}>
          <option>added</option><option>removed</option><option>omitted</option></select></Field>
        <Field id="rule-gran" label="Per" error={fields.granularity}><select id="rule-gran" value={draft.granularity} onChange={set("granularity")}>
          <option>hour</option><option>day</option><option>week</option></select></Field>
        <Field id="rule-min" label="Min" error={fields.min}><input id="rule-min" type="number" min={0} value={draft.min} onInput={set("min")} /></Field>
        <Field id="rule-max" label="Max" error={fields.max}><input id="rule-max" type="number" min={0} value={draft.max} onInput={set("max")} /></Field>
        <Field id="rule-allow" label="Allowed in a row" error={fields.allowable_violations}><input id="rule-allow" type="number" min={0} value={draft.allowable_violations} onInput={set("allowable_violations")} /></Field>
        <button class="primary" type="submit">Save rule</button><button type="button" onClick={() => { setAdding(false); setError(null); }}>Cancel</button>
      </form>}
      <ErrorBox error={error} />
    </section>
  );
}

function Logs({ jobId, refresh }: { jobId: string; refresh: number }) {
  const owner = useOwnerName();
  const [level, setLevel] = useState("");
  const { data, error } = useLoad(() => api.logs(jobId, level), [jobId, level, refresh]);
  return (
    <section class="panel" aria-labelledby="logs-h">
      <div class="row between"><h2 id="logs-h">Logs</h2>
        <label>Minimum level <select value={level} onChange={(e) => setLevel((e.target as HTMLSelectElement).value)}>
          <option value="">all</option><option>debug</option><option>info</option><option>warning</option><option>error</option></select></label></div>
      <ErrorBox error={error} />
      <div class="table-wrap"><table class="data small">
        <thead><tr><th>Time</th><th>Level</th><th>Code</th><th>Message</th><th>Counters</th></tr></thead>
        <tbody>{(data?.data ?? []).map((l, i) => (
          <tr key={i} class={`lvl-${l.level}`}><td>{fmtTime(l.timestamp)}</td><td>{l.level}</td><td><code>{l.code}</code></td><td>{withNames(l.message, owner)}</td>
            <td class="muted">{["added", "removed", "omitted"].filter((k) => k in l.context).map((k) => `${k} ${String(l.context[k])}`).join(" · ")}</td></tr>))}
        </tbody></table></div>
    </section>
  );
}

export function JobSummaryPage({ id }: { id: string }) {
  const canEdit = useCanEdit();
  const owner = useOwnerName();
  const catalog = useCatalog();
  const job = useLoad(() => api.job(id), [id]);
  const runs = useLoad(() => api.runs(id), [id]);
  const [refresh, setRefresh] = useState(0);
  const [error, setError] = useState<unknown>(null);
  const [confirmDelete, setConfirmDelete] = useState(false);
  const [confirmResume, setConfirmResume] = useState(false);
  const [confirmResync, setConfirmResync] = useState(false);
  const [changingAuth, setChangingAuth] = useState(false);
  const [notice, setNotice] = useState("");
  const [editingConfig, setEditingConfig] = useState(false);
  const j = job.data;
  const due = !!j?.next_run_at && j.status === "sleeping" && Date.parse(j.next_run_at) - Date.now() < 30_000;
  const running = j?.status === "running" || due || (runs.data?.data ?? []).some((r) => r.status === "running");
  // While a run is in progress (or due now) the page refreshes every 2 s: status, progress, activity.
  useEffect(() => {
    if (!running) return;
    const t = setInterval(() => { job.reload(); runs.reload(); setRefresh((r) => r + 1); }, 2000);
    return () => clearInterval(t);
  }, [running]);
  // A real-time job has no runs to watch: its lag is what moves, read again every 2 s while
  // the page is open (one GET /jobs/{id}).
  const live = isRealtime(j?.schedule);
  useEffect(() => {
    if (!live || running) return;
    const t = setInterval(() => { job.reload(); }, 2000);
    return () => clearInterval(t);
  }, [live, running]);
  const wasRunning = useMemo(() => ({ v: false }), []);
  useEffect(() => {
    if (wasRunning.v && !running) { job.reload(); runs.reload(); setRefresh((r) => r + 1); }
    wasRunning.v = running;
  }, [running]);
  const workflow = j ? catalog.find((p) => p.id === j.provider)?.workflows.find((w) => w.id === j.workflow) : undefined;
  const support = useConfigSupport(j?.provider ?? "", workflow, j?.authorization_id ?? "");
  if (job.error) return <ErrorBox error={job.error} />;
  if (!j) return <p class="loading">Loading…</p>;
  const act = async (a: "pause" | "resume" | "run") => {
    setError(null); setNotice("");
    try {
      const after = await api.jobAction(id, a);
      job.set(after);
      // Said from what the job is now, not guessed: a resumed job may run at once or wait.
      const resumed = after.status === "running" ? "Resumed: a run started."
        : after.next_run_at ? `Resumed: the next run is ${fmtTime(after.next_run_at)}.` : "Resumed.";
      setNotice({ pause: "Paused: no run starts until you resume.", resume: resumed, run: "A run starts now." }[a]); runs.reload(); setRefresh((r) => r + 1); } catch (e) { setError(e); }
  };
  const resync = async () => {
    setConfirmResync(false); setError(null); setNotice("");
    try {
      job.set(await api.resyncJob(id));
      setNotice(live ? "Re-sending every member now; then the changes after them follow." : "Re-sending every member: a run starts now.");
      runs.reload(); setRefresh((r) => r + 1);
    } catch (e) { setError(e); }
  };
  const canResync = j.job_type === "export" && !j.collection && (j.status === "sleeping" || (live && j.status === "running"));
  const patch = async (body: Record<string, unknown>) => { job.set(await editJob(j, body, false) as JobSummary); };
  const del = async () => {
    setConfirmDelete(false);
    try { await api.deleteJob(id); location.hash = "#/jobs"; } catch (e) { setError(e); }
  };
  return (
    <section>
      <p><a href="#/jobs">← Jobs</a></p>
      <div class="row between">
        <h1 data-testid="job-title" class="long">{j.label}</h1>
        <StatusBadge status={j.status} faults={j.fault_count} warning={j.warning} />
      </div>
      {canEdit && (
        <div class="row actions" role="toolbar" aria-label="Job actions">
          {(j.status === "running" || j.status === "sleeping") && <button type="button" onClick={() => act("pause")}>Pause</button>}
          {(j.status === "paused" || j.status === "failed") && <button type="button" onClick={() => setConfirmResume(true)}>Resume</button>}
          {j.status === "sleeping" && <button type="button" onClick={() => act("run")}>Run now</button>}
          {canResync && <button type="button" onClick={() => setConfirmResync(true)} disabled={!!j.resync_requested}
            title={j.resync_requested ? "A re-send of every member is already under way" : "Send every member of the audience again"}>Re-send everything</button>}
          <button type="button" onClick={() => setChangingAuth(!changingAuth)}>Change authorization</button>
          <button type="button" class="danger" onClick={() => setConfirmDelete(true)}>Delete</button>
        </div>
      )}
      <ErrorBox error={error} />
      {notice && <p class="ok" role="status" data-testid="job-notice">{notice}</p>}
      {confirmResume && <Confirm title={`Resume “${j.label}”?`} confirmLabel="Resume job" onConfirm={() => { setConfirmResume(false); void act("resume"); }} onCancel={() => setConfirmResume(false)}>
        <p data-testid="resume-what">{resumeWords(j)}</p></Confirm>}
      {j.resync_requested && <p class="muted" role="status" data-testid="resync-status">
        Re-sending every member (asked by {owner(j.resync_requested.requested_by)}, {fmtTime(j.resync_requested.requested_at)}){live ? "…" : running ? ": the run is under way." : ": waiting for its run."}</p>}
      {confirmResync && <Confirm title={`Re-send every member of “${support.audienceName(String(j.config.audience_id ?? ""))}”?`}
        confirmLabel="Re-send all members" onConfirm={() => { void resync(); }} onCancel={() => setConfirmResync(false)}>
        <p data-testid="resync-what">{resyncWords(j, live)}</p></Confirm>}
      {confirmDelete && <Confirm title={`Delete “${j.label}”?`} confirmLabel="Delete job" danger onConfirm={del} onCancel={() => setConfirmDelete(false)}>
        <p>The job, its schedule and its history are deleted. Profiles it wrote stay.</p></Confirm>}
      {changingAuth && <ChangeAuthorization job={j} onDone={(nj) => { job.set(nj); setChangingAuth(false); setNotice(`The job now uses the authorization “${nj.authorization.label}”.`); }} />}
      <div class="grid2">
        <dl class="meta panel">
          <dt>Provider</dt><dd><ProviderMark id={j.provider} name={providerName(catalog, j.provider)} /></dd>
          <dt>Type</dt><dd>{j.job_type}</dd>
          <dt>Workflow</dt><dd>{workflow?.name ?? j.workflow}</dd>
          <dt>Authorization</dt><dd>{j.authorization.deleted
            ? <span data-testid="auth-deleted">{j.authorization.label} <span class="badge h-unknown">deleted</span></span>
            : <><a href={`#/authorizations/${j.authorization.id}`}>{j.authorization.label}</a> <HealthBadge health={j.authorization.health} /></>}</dd>
          <dt>Owner</dt><dd>{owner(j.owner)}</dd>
          <dt>Created</dt><dd>{fmtTime(j.created_at)}</dd>
          <dt>Updated</dt><dd>{fmtTime(j.updated_at)}</dd>
          {live ? <>
            <dt>Lag</dt><dd data-testid="job-lag" aria-live="polite"
              title="Age of the oldest audience change not yet delivered; refreshed every 2 s">{describeLag(j.lag_seconds)}</dd>
          </> : <><dt>Next run</dt><dd>{fmtTime(j.next_run_at)}</dd></>}
          <dt>Schedule</dt><dd data-testid="job-schedule">{describeSchedule(j.schedule)}</dd>
        </dl>
        <div class="panel">
          <InlineText label="Label" value={j.label} canEdit={canEdit} onSave={(v) => patch({ label: v })} />
          <InlineText label="Description" value={j.description} multiline canEdit={canEdit} onSave={(v) => patch({ description: v })} />
          <div class="row between"><h3>Configuration</h3>
            {canEdit && workflow && !editingConfig && <button type="button" onClick={() => setEditingConfig(true)}>Edit configuration</button>}</div>
          <dl class="meta" data-testid="job-config"><ConfigSummary config={j.config} schema={workflow?.config_schema} audienceName={support.audienceName} /></dl>
        </div>
      </div>
      {editingConfig && workflow && <EditConfig job={j} workflow={workflow}
        onDone={(nj) => { job.set(nj); setEditingConfig(false); }} onCancel={() => setEditingConfig(false)} />}
      <CollectionPanel job={j} />
      <Activity jobId={id} refresh={refresh} />
      <section class="panel" aria-labelledby="runs-h">
        <h2 id="runs-h">Run history</h2>
        <ErrorBox error={runs.error} />
        {(runs.data?.data ?? []).length === 0 ? <p class="muted">No run yet.</p> : (
          <div class="table-wrap"><table class="data" data-testid="runs">
            <thead><tr><th>Started</th><th>Trigger</th><th>Status</th><th>Added</th><th>Removed</th><th>Omitted</th><th>Progress</th><th>Cost</th></tr></thead>
            <tbody>{runs.data!.data.map((r) => <RunRow key={r.id} run={r} />)}</tbody>
          </table></div>)}
      </section>
      <AlertRules jobId={id} canEdit={canEdit} />
      <Logs jobId={id} refresh={refresh} />
    </section>
  );
}
