import { BarController, BarElement, CategoryScale, Chart, Legend, LinearScale, Tooltip } from "chart.js";
import { useEffect, useRef } from "preact/hooks";

Chart.register(BarController, BarElement, CategoryScale, LinearScale, Legend, Tooltip);

export interface Series { label: string; color: string; values: number[] }

/** A period's start in UTC, as the API buckets it (hours, days, weeks from Monday). */
function period(iso: string, granularity: string): string {
  const day = iso.slice(0, 10);
  if (granularity === "hour") return `${day} ${iso.slice(11, 16)} UTC`;
  return granularity === "week" ? `week of ${day}` : day;
}

const PERIOD_HEADER: Record<string, string> = { hour: "Hour (UTC)", day: "Day (UTC)", week: "Week (from Monday, UTC)" };

function tick(iso: string, granularity: string): string {
  const d = new Date(iso);
  if (granularity === "hour") return d.toLocaleString(undefined, { month: "short", day: "numeric", hour: "2-digit" });
  return d.toLocaleDateString(undefined, { month: "short", day: "numeric" });
}

/** A stacked bar chart; the data table under it ("Show the numbers") carries the same
 * numbers for screen readers and keyboard users (periods without activity left out). */
export function BarChart({ starts, series, granularity, title }: { starts: string[]; series: Series[]; granularity: string; title: string }) {
  const canvas = useRef<HTMLCanvasElement>(null);
  const chart = useRef<Chart | null>(null);
  useEffect(() => {
    if (!canvas.current) return;
    const labels = starts.map((s) => tick(s, granularity));
    const datasets = series.map((s) => ({ label: s.label, data: s.values, backgroundColor: s.color }));
    if (chart.current) {
      chart.current.data.labels = labels;
      chart.current.data.datasets = datasets;
      chart.current.update();
    } else {
      chart.current = new Chart(canvas.current, {
        type: "bar",
        data: { labels, datasets },
        options: {
          animation: false, responsive: true, maintainAspectRatio: false,
          scales: { x: { stacked: true, ticks: { maxTicksLimit: 12 } }, y: { stacked: true, beginAtZero: true, ticks: { precision: 0 } } },
          plugins: { legend: { position: "bottom" } },
        },
      });
    }
  }, [starts, series, granularity]);
  useEffect(() => () => { chart.current?.destroy(); chart.current = null; }, []);
  const totals = series.map((s) => s.values.reduce((a, b) => a + b, 0));
  const active = starts.map((_, i) => i).filter((i) => series.some((s) => (s.values[i] ?? 0) !== 0));
  return (
    <figure class="chart">
      <div class="chart-box"><canvas ref={canvas} role="img" aria-label={`${title}: ${series.map((s, i) => `${s.label} ${totals[i]}`).join(", ")}`} /></div>
      <figcaption data-testid="chart-totals">
        {series.map((s, i) => <span key={s.label} class="total"><i style={{ background: s.color }} />{s.label}: <strong>{totals[i]}</strong></span>)}
      </figcaption>
      <details class="chart-data">
        <summary>Show the numbers</summary>
        <table class="data small" data-testid="chart-table">
          <caption>{title}, per {granularity}: {starts.length} {granularity}s, {active.length} with activity</caption>
          <thead><tr><th scope="col">{PERIOD_HEADER[granularity] ?? granularity}</th>{series.map((s) => <th key={s.label} scope="col">{s.label}</th>)}</tr></thead>
          <tbody>{active.map((i) => <tr key={starts[i]}><th scope="row">{period(starts[i]!, granularity)}</th>
            {series.map((s) => <td key={s.label} class="num">{s.values[i]}</td>)}</tr>)}</tbody>
        </table>
      </details>
    </figure>
  );
}
