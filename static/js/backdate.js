// The session form: a time typed further back than BACKDATE_HOURS needs a pharmacist's
// signature, so its password field appears then. Both times are the clinic's wall clock,
// read the same way, so their difference does not depend on the browser's time zone.
// The server decides in the end; this only shows the field before the refusal would.
(function () {
  "use strict";
  var box = document.getElementById("backdate-signature");
  var input = document.querySelector("#treatment-form input[name='performed_at']");
  if (!box || !input) { return; }
  var hours = parseFloat(box.getAttribute("data-backdate-hours"));
  var clinicNow = new Date(box.getAttribute("data-clinic-now"));
  var loaded = Date.now();
  var password = box.querySelector("input");

  function update() {
    var typed = new Date(input.value);
    if (isNaN(typed.getTime()) || isNaN(clinicNow.getTime())) { return; }
    var now = clinicNow.getTime() + (Date.now() - loaded);
    var old = (now - typed.getTime()) > hours * 3600 * 1000;
    if (old) { box.hidden = false; } else if (!password || !password.classList.contains("is-invalid")) { box.hidden = true; }
  }

  input.addEventListener("change", update);
  input.addEventListener("input", update);
  update();
})();
