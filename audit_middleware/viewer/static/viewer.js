// The Audit Logs page's script: filters without reloading, "load more", entry details in a
// dialog, and the live view. The page works without it (plain links and forms); this only
// makes it quicker. Served by the viewer itself, so it runs under script-src 'self'.
(function () {
  "use strict";

  var root = document.getElementById("viewer");
  if (!root) {
    return;
  }
  var base = root.dataset.base;
  var pollMs = Number(root.dataset.pollMs) || 5000;
  var form = document.getElementById("filters");
  var results = document.getElementById("results");
  var statusLine = document.getElementById("status");
  var exportForm = document.getElementById("export");
  var dialog = document.getElementById("entry-dialog");
  var dialogBody = document.getElementById("entry-body");
  var liveToggle = document.getElementById("live-toggle");
  var custom = document.getElementById("f-custom");
  var range = document.getElementById("f-range");
  var HEADERS = { "X-Audit-Viewer": "1" };
  var LOOKBACK_MS = 30000; // records can become visible a little after their timestamp
  var requestSeq = 0;
  var timer = null;
  var paused = false;
  var opener = null;
  root.dataset.polls = "0";

  function announce(text) {
    statusLine.textContent = text;
  }

  function filterParams() {
    var params = new URLSearchParams();
    new FormData(form).forEach(function (value, name) {
      if (value === "") {
        return;
      }
      if ((name === "from" || name === "to") && range.value !== "custom") {
        return;
      }
      params.append(name, value);
    });
    return params;
  }

  function fetchDocument(url) {
    return fetch(url, { headers: HEADERS, credentials: "same-origin" }).then(function (response) {
      return response.text().then(function (text) {
        return { ok: response.ok, doc: new DOMParser().parseFromString(text, "text/html") };
      });
    });
  }

  function rowsBody() {
    return document.getElementById("rows");
  }

  function isLive() {
    var table = document.getElementById("entries");
    return !!table && table.dataset.live === "on";
  }

  // -- filters ---------------------------------------------------------------------------

  function syncExport(params) {
    exportForm.querySelectorAll("input.filter").forEach(function (input) {
      input.remove();
    });
    params.forEach(function (value, name) {
      if (name === "token") {
        return;
      }
      var input = document.createElement("input");
      input.type = "hidden";
      input.className = "filter";
      input.name = name;
      input.value = value;
      exportForm.appendChild(input);
    });
  }

  function applyFilters() {
    var params = filterParams();
    var query = params.toString();
    history.replaceState(null, "", base + "/" + (query ? "?" + query : ""));
    syncExport(params);
    var clear = document.getElementById("clear");
    var narrowing = Array.from(params.keys()).some(function (name) {
      return name !== "tz" && name !== "token";
    });
    clear.hidden = !narrowing;
    var mine = ++requestSeq;
    results.setAttribute("aria-busy", "true");
    return fetchDocument(base + "/entries?" + query)
      .then(function (answer) {
        if (mine !== requestSeq) {
          return;
        }
        results.replaceChildren.apply(results, Array.from(answer.doc.body.childNodes));
        var count = rowsBody() ? rowsBody().children.length : 0;
        announce(answer.ok ? (count ? count + (count === 1 ? " entry" : " entries") + " shown" : "No entries match") : "The entries could not be shown");
        schedule();
      })
      .catch(function () {
        announce("The audit log could not be reached. Check your connection and try again.");
      })
      .finally(function () {
        if (mine === requestSeq) {
          results.removeAttribute("aria-busy");
        }
      });
  }

  var typing = null;
  form.addEventListener("input", function (event) {
    if (event.target.name === "q" || event.target.name === "user") {
      clearTimeout(typing);
      typing = setTimeout(applyFilters, 300);
    }
  });
  form.addEventListener("change", function (event) {
    if (event.target === range) {
      custom.hidden = range.value !== "custom";
    }
    if (event.target.name === "q" || event.target.name === "user") {
      return; // already applied while typing
    }
    applyFilters();
  });
  form.addEventListener("submit", function (event) {
    event.preventDefault();
    clearTimeout(typing);
    applyFilters();
  });

  // The reader's own time zone, besides UTC.
  var zoneSelect = document.getElementById("f-tz");
  try {
    var zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
    if (zone && zone !== "UTC" && !Array.from(zoneSelect.options).some(function (o) { return o.value === zone; })) {
      var option = document.createElement("option");
      option.value = zone;
      option.textContent = "My time zone (" + zone + ")";
      zoneSelect.appendChild(option);
    }
  } catch (ignored) {
    // no Intl time zones: UTC only
  }

  // -- load more -------------------------------------------------------------------------

  results.addEventListener("click", function (event) {
    var more = event.target.closest("#load-more");
    if (more) {
      event.preventDefault();
      loadMore(more);
      return;
    }
    var row = event.target.closest("#rows > tr");
    if (row && !event.defaultPrevented && event.button === 0 && !event.metaKey && !event.ctrlKey && !event.shiftKey) {
      event.preventDefault();
      openEntry(row.querySelector("a.open"));
    }
  });

  function loadMore(link) {
    var params = filterParams();
    params.set("cursor", link.dataset.cursor);
    link.setAttribute("aria-disabled", "true");
    fetchDocument(base + "/entries?" + params.toString()).then(function (answer) {
      var incoming = answer.doc.querySelectorAll("#rows > tr");
      var first = null;
      incoming.forEach(function (tr) {
        if (!rowsBody().querySelector('tr[data-id="' + CSS.escape(tr.dataset.id) + '"]')) {
          rowsBody().appendChild(tr);
          first = first || tr;
        }
      });
      var more = answer.doc.getElementById("more");
      if (more) {
        document.getElementById("more").replaceWith(more);
      }
      announce(incoming.length + " older " + (incoming.length === 1 ? "entry" : "entries") + " loaded");
      if (first) {
        first.querySelector("a.open").focus();
      }
    }).catch(function () {
      link.removeAttribute("aria-disabled");
      announce("Older entries could not be loaded. Try again.");
    });
  }

  // -- entry details ---------------------------------------------------------------------

  function openEntry(link) {
    opener = link;
    fetchDocument(link.href).then(function (answer) {
      dialogBody.replaceChildren.apply(dialogBody, Array.from(answer.doc.body.childNodes));
      if (!dialog.open) {
        dialog.showModal();
      }
      var close = dialogBody.querySelector("[data-close]");
      if (close) {
        close.focus();
      }
    }).catch(function () {
      announce("The entry could not be opened. Try again.");
    });
  }

  dialog.addEventListener("click", function (event) {
    if (event.target.closest("[data-close]") || event.target === dialog) {
      dialog.close();
    }
  });
  dialog.addEventListener("close", function () {
    if (opener) {
      opener.focus();
    }
  });

  // Arrow keys (or j / k) move between entries.
  results.addEventListener("keydown", function (event) {
    var link = event.target.closest("a.open");
    if (!link) {
      return;
    }
    var step = { ArrowDown: 1, j: 1, ArrowUp: -1, k: -1 }[event.key];
    if (!step) {
      return;
    }
    var row = link.closest("tr");
    var next = step > 0 ? row.nextElementSibling : row.previousElementSibling;
    if (next) {
      event.preventDefault();
      next.querySelector("a.open").focus();
    }
  });

  // -- live view -------------------------------------------------------------------------

  function newestMs() {
    var first = rowsBody() && rowsBody().firstElementChild;
    return first ? Number(first.dataset.key.split(":")[0]) : Number(root.dataset.now);
  }

  function insertSorted(tr) {
    var body = rowsBody();
    var key = tr.dataset.key;
    var before = Array.from(body.children).find(function (row) {
      return row.dataset.key < key;
    });
    body.insertBefore(tr, before || null);
  }

  function poll() {
    if (paused || document.hidden || !isLive()) {
      return Promise.resolve();
    }
    var params = filterParams();
    params.set("live", "1");
    params.set("since", String(newestMs() - LOOKBACK_MS));
    root.dataset.polls = String(Number(root.dataset.polls) + 1);
    var mine = requestSeq;
    return fetchDocument(base + "/entries?" + params.toString()).then(function (answer) {
      if (!answer.ok || mine !== requestSeq) {
        return;
      }
      var added = 0;
      answer.doc.querySelectorAll("#rows > tr").forEach(function (tr) {
        if (!rowsBody().querySelector('tr[data-id="' + CSS.escape(tr.dataset.id) + '"]')) {
          tr.classList.add("new");
          insertSorted(tr);
          added += 1;
        }
      });
      if (added) {
        document.getElementById("entries").hidden = false;
        var empty = document.getElementById("empty");
        if (empty) {
          empty.remove();
        }
        announce(added + " new " + (added === 1 ? "entry" : "entries"));
      }
    }).catch(function () {
      // the next poll tries again
    });
  }

  function schedule() {
    clearTimeout(timer);
    timer = null;
    liveToggle.hidden = !isLive();
    if (!isLive() || paused || document.hidden) {
      return;
    }
    timer = setTimeout(function () {
      poll().then(schedule);
    }, pollMs);
  }

  liveToggle.addEventListener("click", function () {
    paused = !paused;
    liveToggle.setAttribute("aria-pressed", String(!paused));
    liveToggle.querySelector(".label").textContent = paused ? "Paused" : "Live";
    announce(paused ? "Live updates paused" : "Live updates on");
    schedule();
  });

  // A hidden tab does not poll; it catches up when shown again.
  document.addEventListener("visibilitychange", function () {
    if (document.hidden) {
      clearTimeout(timer);
      timer = null;
    } else {
      poll().then(schedule);
    }
  });

  window.addEventListener("popstate", function () {
    window.location.reload();
  });

  schedule();
})();
