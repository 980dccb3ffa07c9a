// A collection job's own figures: when data last arrived and what the endpoint made of it
// (GET /jobs/{id} `collection`), refreshed while the page is open: data is pushed, any time.
import { useEffect, useState } from "preact/hooks";
import { api, type CollectionTotals, type JobSummary } from "./api";
import { fmtTime } from "./ui";
import { trackingHost } from "./writeKey";

const REFRESH_MS = 5000;

export function CollectionPanel({ job }: { job: JobSummary }) {
  // Actions answer with the job without these figures: keep the last ones seen.
  const [totals, setTotals] = useState<CollectionTotals | null>(job.collection ?? null);
  useEffect(() => { if (job.collection) setTotals(job.collection); }, [job.collection]);
  const collecting = totals !== null;
  useEffect(() => {
    if (!collecting) return;
    const t = setInterval(() => { api.job(job.id).then((j) => { if (j.collection) setTotals(j.collection); }, () => undefined); }, REFRESH_MS);
    return () => clearInterval(t);
  }, [job.id, collecting]);
  if (!totals) return null;
  return (
    <section class="panel" aria-labelledby="coll-h" data-testid="collection">
      <h2 id="coll-h">Collected data</h2>
      <dl class="meta">
        <dt>Data last arrived</dt>
        <dd data-testid="last-arrived">{totals.last_received_at ? fmtTime(totals.last_received_at)
          : <>Nothing yet: send events to <code>{trackingHost()}/v1/batch</code> with the write key.</>}</dd>
        <dt>Accepted</dt><dd data-testid="accepted">{totals.accepted.toLocaleString()}</dd>
        <dt>Duplicates</dt><dd data-testid="duplicates">{totals.duplicates.toLocaleString()}</dd>
        <dt>Rejected</dt><dd data-testid="rejected">{totals.rejected.toLocaleString()}</dd>
      </dl>
      <p class="muted small">Messages since the job was created, counted when they reach profiles (seconds after the
        endpoint answers). Rejected ones are listed by reason in the run history's omitted counts.</p>
    </section>
  );
}
