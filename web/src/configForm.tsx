// What a job's configuration form needs besides its schema, in the wizard and in "Edit
// configuration" alike: live choices read through the authorization ("Load choices") and
// the audience picker; and the configuration said in words on the Review step and job page.
import type { JSX } from "preact";
import { api, type Dict, type JsonSchema, type Option, type Workflow } from "./api";
import { useLoad } from "./ui";
import { fieldLabel, valueWords } from "./words";

/** Config values the options routes take to narrow a field's choices (bucket → prefixes ...). */
const OPTION_PARAMS = ["bucket", "list_id", "account_id", "container_id"];

export interface ConfigSupport {
  options: Record<string, (v: Dict) => Promise<Option[]>>;
  custom: Record<string, (id: string, v: unknown, set: (x: unknown) => void) => JSX.Element>;
  audienceName: (id: string) => string;
}

export function useConfigSupport(provider: string, workflow: Workflow | undefined, authorizationId: string): ConfigSupport {
  const audiences = useLoad(() => api.audiences(), []);
  const list = audiences.data?.data ?? [];
  const options: ConfigSupport["options"] = {};
  for (const f of workflow?.option_fields ?? []) {
    options[f] = (v) => api.options(provider, workflow!.id, f, {
      authorization_id: authorizationId,
      ...Object.fromEntries(OPTION_PARAMS.filter((k) => k !== f && typeof v[k] === "string" && v[k]).map((k) => [k, v[k] as string])),
    });
  }
  const custom: ConfigSupport["custom"] = {
    audience_id: (id, v, set) => (
      <select id={id} value={String(v ?? "")} onChange={(e) => set((e.target as HTMLSelectElement).value)}>
        <option value="">choose an audience…</option>
        {list.map((a) => <option key={a.id} value={a.id}>{a.name}</option>)}
      </select>),
  };
  const audienceName = (id: string) => list.find((a) => a.id === id)?.name ?? (audiences.loading ? "…" : "deleted audience");
  return { options, custom, audienceName };
}

/** The configuration as a list of "title: value in words" (no JSON anywhere). */
export function ConfigSummary({ config, schema, audienceName }: { config: Dict; schema: JsonSchema | undefined; audienceName: (id: string) => string }) {
  const rows = Object.entries(config).filter(([, v]) => v !== "" && v !== null && v !== undefined);
  return <>{rows.map(([k, v]) => [
    <dt key={`${k}-t`}>{schema?.properties?.[k]?.title ?? fieldLabel(k)}</dt>,
    <dd key={`${k}-v`} data-testid={`config-${k}`}>{k === "audience_id" && typeof v === "string" ? audienceName(v) : valueWords(v)}</dd>,
  ])}</>;
}
