// Manual syncs on Preferences (templates/sync/preferences.html).
(function () {
  const box = document.getElementById("manual-syncs");
  if (!box || !box.querySelector("button[data-url]")) return;
  // Small polling loop: start runs through the API, then read /api/v1/sync/status/ until the
  // started run is finished. No page reload; times come from the server, in the partner's zone.
  const csrf = box.querySelector("input[name=csrfmiddlewaretoken]").value;
  let fetchedAt = Date.now();
  let status = null;
  let timer = null;
  let wasActive = false;

  function waitText(seconds) {
    const minutes = Math.max(1, Math.ceil(seconds / 60));
    if (minutes <= 60) return `in ${minutes} min`;
    const h = Math.floor(minutes / 60), m = minutes % 60;
    return m ? `in ${h} h ${m} min` : `in ${h} h`;
  }

  function renderRun(kind, run) {
    const el = document.getElementById("run-" + kind);
    if (!run) { el.hidden = true; return; }
    el.hidden = false;
    el.querySelector(".run-status").textContent = run.status_display;
    let phase = "";
    if (run.status === "queued") phase = run.waiting_for ? `waiting for the ${run.waiting_for} to finish` : "waiting for a worker";
    else if (run.status === "running") phase = run.phase ? `(${run.phase.replace(/_/g, " ")})` : "";
    el.querySelector(".run-phase").textContent = phase;
    el.querySelector(".run-counts").textContent =
      `Fetched ${run.fetched} · New ${run.created} · Updated ${run.updated} · Unchanged ${run.unchanged} · Skipped ${run.skipped} · Failed ${run.failed}`;
    const result = el.querySelector(".run-result");
    result.textContent = "";
    const link = document.createElement("a");
    link.className = "run-link";
    link.href = run.page_url;
    const active = run.status === "queued" || run.status === "running";
    link.textContent = active ? `Follow run #${run.id}` :
      `See what changed (run #${run.id}: ${run.created} new, ${run.changes} field change${run.changes === 1 ? "" : "s"})`;
    result.appendChild(link);
    const err = el.querySelector(".run-error");
    err.hidden = !run.error_text;
    err.textContent = run.error_text || "";
  }

  function renderAvailability() {
    if (!status || !status.actions) return;
    const elapsed = (Date.now() - fetchedAt) / 1000;
    let expired = false;
    for (const action of Object.values(status.actions)) {
      const button = document.getElementById("fetch-" + action.kind);
      const note = document.getElementById("note-" + action.kind);
      const left = action.wait_seconds - elapsed;
      if (action.available) { button.disabled = false; note.textContent = ""; continue; }
      if (left <= 0) { expired = true; continue; }
      button.disabled = true;
      // The server's wording ("available tomorrow at 01:18 CET (in 7 h)"), counted down here.
      note.textContent = action.available_text.replace(/\(in [^)]*\)$/, `(${waitText(left)})`);
    }
    return expired;
  }

  function anyActive() {
    return Object.values(status.actions).some(a => a.last_run && (a.last_run.status === "queued" || a.last_run.status === "running"));
  }

  async function refresh() {
    clearTimeout(timer);
    let resp;
    try {
      resp = await fetch(box.dataset.statusUrl, {credentials: "same-origin", headers: {Accept: "application/json"}});
    } catch (e) { timer = setTimeout(refresh, 3000); return; }
    if (!resp.ok) { timer = setTimeout(refresh, 3000); return; }
    status = await resp.json();
    fetchedAt = Date.now();
    if (!status.actions) return;
    for (const action of Object.values(status.actions)) renderRun(action.kind, action.last_run);
    const current = document.getElementById("current-run");
    const cur = status.current_run;
    const other = cur && cur.status === "running" && cur.trigger !== "manual";
    current.hidden = !other;
    current.textContent = other ? `A ${cur.description} is running now; a manual sync started meanwhile waits for it to finish.` : "";
    renderAvailability();
    const active = anyActive();
    if (wasActive && !active) refreshTable();
    wasActive = active;
    timer = setTimeout(tick, active ? 1500 : 30000);
  }

  async function refreshTable() {
    // The recent-runs table as the server renders it, swapped in place (no page reload).
    const resp = await fetch(location.pathname, {credentials: "same-origin"});
    if (!resp.ok) return;
    const doc = new DOMParser().parseFromString(await resp.text(), "text/html");
    const fresh = doc.querySelector("#recent-runs tbody");
    if (fresh) document.querySelector("#recent-runs tbody").replaceWith(fresh);
  }

  function tick() {
    if (anyActive() || renderAvailability()) refresh();
    else timer = setTimeout(tick, 30000);
  }

  async function start(button) {
    const kind = button.id.replace("fetch-", "");
    const err = document.getElementById("start-error-" + kind);
    err.hidden = true;
    button.disabled = true;
    const resp = await fetch(button.dataset.url, {
      method: "POST", credentials: "same-origin",
      headers: {Accept: "application/json", "X-CSRFToken": csrf},
    });
    if (resp.status !== 202) {
      let body = {};
      try { body = await resp.json(); } catch (e) { /* not JSON */ }
      err.textContent = body.detail || `Could not start the sync (HTTP ${resp.status}).`;
      err.hidden = false;
    } else {
      refreshTable();
    }
    await refresh();
  }

  for (const button of box.querySelectorAll("button[data-url]")) {
    button.addEventListener("click", () => start(button));
  }
  refresh();
})();
