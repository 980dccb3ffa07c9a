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
/**
 * Owner ids → names. Admins can list the account's users; for the others only their own id
 * resolves ("you") and other owners stay ids (GET /users is admin-only).
 */
export function useOwnerName(): (id: string) => string {
  const me = useMe();
  const [map, setMap] = useState<Map<string, string> | null>(null);
  useEffect(() => {
    if (me.role !== "admin") return;
    if (!names) names = api.users().then((p) => new Map(p.data.map((u) => [u.id, u.name || u.email])), () => { names = null; return new Map(); });
    let live = true;
    void names.then((m) => { if (live) setMap(m); });
    return () => { live = false; };
  }, [me.role]);
  return (id: string) => (id === me.user.id ? `${me.user.name || me.user.email} (you)` : map?.get(id) ?? id);
}
