// Schedules list: each row's toggle PATCHes {"enabled": …} with the CSRF header and If-Match set to the
// row's ETag; the answer (the schedule as stored, with its new ETag and next fire time) updates the row, a
// refusal (412: changed since the page was rendered) shows the API's problem detail and re-reads the row.
"use strict";

(function () {
  var table = document.getElementById("schedules-table");
  if (!table) return;

  function show(tr, s) {
    tr.setAttribute("data-enabled", s.enabled ? "true" : "false");
    tr.setAttribute("data-etag", s.etag);
    tr.querySelector(".enabled").textContent = s.enabled ? "enabled" : "disabled";
    tr.querySelector(".toggle").textContent = s.enabled ? "Disable" : "Enable";
    tr.querySelector(".next-fire").textContent = s.next_fire_at
      ? s.next_fire_at.replace("T", " ").slice(0, 16)
      : "– (disabled)";
  }

  Array.prototype.forEach.call(table.querySelectorAll("tr[data-schedule-id]"), function (tr) {
    var button = tr.querySelector(".toggle");
    var message = tr.querySelector(".message");
    if (!button) return;
    button.addEventListener("click", function () {
      var enabled = tr.getAttribute("data-enabled") === "true";
      message.textContent = "";
      button.disabled = true;
      daik.api("PATCH", "/schedules/" + tr.getAttribute("data-schedule-id"), { enabled: !enabled },
        { "If-Match": tr.getAttribute("data-etag") }).then(function (r) {
        button.disabled = false;
        if (r.ok) show(tr, r.data);
        else {
          message.textContent = "refused (" + r.status + "): " + daik.problem(r);
          // changed meanwhile (412): show the schedule as it is now, with its new ETag
          daik.api("GET", "/schedules/" + tr.getAttribute("data-schedule-id")).then(function (g) {
            if (g.ok) show(tr, g.data);
          });
        }
      });
    });
  });
})();
