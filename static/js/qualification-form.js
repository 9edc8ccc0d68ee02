// The result form of a person's page: the colony-forming units field shows only for the kinds that
// count them (gloved fingertip sampling). Without this script it stays visible; the server decides.
(function () {
  "use strict";
  var form = document.getElementById("qualification-form");
  var box = document.getElementById("cfu-box");
  if (!form || !box) { return; }
  var select = form.querySelector("select[name='kind']");
  var counting = (form.getAttribute("data-cfu-kinds") || "").split(" ").filter(Boolean);
  var input = box.querySelector("input");

  function update() {
    var counts = counting.indexOf(select.value) !== -1;
    // A count typed (or refused) for another kind stays in sight, so its message is seen.
    box.hidden = !counts && !(input && (input.value || input.classList.contains("is-invalid")));
  }

  select.addEventListener("change", update);
  update();
})();
