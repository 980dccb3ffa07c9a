import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import { api, ApiError, askOtherTabs, clearToken, getToken, type Me, setToken, setUnauthorizedHandler, shareSession, signOutEverywhere } from "./api";
import { CatalogPage } from "./catalog";
import { AuthorizationsPage, AuthorizationSummaryPage, NewAuthorizationPage } from "./auths";
import { AlertsPage, AudiencesPage, AuditPage, TokensPage } from "./extras";
import { JobsPage, JobSummaryPage } from "./jobs";
import { resumeAfterRedirect } from "./oauth";
import { MeContext } from "./session";
import { ErrorBox } from "./ui";
import { Wizard } from "./wizard";
import "./style.css";


function useHash(): string {
  const [hash, setHash] = useState(location.hash || "#/jobs");
  useEffect(() => {
    const on = () => setHash(location.hash || "#/jobs");
    addEventListener("hashchange", on);
    return () => removeEventListener("hashchange", on);
  }, []);
  return hash;
}

function SignIn({ onSignedIn }: { onSignedIn: (me: Me) => void }) {
  const [token, setTok] = useState("");
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  async function submit(e: Event) {
    e.preventDefault();
    setBusy(true);
    try {
      const me = await api.me(token.trim());
      setToken(token.trim());
      onSignedIn(me);
    } catch (err) {
      setError(err instanceof ApiError && err.status === 401 ? new ApiError(401, "auth", "That token is not valid.") : err);
    } finally { setBusy(false); }
  }
  return (
    <main class="signin">
      <h1>Switchyard</h1>
      <p>Sign in with an API token. <code>make run</code> prints the local admin token.</p>
      <form onSubmit={submit}>
        <label for="token">API token</label>
        <input id="token" type="password" autocomplete="off" spellcheck={false} value={token}
          onInput={(e) => setTok((e.target as HTMLInputElement).value)} placeholder="tok_….…" required />
        <button class="primary" type="submit" disabled={busy}>Sign in</button>
      </form>
      <ErrorBox error={error} />
    </main>
  );
}

const NAV: [string, string, boolean][] = [
  ["#/jobs", "Jobs", false], ["#/authorizations", "Authorizations", false], ["#/catalog", "Catalog", false], ["#/audiences", "Audiences", false],
  ["#/alerts", "Alerts", false], ["#/audit", "Audit log", false], ["#/tokens", "Tokens", true],
];

function Route({ hash }: { hash: string }) {
  const [path] = hash.slice(1).split("?");
  const parts = (path ?? "").split("/").filter(Boolean);
  const [a, b] = parts;
  if (a === "jobs" && b === "new") return <Wizard hash={hash} />;
  if (a === "jobs" && b) return <JobSummaryPage id={b} />;
  if (a === "authorizations" && b === "new") return <NewAuthorizationPage />;
  if (a === "authorizations" && b) return <AuthorizationSummaryPage id={b} />;
  if (a === "authorizations") return <AuthorizationsPage />;
  if (a === "catalog") return <CatalogPage />;
  if (a === "audiences") return <AudiencesPage />;
  if (a === "alerts") return <AlertsPage />;
  if (a === "audit") return <AuditPage />;
  if (a === "tokens") return <TokensPage />;
  return <JobsPage />;
}

function App() {
  const [me, setMe] = useState<Me | null>(null);
  const [checking, setChecking] = useState(!!getToken());
  const hash = useHash();
  useEffect(() => {
    setUnauthorizedHandler(() => { clearToken(); setMe(null); });
    if (getToken()) api.me().then(setMe, () => clearToken()).finally(() => setChecking(false));
    // A token from another open tab is checked like a typed one before it is kept.
    const stop = shareSession((token) => {
      api.me(token).then((m) => { if (!getToken()) { setToken(token); setMe(m); } }, () => {});
    }, () => setMe(null));
    if (!getToken()) askOtherTabs();
    return stop;
  }, []);
  if (checking) return <p class="loading">Loading…</p>;
  if (!me) return <SignIn onSignedIn={setMe} />;
  const section = "#/" + (hash.slice(2).split(/[/?]/)[0] ?? "");
  return (
    <MeContext.Provider value={me}>
      <a class="skip" href="#main" onClick={(e) => { e.preventDefault(); document.getElementById("main")?.focus(); }}>Skip to content</a>
      <header class="top">
        <span class="brand">Switchyard</span>
        <nav aria-label="Main">
          {NAV.filter(([, , adminOnly]) => !adminOnly || me.role === "admin").map(([href, label]) => (
            <a key={href} href={href} aria-current={section === href ? "page" : undefined}>{label}</a>
          ))}
        </nav>
        <span class="who" data-testid="who">
          <span>{me.account.name}</span> · <span>{me.user.email}</span> <span class="role">{me.role}</span>
          <button type="button" class="link" onClick={() => { signOutEverywhere(); setMe(null); location.hash = "#/jobs"; }}>Sign out</button>
        </span>
      </header>
      <main id="main" tabIndex={-1}><Route hash={hash} /></main>
    </MeContext.Provider>
  );
}

resumeAfterRedirect();
render(<App />, document.getElementById("app")!);
