// The write key of an HTTP API authorization, shown once in a modal dialog with what an app
// needs to send events: a curl call and the Segment SDK settings, all pointing at this
// deployment's tracking endpoints (same origin as the dashboard, under /api).
import { useEffect, useRef, useState } from "preact/hooks";

export interface IssuedKey { label: string; key: string }

/** The tracking API's base as the SDKs want it: they append /v1/batch themselves. */
export function trackingHost(origin: string = location.origin): string {
  return `${origin}/api`;
}

export function snippets(key: string, origin: string = location.origin): { id: string; title: string; text: string }[] {
  const host = trackingHost(origin);
  return [
    { id: "curl", title: "curl", text:
`curl -X POST '${host}/v1/track' \\
  -u '${key}:' \\
  -H 'Content-Type: application/json' \\
  -d '{"userId": "user-1", "event": "Signed Up"}'` },
    { id: "python", title: "Python (segment-analytics-python)", text:
`import segment.analytics as analytics

analytics.write_key = "${key}"
analytics.host = "${host}"` },
    { id: "javascript", title: "JavaScript (@segment/analytics-node)", text:
`import { Analytics } from "@segment/analytics-node";

const analytics = new Analytics({
  writeKey: "${key}",
  host: "${origin}",
  path: "/api/v1/batch",
});` },
  ];
}

/** The key inside a snippet in its own element (so screenshots can hide it). */
function withKey(text: string, key: string) {
  return text.split(key).flatMap((part, i) => (i === 0 ? [part] : [<span key={i} class="secret">{key}</span>, part]));
}

function CopyButton({ text, label }: { text: string; label: string }) {
  const [state, setState] = useState<"" | "copied" | "failed">("");
  const copy = async () => {
    try { await navigator.clipboard.writeText(text); setState("copied"); } catch { setState("failed"); }
  };
  return <>
    <button type="button" onClick={copy} aria-label={label}>Copy</button>
    <span role="status" class="muted small">{state === "copied" ? " Copied" : state === "failed" ? " Copy failed: select the text and copy it" : ""}</span>
  </>;
}

export function WriteKeyDialog({ issued, onClose }: { issued: IssuedKey; onClose: () => void }) {
  const ref = useRef<HTMLDialogElement>(null);
  useEffect(() => { ref.current?.showModal(); }, []);
  return (
    <dialog ref={ref} class="write-key" aria-labelledby="wk-title" aria-describedby="wk-once" data-testid="write-key-dialog"
      onCancel={(e) => { e.preventDefault(); onClose(); }}>
      <h2 id="wk-title">Write key for “{issued.label}”</h2>
      <p id="wk-once" class="panel secret-once"><strong>Copy it now: you will not see this key again.</strong> Afterwards
        only its last characters are shown. If it is lost, rotate it on the authorization's page.</p>
      <div class="row">
        <code data-testid="write-key">{issued.key}</code>
        <CopyButton text={issued.key} label="Copy the write key" />
      </div>
      <p class="muted small">Send it as the Basic-auth user name (empty password) to the Segment-compatible endpoints
        under <code>{trackingHost()}/v1/</code> (batch, identify, track, alias). It only feeds a collection job: create one
        with this authorization.</p>
      {snippets(issued.key).map((s) => (
        <section key={s.id} aria-labelledby={`wk-${s.id}`}>
          <div class="row between"><h3 id={`wk-${s.id}`}>{s.title}</h3><CopyButton text={s.text} label={`Copy the ${s.title} snippet`} /></div>
          <pre data-testid={`snippet-${s.id}`} tabIndex={0} aria-labelledby={`wk-${s.id}`}>{withKey(s.text, issued.key)}</pre>
        </section>
      ))}
      <div class="row end"><button type="button" class="primary" onClick={onClose}>I have copied it, close</button></div>
    </dialog>
  );
}
