// The bench page's equipment: a code scanned (or typed) into the scan field ticks that piece in the
// list below when Enter ends it, instead of submitting the form half-filled. A piece that may not be
// used (overdue, out of service) stays unticked and the reason is said. The server judges the list
// again on saving; a code left in the field is added there.
(function () {
  "use strict";
  var input = document.querySelector("input[data-equipment-list]");
  if (!input) { return; }
  var list = document.querySelector(input.getAttribute("data-equipment-list"));
  var status = document.getElementById(input.getAttribute("data-equipment-status"));
  if (!list || !status) { return; }

  function say(text, refused) {
    status.textContent = text;
    status.className = "small mb-2 " + (refused ? "text-danger" : "text-success");
  }

  function add(raw) {
    var code = raw.trim().toUpperCase();
    if (!code) { return; }
    var box = Array.prototype.filter.call(list.querySelectorAll("input[type=checkbox][data-code]"), function (b) {
      return b.getAttribute("data-code") === code;
    })[0];
    if (!box) {
      say(code + " is not equipment of this site: check the label, or choose from the list.", true);
    } else if (box.disabled) {
      say(code + " cannot be used: " + box.getAttribute("data-reasons") + ".", true);
    } else {
      box.checked = true;
      say(code + " added.", false);
    }
  }

  input.addEventListener("keydown", function (event) {
    if (event.key !== "Enter") { return; }
    event.preventDefault();
    add(input.value);
    input.value = "";
  });
}());
