// A sync run's page (templates/sync/run_detail.html): follows an active run until it ends.
(function () {
  const box = document.getElementById("run");
  if (!box || box.dataset.active !== "1") return;
  const labels = {queued: "Queued", running: "Running", succeeded: "Succeeded", failed: "Failed", partial: "Partially succeeded"};
  async function poll() {
    const resp = await fetch(box.dataset.url, {credentials: "same-origin", headers: {Accept: "application/json"}});
    if (!resp.ok) { setTimeout(poll, 3000); return; }
    const run = await resp.json();
    document.getElementById("run-status").textContent = labels[run.status] || run.status;
    for (const k of ["fetched", "created", "updated", "unchanged", "skipped", "requests_used"]) {
      document.getElementById("c-" + k).textContent = run[k];
    }
    const err = document.getElementById("run-error");
    const plain = run.error_text || "";
    err.hidden = !plain; err.textContent = plain;
    const skipped = document.getElementById("run-skipped");
    skipped.innerHTML = "";
    for (const [reason, n] of Object.entries(run.skipped_reasons || {})) {
      const li = document.createElement("li"); li.textContent = `${n} × ${reason}`; skipped.appendChild(li);
    }
    if (run.status === "queued" || run.status === "running") setTimeout(poll, 1500);
    else box.dataset.active = "0";
  }
  setTimeout(poll, 1000);
})();
