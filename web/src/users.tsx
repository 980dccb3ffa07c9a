import { useState } from "preact/hooks";
import { api, type Role, type TokenRow, type UserRow } from "./api";
import { forgetUserNames } from "./session";
import { Confirm, ErrorBox } from "./ui";

const ROLES: Role[] = ["admin", "data_manager", "observer"];
const ROLE_WORDS: Record<Role, string> = { admin: "admin", data_manager: "data manager", observer: "observer" };

type Pending =
  | { kind: "role"; user: UserRow; role: Role }
  | { kind: "disable"; user: UserRow }
  | { kind: "enable"; user: UserRow };

/** The account's users, with changing a role and disabling (or enabling) a user, each after
 * a confirmation. The API refuses an admin changing themselves, so their own row has no
 * actions. `onChanged` reloads what depends on users (the token list: disabling revokes). */
export function UsersPanel({ users, tokens, meId, onChanged }: {
  users: UserRow[]; tokens: TokenRow[]; meId: string; onChanged: () => void;
}) {
  const [pending, setPending] = useState<Pending | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [done, setDone] = useState("");
  const tokenCount = (id: string) => tokens.filter((t) => t.user_id === id).length;
  const apply = async () => {
    const p = pending!;
    setPending(null); setError(null); setDone("");
    const body = p.kind === "role" ? { role: p.role } : { disabled: p.kind === "disable" };
    try {
      await api.updateUser(p.user.id, body);
      forgetUserNames();
      setDone(p.kind === "role" ? `${p.user.name} is now ${ROLE_WORDS[p.role]}.`
        : p.kind === "disable" ? `${p.user.name} is disabled; their tokens are revoked.` : `${p.user.name} is enabled again.`);
      onChanged();
    } catch (err) { setError(err); }
  };
  return (
    <section class="panel" aria-labelledby="users-title">
      <h2 id="users-title">Users</h2>
      <ErrorBox error={error} />
      {done && <p role="status" data-testid="user-change-done">{done}</p>}
      {pending?.kind === "role" && <Confirm title={`Change ${pending.user.name}'s role to ${ROLE_WORDS[pending.role]}?`}
        confirmLabel="Change role" onConfirm={apply} onCancel={() => setPending(null)}>
        <p>Every token of {pending.user.name} acts as {ROLE_WORDS[pending.role]} within a few seconds.</p></Confirm>}
      {pending?.kind === "disable" && <Confirm title={`Disable ${pending.user.name}?`} confirmLabel="Disable user" danger
        onConfirm={apply} onCancel={() => setPending(null)}>
        <p>Their {tokenCount(pending.user.id)} token(s) stop working within a few seconds and are revoked; no new token can be
          issued to them. Enabling them later does not bring those tokens back.</p></Confirm>}
      {pending?.kind === "enable" && <Confirm title={`Enable ${pending.user.name}?`} confirmLabel="Enable user"
        onConfirm={apply} onCancel={() => setPending(null)}>
        <p>Their old tokens stay revoked: issue them a new one.</p></Confirm>}
      <div class="table-wrap"><table class="data"><thead><tr><th>Name</th><th>E-mail</th><th>Role</th><th>Status</th><th><span class="sr">Actions</span></th></tr></thead>
        <tbody>{users.map((u) => {
          const self = u.id === meId;
          return <tr key={u.id}><td>{u.name}</td><td class="muted">{u.email}</td>
            <td>{self ? <>{ROLE_WORDS[u.role]} <span class="muted">(you)</span></> :
              <select aria-label={`Role of ${u.name}`} value={u.role}
                onChange={(e) => { const role = (e.target as HTMLSelectElement).value as Role; if (role !== u.role) setPending({ kind: "role", user: u, role }); }}>
                {ROLES.map((r) => <option key={r} value={r}>{ROLE_WORDS[r]}</option>)}</select>}</td>
            <td>{u.disabled ? "disabled" : "active"}</td>
            <td>{self ? null : u.disabled
              ? <button type="button" class="link" aria-label={`Enable ${u.name}`} onClick={() => setPending({ kind: "enable", user: u })}>Enable</button>
              : <button type="button" class="link" aria-label={`Disable ${u.name}`} onClick={() => setPending({ kind: "disable", user: u })}>Disable</button>}</td></tr>;
        })}</tbody></table></div>
    </section>
  );
}
