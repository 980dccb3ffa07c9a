import { useMemo, useState } from "preact/hooks";
import { api, type Dict, type Granularity } from "./api";
import { BarChart } from "./chart";
import { defaults, SchemaForm } from "./schemaForm";
import { loadCatalog, useCanEdit, useOwnerName } from "./session";
import { Confirm, ErrorBox, Field, fmtTime, HealthBadge, ProviderMark, Segmented, StatusBadge, useLoad } from "./ui";
import { ApiError } from "./api";
import { AwsTrustPanel } from "./awsTrust";
import { connectOAuth, isOAuth, oauthErrorIn } from "./oauth";
import { methodName, plainDescription, withNames } from "./words";
import { type IssuedKey, WriteKeyDialog } from "./writeKey";

function UsageCell({ usage }: { usage: { total: number; by_status: Record<string, number> } }) {
  const parts = Object.entries(usage.by_status).filter(([, n]) => n > 0);
  return <span title={parts.map(([k, n]) => `${k}: ${n}`).join(", ")}>{usage.total} job{usage.total === 1 ? "" : "s"}
    {parts.length > 0 && <span class="muted small"> ({parts.map(([k, n]) => `${n} ${k}`).join(", ")})</span>}</span>;
}

export function AuthorizationsPage() {
  const canEdit = useCanEdit();
  const owner = useOwnerName();
  const catalog = useLoad(() => loadCatalog(api.providers), []);
  const [provider, setProvider] = useState("");
  const [health, setHealth] = useState("");
  const [cursors, setCursors] = useState<(string | null)[]>([null]);
  const cursor = cursors[cursors.length - 1];
  const { data, error, loading } = useLoad(() => api.authorizations({ provider, health, cursor, limit: 25 }), [provider, health, cursor]);
  const pname = (id: string) => catalog.data?.find((p) => p.id === id)?.name ?? id;
  // A full-page OAuth flow that failed comes back here with its error (nothing was created).
  const [oauthError, setOauthError] = useState(() => oauthErrorIn(location.hash));
  const dismiss = () => { setOauthError(null); history.replaceState(null, "", "#/authorizations"); };
  return (
    <section>
      <div class="row between"><h1>Authorizations</h1>{canEdit && <a class="button primary" href="#/authorizations/new">New authorization</a>}</div>
      {oauthError && <div data-testid="oauth-error"><ErrorBox error={oauthError} />
        <button type="button" class="link" onClick={dismiss}>Dismiss</button></div>}
      <div class="filters">
        <label>Provider <select value={provider} onChange={(e) => { setProvider((e.target as HTMLSelectElement).value); setCursors([null]); }}>
          <option value="">any</option>{(catalog.data ?? []).map((p) => <option key={p.id} value={p.id}>{p.name}</option>)}</select></label>
        <label>Health <select value={health} onChange={(e) => { setHealth((e.target as HTMLSelectElement).value); setCursors([null]); }}>
          <option value="">any</option><option>healthy</option><option>unhealthy</option><option>unknown</option></select></label>
      </div>
      <ErrorBox error={error} />
      {loading && !data ? <p class="loading">Loading…</p> : (data?.data ?? []).length === 0 ? <div class="empty"><p>No authorizations.</p></div> : (
        <div class="table-wrap"><table class="data">
          <thead><tr><th>Label</th><th>Provider</th><th>Method</th><th>Health</th><th>Usage</th><th>Owner</th><th>Created</th><th>Last used</th></tr></thead>
          <tbody>{data!.data.map((a) => (
            <tr key={a.id}><td><a class="trunc" href={`#/authorizations/${a.id}`} title={a.label}>{a.label}</a></td>
              <td><ProviderMark id={a.provider} name={pname(a.provider)} /></td><td>{methodName(catalog.data ?? [], a.provider, a.method)}</td>
              <td><HealthBadge health={a.health} />{a.health.status === "unhealthy" && <div class="muted small">{a.health.reason}</div>}</td>
              <td><UsageCell usage={a.usage} /></td><td class="muted">{owner(a.owner)}</td>
              <td>{fmtTime(a.created_at)}</td><td>{fmtTime(a.last_used_at)}</td></tr>))}
          </tbody></table></div>)}
      <div class="row pager">
        <button type="button" disabled={cursors.length < 2} onClick={() => setCursors(cursors.slice(0, -1))}>Previous page</button>
        <button type="button" disabled={!data?.next_cursor} onClick={() => setCursors([...cursors, data!.next_cursor])}>Next page</button>
      </div>
    </section>
  );
}

