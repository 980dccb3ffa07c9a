// The placeholder page's script: a file, not inline, so the Content-Security-Policy allows it.
const form = document.getElementById("f");
const out = document.getElementById("out");
const token = document.getElementById("token");
token.value = sessionStorage.getItem("switchyard-token") || "";
form.addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const what = ev.submitter ? ev.submitter.value : "jobs";
  sessionStorage.setItem("switchyard-token", token.value.trim());
  out.textContent = "GET /api/v1/" + what + " …";
  try {
    const r = await fetch("/api/v1/" + what, { headers: { Authorization: "Bearer " + token.value.trim() } });
    const text = await r.text();
    let shown = text;
    try { shown = JSON.stringify(JSON.parse(text), null, 2); } catch (e) { /* not JSON */ }
    out.textContent = r.status + " " + r.statusText + "\n" + shown;
  } catch (e) {
    out.textContent = "request failed: " + e;
  }
});
