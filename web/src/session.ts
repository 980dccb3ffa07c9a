import { createContext } from "preact";
import { useContext } from "preact/hooks";
import type { Me, Provider } from "./api";

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
