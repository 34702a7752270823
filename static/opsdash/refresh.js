// opsdash: the overview's table refreshes itself (hx-trigger "every Ns" on #results), and a
// refresh replaces everything in it. Skip a refresh while a person is using the table: focus in
// it, a confirmation open, or text typed into a field there (all would be lost in the swap).
(function () {
  "use strict";
  function inUse(area) {
    var active = document.activeElement;
    if (active && active !== document.body && area.contains(active)) return true;
    if (area.querySelector("details[open]")) return true;
    var fields = area.querySelectorAll("input:not([type=hidden]), textarea");
    for (var i = 0; i < fields.length; i++) if (fields[i].value !== "") return true;
    return false;
  }
  document.addEventListener("htmx:beforeRequest", function (evt) {
    var elt = evt.detail && evt.detail.elt;
    if (!elt || elt.id !== "results" || !/^\s*every\s/.test(elt.getAttribute("hx-trigger") || "")) return;
    if (inUse(elt)) evt.preventDefault();  // the next tick tries again
  });
})();
