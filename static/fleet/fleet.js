/* Fleet dashboard behaviours, driven by data attributes (no inline script: CSP).
 *
 * [data-poll="5"]   htmx element polled every 5 s (it listens for "fleet:poll");
 *                   paused while the tab is hidden, polled at once when it shows again.
 * [data-freshness]  "updated 3 s ago": time since the last successful poll.
 * [data-fold-all]   button that opens or closes every <details> in its target.
 *
 * A poll that re-renders a fragment keeps the <details> the reader opened open.
 */
(function () {
  "use strict";

  var lastUpdate = Date.now();
  var lastPoll = new WeakMap();

  function pollers() {
    return document.querySelectorAll("[data-poll]");
  }

  function poll(force) {
    if (document.hidden || !window.htmx) return;
    var now = Date.now();
    pollers().forEach(function (el) {
      var every = (parseFloat(el.getAttribute("data-poll")) || 5) * 1000;
      if (!lastPoll.has(el)) {
        // A freshly swapped-in element: its content is new, wait a full interval.
        lastPoll.set(el, now);
        if (!force) return;
      }
      if (force || now - lastPoll.get(el) >= every - 50) {
        lastPoll.set(el, now);
        window.htmx.trigger(el, "fleet:poll");
      }
    });
  }

  function showFreshness() {
    var seconds = Math.max(0, Math.round((Date.now() - lastUpdate) / 1000));
    var text = seconds < 2 ? "updated just now" : "updated " + seconds + " s ago";
    document.querySelectorAll("[data-freshness]").forEach(function (el) {
      if (!pollers().length) {
        el.hidden = true;
        return;
      }
      el.hidden = false;
      el.textContent = text;
      el.classList.toggle("late", seconds > 60);
    });
  }

  document.addEventListener("htmx:afterRequest", function (event) {
    var el = event.detail.elt;
    if (el && el.hasAttribute && el.hasAttribute("data-poll") && event.detail.successful) {
      lastUpdate = Date.now();
      showFreshness();
    }
  });

  // <details> are keyed by the nearest element with an id (a message) and their
  // position in it; new messages only append, so the keys of old ones hold.
  var openBeforeSwap = {};

  function detailsKey(details) {
    var holder = details.parentElement.closest("[id]");
    if (!holder) return null;
    var index = Array.prototype.indexOf.call(holder.querySelectorAll("details"), details);
    return holder.id + ":" + index;
  }

  document.addEventListener("htmx:beforeSwap", function (event) {
    var target = event.detail.target;
    if (!target || !target.id || !target.hasAttribute("data-poll")) return;
    openBeforeSwap[target.id] = Array.prototype.map.call(
      target.querySelectorAll("details[open]"), detailsKey
    );
  });

  document.addEventListener("htmx:afterSettle", function () {
    Object.keys(openBeforeSwap).forEach(function (id) {
      var keys = openBeforeSwap[id];
      delete openBeforeSwap[id];
      var fresh = document.getElementById(id);
      if (!fresh || !keys.length) return;
      fresh.querySelectorAll("details").forEach(function (details) {
        if (keys.indexOf(detailsKey(details)) !== -1) details.open = true;
      });
    });
  });

  document.addEventListener("visibilitychange", function () {
    if (!document.hidden) poll(true);
  });

  document.addEventListener("click", function (event) {
    var button = event.target.closest && event.target.closest("[data-fold-all]");
    if (!button) return;
    var scope = document.querySelector(button.getAttribute("data-fold-all")) || document;
    var all = scope.querySelectorAll("details");
    var open = Array.prototype.some.call(all, function (d) { return !d.open; });
    all.forEach(function (d) { d.open = open; });
  });

  setInterval(function () {
    poll(false);
    showFreshness();
  }, 1000);
  document.addEventListener("DOMContentLoaded", function () {
    pollers().forEach(function (el) { lastPoll.set(el, Date.now()); });
    document.querySelectorAll("[data-fold-all]").forEach(function (el) { el.hidden = false; });
    showFreshness();
  });
})();
