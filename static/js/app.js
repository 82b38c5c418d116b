// Shared page behaviour: filter sidebars fold away on phones; long operations show a
// spinner; the image search carries the prompt and filters of the text form along.
(function () {
  "use strict";
  if (window.matchMedia && window.matchMedia("(max-width: 760px)").matches) {
    document.querySelectorAll("details.filter-box[open]").forEach(function (box) {
      // Keep it open when it holds a refusal the visitor must see.
      if (!box.querySelector(".error")) { box.open = false; }
    });
  }
  document.querySelectorAll("form[data-busy]").forEach(function (form) {
    form.addEventListener("submit", function (ev) {
      var source = form.dataset.copyFrom && document.getElementById(form.dataset.copyFrom);
      if (source) {
        form.querySelectorAll("input[data-copied]").forEach(function (el) { el.remove(); });
        new FormData(source).forEach(function (value, name) {
          if (typeof value !== "string" || value === "") { return; }
          var input = document.createElement("input");
          input.type = "hidden"; input.name = name; input.value = value;
          input.dataset.copied = "1";
          form.appendChild(input);
        });
      }
      var button = ev.submitter || form.querySelector("button[type=submit]");
      if (button) { button.setAttribute("aria-busy", "true"); }
      var busy = document.getElementById("busy");
      if (busy) {
        busy.querySelector(".busy-text").textContent = form.dataset.busy;
        busy.hidden = false;
      }
      form.setAttribute("aria-busy", "true");
    });
  });
  // Back from a result page (bfcache): no spinner left spinning.
  window.addEventListener("pageshow", function () {
    var busy = document.getElementById("busy");
    if (busy) { busy.hidden = true; }
    document.querySelectorAll("[aria-busy=true]").forEach(function (el) { el.removeAttribute("aria-busy"); });
  });
})();
