// Audiences, alerts settings, audit log and tokens: small screens over their routes.
import { useState } from "preact/hooks";
import { api, ApiError, type Audience, type AudienceSize, type Dict, type Role, type TokenRow } from "./api";
import { emptyGroup, FilterBuilder, fromFilter, type Group, suggestions, toFilter } from "./filterBuilder";
import { forgetUserNames, loadUserNames, useCanEdit, useMe, useOwnerName } from "./session";
import { Confirm, ErrorBox, Field, fmtTime, useLoad } from "./ui";
import { UsersPanel } from "./users";
import { fieldLabel, filterWords, valueWords } from "./words";

const text = (e: Event) => (e.target as HTMLInputElement).value;

function AudienceEditor({ editing, others, onDone, onCancel }: {
  editing: Audience | null; others: unknown[]; onDone: () => void; onCancel: () => void;
}) {
  const [name, setName] = useState(editing?.name ?? "");
  const [description, setDescription] = useState(editing?.description ?? "");
  const start = editing ? fromFilter(editing.filter) : emptyGroup();
  const [group, setGroup] = useState<Group>(start ?? emptyGroup());
  // A filter the builder cannot show opens in the raw view (the grammar is the API's).
  const [raw, setRaw] = useState<string | null>(start ? null : JSON.stringify(editing?.filter ?? {}, null, 2));
  const [size, setSize] = useState<AudienceSize | null>(null);
  const [error, setError] = useState<unknown>(null);
  const fields = error instanceof ApiError ? error.fields : {};
  const filter = (): Dict | null => {
    if (raw === null) return toFilter(group);
    try { return JSON.parse(raw) as Dict; } catch { setError(new ApiError(0, "json", "The filter is not valid JSON.", { filter: "not valid JSON" })); return null; }
  };
  const toggleRaw = () => {
    setError(null);
    if (raw === null) { setRaw(JSON.stringify(toFilter(group), null, 2)); return; }
    const f = filter();
    if (!f) return;
    const g = fromFilter(f);
    if (!g) { setError(new ApiError(0, "json", "This JSON is not a filter the builder can show: a root {\"all\": [...]} or {\"any\": [...]} of conditions and groups.")); return; }
    setGroup(g); setRaw(null);
  };
  const preview = async () => {
    setError(null); const f = filter(); if (!f) return;
    try { setSize(await api.previewAudience(f)); } catch (e) { setError(e); }
  };
  const save = async (e: Event) => {
    e.preventDefault(); setError(null); const f = filter(); if (!f) return;
    try {
      if (editing) await api.patchAudience(editing.id, { name, description, filter: f, version: editing.version });
      else await api.createAudience({ name, description, filter: f });
      onDone();
    } catch (err) { setError(err); }
  };
  const change = (g: Group) => { setGroup(g); setSize(null); };
  const imported = useLoad(() => api.profiles(100).then((pg) => [...new Set(pg.data.flatMap((x) => Object.keys(x.fields)))]), []);
  return (
    <form class="panel" onSubmit={save} aria-labelledby="aud-h">
      <h2 id="aud-h">{editing ? `Edit “${editing.name}”` : "New audience"}</h2>
      <Field id="aud-name" label="Name *" error={fields.name}><input id="aud-name" required value={name} onInput={(e) => setName(text(e))} /></Field>
      <Field id="aud-desc" label="Description" error={fields.description}><input id="aud-desc" value={description} onInput={(e) => setDescription(text(e))} /></Field>
      <div class="row between"><h3>Filter</h3>
        <label class="radio"><input type="checkbox" checked={raw !== null} onChange={toggleRaw} /> Edit as JSON</label></div>
      {raw === null
        ? <FilterBuilder value={group} onChange={change} errors={fields} fields={suggestions(others, imported.data ?? [])} />
        : <Field id="aud-filter" label="Filter (JSON)" error={fields.filter} hint='e.g. {"all": [{"field": "plan", "op": "equals", "value": "pro"}]}'>
            <textarea id="aud-filter" rows={8} value={raw} onInput={(e) => { setRaw((e.target as HTMLTextAreaElement).value); setSize(null); }} /></Field>}
      <div class="row">
        <button type="button" onClick={preview}>Preview size</button>
        {size !== null && <span role="status" data-testid="audience-size"><strong>{size.size}</strong> profile{size.size === 1 ? "" : "s"} match
          {size.truncated && ` at least (counted among the first ${size.scanned.toLocaleString()} profiles: the cap of one count)`}
          {size.sample.length > 0 && <span class="muted small"> · e.g. {size.sample.slice(0, 3).map((p) => p.email ?? p.id).join(", ")}</span>}</span>}
      </div>
      <ErrorBox error={error} />
      <div class="row end"><button type="button" onClick={onCancel}>Cancel</button>
        <button class="primary" type="submit">{editing ? "Save audience" : "Create audience"}</button></div>
    </form>
  );
}

