// In the treatment room: a scanned vial (or batch) is checked at once against the scan API, so
// an unusable vial is refused on the spot, with its reasons, before anything is saved; a usable
// one fills its row with its batch and what it holds.
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

  // What the row holds once its code is read: the vial, its batch, the formula and the volume in it.
  function describe(answer) {
    var parts = [];
    if (answer.kind === "vial") {
      parts.push("Vial " + answer.code, "batch " + answer.batch_code);
      if (answer.formula) { parts.push(answer.formula); }
      var held = answer.remaining_ml || answer.remaining_volume_ml;
      if (held) { parts.push(held + " mL in the vial"); }
      if (answer.dose) { parts.push(answer.dose + "-dose"); }
    } else {
      parts.push(answer.formula, answer.remaining_volume_ml + " mL left in the batch (the next vial is taken)");
    }
    return parts.join(" · ");
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
        if (answer.kind !== "batch" && answer.kind !== "vial") {
          input.classList.add("is-invalid");
          box.classList.add("text-danger");
          box.textContent = "Not one of our vial or batch codes.";
        } else if (!answer.usable) {
          input.classList.add("is-invalid");
          box.classList.add("text-danger");
          box.textContent = (answer.kind === "vial" ? "Vial " + answer.code + " of batch " + answer.batch_code + ". " : "")
            + "Do not use: " + (answer.reasons || []).join("; ") + ".";
        } else {
          input.classList.add("is-valid");
          box.classList.add("text-success");
          box.textContent = describe(answer);
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
