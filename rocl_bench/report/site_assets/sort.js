// rocl-bench: click a column header of a table.sortable to sort its rows (numbers as numbers, "–" last);
// a second click reverses the order. Inlined into every page: works from file:// with no server.
(function () {
  "use strict";
  function key(cell) {
    var text = (cell ? cell.textContent : "").trim();
    if (text.indexOf("∞") >= 0) return {num: text.indexOf("-") === 0 ? -Infinity : Infinity, text: text};
    var clean = text.replace(/[†*\s%]/g, "").replace("−", "-");
    var num = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(clean) ? parseFloat(clean) : NaN;
    return {num: num, text: text, empty: text === "" || text === "–" || text === "-"};
  }
  function sortBy(table, th) {
    var col = parseInt(th.getAttribute("data-col"), 10);
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    var keys = rows.map(function (r) { return key(r.cells[col]); });
    var numeric = keys.every(function (k) { return k.empty || !isNaN(k.num); });
    var was = th.getAttribute("aria-sort");
    // numbers first sort high to low (a leaderboard), names A to Z; a second click reverses
    var dir = was ? (was === "descending" ? 1 : -1) : (numeric ? -1 : 1);
    var order = rows.map(function (r, i) { return i; });
    order.sort(function (a, b) {
      var ka = keys[a], kb = keys[b];
      if (ka.empty !== kb.empty) return ka.empty ? 1 : -1;       // missing values stay last
      var c = numeric ? (ka.num - kb.num) : ka.text.localeCompare(kb.text, undefined, {numeric: true});
      return c !== 0 ? dir * c : a - b;
    });
    order.forEach(function (i) { body.appendChild(rows[i]); });
    Array.prototype.forEach.call(table.querySelectorAll("th.sort"), function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", dir < 0 ? "descending" : "ascending");
  }
  function init() {
    Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), function (table) {
      Array.prototype.forEach.call(table.querySelectorAll("th.sort"), function (th) {
        th.tabIndex = 0;
        th.addEventListener("click", function () { sortBy(table, th); });
        th.addEventListener("keydown", function (e) { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); sortBy(table, th); } });
      });
    });
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init); else init();
})();
