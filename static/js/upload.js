// Drag-and-drop onto the upload zone fills the form's file input.
(function () {
  "use strict";
  const zone = document.getElementById("dropzone");
  const input = document.getElementById("id_photos");
  const count = document.getElementById("file-count");
  if (!zone || !input) return;
  const maxBytes = Number(input.form.dataset.maxBytes || 0);
  const show = () => {
    const n = input.files.length;
    const large = Array.from(input.files).filter((f) => maxBytes && f.size > maxBytes).length;
    count.textContent = n ? ` — ${n} photo${n === 1 ? "" : "s"} selected` : "";
    if (large) count.textContent += ` (${large} over ${Math.floor(maxBytes / 1048576)} MB will be skipped)`;
  };
  input.addEventListener("change", show);
  show(); // files chosen before this deferred script ran (or restored by the browser)
  ["dragenter", "dragover"].forEach((type) => zone.addEventListener(type, (event) => {
    event.preventDefault();
    zone.classList.add("over");
  }));
  ["dragleave", "drop"].forEach((type) => zone.addEventListener(type, () => zone.classList.remove("over")));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    if (event.dataTransfer && event.dataTransfer.files.length) {
      input.files = event.dataTransfer.files;
      show();
    }
  });
})();
