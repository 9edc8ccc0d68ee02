// Dispatching a transfer: each code scanned into the scan field ticks its line and joins the
// "Scanned out" list; Dispatch is enabled once every line is ticked. The server checks the list
// again (every line scanned, no stranger in the box).
(function () {
  "use strict";
  var input = document.querySelector("input[data-scan-lines]");
  if (!input) { return; }
  var table = document.querySelector(input.getAttribute("data-scan-lines"));
  var into = document.querySelector(input.getAttribute("data-scan-into"));
  var button = document.querySelector(input.getAttribute("data-scan-button"));
  var status = document.getElementById("scan-out-status");
  var rows = Array.prototype.slice.call(table.querySelectorAll("tr[data-code]"));
  var scanned = {};

  function refresh() {
    var done = rows.filter(function (row) { return scanned[row.getAttribute("data-code")]; }).length;
    into.value = Object.keys(scanned).join("\n");
    button.disabled = done !== rows.length;
    status.textContent = done + " of " + rows.length + " lines scanned";
  }

  function scan(raw) {
    var code = raw.trim().toUpperCase();
    if (!code) { return; }
    var row = rows.filter(function (r) { return r.getAttribute("data-code") === code; })[0];
    if (!row) {
      status.textContent = code + " is not on this transfer: take it out of the box.";
      status.className = "small mb-2 text-danger";
      return;
    }
    scanned[code] = true;
    row.classList.add("table-success");
    row.querySelector(".scan-tick").textContent = "✓ scanned";
    status.className = "small mb-2";
    refresh();
  }

  (into.value || "").split(/\s+/).forEach(function (code) { if (code) { scan(code); } });
  input.addEventListener("keydown", function (event) {
    if (event.key !== "Enter") { return; }
    event.preventDefault();
    scan(input.value);
    input.value = "";
  });
  refresh();
}());