/** How many profiles an audience selects: from one sizes call for the whole list. */
function AudienceSizeCell({ size, failed, loaded }: { size: AudienceSize | undefined; failed: unknown; loaded: boolean }) {
  if (failed) return <span class="muted" title={(failed as Error).message}>unknown</span>;
  if (!size) return loaded ? <span class="muted" title="Deleted since the list was read">—</span> : <span class="muted">…</span>;
  const when = `counted ${fmtTime(size.computed_at)}`;
  return <span data-testid="audience-size-cell" title={size.truncated ? `at least: the first ${size.scanned.toLocaleString()} profiles read, ${when}` : when}>
    {size.truncated ? "≥ " : ""}{size.size.toLocaleString()}</span>;
}

export function AudiencesPage() {
  const canEdit = useCanEdit();
  const list = useLoad(() => api.audiences(), []);
  // Every size of the list in one call, after the list (the list itself stays quick).
  // Keyed by versions too: an edited filter is counted again.
  const listed = list.data?.data ?? [];
  const sizes = useLoad(() => (listed.length ? api.audienceSizes(listed.map((a) => a.id)) : Promise.resolve([])),
    [listed.map((a) => `${a.id}@${a.version}`).join(",")]);
  const sizeOf = new Map((sizes.data ?? []).map((s) => [s.id, s]));
  const owner = useOwnerName();
  const [editing, setEditing] = useState<Audience | "new" | null>(null);
  const [deleting, setDeleting] = useState<Audience | null>(null);
  const [error, setError] = useState<unknown>(null);
  const rows = list.data?.data ?? [];
  const del = async () => {
    const a = deleting!; setDeleting(null); setError(null);
    try { await api.deleteAudience(a.id); list.reload(); } catch (e) { setError(e); }
  };
  return (
    <section>
      <div class="row between"><h1>Audiences</h1>
        {canEdit && !editing && <button type="button" class="primary" onClick={() => setEditing("new")}>New audience</button>}</div>
      <ErrorBox error={list.error} />
      <ErrorBox error={error} />
      {editing && <AudienceEditor key={editing === "new" ? "new" : editing.id} editing={editing === "new" ? null : editing}
        others={rows.map((a) => a.filter)} onCancel={() => setEditing(null)} onDone={() => { setEditing(null); list.reload(); }} />}
      {deleting && <Confirm title={`Delete “${deleting.name}”?`} confirmLabel="Delete audience" danger onConfirm={del} onCancel={() => setDeleting(null)}>
        <p>Export jobs using it must be deleted first.</p></Confirm>}
      {rows.length === 0 && !list.loading ? <div class="empty"><p>No audiences yet. An audience is a saved filter over your profiles, sent by export jobs.</p></div> :
        <div class="table-wrap"><table class="data"><thead><tr><th>Name</th><th>Filter</th><th>Size</th><th>Export jobs</th><th>Owner</th><th>Created</th>{canEdit && <th><span class="sr">Actions</span></th>}</tr></thead>
          <tbody>{rows.map((a) => <tr key={a.id}><td>{a.name}{a.description && <div class="muted small">{a.description}</div>}</td>
            <td data-testid="audience-filter">{filterWords(a.filter) || "a filter the builder cannot show"}</td><td class="num"><AudienceSizeCell size={sizeOf.get(a.id)} failed={sizes.error} loaded={!sizes.loading} /></td><td>{a.export_jobs ?? 0}</td><td class="muted">{owner(a.owner)}</td><td>{fmtTime(a.created_at)}</td>
            {canEdit && <td class="nowrap"><button type="button" class="link" aria-label={`Edit ${a.name}`} onClick={() => setEditing(a)}>Edit</button>
              <button type="button" class="link" aria-label={`Delete ${a.name}`} onClick={() => setDeleting(a)}>Delete</button></td>}</tr>)}</tbody></table></div>}
    </section>
  );
}

