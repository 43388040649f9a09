// DAIK dashboard: helpers shared by the pages (no framework, no network beyond this service).
"use strict";

window.daik = (function () {
  function csrfToken() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") : "";
  }

  // fetch() against the JSON API with the session cookie and, for unsafe methods, the CSRF header
  // (plus any extra headers, e.g. If-Match). An answer of 401 means the session ended: back to the login page.
  function api(method, url, body, extra) {
    var headers = { Accept: "application/json" };
    if (extra) Object.keys(extra).forEach(function (k) { headers[k] = extra[k]; });
    if (method !== "GET") headers["X-CSRF-Token"] = csrfToken();
    var init = { method: method, headers: headers, credentials: "same-origin" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    return fetch(url, init).then(function (response) {
      if (response.status === 401) {
        toLogin("your session has ended; sign in again");
        return new Promise(function () {});  // never settles: the page is going away
      }
      return response.text().then(function (text) {
        var data = null;
        if (text) {
          try { data = JSON.parse(text); } catch (e) { data = { detail: text }; }
        }
        return { status: response.status, ok: response.ok, data: data };
      });
    });
  }

  function toLogin(reason) {
    var next = window.location.pathname + window.location.search;
    window.location.assign("/ui/login?next=" + encodeURIComponent(next) + "&reason=" + encodeURIComponent(reason));
  }

  function setStatusBadge(el, status) {
    el.textContent = status;
    el.className = "status s-" + status;
  }

  // the problem detail of a refused call (RFC 9457 body), for a message next to the button
  function problem(r) {
    return (r.data && (r.data.detail || r.data.title)) || ("HTTP " + r.status);
  }

  return { api: api, csrfToken: csrfToken, toLogin: toLogin, setStatusBadge: setStatusBadge, problem: problem };
})();
