// Enhancements only: every page works without this file.
// Live counts: elements inside [data-live] with data-key are refreshed every 2 s from
// the JSON at the data-live address.
(function () {
  "use strict";
  var live = document.querySelector("[data-live]");
  if (!live) { return; }
  var url = live.getAttribute("data-live");
  function total(pairs, key) {
    var n = 0;
    (pairs || []).forEach(function (p) { if (key === null || p[0] === key) { n += p[1]; } });
    return n;
  }
  function refresh() {
    fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (s) {
        if (!s) { return; }
        // The dashboard's counts (from /api/v1/stats) or a user's (/api/v1/users/NAME).
        var values = Object.assign({}, s);
        if (Array.isArray(s.open_alerts)) {
          values.open_alerts = total(s.open_alerts, null);
          values.accept = total(s.auth_decisions, "accept");
          values.reject = total(s.auth_decisions, "reject");
        }
        live.querySelectorAll("[data-key]").forEach(function (el) {
          var v = values[el.getAttribute("data-key")];
          if (v !== undefined && v !== null) { el.textContent = String(v); }
        });
      })
      .catch(function () {});
  }
  setInterval(refresh, 2000);
})();
