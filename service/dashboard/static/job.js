// Job page: live status from GET /jobs/{id}/events; the panels (charts, AP, attempts, checkpoints,
// gallery) are re-rendered by the server and swapped in after an epoch, an evaluation or a status change.
"use strict";

(function () {
  var section = document.getElementById("job");
  if (!section) return;
  var jobId = section.getAttribute("data-job-id");
  var statusEl = document.getElementById("job-status");
  var progressEl = document.getElementById("job-progress");
  var epochEl = document.getElementById("job-epoch");
  var errorEl = document.getElementById("job-error");
  var cancelBtn = document.getElementById("cancel-job");
  var retryBtn = document.getElementById("retry-job");
  var message = document.getElementById("action-message");
  var terminal = ["succeeded", "failed", "cancelled"];
  var refreshTimer = null;
  var source = null;

  function showButtons(status) {
    if (cancelBtn) cancelBtn.hidden = ["queued", "running", "cancelling"].indexOf(status) < 0;
    if (retryBtn) retryBtn.hidden = ["failed", "cancelled"].indexOf(status) < 0;
  }

  function setStatus(status, error) {
    section.setAttribute("data-status", status);
    daik.setStatusBadge(statusEl, status);
    showButtons(status);
    if (error) { errorEl.textContent = error; errorEl.hidden = false; }
    else if (status === "queued" || status === "running") { errorEl.hidden = true; }
  }

  function refreshPanels() {
    if (refreshTimer) return;
    refreshTimer = setTimeout(function () {
      refreshTimer = null;
      fetch("/ui/jobs/" + jobId + "/panels", { credentials: "same-origin" }).then(function (r) {
        if (r.redirected && r.url.indexOf("/ui/login") >= 0) { window.location.assign(r.url); return null; }
        return r.ok ? r.text() : null;
      }).then(function (html) {
        if (html !== null && html !== undefined) document.getElementById("panels").innerHTML = html;
      });
    }, 300);
  }

  function follow(after) {
    if (source) source.close();
    source = new EventSource("/jobs/" + jobId + "/events" + (after ? "?last_event_id=" + after : ""));
    source.addEventListener("status", function (e) {
      var d = JSON.parse(e.data);
      setStatus(d.status, d.error);
      refreshPanels();
      if (terminal.indexOf(d.status) >= 0) {
        source.close();  // the server ends the stream after a terminal status; do not reconnect
        if (d.status === "succeeded") progressEl.value = 1;
      }
    });
    source.addEventListener("progress", function (e) {
      var d = JSON.parse(e.data);
      progressEl.value = d.progress;
      epochEl.textContent = "epoch " + Math.max(d.epoch - 1, 0) + "/" + epochEl.textContent.split("/")[1];
    });
    source.addEventListener("epoch", function (e) {
      var d = JSON.parse(e.data);
      progressEl.value = d.progress;
      epochEl.textContent = "epoch " + d.epoch + "/" + d.total_epochs;
      refreshPanels();
    });
    source.addEventListener("eval", refreshPanels);
    source.addEventListener("checkpoint", refreshPanels);
    source.addEventListener("error", function () {
      if (source.readyState === EventSource.CLOSED) return;
      daik.api("GET", "/jobs/" + jobId);  // a 401 here sends the browser to the login page
    });
  }

  function act(url, verb) {
    message.textContent = verb + "…";
    daik.api("POST", url).then(function (r) {
      if (r.ok) {
        message.textContent = verb + ": " + r.data.status;
        setStatus(r.data.status, r.data.error);
        if (terminal.indexOf(r.data.status) < 0) follow(0);
      } else {
        message.textContent = verb + " refused: " + ((r.data && r.data.detail) || r.status);
      }
    });
  }

  if (cancelBtn) cancelBtn.addEventListener("click", function () { act("/jobs/" + jobId + "/cancel", "cancel"); });
  if (retryBtn) retryBtn.addEventListener("click", function () { act("/jobs/" + jobId + "/retry", "retry"); });
  if (terminal.indexOf(section.getAttribute("data-status")) < 0) follow(0);
})();