export function NewAuthorizationPage() {
  const catalog = useLoad(() => loadCatalog(api.providers), []);
  const [provider, setProvider] = useState("");
  const [method, setMethod] = useState("");
  const [label, setLabel] = useState("");
  const [description, setDescription] = useState("");
  const [creds, setCreds] = useState<Dict>({});
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const [issued, setIssued] = useState<(IssuedKey & { id: string }) | null>(null);
  const p = catalog.data?.find((x) => x.id === provider);
  const m = p?.auth_methods.find((x) => x.id === method);
  const fields = error instanceof ApiError ? error.fields : {};
  const submit = async (e: Event) => {
    e.preventDefault(); setBusy(true); setError(null);
    try {
      // OAuth: the provider's consent screen instead of a credentials form (popup, or a
      // full-page redirect that the callback brings back to the new authorization).
      if (isOAuth(method)) { location.hash = `#/authorizations/${await connectOAuth(provider, label.trim(), undefined, p?.name)}`; return; }
      const made = await api.createAuthorization({ provider, method, label, description, credentials: creds });
      // A write key is in this answer only: show it before leaving the page.
      if (made.write_key) setIssued({ id: made.id, label: made.label, key: made.write_key });
      else location.hash = `#/authorizations/${made.id}`;
    }
    catch (err) { setError(err); } finally { setBusy(false); }
  };
  const oauth = isOAuth(method);
  return (
    <section>
      <p><a href="#/authorizations">← Authorizations</a></p>
      <h1>New authorization</h1>
      <form onSubmit={submit} class="narrow">
        <Field id="na-provider" label="Provider"><select id="na-provider" value={provider} onChange={(e) => { setProvider((e.target as HTMLSelectElement).value); setMethod(""); }}>
          <option value="">choose…</option>{(catalog.data ?? []).map((x) => <option key={x.id} value={x.id}>{x.name}</option>)}</select></Field>
        {p && <Field id="na-method" label="Method"><select id="na-method" value={method} onChange={(e) => { const id = (e.target as HTMLSelectElement).value; setMethod(id); setCreds(defaults(p.auth_methods.find((x) => x.id === id)?.credentials_schema ?? {})); }}>
          <option value="">choose…</option>{p.auth_methods.map((x) => <option key={x.id} value={x.id}>{x.name}</option>)}</select></Field>}
        {m && !oauth && <>
          <Field id="na-label" label="Label *" error={fields.label}><input id="na-label" required value={label} onInput={(e) => setLabel((e.target as HTMLInputElement).value)} /></Field>
          <Field id="na-desc" label="Description" hint="Optional: what it is for, whose keys they are." error={fields.description}>
            <textarea id="na-desc" value={description} onInput={(e) => setDescription((e.target as HTMLTextAreaElement).value)} /></Field>
          {m.description && <p class="muted small">{plainDescription(m.description)}</p>}
          <AwsTrustPanel method={m} />
          <SchemaForm schema={m.credentials_schema} value={creds} onChange={setCreds} errors={fields} prefix="credentials." idPrefix="na-cred" />
          <button class="primary" type="submit" disabled={busy}>Check and create</button>
        </>}
        {m && oauth && p && <>
          <Field id="na-label" label="Label" hint="Optional: the provider account's name is used when empty." error={fields.label}>
            <input id="na-label" value={label} onInput={(e) => setLabel((e.target as HTMLInputElement).value)} /></Field>
          <p class="muted small">A {p.name} window opens: sign in there and allow access. The tokens go straight to AWS Secrets Manager; Switchyard never shows them.</p>
          <button class="primary" type="submit" disabled={busy}>Connect with {p.name}</button>
          {busy && <span role="status" class="muted small"> Waiting for {p.name}…</span>}
        </>}
        <ErrorBox error={error} />
      </form>
      {issued && <WriteKeyDialog issued={issued} onClose={() => { location.hash = `#/authorizations/${issued.id}`; }} />}
    </section>
  );
}

