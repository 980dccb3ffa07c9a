// Create-job wizard: provider → job type → authorization (→ method → credentials) → configure → review.
// All answers live in one state object owned by the wizard, so Back and Next keep what was typed.
import { useEffect, useRef, useState } from "preact/hooks";
import { api, ApiError, type Dict, type Provider } from "./api";
import { connectOAuth, isOAuth, takeOAuthResult } from "./oauth";
import { describeSchedule, newSchedule, type Schedule, scheduleBody, SchedulePicker, scheduleProblem } from "./schedule";
import { AwsTrustPanel } from "./awsTrust";
import { defaults, SchemaForm } from "./schemaForm";
import { loadCatalog } from "./session";
import { ErrorBox, Field, fmtTime, HealthBadge, ProviderMark, useLoad } from "./ui";
import { methodName, plainDescription } from "./words";
import { ConfigSummary, useConfigSupport } from "./configForm";
import { type IssuedKey, WriteKeyDialog } from "./writeKey";

interface State {
  provider: string; job_type: string; workflow: string;
  authMode: "existing" | "new"; authorization_id: string;
  method: string; authLabel: string; authDescription: string; credentials: Dict;
  label: string; description: string; config: Dict; schedule: Schedule; start: boolean;
}
const initial = (): State => ({
  provider: "", job_type: "", workflow: "", authMode: "existing", authorization_id: "", method: "", authLabel: "", authDescription: "",
  credentials: {}, label: "", description: "", config: {}, schedule: newSchedule(), start: true,
});

// The wizard keeps its place: the step is in the address (#/jobs/new?step=configure, one
// history entry per step, so the browser's Back goes to the previous step) and the answers
// are in session storage (never credentials), so a refresh or Back loses nothing.
const DRAFT_KEY = "switchyard.wizard.draft";
const SLUGS: Record<string, string> = { Provider: "provider", "Job type": "job-type", Authorization: "authorization",
  Method: "method", Credentials: "credentials", Configure: "configure", Review: "review" };

function stepIn(hash: string): string | null {
  return new URLSearchParams(hash.split("?")[1] ?? "").get("step");
}
function goTo(slug: string, replace = false): void {
  const target = `#/jobs/new?step=${slug}`;
  if (location.hash === target) return;
  if (!replace) { location.hash = target; return; }
  history.replaceState(null, "", target);
  dispatchEvent(new HashChangeEvent("hashchange")); // the router reads the address again
}
function loadDraft(): State | null {
  try {
    const raw = sessionStorage.getItem(DRAFT_KEY);
    return raw ? { ...initial(), ...(JSON.parse(raw) as Partial<State>), credentials: {} } : null;
  } catch { return null; }
}
function saveDraft(s: State): void {
  sessionStorage.setItem(DRAFT_KEY, JSON.stringify({ ...s, credentials: {} }));
}
export function clearDraft(): void { sessionStorage.removeItem(DRAFT_KEY); }
const dirty = (s: State): boolean => JSON.stringify({ ...s, schedule: null }) !== JSON.stringify({ ...initial(), schedule: null });

/** Where the wizard opens: back from a full-page OAuth redirect (the answers given so far,
 * with the new authorization, on to Configure, or with the callback's error, back at
 * Credentials); a refresh or Back (a step in the address: the saved draft); or a new job. */
function resumed(hash: string): { state: State; slug: string; error: ApiError | null; draft: State | null } {
  const r = takeOAuthResult();
  if (r?.error) {
    return { state: { ...initial(), ...(r.state as Partial<State>), credentials: {} }, slug: "credentials",
      error: new ApiError(400, r.error.code, r.error.message), draft: null };
  }
  if (r) {
    return { state: { ...initial(), ...(r.state as Partial<State>), authMode: "existing", authorization_id: r.id ?? "", method: "", authLabel: "", credentials: {} },
      slug: "configure", error: null, draft: null };
  }
  const draft = loadDraft();
  const slug = stepIn(hash);
  if (slug && draft) return { state: draft, slug, error: null, draft: null };
  // "Create job" opens a new job; an unfinished one is offered, not imposed.
  return { state: initial(), slug: "provider", error: null, draft: draft && dirty(draft) ? draft : null };
}

