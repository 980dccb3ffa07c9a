// What people read instead of ids: provider, method and workflow names from the catalog,
// field paths said in words, user ids replaced by names, fixed OAuth error messages.
import type { Provider } from "./api";

export function providerName(catalog: Provider[], id: string): string {
  return catalog.find((p) => p.id === id)?.name ?? id;
}
export function methodName(catalog: Provider[], provider: string, id: string): string {
  return catalog.find((p) => p.id === provider)?.auth_methods.find((m) => m.id === id)?.name ?? id;
}
export function workflowName(catalog: Provider[], provider: string, id: string): string {
  return catalog.find((p) => p.id === provider)?.workflows.find((w) => w.id === id)?.name ?? id;
}

/** A catalog description without the API routes some of them name for API clients. */
export function plainDescription(text: string): string {
  return text.replace(/\s*\((GET|POST|PUT|PATCH|DELETE) \/[^)]*\)/g, "");
}

const ACRONYMS: Record<string, string> = { id: "ID", url: "URL", aws: "AWS", arn: "ARN", api: "API", dc: "data center" };
const NAMES: Record<string, string> = {
  authorization_id: "authorization", config: "configuration", timezone: "time zone", at: "time",
  every_minutes: "minutes between runs", failure_window_hours: "failure window", op: "operator", expression: "cron expression",
};
const UNION_TAGS = new Set(["once", "interval", "daily", "weekly", "cron"]);

/** `credentials.access_key_id` → "Access key ID"; `schedule.daily.at` → "Schedule time". */
export function fieldLabel(path: string): string {
  const parts = path.split(/[.[\]]/).filter((p) => p && !UNION_TAGS.has(p) && !/^\d+$/.test(p));
  const words = (p: string) => NAMES[p] ?? p.split("_").map((w) => ACRONYMS[w.toLowerCase()] ?? w.toLowerCase()).join(" ");
  const last = parts[parts.length - 1] ?? "";
  let text = words(last);
  if (["start", "end", "at", "value", "field", "op", "min", "max"].includes(last) && parts.length > 1) {
    text = `${words(parts[parts.length - 2]!)} ${text}`;
  }
  return text ? text[0]!.toUpperCase() + text.slice(1) : path;
}

/** The names of what a job edit changes ("authorization", "configuration"), not its fields. */
export function changeWords(changes: string[]): string {
  return changes.map((c) => NAMES[c] ?? c.replace(/_/g, " ")).join(", ");
}

/** Replaces user ids (usr_…) in a text with the users' names. */
export function withNames(text: string, name: (id: string) => string): string {
  return text.replace(/\busr_[0-9a-z]+\b/g, (id) => name(id));
}

/** What a refused OAuth connection came back with, said by the SPA itself: the code picks one
 * of these fixed messages and any text in the address is ignored (a link can carry anything). */
export function oauthErrorMessage(code: string, provider: string | null): string {
  const who = provider ?? "The provider";
  const messages: Record<string, string> = {
    "oauth.denied": `${who} did not grant access; nothing was created. Connect again and choose Allow.`,
    "oauth.exchange_failed": `${who} refused the authorization code; nothing was created. Connect again; if it keeps failing, an administrator should check Switchyard's ${who} app settings.`,
    "oauth.state_expired": "The connection took longer than 10 minutes; nothing was created. Connect again.",
    "oauth.state_mismatch": "The connection was started in another browser or tab; nothing was created. Connect again from here.",
    "oauth.invalid_state": "The answer did not come from a connection started in Switchyard; nothing was created. Connect again.",
    "oauth.invalid_code": `${who} sent no authorization code; nothing was created. Connect again.`,
    "oauth.not_configured": `Switchyard is not set up to connect with ${who} yet; an administrator must add its OAuth app.`,
    "oauth.provider_not_found": "This provider cannot be connected with OAuth; nothing was created.",
  };
  return messages[code] ?? "The connection failed; nothing was created. Connect again.";
}

/** Any value in words, never JSON: lists joined, mappings as "from → to", booleans yes/no. */
export function valueWords(value: unknown): string {
  if (value === null || value === undefined || value === "") return "—";
  if (Array.isArray(value)) return value.map(valueWords).join(", ");
  if (typeof value === "boolean") return value ? "yes" : "no";
  if (typeof value === "object") {
    const f = filterWords(value);
    if (f) return f;
    return Object.entries(value as Record<string, unknown>).map(([k, v]) => `${k} → ${valueWords(v)}`).join("; ");
  }
  return String(value);
}

const OP_WORDS: Record<string, string> = {
  equals: "is", not_equals: "is not", in: "is one of", contains: "contains", gt: "is more than", gte: "is at least",
  lt: "is less than", lte: "is at most", exists: "has a value", not_exists: "has no value",
};

/** An audience filter as a sentence: `plan is pro and (country is FR or country is DE)`;
 * "" when the value is not a filter. */
export function filterWords(filter: unknown, nested = false): string {
  if (!filter || typeof filter !== "object" || Array.isArray(filter)) return "";
  const f = filter as Record<string, unknown>;
  const mode = "all" in f ? "all" : "any" in f ? "any" : null;
  if (!mode || !Array.isArray(f[mode])) return "";
  const parts = (f[mode] as unknown[]).map((n) => {
    const c = (n ?? {}) as Record<string, unknown>;
    if ("all" in c || "any" in c) return filterWords(c, true);
    const value = "value" in c ? ` ${Array.isArray(c.value) ? c.value.map(String).join(", ") : String(c.value)}` : "";
    return `${String(c.field)} ${OP_WORDS[String(c.op)] ?? String(c.op)}${value}`;
  });
  if (parts.length === 0) return mode === "all" ? "every profile" : "no profile";
  const text = parts.join(mode === "all" ? " and " : " or ");
  return nested && parts.length > 1 ? `(${text})` : text;
}

/** Why records were omitted, in words: "unchanged: 200, missing identifier: 1". */
export function omittedWords(reasons: Record<string, number>): string {
  return Object.entries(reasons).filter(([, n]) => n > 0).map(([k, n]) => `${k.replace(/_/g, " ")}: ${n}`).join(", ");
}