export function AlertsPage() {
  const canEdit = useCanEdit();
  const s = useLoad(() => api.alerts(), []);
  const [email, setEmail] = useState("");
  const [hook, setHook] = useState("");
  const [error, setError] = useState<unknown>(null);
  const [note, setNote] = useState("");
  // Shown once: the answer that added a webhook (or rotated its secret) carries it; it is
  // kept only in this component's state and gone when the page is left.
  const [secret, setSecret] = useState<string | null>(null);
  if (s.error) return <ErrorBox error={s.error} />;
  if (!s.data) return <p class="loading">Loading…</p>;
  const cur = s.data;
  const fields = error instanceof ApiError ? error.fields : {};
  // Webhooks are sent back by id (their URLs are never shown); a new one by its URL.
  const ids = cur.webhooks.map((w) => w.id);
  const put = async (emails: string[], webhooks: string[], what: string) => {
    setError(null); setNote("");
    try {
      const out = await api.putAlerts({ emails, webhooks, version: cur.version });
      const added = Object.values(out.signing_secrets ?? {});
      if (added.length) setSecret(added[0] ?? null);
      s.set({ ...out, signing_secrets: null }); setNote(what); return true;
    } catch (err) { setError(err); if (err instanceof ApiError && err.status === 409) s.reload(); return false; }
  };
  const rotate = async (id: string, host: string) => {
    setError(null); setNote("");
    try { setSecret((await api.rotateWebhookSecret(id)).signing_secret); setNote(`New signing secret for ${host}; the previous one also signs for 24 hours.`); } catch (err) { setError(err); }
  };
  const addEmail = async (e: Event) => { e.preventDefault(); if (await put([...cur.emails, email.trim()], ids, `Added ${email.trim()}.`)) setEmail(""); };
  const addHook = async (e: Event) => { e.preventDefault(); if (await put(cur.emails, [...ids, hook.trim()], "Webhook added.")) setHook(""); };
  const test = async () => {
    setError(null); setNote("");
    try { const r = await api.testAlert(); setNote(r.published ? "Test alert sent to every channel." : "The test alert could not be published; see the logs."); } catch (e) { setError(e); }
  };
  return (
    <section>
      <h1>Alerts</h1>
      <p class="muted">Sent on: {cur.events.join(", ")}. Last change {fmtTime(cur.updated_at)}.</p>
      {note && <p role="status" class="ok">{note}</p>}
      <ErrorBox error={error} />
      {secret && <div class="panel secret-once" role="alert" data-testid="signing-secret">
        <strong>Webhook signing secret (shown once):</strong> <code>{secret}</code>
        <p class="small">Store it now: receivers check <code>Switchyard-Signature</code> with it. It is never shown again.</p>
        <button type="button" onClick={() => setSecret(null)}>I stored it</button></div>}
      <div class="grid2">
        <div class="panel">
          <h2>E-mail recipients</h2>
          {cur.emails.length === 0 ? <p class="muted">None.</p> : <ul class="plain">{cur.emails.map((m) => <li key={m}>{m}
            {canEdit && <button type="button" class="link" aria-label={`Remove ${m}`} onClick={() => put(cur.emails.filter((x) => x !== m), ids, `Removed ${m}.`)}>Remove</button>}</li>)}</ul>}
          {canEdit && <form class="row" onSubmit={addEmail}>
            <Field id="al-email" label="Add an address" hint="The address gets a confirmation e-mail first." error={fields["emails"] ?? Object.entries(fields).find(([k]) => k.startsWith("emails"))?.[1]}>
              <input id="al-email" type="email" required value={email} onInput={(e) => setEmail(text(e))} /></Field>
            <button type="submit">Add</button></form>}
        </div>
        <div class="panel">
          <h2>Webhooks</h2>
          {cur.webhooks.length === 0 ? <p class="muted">None.</p> : <ul class="plain">{cur.webhooks.map((w) => <li key={w.id}><code>{w.host}</code> <span class="muted small">(the full URL is kept secret)</span>
            {canEdit && <button type="button" class="link" aria-label={`New secret for signing ${w.host} webhooks`} onClick={() => rotate(w.id, w.host)}>New secret</button>}
            {canEdit && <button type="button" class="link" aria-label={`Remove webhook ${w.host}`} onClick={() => put(cur.emails, ids.filter((x) => x !== w.id), "Webhook removed.")}>Remove</button>}</li>)}</ul>}
          {canEdit && <form class="row" onSubmit={addHook}>
            <Field id="al-hook" label="Add a webhook URL" hint="Gets signed JSON: POST {id, type, time, detail}." error={fields["webhooks"] ?? Object.entries(fields).find(([k]) => k.startsWith("webhooks"))?.[1]}>
              <input id="al-hook" type="url" required placeholder="https://…" value={hook} onInput={(e) => setHook(text(e))} /></Field>
            <button type="submit">Add</button></form>}
        </div>
      </div>
      {canEdit && <button type="button" onClick={test}>Send test alert</button>}
    </section>
  );
}

