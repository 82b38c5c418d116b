// Keyboard-first genre review: 1-9/0 pick a genre, "a" accepts, "n" moves on.
(function () {
  "use strict";
  var pane = document.getElementById("review-pane");
  var queue = Array.prototype.map.call(document.querySelectorAll("#queue li"), function (li) {
    return li.dataset.artwork;
  });
  var position = 0;
  var busy = false;
  // What happened to each item: "reviewed" (a label saved) or "skipped" (n): the queue
  // shows them apart.
  var outcome = [];

  function csrf() {
    var m = document.cookie.match(/(?:^|; )csrftoken=([^;]+)/);
    return m ? decodeURIComponent(m[1]) : "";
  }
  function item() { return document.getElementById("review-item"); }
  function say(text, isError) {
    var box = document.getElementById("review-message");
    if (box) { box.textContent = text; box.className = isError ? "error" : "ok"; }
  }
  function highlight() {
    document.querySelectorAll("#queue li").forEach(function (li, i) {
      li.className = i === position ? "active" : (i < position ? "done " + (outcome[i] || "skipped") : "");
      if (i < position) { li.title = outcome[i] === "reviewed" ? "reviewed" : "skipped (not changed)"; }
    });
  }
  function loadNext(how) {
    outcome[position] = how;
    position += 1;
    highlight();
    if (position >= queue.length) {
      pane.innerHTML = "<p class='empty' id='queue-empty'>Queue done. Reload for more.</p>";
      return;
    }
    var url = pane.dataset.itemUrl.replace("/0/", "/" + queue[position] + "/");
    fetch(url, { credentials: "same-origin" }).then(function (r) { return r.text(); })
      .then(function (html) { pane.innerHTML = html; busy = false; });
  }
  function send(path, body) {
    var el = item();
    busy = true;
    body.expected_version = parseInt(el.dataset.version, 10);
    return fetch("/api/artworks/" + el.dataset.artwork + "/" + path + "/", {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrf() },
      body: JSON.stringify(body)
    }).then(function (r) {
      return r.json().then(function (data) { return { ok: r.ok, status: r.status, data: data }; });
    }).then(function (res) {
      if (!res.ok) {
        busy = false;
        say(res.data.detail || JSON.stringify(res.data), true);
        if (res.status === 409 && res.data.current_version !== undefined) {
          el.dataset.version = res.data.current_version;
        }
        return;
      }
      var art = res.data.artwork, label = res.data.label;
      document.getElementById("current-genre").textContent = art.genre ? art.genre.replace(/_/g, " ") : "none";
      var source = document.getElementById("current-source");
      source.textContent = "Curator";
      source.className = "src src-curator";
      // A curator's label has no model confidence: the model's number no longer applies.
      var confidence = document.getElementById("current-confidence");
      if (confidence) { confidence.textContent = "confirmed by you"; }
      document.querySelectorAll(".genre-key").forEach(function (key) {
        key.classList.toggle("current", key.dataset.genre === art.genre);
      });
      var row = document.createElement("tr");
      row.className = "new";
      [label.created_at.replace("T", " ").slice(0, 19), label.genre ? label.genre.replace(/_/g, " ") : "(none)",
       "Curator", "—", label.user || ""].forEach(function (text) {
        var td = document.createElement("td"); td.textContent = text; row.appendChild(td);
      });
      document.querySelector("#history tbody").appendChild(row);
      say("Saved: " + (art.genre || "no genre") + ". Next…", false);
      setTimeout(function () { loadNext("reviewed"); }, 700);
    }).catch(function (err) { busy = false; say(String(err), true); });
  }
  document.addEventListener("click", function (ev) {
    var button = ev.target.closest(".genre-key");
    if (button && item() && !busy) { send("genre", { genre: button.dataset.genre }); }
  });
  document.addEventListener("keydown", function (ev) {
    if (!item() || busy || ev.ctrlKey || ev.metaKey || ev.altKey) { return; }
    var tag = (ev.target.tagName || "").toLowerCase();
    if (tag === "input" || tag === "select" || tag === "textarea") { return; }
    var genres = item().dataset.genres.split(",");
    if (/^[0-9]$/.test(ev.key)) {
      var index = ev.key === "0" ? 9 : parseInt(ev.key, 10) - 1;
      if (index < genres.length) { ev.preventDefault(); send("genre", { genre: genres[index] }); }
    } else if (ev.key === "a") {
      ev.preventDefault(); send("accept", {});
    } else if (ev.key === "n" || ev.key === "ArrowRight") {
      ev.preventDefault(); busy = true; loadNext("skipped");
    }
  });
})();
