// Submit form: builds the POST /jobs body and shows the API's problem+json field errors next to the fields.
"use strict";

(function () {
  var form = document.getElementById("job-form");
  if (!form) return;
  var formError = document.getElementById("form-error");
  var state = document.getElementById("submit-state");

  function value(name) { return form.elements[name].value.trim(); }

  function number(name) {
    var v = value(name);
    return v === "" || isNaN(Number(v)) ? v : Number(v);  // a non-number goes as typed: the API names it
  }

  function body() {
    var kind = value("kind");
    var dataset = { train: value("dataset") };
    if (value("val")) dataset.val = value("val");
    if (value("classes")) dataset.classes = value("classes");
    var job = {
      name: value("name"),
      kind: kind,
      dataset: dataset,
      student: { preset: value("preset") },
      hparams: { epochs: number("epochs"), imgsz: number("imgsz"), batch: number("batch"), device: value("device") },
      resources: { gpus: number("gpus") }
    };
    if (value("teacher")) job.teacher = { job: value("teacher") };
    var losses = {};
    form.querySelectorAll('input[name="loss"]').forEach(function (box) {
      if (box.checked) losses[box.value] = { enabled: true };
    });
    if (value("feat") !== "none") losses.feat = { kind: value("feat") };
    if (Object.keys(losses).length) job.losses = losses;
    return job;
  }

  function clearErrors() {
    form.querySelectorAll(".field-error").forEach(function (el) { el.hidden = true; el.textContent = ""; });
    form.querySelectorAll("[data-field]").forEach(function (el) { el.removeAttribute("aria-invalid"); });
    formError.hidden = true;
    formError.textContent = "";
  }

  // the most specific error slot for a dotted field: "losses.ad.enabled" falls back to "losses"
  function slotFor(field) {
    var parts = field.split(".");
    while (parts.length) {
      var slot = form.querySelector('.field-error[data-error-for="' + parts.join(".") + '"]');
      if (slot) return slot;
      parts.pop();
    }
    return null;
  }

  function showProblem(problem) {
    var loose = [];
    (problem.errors || []).forEach(function (e) {
      var slot = slotFor(e.field);
      if (!slot) { loose.push(e.field + ": " + e.message); return; }
      slot.textContent = (slot.textContent ? slot.textContent + "; " : "") + e.message;
      slot.hidden = false;
      var input = form.querySelector('[data-field="' + slot.getAttribute("data-error-for") + '"]');
      if (input) input.setAttribute("aria-invalid", "true");
    });
    if (loose.length || !(problem.errors || []).length) {
      formError.textContent = (problem.title || "Refused") + ": " + (loose.length ? loose.join("; ") : problem.detail || "");
      formError.hidden = false;
    }
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    clearErrors();
    state.textContent = "submitting…";
    daik.api("POST", "/jobs", body()).then(function (r) {
      if (r.status === 201) {
        state.textContent = "submitted";
        window.location.assign("/ui/jobs/" + r.data.id);
        return;
      }
      state.textContent = "";
      showProblem(r.data || { detail: "HTTP " + r.status });
    }, function () {
      state.textContent = "";
      showProblem({ title: "Network error", detail: "the service did not answer" });
    });
  });
})();
