import { createContext } from "preact";
import { useContext, useEffect, useState } from "preact/hooks";
import { api, type Me, type Provider } from "./api";

export const MeContext = createContext<Me | null>(null);
export function useMe(): Me { return useContext(MeContext)!; }
/** Observers read only: every edit button checks this. */
export function useCanEdit(): boolean { return useMe().role !== "observer"; }

let catalog: Promise<Provider[]> | null = null;
/** The provider catalog, fetched once per page load. */
export function loadCatalog(fetcher: () => Promise<Provider[]>): Promise<Provider[]> {
  if (!catalog) catalog = fetcher().catch((e) => { catalog = null; throw e; });
  return catalog;
}

let names: Promise<Map<string, string>> | null = null;
/** The account's user names (GET /users/names, every role), fetched once per page load. */
export function loadUserNames(): Promise<Map<string, string>> {
  if (!names) names = api.userNames().then((p) => new Map(p.data.map((u) => [u.id, u.name])), () => { names = null; return new Map(); });
  return names;
}

/** After a user was added: the next reader fetches the names again. */
export function forgetUserNames(): void { names = null; }

/** Owner ids → names, for every role; the caller is "(you)". */
export function useOwnerName(): (id: string) => string {
  const me = useMe();
  const [map, setMap] = useState<Map<string, string> | null>(null);
  useEffect(() => {
    let live = true;
    void loadUserNames().then((m) => { if (live) setMap(m); });
    return () => { live = false; };
  }, [me.account.id]);
  return (id: string) => (id === me.user.id ? `${me.user.name || me.user.email} (you)` : map?.get(id) ?? id);
}
