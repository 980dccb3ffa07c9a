// Every call to the Switchyard API goes through this module. The token lives in session
// storage only (gone when the tab closes); nothing here ever returns a credential.

const BASE = "/api/v1";
const TOKEN_KEY = "switchyard.token";

export type Dict = Record<string, unknown>;

export class ApiError extends Error {
  constructor(
    public status: number,
    public code: string,
    message: string,
    public fields: Record<string, string> = {},
    public details: Dict = {},
  ) {
    super(message);
  }
}

export interface Page<T> { data: T[]; next_cursor: string | null }

export function getToken(): string | null { return sessionStorage.getItem(TOKEN_KEY); }
export function setToken(token: string): void { sessionStorage.setItem(TOKEN_KEY, token); }
export function clearToken(): void { sessionStorage.removeItem(TOKEN_KEY); }

// A new tab asks the app's open tabs for the token over a BroadcastChannel (same origin
// only, in memory: never written to disk or to localStorage), so it needs no new sign-in;
// signing out in one tab signs out every tab. With no tab open, the token is gone.
type SessionMessage = { type: "ask" } | { type: "token"; token: string } | { type: "signout" };
const channel: BroadcastChannel | null = typeof BroadcastChannel === "function" ? new BroadcastChannel("switchyard.session") : null;

/** Answers other tabs' asks while signed in; calls `onToken` with a token another tab
 * sends while this one has none, and `onSignOut` when another tab signs out. */
export function shareSession(onToken: (token: string) => void, onSignOut: () => void): () => void {
  if (!channel) return () => {};
  const on = (e: MessageEvent<SessionMessage>) => {
    const m = e.data;
    if (m.type === "ask" && getToken()) channel.postMessage({ type: "token", token: getToken()! } satisfies SessionMessage);
    else if (m.type === "token" && !getToken() && typeof m.token === "string") onToken(m.token);
    else if (m.type === "signout" && getToken()) { clearToken(); onSignOut(); }
  };
  channel.addEventListener("message", on);
  return () => channel.removeEventListener("message", on);
}
export function askOtherTabs(): void { channel?.postMessage({ type: "ask" } satisfies SessionMessage); }
export function signOutEverywhere(): void { clearToken(); channel?.postMessage({ type: "signout" } satisfies SessionMessage); }

type Query = Record<string, string | number | boolean | null | undefined>;

function qs(query?: Query): string {
  if (!query) return "";
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) {
    if (v !== undefined && v !== null && v !== "") p.set(k, String(v));
  }
  const s = p.toString();
  return s ? `?${s}` : "";
}

let onUnauthorized: () => void = () => {};
export function setUnauthorizedHandler(fn: () => void): void { onUnauthorized = fn; }

async function request<T>(method: string, path: string, opts: { query?: Query; body?: unknown; token?: string } = {}): Promise<T> {
  const headers: Record<string, string> = { Accept: "application/json" };
  const token = opts.token ?? getToken();
  if (token) headers.Authorization = `Bearer ${token}`;
  let body: string | undefined;
  if (opts.body !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(opts.body);
  }
  let resp: Response;
  try {
    resp = await fetch(BASE + path + qs(opts.query), { method, headers, body });
  } catch {
    throw new ApiError(0, "network", "the API cannot be reached; is `make run` still running?");
  }
  if (resp.status === 204) return undefined as T;
  let json: Dict = {};
  try { json = (await resp.json()) as Dict; } catch { /* not JSON */ }
  if (!resp.ok) {
    const e = (json.error ?? {}) as Dict;
    if (resp.status === 401 && !opts.token) onUnauthorized();
    throw new ApiError(resp.status, String(e.code ?? "http." + resp.status), String(e.message ?? resp.statusText),
      (e.fields ?? {}) as Record<string, string>, (e.details ?? {}) as Dict);
  }
  return json as T;
}

async function data<T>(method: string, path: string, opts: { query?: Query; body?: unknown; token?: string } = {}): Promise<T> {
  return (await request<{ data: T }>(method, path, opts)).data;
}

function page<T>(path: string, query?: Query): Promise<Page<T>> {
  return request<Page<T>>("GET", path, { query });
}