export function Wizard({ hash }: { hash: string }) {
  const catalog = useLoad(() => loadCatalog(api.providers), []);
  const [start] = useState(() => resumed(hash));
  const [s, setState] = useState<State>(start.state);
  // Saved with the change itself, not in an effect after the next paint: a refresh right
  // after a keystroke must not lose it.
  const setS = (next: State) => { if (dirty(next)) saveDraft(next); setState(next); };
  const [offered, setOffered] = useState<State | null>(start.draft);
  const [errors, setErrors] = useState<Record<string, string>>({});
  const [issued, setIssued] = useState<IssuedKey | null>(null);
  const [error, setError] = useState<unknown>(start.error);
  const [busy, setBusy] = useState(false);
  const [nextRuns, setNextRuns] = useState<string[] | null>(null);
  const up = (patch: Partial<State>) => setS({ ...s, ...patch });
  const providers: Provider[] = catalog.data ?? [];
  const provider = providers.find((p) => p.id === s.provider);
  const workflow = provider?.workflows.find((w) => w.id === s.workflow);
  const auths = useLoad(() => (s.provider ? api.authorizations({ provider: s.provider, limit: 200 }) : Promise.resolve({ data: [], next_cursor: null })), [s.provider]);
  const usable = (auths.data?.data ?? []).filter((a) => !workflow || workflow.auth_methods.includes(a.method));
  const method = provider?.auth_methods.find((m) => m.id === s.method);

  const steps = ["Provider", "Job type", "Authorization", ...(s.authMode === "new" ? ["Method", "Credentials"] : []), "Configure", "Review"];
  // The step named in the address, if the answers reach it; else the first one missing.
  const reachable = (i: number): boolean => (i < 1 || !!s.provider) && (i < 2 || !!s.workflow)
    && (steps[i] !== "Credentials" || !!s.method)
    && (!["Configure", "Review"].includes(steps[i]!) || !!s.authorization_id);
  // The address itself, not the router's copy: a step just pushed is there before its event.
  const asked = stepIn(location.hash) ?? stepIn(hash) ?? start.slug;
  const wanted = steps.findIndex((t) => SLUGS[t] === asked);
  let step = wanted < 0 ? (asked === "credentials" || asked === "method" ? steps.indexOf("Authorization") : 0) : wanted;
  while (step > 0 && !reachable(step)) step -= 1;
  const name = steps[step]!;
  const setStep = (i: number) => goTo(SLUGS[steps[Math.max(0, Math.min(i, steps.length - 1))]!]!);
  useEffect(() => { goTo(SLUGS[name]!, true); }, [name]);
  useEffect(() => { if (dirty(s)) saveDraft(s); }, [s]);
  // Leaving the page (closing the tab) loses the draft and typed credentials: ask first.
  useEffect(() => {
    if (!dirty(s)) return;
    const warn = (e: BeforeUnloadEvent) => { e.preventDefault(); e.returnValue = ""; };
    addEventListener("beforeunload", warn);
    return () => removeEventListener("beforeunload", warn);
  }, [dirty(s)]);
  // "Create job" (#/jobs/new without a step) clicked inside the wizard: a new job, the
  // unfinished one offered.
  const lastHash = useRef(hash);
  useEffect(() => {
    const had = stepIn(lastHash.current);
    lastHash.current = hash;
    if (had && !stepIn(hash)) {
      const d = loadDraft();
      setS(initial()); setOffered(d && dirty(d) ? d : null); setError(null); setErrors({});
    }
  }, [hash]);

  function fail(e: unknown) {
    setError(e);
    setErrors(e instanceof ApiError ? e.fields : {});
  }

  async function next() {
    setError(null); setErrors({});
    if (name === "Provider" && !s.provider) return fail(new ApiError(0, "wizard", "Choose a provider."));
    if (name === "Job type" && !s.workflow) return fail(new ApiError(0, "wizard", "Choose a job type and workflow."));
    if (name === "Authorization" && s.authMode === "existing" && !s.authorization_id) return fail(new ApiError(0, "wizard", "Choose an authorization or create a new one."));
    if (name === "Method" && !s.method) return fail(new ApiError(0, "wizard", "Choose a method."));
    if (name === "Credentials") {
      // The credentials are checked (and stored) now, before going on; the wizard then
      // continues with the new authorization like with an existing one. OAuth: the
      // provider's consent (popup; or a redirect, back here through session storage).
      setBusy(true);
      try {
        let id: string;
        if (isOAuth(s.method)) id = await connectOAuth(s.provider, s.authLabel.trim(), { back: "#/jobs/new", state: { ...s, credentials: {} } as unknown as Dict }, provider?.name);
        else {
          const made = await api.createAuthorization({ provider: s.provider, method: s.method, label: s.authLabel, description: s.authDescription, credentials: s.credentials });
          id = made.id;
          if (made.write_key) setIssued({ label: made.label, key: made.write_key }); // in this answer only
        }
        auths.reload();
        setS({ ...s, authMode: "existing", authorization_id: id, credentials: {}, method: "", authLabel: "", authDescription: "" });
        goTo("configure"); // Method and Credentials steps disappear
        return;
      } catch (e) { return fail(e); } finally { setBusy(false); }
    }
    if (name === "Configure") {
      // The API checks the whole job now (config, reach of the bucket or list, schedule), so
      // a wrong field is marked here, not after Review; the answer also gives the next runs.
      setBusy(true);
      try { setNextRuns((await api.previewJob(jobBody())).next_runs); } catch (e) { return fail(e); } finally { setBusy(false); }
    }
    setStep(step + 1);
  }

  function jobBody(): Dict {
    return { provider: s.provider, job_type: s.job_type, workflow: s.workflow, authorization_id: s.authorization_id,
      label: s.label, description: s.description, config: s.config, schedule: scheduleBody(s.schedule), start: s.start };
  }
  /** "Show next runs" of a cron schedule: only the schedule's own problems matter there. */
  async function scheduleRuns(): Promise<string[]> {
    try {
      const runs = (await api.previewJob({ ...jobBody(), label: s.label || "preview" })).next_runs;
      setError(null); setErrors({}); // the whole job passed: an earlier refusal no longer holds
      return runs;
    } catch (e) { throw scheduleProblem(e); }
  }

  async function create() {
    setBusy(true); setError(null); setErrors({});
    try {
      const job = await api.createJob(jobBody());
      clearDraft();
      setS(initial());
      location.hash = `#/jobs/${job.id}`;
    } catch (e) {
      fail(e);
      if (e instanceof ApiError && Object.keys(e.fields).some((k) => k.startsWith("config") || k === "label" || k.startsWith("schedule"))) {
        setStep(steps.indexOf("Configure"));
      }
    } finally { setBusy(false); }
  }

  const support = useConfigSupport(s.provider, workflow, s.authorization_id);

  return (
    <section class="wizard">
      <p><a href="#/jobs">← Jobs</a></p>
      <h1>Create job</h1>
      <ol class="steps" aria-label="Steps">
        {steps.map((t, i) => <li key={t} aria-current={i === step ? "step" : undefined} class={i < step ? "done" : ""}>{t}</li>)}
      </ol>
      {offered && <div class="panel row between" role="status" data-testid="draft-offer">
        <span>You have an unfinished job{offered.label ? ` “${offered.label}”` : ""}{offered.provider ? ` (${providers.find((p) => p.id === offered.provider)?.name ?? offered.provider})` : ""}.</span>
        <span class="row"><button type="button" onClick={() => { setS(offered); setOffered(null); goTo("review"); }}>Continue it</button>
          <button type="button" class="link" onClick={() => { clearDraft(); setOffered(null); }}>Discard it</button></span></div>}
      <ErrorBox error={error} />
      <form onSubmit={(e) => { e.preventDefault(); if (name === "Review") void create(); else void next(); }}>
        <h2>{name}</h2>
        {name === "Provider" && (
          <div class="tiles" role="radiogroup" aria-label="Provider">
            {providers.map((p) => (
              <label key={p.id} class={`tile${s.provider === p.id ? " selected" : ""}`}>
                <input type="radio" name="provider" value={p.id} checked={s.provider === p.id}
                  onChange={() => up({ provider: p.id, job_type: "", workflow: "", authorization_id: "", method: "", config: {} })} />
                <ProviderMark id={p.id} name={p.name} />
                <span class="muted small">{p.description}</span>
                <span class="chips">{p.job_types.map((t) => <span key={t} class="chip">{t}</span>)}</span>
              </label>))}
          </div>)}
        {name === "Job type" && provider && (
          <div class="tiles" role="radiogroup" aria-label="Job type and workflow">
            {provider.workflows.map((w) => (
              <label key={w.id} class={`tile${s.workflow === w.id ? " selected" : ""}`}>
                <input type="radio" name="workflow" value={w.id} checked={s.workflow === w.id}
                  onChange={() => up({ job_type: w.job_type, workflow: w.id, config: defaults(w.config_schema), authorization_id: "",
                    schedule: s.schedule.type === "realtime" && !w.realtime ? newSchedule() : s.schedule })} />
                <strong>{w.job_type}</strong> <span>{w.name}</span><span class="muted small">{w.description}</span>
              </label>))}
          </div>)}
        {name === "Authorization" && (
          <div role="radiogroup" aria-label="Authorization" class="list">
            {usable.map((a) => (
              <label key={a.id} class="radio-row">
                <input type="radio" name="auth" checked={s.authMode === "existing" && s.authorization_id === a.id}
                  onChange={() => up({ authMode: "existing", authorization_id: a.id })} />
                <span>{a.label}</span> <span class="muted">{methodName(providers, a.provider, a.method)}</span> <HealthBadge health={a.health} />
                {a.health.reason && <span class="muted small">{a.health.reason}</span>}
              </label>))}
            {usable.length === 0 && <p class="muted">No authorization of this provider enables this workflow yet.</p>}
            <label class="radio-row"><input type="radio" name="auth" checked={s.authMode === "new"}
              onChange={() => up({ authMode: "new", authorization_id: "" })} /> New authorization…</label>
          </div>)}
        {name === "Method" && provider && workflow && (
          <div role="radiogroup" aria-label="Authorization method" class="list">
            {provider.auth_methods.filter((m) => workflow.auth_methods.includes(m.id)).map((m) => (
              <label key={m.id} class="radio-row"><input type="radio" name="method" checked={s.method === m.id}
                onChange={() => up({ method: m.id, credentials: defaults(m.credentials_schema) })} />
                <strong>{m.name}</strong> <span class="muted small">{plainDescription(m.description)}</span></label>))}
          </div>)}
        {name === "Credentials" && method && isOAuth(method.id) && provider && (<>
          <Field id="auth-label" label="Authorization label" hint="Optional: the provider account's name is used when empty." error={errors.label}>
            <input id="auth-label" value={s.authLabel} onInput={(e) => up({ authLabel: (e.target as HTMLInputElement).value })} /></Field>
          <p class="muted small">A {provider.name} window opens: sign in there and allow access. The tokens go straight to AWS Secrets Manager; Switchyard never shows them.</p>
          {busy && <p role="status" class="muted small">Waiting for {provider.name}…</p>}
        </>)}
        {name === "Credentials" && method && !isOAuth(method.id) && (<>
          <Field id="auth-label" label="Authorization label *" error={errors.label}>
            <input id="auth-label" required value={s.authLabel} onInput={(e) => up({ authLabel: (e.target as HTMLInputElement).value })} /></Field>
          <Field id="auth-description" label="Authorization description" hint="Optional: what it is for, whose keys they are." error={errors.description}>
            <textarea id="auth-description" value={s.authDescription} onInput={(e) => up({ authDescription: (e.target as HTMLTextAreaElement).value })} /></Field>
          <p class="muted small">Credentials are checked with the provider before you go on, then stored in AWS Secrets Manager; they are never shown again.</p>
          <AwsTrustPanel method={method} />
          <SchemaForm schema={method.credentials_schema} value={s.credentials} onChange={(v) => up({ credentials: v })}
            errors={errors} prefix="credentials." idPrefix="cred" />
        </>)}
        {name === "Configure" && workflow && (<>
          <Field id="job-label" label="Job label *" error={errors.label}>
            <input id="job-label" required value={s.label} onInput={(e) => up({ label: (e.target as HTMLInputElement).value })} /></Field>
          <Field id="job-description" label="Description" error={errors.description}>
            <textarea id="job-description" value={s.description} onInput={(e) => up({ description: (e.target as HTMLTextAreaElement).value })} /></Field>
          <SchemaForm schema={workflow.config_schema} value={s.config} onChange={(v) => up({ config: v })} errors={errors}
            prefix="config." idPrefix="cfg" options={support.options} custom={support.custom} />
          <SchedulePicker value={s.schedule} onChange={(v) => up({ schedule: v })} errors={errors} nextRuns={scheduleRuns}
            realtime={workflow.realtime} />
        </>)}
        {name === "Review" && (<>
          <dl class="meta panel">
            <dt>Provider</dt><dd>{provider?.name}</dd><dt>Job type</dt><dd>{s.job_type}</dd><dt>Workflow</dt><dd>{workflow?.name}</dd>
            <dt>Authorization</dt><dd>{(auths.data?.data ?? []).find((a) => a.id === s.authorization_id)?.label ?? s.authorization_id}</dd>
            <dt>Label</dt><dd>{s.label}</dd>
            <ConfigSummary config={s.config} schema={workflow?.config_schema} audienceName={support.audienceName} />
            <dt>Schedule</dt><dd>{describeSchedule(scheduleBody(s.schedule))}</dd>
            {nextRuns && nextRuns.length > 0 && <><dt>Next runs</dt><dd data-testid="review-next-runs">{nextRuns.map((r) => fmtTime(r)).join(" · ")}</dd></>}
          </dl>
          <label class="radio"><input type="radio" name="start" checked={s.start} onChange={() => up({ start: true })} /> Start now</label>
          <label class="radio"><input type="radio" name="start" checked={!s.start} onChange={() => up({ start: false })} /> Stage (create paused, start later)</label>
        </>)}
        <div class="row end">
          {step > 0 && <button type="button" onClick={() => { setError(null); setErrors({}); setStep(step - 1); }}>Back</button>}
          {dirty(s) && <button type="button" class="link" onClick={() => { if (confirm("Discard this job's answers?")) { clearDraft(); setS(initial()); goTo("provider"); } }}>Start over</button>}
          <button type="submit" class="primary" disabled={busy}>{name === "Review" ? "Create job" : name === "Credentials" ? (isOAuth(s.method) ? `Connect with ${provider?.name ?? "provider"}` : "Check and continue") : "Next"}</button>
        </div>
      </form>
      {issued && <WriteKeyDialog issued={issued} onClose={() => setIssued(null)} />}
    </section>
  );
}
