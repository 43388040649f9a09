// Jobs list: keeps each row's status and progress live from GET /jobs/events (Server-Sent Events).
"use strict";

(function () {
  var table = document.getElementById("jobs-table");
  var state = document.getElementById("live-state");
  if (!table) return;
  var after = table.getAttribute("data-after") || "0";
  var statuses = (table.getAttribute("data-statuses") || "").split(",").filter(Boolean);
  var kind = table.getAttribute("data-kind") || "";
  var namePrefix = table.getAttribute("data-name") || "";
  var tbody = table.querySelector("tbody");
  var pending = {};

  function row(jobId) {
    return tbody.querySelector('tr[data-job-id="' + jobId + '"]');
  }

  function matches(job) {
    return (!statuses.length || statuses.indexOf(job.status) >= 0) &&
      (!kind || job.kind === kind) &&
      (!namePrefix || job.name.indexOf(namePrefix) === 0);
  }

  function cell(text) {
    var td = document.createElement("td");
    td.textContent = text;
    return td;
  }

  // a job this page has not shown yet (submitted since it was rendered): read it, add it if it fits
  function addJob(jobId) {
    if (pending[jobId]) return;
    pending[jobId] = true;
    daik.api("GET", "/jobs/" + encodeURIComponent(jobId)).then(function (r) {
      if (!r.ok || row(jobId) || !matches(r.data)) return;
      var job = r.data;
      var empty = tbody.querySelector("tr.empty");
      if (empty) empty.remove();
      var tr = document.createElement("tr");
      tr.setAttribute("data-job-id", job.id);
      tr.setAttribute("data-status", job.status);
      var name = document.createElement("td");
      var a = document.createElement("a");
      a.href = "/ui/jobs/" + job.id;
      a.textContent = job.name;
      name.appendChild(a);
      tr.appendChild(name);
      tr.appendChild(cell(job.kind));
      var st = document.createElement("td");
      var badge = document.createElement("span");
      daik.setStatusBadge(badge, job.status);
      st.appendChild(badge);
      tr.appendChild(st);
      var pr = document.createElement("td");
      var bar = document.createElement("progress");
      bar.max = 1;
      bar.value = job.progress;
      var pct = document.createElement("span");
      pct.className = "pct";
      pct.textContent = " " + Math.floor(job.progress * 100) + "%";
      pr.appendChild(bar);
      pr.appendChild(pct);
      tr.appendChild(pr);
      var ep = cell(job.epoch + "/" + job.total_epochs);
      ep.className = "epoch";
      tr.appendChild(ep);
      tr.appendChild(cell(job.final_map50 === null ? "–" : job.final_map50.toFixed(4)));
      tr.appendChild(cell(job.created_at.replace("T", " ").slice(0, 19)));
      var pick = document.createElement("td");
      var box = document.createElement("input");
      box.type = "checkbox";
      box.name = "job";
      box.value = job.id;
      box.setAttribute("form", "compare-form");
      box.setAttribute("aria-label", "compare " + job.name);
      pick.appendChild(box);
      tr.appendChild(pick);
      tbody.insertBefore(tr, tbody.firstChild);
    });
  }

  function onStatus(data) {
    var tr = row(data.job_id);
    if (!tr) { addJob(data.job_id); return; }
    tr.setAttribute("data-status", data.status);
    daik.setStatusBadge(tr.querySelector(".status"), data.status);
    if (data.status === "succeeded") {
      // the final mAP and the last epoch are read once, at the end
      daik.api("GET", "/jobs/" + encodeURIComponent(data.job_id)).then(function (r) {
        if (!r.ok) return;
        var cells = tr.querySelectorAll("td");
        tr.querySelector("progress").value = r.data.progress;
        tr.querySelector(".pct").textContent = " " + Math.floor(r.data.progress * 100) + "%";
        tr.querySelector(".epoch").textContent = r.data.epoch + "/" + r.data.total_epochs;
        if (r.data.final_map50 !== null) cells[5].textContent = r.data.final_map50.toFixed(4);
      });
    }
  }

  function onProgress(data) {
    var tr = row(data.job_id);
    if (!tr) { addJob(data.job_id); return; }
    if (typeof data.progress === "number") {
      tr.querySelector("progress").value = data.progress;
      tr.querySelector(".pct").textContent = " " + Math.floor(data.progress * 100) + "%";
    }
    if (typeof data.epoch === "number") {
      var ep = tr.querySelector(".epoch");
      ep.textContent = data.epoch + "/" + ep.textContent.split("/")[1];
    }
  }

  var source = new EventSource("/jobs/events?after=" + encodeURIComponent(after));
  source.addEventListener("open", function () {
    state.textContent = "live updates: on";
    state.setAttribute("data-state", "open");
  });
  source.addEventListener("error", function () {
    state.textContent = "live updates: reconnecting…";
    state.setAttribute("data-state", "reconnecting");
    // a session that ended makes the stream answer 401, which EventSource cannot read: ask the API
    daik.api("GET", "/jobs?limit=1");
  });
  source.addEventListener("status", function (e) { onStatus(JSON.parse(e.data)); });
  source.addEventListener("progress", function (e) { onProgress(JSON.parse(e.data)); });
  window.addEventListener("pagehide", function () { source.close(); });
})();
