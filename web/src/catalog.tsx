// The catalog: every provider, what its job types do and how it is authorized, outside the wizard.
import { api } from "./api";
import { loadCatalog } from "./session";
import { ErrorBox, ProviderMark, useLoad } from "./ui";
import { methodName, plainDescription } from "./words";

export function CatalogPage() {
  const catalog = useLoad(() => loadCatalog(api.providers), []);
  const providers = catalog.data ?? [];
  return (
    <section class="catalog">
      <h1>Catalog</h1>
      <p class="muted">The providers Switchyard connects to, their job types and how each is authorized.</p>
      <ErrorBox error={catalog.error} />
      {!catalog.data && !catalog.error && <p class="loading">Loading…</p>}
      <div class="tiles">
        {providers.map((p) => (
          <article key={p.id} class="tile static" aria-labelledby={`cat-${p.id}`} data-testid="catalog-provider">
            <h2 id={`cat-${p.id}`}><ProviderMark id={p.id} name={p.name} /></h2>
            <p class="small">{plainDescription(p.description)}</p>
            <h3>Job types</h3>
            <ul class="plain">{p.workflows.map((w) => (
              <li key={w.id}><strong>{w.name}</strong> <span class="chip">{w.job_type}</span>
                <div class="muted small">{plainDescription(w.description)}</div>
                <div class="muted small">Authorized by: {w.auth_methods.map((m) => methodName(providers, p.id, m)).join(", ")}</div></li>))}
            </ul>
            <h3>Authorization methods</h3>
            <ul class="plain">{p.auth_methods.map((m) => (
              <li key={m.id}><strong>{m.name}</strong> <span class="muted small">{plainDescription(m.description)}</span></li>))}
            </ul>
            <p><a class="button" href="#/jobs/new">Create a job</a></p>
          </article>))}
      </div>
    </section>
  );
}
