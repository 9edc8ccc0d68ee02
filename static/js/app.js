// Behaviour shared by every page. No inline scripts: the Content-Security-Policy forbids them.
(function () {
  "use strict";

  // One submission per form: a double click must not create two records.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (form.dataset.submitted === "1") {
      event.preventDefault();
      return;
    }
    var message = form.getAttribute("data-confirm");
    if (message && !window.confirm(message)) {
      event.preventDefault();
      return;
    }
    form.dataset.submitted = "1";
    form.querySelectorAll("button[type=submit]").forEach(function (button) {
      button.disabled = true;
    });
  });

  // Returning with the back button must not leave a form locked.
  window.addEventListener("pageshow", function () {
    document.querySelectorAll("form[data-submitted]").forEach(function (form) {
      delete form.dataset.submitted;
      form.querySelectorAll("button[type=submit]").forEach(function (b) { b.disabled = false; });
    });
  });
})();

// Beyond-use countdowns: <span class="countdown" data-until="ISO datetime">.
(function () {
  "use strict";
  function render(node) {
    var until = Date.parse(node.getAttribute("data-until"));
    if (isNaN(until)) { return; }
    var minutes = Math.floor((until - Date.now()) / 60000);
    if (minutes <= 0) {
      node.textContent = "(expired)";
      node.classList.add("text-danger");
      return;
    }
    var days = Math.floor(minutes / 1440), hours = Math.floor((minutes % 1440) / 60);
    node.textContent = "(" + (days ? days + " d " : "") + hours + " h " + (minutes % 60) + " min left)";
  }
  function tick() { document.querySelectorAll(".countdown[data-until]").forEach(render); }
  tick();
  window.setInterval(tick, 30000);
})();

// Scan-to-confirm fields at the bench: say at once whether the scanned container is the right one.
(function () {
  "use strict";
  document.querySelectorAll("input.scan-confirm[data-expected]").forEach(function (input) {
    function check() {
      var value = input.value.trim().toUpperCase();
      input.classList.remove("is-valid", "is-invalid");
      // Our lot codes are checked here at once; a supplier's GS1 barcode is checked on saving.
      if (!/^L\d{6}$/.test(value)) { return; }
      input.classList.add(value === input.getAttribute("data-expected") ? "is-valid" : "is-invalid");
    }
    input.addEventListener("input", check);
    input.addEventListener("keydown", function (event) {
      // A keyboard-wedge scanner ends with Enter: confirm the row instead of submitting the form.
      if (event.key === "Enter") { event.preventDefault(); check(); }
    });
    check();
  });
})();

// Label pages: the Print button opens the print dialog; a label whose text overflows is flagged first.
(function () {
  "use strict";
  var button = document.getElementById("print-button");
  if (!button) { return; }
  button.addEventListener("click", function () { window.print(); });
  var overflowing = Array.prototype.filter.call(document.querySelectorAll(".label"), function (label) {
    return label.scrollHeight > label.clientHeight + 1 || label.scrollWidth > label.clientWidth + 1;
  });
  overflowing.forEach(function (label) { label.classList.add("label-overflow"); });
  var warning = document.getElementById("label-overflow-warning");
  if (warning && overflowing.length) { warning.classList.remove("d-none"); }
})();

// "/" brings the scan field back from anywhere (or opens the scan station).
(function () {
  "use strict";
  document.addEventListener("keydown", function (event) {
    if (event.key !== "/" || event.ctrlKey || event.metaKey || event.altKey) { return; }
    var target = event.target;
    if (target && (target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName))) { return; }
    var field = document.querySelector(".scan-field");
    event.preventDefault();
    if (field) {
      field.focus();
      field.select();
    } else if (document.body.dataset.scanUrl) {
      window.location.href = document.body.dataset.scanUrl;
    }
  });
})();

// Treatment sessions: a keyboard-wedge scanner ends the batch code with Enter. In a field
// marked data-scan-next that Enter must not submit the form: focus moves to the named field.
(function () {
  "use strict";
  document.addEventListener("keydown", function (event) {
    var input = event.target;
    if (event.key !== "Enter" || !input.matches || !input.matches("input[data-scan-next]")) { return; }
    event.preventDefault();
    input.value = input.value.trim().toUpperCase();
    var next = document.getElementById(input.getAttribute("data-scan-next"));
    if (next) { next.focus(); next.select(); }
  });
})();

// Workbook downloads (forms marked data-download): the server builds the file before it
// arrives, which can take a while. Show "Preparing the workbook…" on the button until the
// response sets the cookie named after this submission's token, then restore the form.
(function () {
  "use strict";
  document.querySelectorAll("form[data-download]").forEach(function (form) {
    var button = form.querySelector("button[type=submit]");
    var tokenField = form.querySelector("input[name=download_token]");
    if (!button || !tokenField) { return; }
    function show(busy) {
      form.querySelectorAll(".download-idle").forEach(function (n) { n.classList.toggle("d-none", busy); });
      form.querySelectorAll(".download-busy").forEach(function (n) { n.classList.toggle("d-none", !busy); });
      button.setAttribute("aria-busy", busy ? "true" : "false");
    }
    form.addEventListener("submit", function () {
      var token = Date.now().toString(36) + Math.random().toString(36).slice(2, 10);
      tokenField.value = token;
      show(true);
      var started = Date.now();
      var timer = window.setInterval(function () {
        var arrived = document.cookie.split("; ").indexOf("download_token=" + token) !== -1;
        // After ten minutes give the form back anyway (a proxy may have dropped the cookie).
        if (!arrived && Date.now() - started < 600000) { return; }
        window.clearInterval(timer);
        document.cookie = "download_token=; Max-Age=0; path=/; SameSite=Lax";
        show(false);
        delete form.dataset.submitted;
        button.disabled = false;
      }, 500);
    });
  });
})();
