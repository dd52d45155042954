// Live progress: poll the run's JSON endpoint until the run is over.
(function () {
  "use strict";
  const root = document.getElementById("run");
  if (!root) return;
  const url = root.dataset.progressUrl;
  const $ = (id) => document.getElementById(id);
  const csrf = (document.querySelector("input[name=csrfmiddlewaretoken]") || {}).value || "";

  function duration(seconds) {
    if (seconds === null || seconds === undefined) return "–";
    if (seconds < 60) return `${seconds}s`;
    const m = Math.floor(seconds / 60), s = seconds % 60;
    return m < 60 ? `${m}m ${s}s` : `${Math.floor(m / 60)}h ${m % 60}m`;
  }

  function failedRow(post) {
    const row = document.createElement("tr");
    const id = document.createElement("td");
    id.textContent = post.external_id;
    const error = document.createElement("td");
    error.textContent = post.error;
    const action = document.createElement("td");
    const form = document.createElement("form");
    form.method = "post";
    form.action = root.dataset.progressUrl.replace("progress.json", "retry/");
    form.innerHTML = '<input type="hidden" name="csrfmiddlewaretoken"><input type="hidden" name="post"><button type="submit" class="small secondary">Retry</button>';
    form.elements.csrfmiddlewaretoken.value = csrf;
    form.elements.post.value = post.id;
    action.appendChild(form);
    row.append(id, error, action);
    return row;
  }

  function render(p) {
    root.dataset.status = p.status;
    const status = $("run-status");
    status.textContent = p.status_display;
    status.className = `badge ${p.status}`;
    $("run-bar").firstElementChild.style.width = `${p.percent}%`;
    $("run-bar").setAttribute("aria-valuenow", p.percent);
    $("run-summary").textContent = `${p.posts_done + p.posts_failed} of ${p.posts_total} posts` +
      (p.posts_skipped ? ` · ${p.posts_skipped} skipped` : "");
    $("posts-done").textContent = p.posts_done;
    $("posts-total").textContent = p.posts_total;
    $("photos-fetched").textContent = p.photos_fetched;
    $("fetch-rate").textContent = p.photos_fetched_per_second;
    $("photos-done").textContent = p.photos_done;
    $("rate").textContent = p.photos_per_second;
    $("faces-found").textContent = p.faces_found;
    $("face-rate").textContent = p.faces_per_second;
    $("posts-failed").textContent = p.posts_failed;
    $("search-while").hidden = !p.active;
    $("eta").textContent = p.active ? duration(p.eta_seconds) : "–";
    $("run-waiting").hidden = p.status !== "waiting";
    if (p.resume_at) $("resume-at").textContent = new Date(p.resume_at).toLocaleTimeString();
    $("run-error").hidden = !p.last_error || p.status === "waiting";
    $("run-error").textContent = p.last_error;
    $("run-done").hidden = p.status !== "done";
    $("done-text").textContent = !p.posts_total && p.posts_skipped
      ? `nothing new to index: ${p.posts_skipped} post${p.posts_skipped === 1 ? "" : "s"} skipped, each with its reason below`
      : `${p.faces_found} faces found`;
    const skipped = p.skipped_posts || [];
    $("skipped-section").hidden = skipped.length === 0;
    $("skipped-posts").replaceChildren(...skipped.map((post) => {
      const row = document.createElement("tr");
      [["Post", post.external_id], ["Why", post.error]].forEach(([label, text]) => {
        const cell = document.createElement("td");
        cell.dataset.label = label;
        cell.textContent = text;
        row.appendChild(cell);
      });
      return row;
    }));
    $("cancel-form").hidden = !p.active;
    $("failed-section").hidden = p.failed_posts.length === 0;
    $("failed-posts").replaceChildren(...p.failed_posts.map(failedRow));
  }

  async function poll() {
    try {
      const response = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" });
      if (response.ok) {
        const p = await response.json();
        render(p);
        if (!p.active) return;
      }
    } catch (error) {
      // Network hiccup: try again on the next tick.
    }
    setTimeout(poll, 1000);
  }
  poll();
})();
