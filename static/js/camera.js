// Selfie search: live preview, capture, retake, and upload of the captured frame.
(function () {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const video = $("camera-video"), shot = $("camera-shot"), idle = $("camera-idle");
  const start = $("camera-start"), capture = $("camera-capture"), retake = $("camera-retake"), send = $("camera-search");
  const errorBox = $("camera-error");
  const form = $("upload-search");
  let stream = null, blob = null;

  function showError(message) {
    errorBox.textContent = message;
    errorBox.hidden = !message;
  }

  function explain(error) {
    switch (error && error.name) {
      case "NotAllowedError":
      case "SecurityError":
        return "Camera permission was denied. Allow the camera for this site in your browser settings, or upload a photo instead.";
      case "NotFoundError":
      case "OverconstrainedError":
        return "No camera was found on this device. You can upload a photo instead.";
      case "NotReadableError":
        return "The camera is in use by another app. Close it and try again.";
      default:
        return "The camera could not be started. You can upload a photo instead.";
    }
  }

  async function startCamera() {
    showError("");
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      showError("This browser cannot use the camera here (it needs HTTPS). Upload a photo instead.");
      return;
    }
    start.disabled = true;
    try {
      stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: "user", width: { ideal: 1280 }, height: { ideal: 720 } }, audio: false });
    } catch (error) {
      start.disabled = false;
      showError(explain(error));
      return;
    }
    video.srcObject = stream;
    await video.play();
    idle.hidden = true;
    shot.hidden = true;
    video.hidden = false;
    start.hidden = true;
    capture.hidden = false;
    capture.disabled = false;
    document.body.dataset.camera = "ready";
  }

  function stopCamera() {
    if (stream) stream.getTracks().forEach((track) => track.stop());
    stream = null;
  }

  function takeSelfie() {
    const canvas = document.createElement("canvas");
    canvas.width = video.videoWidth;
    canvas.height = video.videoHeight;
    canvas.getContext("2d").drawImage(video, 0, 0);
    canvas.toBlob((result) => {
      blob = result;
      shot.src = URL.createObjectURL(blob);
      shot.hidden = false;
      video.hidden = true;
      capture.hidden = true;
      retake.hidden = false;
      send.hidden = false;
      stopCamera();
    }, "image/jpeg", 0.92);
  }

  async function searchSelfie() {
    if (!blob) return;
    send.disabled = true;
    send.textContent = "Searching…";
    const data = new FormData();
    data.append("image", blob, "selfie.jpg");
    data.append("csrfmiddlewaretoken", form.elements.csrfmiddlewaretoken.value);
    data.append("threshold", form.elements.threshold.value);
    try {
      const response = await fetch(form.action || window.location.pathname, {
        method: "POST", body: data, headers: { Accept: "application/json" }, credentials: "same-origin",
      });
      const answer = await response.json();
      if (answer.redirect) {
        window.location.assign(answer.redirect);
        return;
      }
      showError(answer.error || "The search failed. Please try again.");
    } catch (error) {
      showError("The search failed: the server could not be reached.");
    }
    send.disabled = false;
    send.textContent = "Search with this selfie";
  }

  start.addEventListener("click", startCamera);
  capture.addEventListener("click", takeSelfie);
  retake.addEventListener("click", () => { retake.hidden = true; send.hidden = true; startCamera(); });
  send.addEventListener("click", searchSelfie);

  // Upload: drag and drop fills the file input. A file over the limit is refused
  // here, before it is sent: the server would cut such a body off unread.
  const zone = $("search-dropzone"), input = $("search-file"), label = $("search-file-name");
  const sizeError = $("search-file-error");
  const maxBytes = Number(input.dataset.maxBytes || 0);
  function checkSize() {
    const file = input.files[0];
    label.textContent = file ? ` — ${file.name}` : "";
    const tooLarge = Boolean(file && maxBytes && file.size > maxBytes);
    sizeError.textContent = tooLarge
      ? `This photo is too large (${(file.size / 1048576).toFixed(1)} MB; the limit is ${Math.floor(maxBytes / 1048576)} MB). Choose a smaller photo.`
      : "";
    sizeError.hidden = !tooLarge;
    input.setAttribute("aria-invalid", tooLarge ? "true" : "false");
    return !tooLarge;
  }
  input.addEventListener("change", checkSize);
  form.addEventListener("submit", (event) => { if (!checkSize()) { event.preventDefault(); input.focus(); } });
  ["dragenter", "dragover"].forEach((t) => zone.addEventListener(t, (e) => { e.preventDefault(); zone.classList.add("over"); }));
  ["dragleave", "drop"].forEach((t) => zone.addEventListener(t, () => zone.classList.remove("over")));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    if (e.dataTransfer && e.dataTransfer.files.length) {
      input.files = e.dataTransfer.files;
      checkSize();
    }
  });
})();
