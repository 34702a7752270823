// opsdash theme: follows the system (prefers-color-scheme) unless the user chose otherwise on this
// device; the choice is remembered in localStorage. Loaded in <head> so the page paints in the
// right theme; no inline script (the CSP allows scripts from 'self' only).
(function () {
  "use strict";
  var KEY = "opsdash-theme";
  var root = document.documentElement;
  var system = window.matchMedia ? window.matchMedia("(prefers-color-scheme: dark)") : null;

  function stored() {
    try { return localStorage.getItem(KEY); } catch (e) { return null; }
  }
  function systemTheme() {
    return system && system.matches ? "dark" : "light";
  }
  function effective() {
    var chosen = stored();
    return chosen === "dark" || chosen === "light" ? chosen : systemTheme();
  }
  function apply() {
    var chosen = stored();
    if (chosen === "dark" || chosen === "light") root.setAttribute("data-theme", chosen);
    else root.removeAttribute("data-theme");
    var button = document.getElementById("theme-toggle");
    if (button) button.setAttribute("aria-pressed", effective() === "dark" ? "true" : "false");
  }
  function toggle() {
    var next = effective() === "dark" ? "light" : "dark";
    try {
      // Choosing what the system already gives means "follow the system" again.
      if (next === systemTheme()) localStorage.removeItem(KEY);
      else localStorage.setItem(KEY, next);
    } catch (e) {
      root.setAttribute("data-theme", next);  // storage blocked: this page only
    }
    apply();
    if (!stored()) root.setAttribute("data-theme", next);
  }

  apply();
  if (system && system.addEventListener) system.addEventListener("change", apply);
  document.addEventListener("DOMContentLoaded", function () {
    var button = document.getElementById("theme-toggle");
    if (!button) return;
    button.hidden = false;  // without JavaScript the page simply follows the system
    button.addEventListener("click", toggle);
    apply();
  });
})();
