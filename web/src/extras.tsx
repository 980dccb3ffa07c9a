// Audiences, alerts settings, audit log and tokens: small screens over their routes.
import { useState } from "preact/hooks";
import { api, type Dict } from "./api";
import { useCanEdit, useMe } from "./session";
import { ErrorBox, Field, fmtTime, useLoad } from "./ui";

export function AudiencesPage() {
  const canEdit = useCanEdit();
  const list = useLoad(() => api.audiences(), []);
  const [name, setName] = useState("");
  const [filter, setFilter] = useState('{"all": []}');
  const [size, setSize] = useState<number | null>(null);
  const [error, setError] = useState<unknown>(null);
  const parse = (): Dict | null => { try { return JSON.parse(filter) as Dict; } catch { setError(new Error("The filter is not valid JSON.")); return null; } };
  const preview = async () => { setError(null); const f = parse(); if (!f) return; try { setSize((await api.previewAudience(f)).size); } catch (e) { setError(e); } };
  const create = async (e: Event) => {
    e.preventDefault(); setError(null); const f = parse(); if (!f) return;
    try { await api.createAudience({ name, filter: f }); setName(""); setSize(null); list.reload(); } catch (err) { setError(err); }
  };
  return (
    <section>
      <h1>Audiences</h1>
      <ErrorBox error={list.error} />
      <div class="table-wrap"><table class="data"><thead><tr><th>Name</th><th>Filter</th><th>Export jobs</th><th>Created</th></tr></thead>
        <tbody>{(list.data?.data ?? []).map((a) => <tr key={a.id}><td>{a.name}</td><td><code>{JSON.stringify(a.filter)}</code></td><td>{a.export_jobs ?? 0}</td><td>{fmtTime(a.created_at)}</td></tr>)}</tbody></table></div>
      {canEdit && <form class="panel narrow" onSubmit={create}>
        <h2>New audience</h2>
        <Field id="aud-name" label="Name *"><input id="aud-name" required value={name} onInput={(e) => setName((e.target as HTMLInputElement).value)} /></Field>
        <Field id="aud-filter" label="Filter (JSON)" hint='e.g. {"all": [{"field": "plan", "op": "equals", "value": "pro"}]}'>
          <textarea id="aud-filter" value={filter} onInput={(e) => { setFilter((e.target as HTMLTextAreaElement).value); setSize(null); }} /></Field>
        <div class="row"><button type="button" onClick={preview}>Preview size</button>{size !== null && <span role="status">{size} profile(s) match</span>}
          <button class="primary" type="submit">Create audience</button></div>
        <ErrorBox error={error} />
      </form>}
    </section>
  );
}

export function AlertsPage() {
  const canEdit = useCanEdit();
  const s = useLoad(() => api.alerts(), []);
  const [emails, setEmails] = useState<string | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [saved, setSaved] = useState(false);
  if (s.error) return <ErrorBox error={s.error} />;
  if (!s.data) return <p class="loading">Loading…</p>;
  const text = emails ?? s.data.emails.join("\n");
  const save = async (e: Event) => {
    e.preventDefault(); setError(null); setSaved(false);
    try {
      s.set(await api.putAlerts({ emails: text.split(/[\s,]+/).filter(Boolean), webhooks: s.data!.webhooks, version: s.data!.version }));
      setEmails(null); setSaved(true);
    } catch (err) { setError(err); }
  };
  return (
    <section>
      <h1>Alerts</h1>
      <p class="muted">Alert events: {s.data.events.join(", ")}</p>
      <form class="panel narrow" onSubmit={save}>
        <Field id="al-emails" label="E-mail recipients (one per line)"><textarea id="al-emails" readOnly={!canEdit} value={text} onInput={(e) => setEmails((e.target as HTMLTextAreaElement).value)} /></Field>
        <p class="small">Webhooks: {s.data.webhooks.length === 0 ? "none" : s.data.webhooks.map((w) => String(w.url ?? "")).join(", ")}</p>
        {canEdit && <button class="primary" type="submit">Save</button>}
        {saved && <span role="status"> Saved.</span>}
        <ErrorBox error={error} />
      </form>
    </section>
  );
}

export function AuditPage() {
  const [cursors, setCursors] = useState<(string | null)[]>([null]);
  const cursor = cursors[cursors.length - 1];
  const { data, error } = useLoad(() => api.audit(cursor), [cursor]);
  return (
    <section>
      <h1>Audit log</h1>
      <ErrorBox error={error} />
      <div class="table-wrap"><table class="data small"><thead><tr><th>When</th><th>User</th><th>Action</th><th>Object</th><th>Changes</th></tr></thead>
        <tbody>{(data?.data ?? []).map((e, i) => (
          <tr key={i}><td>{fmtTime(e.at)}</td><td class="muted">{e.user_id}</td><td>{e.action}</td>
            <td>{e.object_type} <a href={e.object_type === "job" ? `#/jobs/${e.object_id}` : e.object_type === "authorization" ? `#/authorizations/${e.object_id}` : undefined}>{e.label}</a></td>
            <td class="muted">{Object.keys(e.diff).join(", ")}</td></tr>))}</tbody></table></div>
      <div class="row pager">
        <button type="button" disabled={cursors.length < 2} onClick={() => setCursors(cursors.slice(0, -1))}>Previous page</button>
        <button type="button" disabled={!data?.next_cursor} onClick={() => setCursors([...cursors, data!.next_cursor])}>Next page</button>
      </div>
    </section>
  );
}

export function TokensPage() {
  const me = useMe();
  const tokens = useLoad(() => (me.role === "admin" ? api.tokens() : Promise.resolve({ data: [], next_cursor: null })), []);
  if (me.role !== "admin") return <p>Only admins manage tokens.</p>;
  return (
    <section>
      <h1>API tokens</h1>
      <p class="muted">Token values are shown once, when issued (through the API); here only their hints.</p>
      <ErrorBox error={tokens.error} />
      <div class="table-wrap"><table class="data"><thead><tr><th>Label</th><th>User</th><th>Role</th><th>Hint</th><th>Created</th></tr></thead>
        <tbody>{(tokens.data?.data ?? []).map((t) => <tr key={t.id}><td>{t.label}</td><td class="muted">{t.user_id}</td><td>{t.role}</td><td><code>{t.hint}</code></td><td>{fmtTime(t.created_at)}</td></tr>)}</tbody></table></div>
    </section>
  );
}