/** A datetime-local value (the browser's time zone) as the API's UTC time, to the second:
 * "until" takes the whole minute it names (the API's bounds are inclusive). */
function utc(local: string, endOfMinute: boolean): string | undefined {
  if (!local) return undefined;
  const d = new Date(local);
  if (Number.isNaN(d.getTime())) return undefined;
  if (endOfMinute && local.length <= 16) d.setSeconds(59);
  return d.toISOString().replace(/\.\d+Z$/, "Z");
}

/** What an event changed: "label: Old → New", one line per field (values in words). */
function AuditChanges({ diff }: { diff: Dict }) {
  const rows = Object.entries(diff);
  if (rows.length === 0) return <span class="muted">—</span>;
  return <ul class="plain changes" data-testid="audit-changes">{rows.map(([k, d]) => {
    const c = (d ?? {}) as { before?: unknown; after?: unknown };
    const both = c.before !== undefined && c.before !== null && c.after !== undefined && c.after !== null;
    return <li key={k}><span class="muted">{fieldLabel(k)}:</span> {both ? <>{valueWords(c.before)} → {valueWords(c.after)}</>
      : c.after !== undefined && c.after !== null ? <>set to {valueWords(c.after)}</> : <>{valueWords(c.before)} removed</>}</li>;
  })}</ul>;
}