// ---- types (the fields the SPA uses; /api/v1/openapi.json has them all) ----
export type Role = "admin" | "data_manager" | "observer";
export interface Me { account: { id: string; name: string }; user: { id: string; email: string; name: string; role: Role }; role: Role }
export interface JsonSchema {
  type?: string; title?: string; description?: string; enum?: unknown[]; default?: unknown;
  properties?: Record<string, JsonSchema>; required?: string[]; anyOf?: JsonSchema[];
  items?: JsonSchema; format?: string; minimum?: number; maximum?: number; pattern?: string;
  additionalProperties?: boolean | JsonSchema; "x-secret"?: boolean; writeOnly?: boolean;
}
export interface AuthMethod { id: string; name: string; description: string; verifiable: boolean; credentials_schema: JsonSchema; secret_fields: string[]; generated_fields?: string[] }
export interface AwsTrust { external_id: string; principal: string; session_name: string; trust_policy: Dict }
export interface Workflow { id: string; name: string; job_type: string; description: string; auth_methods: string[]; config_schema: JsonSchema; option_fields?: string[];
  realtime?: boolean; // accepts the schedule {"type": "realtime"}
}
export interface Provider { id: string; name: string; description: string; job_types: string[]; auth_methods: AuthMethod[]; workflows: Workflow[] }
export interface Health { status: "healthy" | "unhealthy" | "unknown"; reason: string | null; checked_at: string | null }
export interface Usage { total: number; by_status: Record<string, number> }
export interface AuthRow {
  id: string; provider: string; method: string; label: string; description: string; owner: string;
  created_at: string; updated_at: string; health: Health; last_used_at: string | null; usage: Usage;
  credential_hint: string | null; provider_account: string | null;
}
export interface JobRef { id: string; label: string; status: string }
export interface AuthSummary extends AuthRow { jobs: JobRef[]; version: number; write_key?: string }
export interface LastRun { id: string | null; status: string | null; started_at: string | null; finished_at: string | null; added: number | null; removed: number | null; omitted: number | null; error: string | null }
export interface JobRow {
  id: string; label: string; provider: string; job_type: string; workflow: string; authorization_id: string;
  status: string; fault_count: number; owner: string; created_at: string; updated_at: string;
  last_run: LastRun | null; next_run_at: string | null; schedule: Dict | null; warning?: string | null;
}
export interface JobSummary extends JobRow {
  description: string; config: Dict; version: number; failure_window_hours: number;
  authorization: { id: string; label: string; health: Health | null; deleted: boolean };
  cost_estimate: Dict;
  collection?: CollectionTotals;
  lag_seconds?: number | null; // real-time jobs: age of the oldest change not yet delivered
  resync_requested?: ResyncRequested | null; // export jobs: a re-send of every member not yet done
}
export interface ResyncRequested { id: string; requested_at: string; requested_by: string }
export interface CollectionTotals { last_received_at: string | null; accepted: number; duplicates: number; rejected: number }
export interface EditPreview { dry_run: true; allowed: boolean; problems: string[]; changes: string[]; job: JobSummary; next_runs: string[] }
export interface Run {
  id: string; trigger: string; status: string; started_at: string | null; finished_at: string | null;
  added: number; removed: number; omitted: number; omitted_reasons: Record<string, number>; error?: string | null;
  progress: { steps: number; processed: number; read: number; total: number | null; unit: string };
  cost: Record<string, number>; cost_usd: number;
  resync?: boolean; // an export run that re-sent every member
}
export interface LogLine { timestamp: string; level: string; code: string; message: string; run_id: string | null; context: Dict }
export interface JobPoint { start: string; added: number; removed: number; omitted: number }
export interface AuthPoint { start: string; api_requests: number; errors: number }
export interface HealthTransition { at: string; from: string; to: string; reason: string | null; by: string }
export interface Option { value: string; label: string; kind: string | null }
export interface Audience { id: string; name: string; description: string; filter: Dict; owner: string; created_at: string; version: number; export_jobs?: number }
export interface AudienceSize { size: number; sample: { id: string; email: string | null }[]; scanned: number; truncated: boolean; computed_at: string; cached: boolean }
export interface AuditEvent { at: string; user_id: string; action: string; object_type: string; object_id: string; label: string; diff: Dict }
export interface Webhook { id: string; host: string; created_at: string | null }
export interface AlertSettings { emails: string[]; webhooks: Webhook[]; events: string[]; updated_at: string | null; version: number; signing_secrets?: Record<string, string> | null }
export interface TokenRow { id: string; label: string; user_id: string; role: Role; created_at: string; hint: string }
export interface UserName { id: string; name: string }
export interface UserRow { id: string; email: string; name: string; role: Role; created_at?: string; disabled?: boolean }
export interface AlertRule {
  id: string; job_id: string; metric: string; granularity: string; min: number | null; max: number | null;
  allowable_violations: number; alert_state: "ok" | "breached"; state_changed_at: string | null; created_at: string;
}
export interface OAuthStart { authorize_url: string; expires_at: number }
export type Granularity = "hour" | "day" | "week";

