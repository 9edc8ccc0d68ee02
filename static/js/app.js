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

// Scan-to-confirm fields at the bench: a scanner's Enter does not submit the form half-scanned.
(function () {
  "use strict";
  // The expected code is not on the page: the server checks each scan on saving.
  document.querySelectorAll("input.scan-confirm").forEach(function (input) {
    input.addEventListener("keydown", function (event) {
      // A keyboard-wedge scanner ends with Enter: stay on the row instead of submitting the form.
      if (event.key === "Enter") { event.preventDefault(); }
    });
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

// Camera scanning, where the device has a camera: a "Use camera" button (data-camera-for: the
// scan field's selector) opens it and decodes with the vendored zxing-wasm reader. The decoded
// text goes into the field and ends with Enter, as a keyboard-wedge scanner's would. Without a
// camera API the button stays hidden; any failure (no permission, no decoder) quietly gives the
// keyboard field back.
(function () {
  "use strict";
  var buttons = document.querySelectorAll("button[data-camera-for]");
  var media = navigator.mediaDevices;
  if (!buttons.length || !media || typeof media.getUserMedia !== "function" || !window.WebAssembly) { return; }
  var script = document.currentScript && document.currentScript.src;
  var DECODER = new URL("../vendor/zxing-wasm-3.1.4/zxing-reader.iife.js", script || window.location.href).href;
  var WASM = new URL("../vendor/zxing-wasm-3.1.4/zxing_reader.wasm", script || window.location.href).href;
  var OPTIONS = { formats: ["Code128", "DataMatrix", "QRCode"], tryHarder: true, maxNumberOfSymbols: 1 };
  var decoder = null, running = null, lastField = null;

  function loadDecoder() {
    if (!decoder) {
      decoder = new Promise(function (resolve, reject) {
        if (window.ZXingWASM) { resolve(window.ZXingWASM); return; }
        var tag = document.createElement("script");
        tag.src = DECODER;
        tag.onload = function () { if (window.ZXingWASM) { resolve(window.ZXingWASM); } else { reject(new Error("no decoder")); } };
        tag.onerror = reject;
        document.head.appendChild(tag);
      }).then(function (zxing) {
        // The .wasm comes from our own /static (the library would fetch it from a CDN).
        return zxing.prepareZXingModule({
          overrides: { locateFile: function (path, prefix) { return /\.wasm$/.test(path) ? WASM : prefix + path; } },
          fireImmediately: true
        }).then(function () { return zxing; });
      });
      decoder.catch(function () { decoder = null; });
    }
    return decoder;
  }

  document.addEventListener("focusin", function (event) {
    buttons.forEach(function (button) {
      if (event.target.matches && event.target.matches(button.getAttribute("data-camera-for"))) { lastField = event.target; }
    });
  });

  function fieldFor(button) {
    var selector = button.getAttribute("data-camera-for");
    if (lastField && lastField.matches(selector)) { return lastField; }
    var fields = Array.prototype.slice.call(document.querySelectorAll(selector));
    return fields.filter(function (f) { return !f.value; })[0] || fields[0];
  }

  function deliver(field, text) {
    field.value = text;
    field.dispatchEvent(new Event("input", { bubbles: true }));
    field.focus();
    var enter = new KeyboardEvent("keydown", { key: "Enter", code: "Enter", bubbles: true, cancelable: true });
    // A field that handles Enter itself (moves on, confirms a row) prevents the default: no submit then.
    if (field.dispatchEvent(enter) && field.form) { field.form.requestSubmit(); }
  }

  function stop(giveBackField) {
    if (!running) { return; }
    var state = running;
    running = null;
    window.clearTimeout(state.timer);
    if (state.stream) { state.stream.getTracks().forEach(function (track) { track.stop(); }); }
    state.video.srcObject = null;
    state.video.hidden = true;
    state.button.textContent = state.label;
    state.button.setAttribute("aria-pressed", "false");
    if (giveBackField && state.field) { state.field.focus(); }
  }

  function start(button) {
    var video = document.getElementById(button.getAttribute("data-camera-preview"));
    var field = fieldFor(button);
    if (!video || !field) { return; }
    var state = { button: button, video: video, field: field, label: button.textContent, stream: null, timer: 0 };
    var canvas = document.createElement("canvas");
    var context = canvas.getContext("2d", { willReadFrequently: true });
    running = state;
    button.textContent = "Stop camera";
    button.setAttribute("aria-pressed", "true");
    function fail() { if (running === state) { stop(true); } }
    function look(zxing) {
      if (running !== state) { return; }
      if (video.readyState < 2 || !video.videoWidth) { state.timer = window.setTimeout(look, 100, zxing); return; }
      canvas.width = video.videoWidth;
      canvas.height = video.videoHeight;
      context.drawImage(video, 0, 0);
      zxing.readBarcodes(context.getImageData(0, 0, canvas.width, canvas.height), OPTIONS).then(function (results) {
        if (running !== state) { return; }
        var found = results.filter(function (r) { return r.text; })[0];
        if (found) {
          stop(false);
          deliver(field, found.text);
        } else {
          state.timer = window.setTimeout(look, 150, zxing);
        }
      }, fail);
    }
    // The decoder first: a camera opened for a decoder that then failed to load would stay on.
    loadDecoder().then(function (zxing) {
      return media.getUserMedia({ video: { facingMode: "environment" }, audio: false }).then(function (stream) {
        if (running !== state) { stream.getTracks().forEach(function (t) { t.stop(); }); return; }
        state.stream = stream;
        video.srcObject = stream;
        video.hidden = false;
        return video.play().then(function () { look(zxing); });
      });
    }).catch(fail);
  }

  buttons.forEach(function (button) {
    button.hidden = false;
    button.addEventListener("click", function () {
      if (running && running.button === button) { stop(true); } else { stop(false); start(button); }
    });
  });
  window.addEventListener("pagehide", function () { stop(false); });
})();