export function AuditPage() {
  const me = useMe();
  const [cursors, setCursors] = useState<(string | null)[]>([null]);
  const [filters, setFilters] = useState({ object_id: "", user_id: "", since: "", until: "" });
  const cursor = cursors[cursors.length - 1];
  const query = { object_id: filters.object_id.trim(), user_id: filters.user_id, since: utc(filters.since, false), until: utc(filters.until, true) };
  const { data, error } = useLoad(() => api.audit(cursor, query), [cursor, JSON.stringify(query)]);
  const users = useLoad(() => loadUserNames().then((m) => [...m].map(([id, name]) => ({ id, name }))), [me.account.id]);
  const owner = useOwnerName();
  const set = (k: keyof typeof filters, v: string) => { setFilters({ ...filters, [k]: v }); setCursors([null]); };
  const rows = data?.data ?? [];
  const any = Object.values(filters).some(Boolean);
  return (
    <section>
      <h1>Audit log</h1>
      <div class="filters" role="search" aria-label="Filter the audit log">
        <label>Object id <input value={filters.object_id} placeholder="job_…, auth_…, aud_…" onChange={(e) => set("object_id", text(e))} /></label>
        <label>User <select value={filters.user_id} onChange={(e) => set("user_id", (e.target as HTMLSelectElement).value)}>
          <option value="">anyone</option>
          {(users.data ?? []).map((u) => <option key={u.id} value={u.id}>{u.name}</option>)}
          <option value="system">system (purges)</option></select></label>
        <label>From <input type="datetime-local" value={filters.since} onChange={(e) => set("since", text(e))} /></label>
        <label>Until <input type="datetime-local" value={filters.until} onChange={(e) => set("until", text(e))} /></label>
        {any && <button type="button" class="link" onClick={() => { setFilters({ object_id: "", user_id: "", since: "", until: "" }); setCursors([null]); }}>Clear filters</button>}
      </div>
      <ErrorBox error={error} />
      {data && rows.length === 0 ? <div class="empty"><p>{any ? "No event matches these filters." : "No events yet."}</p></div> : (
      <div class="table-wrap"><table class="data small" data-testid="audit"><thead><tr><th>When</th><th>User</th><th>Action</th><th>Object</th><th>Changes</th></tr></thead>
        <tbody>{rows.map((e, i) => (
          <tr key={i}><td>{fmtTime(e.at)}</td><td class="muted">{owner(e.user_id)}</td><td>{e.action}</td>
            <td>{e.object_type} <a href={e.object_type === "job" ? `#/jobs/${e.object_id}` : e.object_type === "authorization" ? `#/authorizations/${e.object_id}` : undefined}>{e.label}</a>
              {" "}<button type="button" class="link small" aria-label={`only this: events of ${e.object_type} ${e.label || e.object_id}`} onClick={() => set("object_id", e.object_id)}>only this</button></td>
            <td><AuditChanges diff={e.diff} /></td></tr>))}</tbody></table></div>)}
      <div class="row pager">
        <button type="button" disabled={cursors.length < 2} onClick={() => setCursors(cursors.slice(0, -1))}>Previous page</button>
        <button type="button" disabled={!data?.next_cursor} onClick={() => setCursors([...cursors, data!.next_cursor])}>Next page</button>
      </div>
    </section>
  );
}

const ROLES: Role[] = ["admin", "data_manager", "observer"];

