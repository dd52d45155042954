// Photo viewer: a photo of the results opens large in a dialog; arrow keys,
// swipes and the buttons move through the page's results, Escape closes.
// Without JavaScript the same links open the photo's own page.
(function () {
  "use strict";
  const links = () => Array.from(document.querySelectorAll("a[data-viewer]"));
  if (!links().length || typeof HTMLDialogElement === "undefined") return;

  const dialog = document.createElement("dialog");
  dialog.className = "lightbox";
  dialog.id = "lightbox";
  dialog.setAttribute("aria-label", "Photo viewer");
  dialog.innerHTML =
    '<div class="viewer-nav">' +
    '<button type="button" class="secondary small" data-step="-1" id="lightbox-prev" aria-label="Previous photo">← Previous</button>' +
    '<span class="muted small" id="lightbox-count" aria-live="polite"></span>' +
    '<span><button type="button" class="secondary small" data-step="1" id="lightbox-next" aria-label="Next photo">Next →</button> ' +
    '<button type="button" class="small" id="lightbox-close">Close</button></span></div>' +
    '<div id="lightbox-body"></div>';
  document.body.appendChild(dialog);
  const body = dialog.querySelector("#lightbox-body");
  const count = dialog.querySelector("#lightbox-count");
  const prev = dialog.querySelector("#lightbox-prev"), next = dialog.querySelector("#lightbox-next");
  let index = -1, opener = null, loading = 0;

  async function show(i) {
    const all = links();
    if (i < 0 || i >= all.length) return;
    index = i;
    const href = all[i].getAttribute("href");
    count.textContent = `Photo ${i + 1} of ${all.length}`;
    prev.disabled = i === 0;
    next.disabled = i === all.length - 1;
    dialog.dataset.photoId = all[i].dataset.photoId || "";
    const ticket = ++loading;
    try {
      const response = await fetch(`${href}?fragment=1`, { credentials: "same-origin" });
      if (ticket !== loading) return;
      body.innerHTML = response.ok ? await response.text() : '<p class="alert">This photo could not be opened.</p>';
    } catch (error) {
      if (ticket === loading) body.innerHTML = '<p class="alert">This photo could not be opened: the server could not be reached.</p>';
    }
    if (ticket === loading) dialog.dataset.loaded = dialog.dataset.photoId;
  }

  function step(delta) { show(index + delta); }

  document.addEventListener("click", (event) => {
    const link = event.target.closest("a[data-viewer]");
    if (!link || event.metaKey || event.ctrlKey || event.shiftKey || event.button !== 0) return;
    event.preventDefault();
    opener = link;
    if (!dialog.open) dialog.showModal();
    show(links().indexOf(link));
    dialog.querySelector("#lightbox-close").focus();
  });
  dialog.querySelectorAll("[data-step]").forEach((b) => b.addEventListener("click", () => step(Number(b.dataset.step))));
  dialog.querySelector("#lightbox-close").addEventListener("click", () => dialog.close());
  dialog.addEventListener("keydown", (event) => {
    if (event.key === "ArrowRight") { event.preventDefault(); step(1); }
    else if (event.key === "ArrowLeft") { event.preventDefault(); step(-1); }
  });
  dialog.addEventListener("close", () => {
    body.replaceChildren();
    delete dialog.dataset.loaded;
    const all = links();
    (all[index] || opener || document.body).focus();
  });
  dialog.addEventListener("click", (event) => { if (event.target === dialog) dialog.close(); });

  // Swipe left/right on touch screens.
  let startX = null, startY = null;
  dialog.addEventListener("touchstart", (e) => { startX = e.touches[0].clientX; startY = e.touches[0].clientY; }, { passive: true });
  dialog.addEventListener("touchend", (e) => {
    if (startX === null) return;
    const dx = e.changedTouches[0].clientX - startX, dy = e.changedTouches[0].clientY - startY;
    if (Math.abs(dx) > 50 && Math.abs(dx) > Math.abs(dy) * 1.5) step(dx < 0 ? 1 : -1);
    startX = null;
  });
})();
