// Batch page: the verbs (pause, resume, cancel, rerun-failed) call POST /batches/{id}/{verb} with the CSRF
// header and If-Match set to the ETag of the batch as this page last saw it; a refusal (409 illegal for the
// status, 412 changed meanwhile) shows the API's problem detail, and the batch as it now is. Status, counts and the jobs' rows are
// polled from GET /batches/{id} while the batch has unfinished jobs (the results table is the server's:
// reload for new results).
"use strict";

(function () {
  var section = document.getElementById("batch");
  if (!section) return;
  var batchId = section.getAttribute("data-batch-id");
  var statusEl = document.getElementById("batch-status");
  var progressEl = document.getElementById("batch-progress");
  var countsEl = document.getElementById("batch-counts");
  var message = document.getElementById("action-message");
  var buttons = Array.prototype.slice.call(document.querySelectorAll("button.batch-verb"));
  var POLL_MS = 5000;
  var timer = null;

  function showButtons(status) {
    buttons.forEach(function (b) {
      b.hidden = b.getAttribute("data-from").split(" ").indexOf(status) < 0;
    });
  }

  function showCounts(counts) {
    countsEl.textContent = "";
    Object.keys(counts).filter(function (s) { return counts[s] > 0; }).forEach(function (s, i) {
      if (i > 0) countsEl.appendChild(document.createTextNode(" · "));
      var span = document.createElement("span");
      span.className = "count";
      span.setAttribute("data-count", s);
      span.textContent = s + " " + counts[s];
      countsEl.appendChild(span);
    });
  }

  function showCells(cells) {
    (cells || []).forEach(function (c) {
      var tr = document.querySelector('#batch-jobs-table tr[data-job-id="' + c.job_id + '"]');
      if (!tr) return;
      tr.setAttribute("data-status", c.status);
      daik.setStatusBadge(tr.querySelector(".status"), c.status);
      tr.querySelector("progress").value = c.progress;
      var cells = tr.querySelectorAll("td");
      cells[cells.length - 1].textContent = c.final_map50 === null ? "–" : c.final_map50.toFixed(4);
    });
  }

  function show(batch) {
    section.setAttribute("data-status", batch.status);
    section.setAttribute("data-etag", batch.etag);
    statusEl.textContent = batch.status;
    statusEl.className = "status b-" + batch.status;
    progressEl.value = batch.progress;
    showCounts(batch.counts);
    showButtons(batch.status);
    if (batch.cells) showCells(batch.cells);
  }

  function poll() {
    timer = null;
    if (document.hidden) { timer = setTimeout(poll, POLL_MS); return; }
    daik.api("GET", "/batches/" + batchId).then(function (r) {
      if (!r.ok) return;
      show(r.data);
      if (!r.data.done) timer = setTimeout(poll, POLL_MS);
    });
  }

  function act(verb) {
    message.textContent = verb + "…";
    message.className = "";
    var etag = section.getAttribute("data-etag");
    daik.api("POST", "/batches/" + batchId + "/" + verb, undefined, { "If-Match": etag }).then(function (r) {
      if (r.ok) {
        show(r.data);
        message.textContent = verb + ": " + r.data.status;
        if (!timer) timer = setTimeout(poll, 500);
      } else {
        message.textContent = verb + " refused (" + r.status + "): " + daik.problem(r);
        message.className = "error";
        if (r.status === 412 || r.status === 409) {
          // changed meanwhile: show the batch as it is now (its new ETag too), so a retry is informed
          daik.api("GET", "/batches/" + batchId).then(function (g) { if (g.ok) show(g.data); });
        }
      }
    });
  }

  buttons.forEach(function (b) {
    b.addEventListener("click", function () { act(b.getAttribute("data-verb")); });
  });
  timer = setTimeout(poll, POLL_MS);
  window.addEventListener("pagehide", function () { if (timer) clearTimeout(timer); });
})();
