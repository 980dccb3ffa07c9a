import { BarController, BarElement, CategoryScale, Chart, Legend, LinearScale, Tooltip } from "chart.js";
import { useEffect, useRef } from "preact/hooks";

Chart.register(BarController, BarElement, CategoryScale, LinearScale, Legend, Tooltip);

export interface Series { label: string; color: string; values: number[] }

function tick(iso: string, granularity: string): string {
  const d = new Date(iso);
  if (granularity === "hour") return d.toLocaleString(undefined, { month: "short", day: "numeric", hour: "2-digit" });
  return d.toLocaleDateString(undefined, { month: "short", day: "numeric" });
}

/** A stacked bar chart; the table below it carries the same numbers for screen readers. */
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
  return (
    <figure class="chart">
      <div class="chart-box"><canvas ref={canvas} role="img" aria-label={`${title}: ${series.map((s, i) => `${s.label} ${totals[i]}`).join(", ")}`} /></div>
      <figcaption data-testid="chart-totals">
        {series.map((s, i) => <span key={s.label} class="total"><i style={{ background: s.color }} />{s.label}: <strong>{totals[i]}</strong></span>)}
      </figcaption>
    </figure>
  );
}
