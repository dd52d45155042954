// Show the threshold value while the slider moves; submit when it is released.
(function () {
  "use strict";
  const slider = document.getElementById("threshold");
  if (!slider) return;
  const output = document.getElementById("threshold-value");
  slider.addEventListener("input", () => { output.textContent = slider.value; });
  slider.addEventListener("change", () => slider.form.submit());
})();