export function TokensPage() {
  const me = useMe();
  const admin = me.role === "admin";
  const tokens = useLoad(() => (admin ? api.tokens() : Promise.resolve({ data: [] as TokenRow[], next_cursor: null })), []);
  const users = useLoad(() => (admin ? api.users() : Promise.resolve({ data: [], next_cursor: null })), []);
  const [label, setLabel] = useState("");
  const [userId, setUserId] = useState("");
  const [newUser, setNewUser] = useState({ email: "", name: "", role: "observer" as Role });
  const [issued, setIssued] = useState<{ label: string; token: string } | null>(null);
  const [revoking, setRevoking] = useState<TokenRow | null>(null);
  const [error, setError] = useState<unknown>(null);
  if (!admin) return <p>Only admins manage tokens.</p>;
  const fields = error instanceof ApiError ? error.fields : {};
  const who = (id: string) => { const u = users.data?.data.find((x) => x.id === id); return u ? `${u.name} <${u.email}>` : id; };
  const issue = async (e: Event) => {
    e.preventDefault(); setError(null); setIssued(null);
    try { const t = await api.createToken({ label, ...(userId ? { user_id: userId } : {}) }); setIssued({ label: t.label, token: t.token }); setLabel(""); tokens.reload(); }
    catch (err) { setError(err); }
  };
  const revoke = async () => {
    const t = revoking!; setRevoking(null); setError(null);
    try { await api.revokeToken(t.id); tokens.reload(); } catch (err) { setError(err); }
  };
  const addUser = async (e: Event) => {
    e.preventDefault(); setError(null);
    try { const u = await api.createUser(newUser); forgetUserNames(); setNewUser({ email: "", name: "", role: "observer" }); users.reload(); setUserId(u.id); }
    catch (err) { setError(err); }
  };
  return (
    <section>
      <h1>API tokens</h1>
      <p class="muted">A token's value is shown once, when it is issued; afterwards only its hint.</p>
      <ErrorBox error={tokens.error ?? users.error} />
      <ErrorBox error={error} />
      {issued && <div class="panel secret-once" role="alert" data-testid="issued-token">
        <strong>New token “{issued.label}” (shown once):</strong> <code>{issued.token}</code>
        <p class="small">Copy it now; Switchyard keeps only a hash.</p>
        <button type="button" onClick={() => setIssued(null)}>I copied it</button></div>}
      {revoking && <Confirm title={`Revoke “${revoking.label}”?`} confirmLabel="Revoke token" danger onConfirm={revoke} onCancel={() => setRevoking(null)}>
        <p>Scripts using it stop working at once.</p></Confirm>}
      <div class="table-wrap"><table class="data"><thead><tr><th>Label</th><th>User</th><th>Role</th><th>Hint</th><th>Created</th><th><span class="sr">Actions</span></th></tr></thead>
        <tbody>{(tokens.data?.data ?? []).map((t) => <tr key={t.id}><td>{t.label}</td><td class="muted">{who(t.user_id)}</td><td>{t.role}</td><td><code>{t.hint}</code></td><td>{fmtTime(t.created_at)}</td>
          <td><button type="button" class="link" aria-label={`Revoke ${t.label}`} onClick={() => setRevoking(t)}>Revoke</button></td></tr>)}</tbody></table></div>
      <UsersPanel users={users.data?.data ?? []} tokens={tokens.data?.data ?? []} meId={me.user.id}
        onChanged={() => { users.reload(); tokens.reload(); }} />
      <div class="grid2">
        <form class="panel" onSubmit={issue}>
          <h2>Issue a token</h2>
          <Field id="tok-label" label="Label *" error={fields.label}><input id="tok-label" required value={label} onInput={(e) => setLabel(text(e))} /></Field>
          <Field id="tok-user" label="For user" error={fields.user_id}><select id="tok-user" value={userId} onChange={(e) => setUserId((e.target as HTMLSelectElement).value)}>
            <option value="">me ({me.user.email})</option>
            {(users.data?.data ?? []).filter((u) => u.id !== me.user.id).map((u) => <option key={u.id} value={u.id}>{u.name} ({u.role})</option>)}</select></Field>
          <button class="primary" type="submit">Issue token</button>
        </form>
        <form class="panel" onSubmit={addUser}>
          <h2>Add a user</h2>
          <Field id="usr-email" label="E-mail *" error={fields.email}><input id="usr-email" type="email" required value={newUser.email} onInput={(e) => setNewUser({ ...newUser, email: text(e) })} /></Field>
          <Field id="usr-name" label="Name *" error={fields.name}><input id="usr-name" required value={newUser.name} onInput={(e) => setNewUser({ ...newUser, name: text(e) })} /></Field>
          <Field id="usr-role" label="Role" error={fields.role}><select id="usr-role" value={newUser.role} onChange={(e) => setNewUser({ ...newUser, role: (e.target as HTMLSelectElement).value as Role })}>
            {ROLES.map((r) => <option key={r}>{r}</option>)}</select></Field>
          <button type="submit">Add user</button>
        </form>
      </div>
    </section>
  );
}
