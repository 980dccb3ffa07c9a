// Connecting a provider with OAuth 2.0 (Mailchimp, Google Tag Manager) through the API's
// /oauth/{provider}/start and /callback routes. The consent happens in a popup; when the
// browser blocks popups, the whole page goes to the provider and the callback brings it
// back (the wizard's answers wait in session storage meanwhile). A flow started that way
// (`return=redirect`) that fails comes back as #/authorizations?oauth_error=<code>&message=.
import { api, ApiError, type Dict } from "./api";
import { oauthErrorMessage } from "./words";

/** Auth methods with this id are connected through the provider's consent screen. */
export const OAUTH_METHOD = "oauth";
export const isOAuth = (method: string): boolean => method === OAUTH_METHOD;

const RESUME_KEY = "switchyard.oauth.resume";
/** The name of the provider a full-page flow went to, for the words of its error. */
const PROVIDER_KEY = "switchyard.oauth.provider";
const POLL_MS = 250;
const GIVE_UP_MS = 10 * 60 * 1000; // the API's flow state lives 10 minutes

interface Resume { back: string; state: Dict; until?: number }

/**
 * Opens the consent popup (call it straight from a click: the popup must open before any
 * await, or the browser blocks it) and resolves with the id of the authorization the
 * callback created. `resume` is where a full-page redirect comes back to, with state.
 */
export async function connectOAuth(provider: string, label: string, resume?: Resume, providerName?: string): Promise<string> {
  const popup = window.open("", "switchyard-oauth", "popup,width=560,height=720");
  let started;
  try {
    started = await api.oauthStart(provider, label, popup ? "popup" : "redirect");
  } catch (e) {
    popup?.close();
    throw e;
  }
  if (!popup) {
    // Kept as long as the flow's state lives: a flow that never came back must not send a
    // later visit to an authorization page back to the wizard.
    sessionStorage.setItem(PROVIDER_KEY, providerName ?? provider);
    if (resume) sessionStorage.setItem(RESUME_KEY, JSON.stringify({ ...resume, until: Date.now() + GIVE_UP_MS }));
    location.assign(started.authorize_url);
    return new Promise<string>(() => {}); // the page is leaving
  }
  popup.location.href = started.authorize_url;
  return watch(popup);
}

function watch(w: Window): Promise<string> {
  const t0 = Date.now();
  return new Promise((resolve, reject) => {
    const done = (fn: () => void) => { clearInterval(timer); if (!w.closed) w.close(); fn(); };
    const timer = setInterval(() => {
      if (w.closed) {
        done(() => reject(new ApiError(0, "oauth.cancelled", "The window was closed before the provider answered; nothing was created.")));
        return;
      }
      if (Date.now() - t0 > GIVE_UP_MS) {
        done(() => reject(new ApiError(0, "oauth.timeout", "The connection took longer than 10 minutes; start again.")));
        return;
      }
      let href: string;
      try { href = w.location.href; } catch { return; } // at the provider: another origin
      if (!href.startsWith(location.origin + "/")) return; // still about:blank
      const m = /#\/authorizations\/([^/?#]+)/.exec(href);
      if (m) { done(() => resolve(decodeURIComponent(m[1]!))); return; }
      // A redirect-mode error (not expected in a popup, but never leave the popup hanging).
      const failed = oauthErrorIn(new URL(href).hash);
      if (failed) { done(() => reject(failed)); return; }
      if (href.includes("/oauth/") && w.document.readyState === "complete") {
        // The callback refused (declined, expired, other browser): its body is the API error.
        let err = new ApiError(400, "oauth.failed", "The provider connection failed.");
        try {
          const e = (JSON.parse(w.document.body.innerText) as Dict).error as Dict;
          err = new ApiError(400, String(e.code), String(e.message), (e.fields ?? {}) as Record<string, string>);
        } catch { /* not JSON: keep the generic message */ }
        done(() => reject(err));
      }
    }, POLL_MS);
  });
}

/** The error a failed full-page flow came back with (#/authorizations?oauth_error=&message=). */
export function oauthErrorIn(hash: string): ApiError | null {
  const m = /^#\/authorizations\?(.*)$/.exec(hash);
  if (!m) return null;
  const q = new URLSearchParams(m[1]);
  const code = q.get("oauth_error");
  if (!code) return null;
  // The code alone picks the words: the message in the address is not shown (anyone can
  // send a link to #/authorizations?oauth_error=x&message=<any text>).
  return new ApiError(400, code, oauthErrorMessage(code, sessionStorage.getItem(PROVIDER_KEY)));
}

/**
 * After a full-page redirect: the callback landed on #/authorizations/<id>, or on
 * #/authorizations?oauth_error=... when it failed. If a flow was started from somewhere
 * that wants to continue (the wizard), go back there with the new id or the error; the
 * caller reads them with takeOAuthResult().
 */
export function resumeAfterRedirect(): void {
  const raw = sessionStorage.getItem(RESUME_KEY);
  const m = /^#\/authorizations\/([^/?#]+)/.exec(location.hash);
  const failed = oauthErrorIn(location.hash);
  if (!raw || (!m && !failed)) return;
  sessionStorage.removeItem(RESUME_KEY);
  try {
    const r = JSON.parse(raw) as Resume;
    if (!r.until || r.until < Date.now()) return;
    const result: OAuthResult = m ? { id: decodeURIComponent(m[1]!), state: r.state }
      : { error: { code: failed!.code, message: failed!.message }, state: r.state };
    sessionStorage.setItem(RESULT_KEY, JSON.stringify(result));
    location.replace(r.back);
  } catch { /* a damaged record: stay where the callback sent us */ }
}

const RESULT_KEY = "switchyard.oauth.result";
export interface OAuthResult { id?: string; error?: { code: string; message: string }; state: Dict }
export function takeOAuthResult(): OAuthResult | null {
  const raw = sessionStorage.getItem(RESULT_KEY);
  if (!raw) return null;
  sessionStorage.removeItem(RESULT_KEY);
  try { return JSON.parse(raw) as OAuthResult; } catch { return null; }
}