function RequestsChart({ id, refresh }: { id: string; refresh: number }) {
  const [g, setG] = useState<Granularity>("hour");
  const { data, error } = useLoad(() => api.authActivity(id, g), [id, g, refresh]);
  const series = useMemo(() => data ? [
    { label: "API requests", color: "#2f5bd3", values: data.series.map((p) => p.api_requests - (p.errors ?? 0)) },
    { label: "errors", color: "#b42318", values: data.series.map((p) => p.errors ?? 0) },
  ] : [], [data]);
  return (
    <section class="panel" aria-labelledby="req-h">
      <div class="row between"><h2 id="req-h">API requests</h2><Segmented label="Granularity" value={g} options={["hour", "day", "week"]} onChange={setG} /></div>
      <ErrorBox error={error} />
      {data && <BarChart title="API requests per period" starts={data.series.map((p) => p.start)} series={series} granularity={g} />}
    </section>
  );
}

export function AuthorizationSummaryPage({ id }: { id: string }) {
  const canEdit = useCanEdit();
  const owner = useOwnerName();
  const auth = useLoad(() => api.authorization(id), [id]);
  const hist = useLoad(() => api.authHealth(id), [id]);
  const catalog = useLoad(() => loadCatalog(api.providers), []);
  const [error, setError] = useState<unknown>(null);
  const [confirmDelete, setConfirmDelete] = useState(false);
  const [rotating, setRotating] = useState(false);
  const [creds, setCreds] = useState<Dict>({});
  const [editing, setEditing] = useState(false);
  const [draft, setDraft] = useState({ label: "", description: "" });
  const [refresh, setRefresh] = useState(0);
  const [issued, setIssued] = useState<IssuedKey | null>(null);
  const a = auth.data;
  if (auth.error) return <ErrorBox error={auth.error} />;
  if (!a) return <p class="loading">Loading…</p>;
  const method = catalog.data?.find((p) => p.id === a.provider)?.auth_methods.find((m) => m.id === a.method);
  const blocking = a.jobs.filter((j) => ["running", "sleeping", "paused"].includes(j.status));
  const check = async () => { setError(null); try { await api.checkAuthorization(id); auth.reload(); hist.reload(); setRefresh((r) => r + 1); } catch (e) { setError(e); } };
  const del = async () => { setConfirmDelete(false); try { await api.deleteAuthorization(id); location.hash = "#/authorizations"; } catch (e) { setError(e); } };
  const rotate = async (e: Event) => {
    e.preventDefault(); setError(null);
    try {
      const made = await api.rotateCredentials(id, creds);
      auth.set(made); setRotating(false); setCreds({}); hist.reload();
      if (made.write_key) setIssued({ label: made.label, key: made.write_key });
    } catch (err) { setError(err); }
  };
  const save = async (e: Event) => {
    e.preventDefault();
    try { auth.set(await api.patchAuthorization(id, { ...draft, version: a.version })); setEditing(false); } catch (err) { setError(err); }
  };
  return (
    <section>
      <p><a href="#/authorizations">← Authorizations</a></p>
      <div class="row between"><h1>{a.label}</h1><HealthBadge health={a.health} /></div>
      {canEdit && <div class="row actions" role="toolbar" aria-label="Authorization actions">
        <button type="button" onClick={check}>Check now</button>
        <button type="button" onClick={() => { setDraft({ label: a.label, description: a.description }); setEditing(true); }}>Edit label</button>
        <button type="button" onClick={() => { setRotating(!rotating); setCreds(defaults(method?.credentials_schema ?? {})); }}>Rotate credentials</button>
        <button type="button" class="danger" disabled={blocking.length > 0} aria-describedby="del-why" onClick={() => setConfirmDelete(true)}>Delete</button>
      </div>}
      {canEdit && blocking.length > 0 && <p id="del-why" class="muted" data-testid="delete-blocked">Delete is disabled while these jobs use it: {blocking.map((j, i) => <>{i > 0 && ", "}<a key={j.id} href={`#/jobs/${j.id}`}>{j.label}</a> ({j.status})</>)}. Delete them or move them to another authorization first.</p>}
      <ErrorBox error={error} />
      {confirmDelete && <Confirm title={`Delete “${a.label}”?`} confirmLabel="Delete authorization" danger onConfirm={del} onCancel={() => setConfirmDelete(false)}>
        <p>The stored credentials are scheduled for deletion.</p></Confirm>}
      {issued && <WriteKeyDialog issued={issued} onClose={() => setIssued(null)} />}
      {editing && <form class="panel" onSubmit={save}>
        <Field id="a-label" label="Label"><input id="a-label" value={draft.label} onInput={(e) => setDraft({ ...draft, label: (e.target as HTMLInputElement).value })} /></Field>
        <Field id="a-desc" label="Description"><textarea id="a-desc" value={draft.description} onInput={(e) => setDraft({ ...draft, description: (e.target as HTMLTextAreaElement).value })} /></Field>
        <div class="row"><button class="primary" type="submit">Save</button><button type="button" onClick={() => setEditing(false)}>Cancel</button></div>
      </form>}
      {rotating && method && isOAuth(method.id) && <div class="panel" role="status">
        <h3>Connected with OAuth</h3>
        <p class="small">Its tokens come from {catalog.data?.find((p) => p.id === a.provider)?.name ?? a.provider}'s consent screen (expiring ones are refreshed by Switchyard). To connect again or another account, <a href="#/authorizations/new">create a new authorization</a> with OAuth, then use “Change authorization” on the jobs.</p>
      </div>}
      {rotating && method && !isOAuth(method.id) && <form class="panel" onSubmit={rotate}>
        <h3>New credentials</h3><p class="muted small">They are verified before they replace the current ones; jobs keep using this authorization.</p>
        <AwsTrustPanel method={method} />
        <SchemaForm schema={method.credentials_schema} value={creds} onChange={setCreds} errors={error instanceof ApiError ? error.fields : {}} prefix="credentials." idPrefix="rot" />
        <button class="primary" type="submit">Verify and rotate</button>
      </form>}
      <div class="grid2">
        <dl class="meta panel">
          <dt>Provider</dt><dd><ProviderMark id={a.provider} name={catalog.data?.find((p) => p.id === a.provider)?.name} /></dd><dt>Method</dt><dd>{method?.name ?? a.method}</dd>
          <dt>Health</dt><dd><HealthBadge health={a.health} /> <span class="small">{a.health.reason}</span> <span class="muted small">checked {fmtTime(a.health.checked_at)}</span></dd>
          <dt>Credential</dt><dd>{a.credential_hint ?? "—"}</dd><dt>Provider account</dt><dd>{a.provider_account ?? "—"}</dd>
          <dt>Description</dt><dd>{a.description || "—"}</dd>
          <dt>Owner</dt><dd>{owner(a.owner)}</dd><dt>Created</dt><dd>{fmtTime(a.created_at)}</dd><dt>Last used</dt><dd>{fmtTime(a.last_used_at)}</dd>
        </dl>
        <div class="panel">
          <h3>Jobs using it</h3>
          {a.jobs.length === 0 ? <p class="muted">None.</p> : <ul>{a.jobs.map((j) => <li key={j.id}><a href={`#/jobs/${j.id}`}>{j.label}</a> <StatusBadge status={j.status} /></li>)}</ul>}
          <h3>Health history</h3>
          {(hist.data?.data ?? []).length === 0 ? <p class="muted">No transitions recorded.</p> :
            <ul class="small">{hist.data!.data.map((h, i) => <li key={i}>{fmtTime(h.at)}: {h.from} → <strong>{h.to}</strong> {h.reason && `(${h.reason})`} <span class="muted">by {withNames(h.by, owner)}</span></li>)}</ul>}
        </div>
      </div>
      <RequestsChart id={id} refresh={refresh} />
    </section>
  );
}
