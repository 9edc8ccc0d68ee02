// In the treatment room: a scanned batch is checked at once against the scan API, so an
// unusable vial is refused on the spot, with its reasons, before anything is saved.
// The server checks again when the session is saved; this only spares a wasted injection.
(function () {
  "use strict";
  var api = document.body.getAttribute("data-scan-api");
  if (!api || !window.fetch) { return; }

  function feedback(input) {
    var box = input.parentElement.querySelector(".scan-check");
    if (!box) {
      box = document.createElement("div");
      box.className = "scan-check small mt-1";
      box.setAttribute("role", "status");
      input.parentElement.appendChild(box);
    }
    return box;
  }

  function check(input) {
    var code = input.value.trim();
    var box = feedback(input);
    if (!code) { box.textContent = ""; input.classList.remove("is-valid", "is-invalid"); return; }
    fetch(api + "?code=" + encodeURIComponent(code), {credentials: "same-origin", headers: {Accept: "application/json"}})
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (answer) {
        if (!answer || input.value.trim() !== code) { return; }
        input.classList.remove("is-valid", "is-invalid");
        box.classList.remove("text-danger", "text-success");
        if (answer.kind !== "batch") {
          input.classList.add("is-invalid");
          box.classList.add("text-danger");
          box.textContent = "Not one of our batch codes.";
        } else if (!answer.usable) {
          input.classList.add("is-invalid");
          box.classList.add("text-danger");
          box.textContent = "Do not use: " + answer.reasons.join("; ") + ".";
        } else {
          input.classList.add("is-valid");
          box.classList.add("text-success");
          box.textContent = answer.formula + " · " + answer.remaining_volume_ml + " mL left";
        }
      })
      .catch(function () { box.textContent = ""; });
  }

  document.querySelectorAll("input.batch-scan").forEach(function (input) {
    input.addEventListener("change", function () { check(input); });
    input.addEventListener("keydown", function (event) { if (event.key === "Enter") { check(input); } });
    if (input.value.trim()) { check(input); }
  });
})();