// ---- calls ----
export const api = {
  me: (token?: string) => data<Me>("GET", "/me", { token }),
  awsTrust: () => data<AwsTrust>("GET", "/account/aws-trust"),
  providers: () => data<Provider[]>("GET", "/providers"),
  options: (provider: string, workflow: string, field: string, query: Query) =>
    data<Option[]>("GET", `/providers/${provider}/workflows/${workflow}/options/${field}`, { query }),

  jobs: (query: Query) => page<JobRow>("/jobs", query),
  job: (id: string) => data<JobSummary>("GET", `/jobs/${id}`),
  createJob: (body: Dict) => data<JobSummary>("POST", "/jobs", { body }),
  /** Every check a create makes, nothing written: a 422 at the fields, or the next run starts. */
  previewJob: (body: Dict) => data<{ valid: boolean; next_runs: string[] }>("POST", "/jobs/preview", { body }),
  patchJob: (id: string, body: Dict) => data<JobSummary>("PATCH", `/jobs/${id}`, { body }),
  previewJobEdit: (id: string, body: Dict) => data<EditPreview>("PATCH", `/jobs/${id}`, { body, query: { dry_run: true } }),
  deleteJob: (id: string) => request<void>("DELETE", `/jobs/${id}`),
  jobAction: (id: string, action: "pause" | "resume" | "run") => data<JobSummary>("POST", `/jobs/${id}/${action}`),
  /** Export jobs: the next run (a real-time job: its delivery) sends every member again. */
  resyncJob: (id: string) => data<JobSummary>("POST", `/jobs/${id}/run`, { body: { resync: true } }),
  runs: (id: string) => page<Run>(`/jobs/${id}/runs`, { limit: 20 }),
  logs: (id: string, level: string, cursor?: string | null) => page<LogLine>(`/jobs/${id}/logs`, { level, cursor, limit: 50 }),
  jobActivity: (id: string, granularity: Granularity) =>
    data<{ granularity: string; series: JobPoint[] }>("GET", `/jobs/${id}/activity`, { query: { granularity } }),

  authorizations: (query: Query) => page<AuthRow>("/authorizations", query),
  authorization: (id: string) => data<AuthSummary>("GET", `/authorizations/${id}`),
  createAuthorization: (body: Dict) => data<AuthSummary>("POST", "/authorizations", { body }),
  patchAuthorization: (id: string, body: Dict) => data<AuthSummary>("PATCH", `/authorizations/${id}`, { body }),
  rotateCredentials: (id: string, credentials: Dict) => data<AuthSummary>("PUT", `/authorizations/${id}/credentials`, { body: { credentials } }),
  checkAuthorization: (id: string) => data<Dict>("POST", `/authorizations/${id}/check`),
  deleteAuthorization: (id: string) => request<void>("DELETE", `/authorizations/${id}`),
  authActivity: (id: string, granularity: Granularity) =>
    data<{ granularity: string; series: AuthPoint[] }>("GET", `/authorizations/${id}/activity`, { query: { granularity } }),
  authHealth: (id: string) => page<HealthTransition>(`/authorizations/${id}/health`, { limit: 20 }),

  /** `redirect`: popups are blocked and the whole page goes; a failed callback comes back as #/authorizations?oauth_error=. */
  oauthStart: (provider: string, label: string, mode: "popup" | "redirect" = "popup") =>
    data<OAuthStart>("GET", `/oauth/${provider}/start`, { query: { label, return: mode } }),

  audiences: () => page<Audience>("/audiences", { limit: 200 }),
  createAudience: (body: Dict) => data<Audience>("POST", "/audiences", { body }),
  patchAudience: (id: string, body: Dict) => data<Audience>("PATCH", `/audiences/${id}`, { body }),
  deleteAudience: (id: string) => request<void>("DELETE", `/audiences/${id}`),
  /** The sizes of a list of audiences in one call (at most 200). */
  audienceSizes: (ids: string[]) => data<(AudienceSize & { id: string })[]>("POST", "/audiences/sizes", { body: { ids } }),
  /** A page of profiles: the audience builder suggests the fields imports wrote. */
  profiles: (limit: number) => page<{ id: string; fields: Dict }>("/profiles", { limit }),
  previewAudience: (filter: Dict) => data<AudienceSize>("POST", "/audiences/preview", { body: { filter } }),
  audit: (cursor?: string | null, filters: Query = {}) => page<AuditEvent>("/audit", { ...filters, cursor, limit: 50 }),
  alerts: () => data<AlertSettings>("GET", "/alerts"),
  putAlerts: (body: Dict) => data<AlertSettings>("PUT", "/alerts", { body }),
  alertRules: (jobId: string) => page<AlertRule>(`/jobs/${jobId}/alert-rules`),
  createAlertRule: (jobId: string, body: Dict) => data<AlertRule>("POST", `/jobs/${jobId}/alert-rules`, { body }),
  deleteAlertRule: (jobId: string, id: string) => request<void>("DELETE", `/jobs/${jobId}/alert-rules/${id}`),
  rotateWebhookSecret: (id: string) => data<{ id: string; signing_secret: string }>("POST", `/alerts/webhooks/${id}/rotate-secret`),
  testAlert: () => data<{ published: boolean }>("POST", "/alerts/test", { body: {} }),
  tokens: () => page<TokenRow>("/tokens", { limit: 200 }),
  createToken: (body: Dict) => data<TokenRow & { token: string }>("POST", "/tokens", { body }),
  revokeToken: (id: string) => request<void>("DELETE", `/tokens/${id}`),
  users: () => page<UserRow>("/users", { limit: 200 }),
  /** Every role: id and name of the account's users (owners, the audit log's user filter). */
  userNames: () => page<UserName>("/users/names", { limit: 200 }),
  createUser: (body: Dict) => data<UserRow>("POST", "/users", { body }),
  /** `{role}` or `{disabled}`: disabling revokes every token of the user. */
  updateUser: (id: string, body: Dict) => data<UserRow>("PATCH", `/users/${id}`, { body }),
};
