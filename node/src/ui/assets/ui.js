// Keeps a dashboard page live: the member's /ui/live stream says when what the page shows has
// changed, and the page's <main> is fetched again (nothing is polled). Waits while a fetch is in
// flight and fetches once more if changes came meanwhile. A browser opens at most six
// connections to a plain-HTTP origin and a live stream holds one, so a hidden tab lets its
// stream go and catches up when it is shown again.
(function () {
  "use strict";
  var url = document.body.dataset.live;
  var main = document.getElementById("main");
  var state = document.querySelector(".live-state");
  if (!url || !main || !window.EventSource) return;

  var fetching = false;
  var again = false;

  function show(name) {
    if (state) state.dataset.state = name;
  }

  function refresh() {
    if (fetching) {
      again = true;
      return;
    }
    fetching = true;
    fetch(location.href, { headers: { "x-keel-fragment": "1" }, credentials: "same-origin" })
      .then(function (response) {
        if (response.status === 401) {
          location.reload();
          return null;
        }
        return response.ok ? response.text() : null;
      })
      .then(function (html) {
        if (html !== null) {
          main.innerHTML = html;
          document.body.dataset.updated = String(Date.now());
        }
      })
      .catch(function () {})
      .then(function () {
        fetching = false;
        if (again) {
          again = false;
          refresh();
        }
      });
  }

  var source = null;

  function listen() {
    if (source) return;
    source = new EventSource(url);
    source.addEventListener("open", function () {
      show("open");
    });
    source.addEventListener("error", function () {
      show("reconnecting");
    });
    source.addEventListener("changed", refresh);
  }

  function pause() {
    if (!source) return;
    source.close();
    source = null;
    show("paused");
  }

  document.addEventListener("visibilitychange", function () {
    if (document.hidden) {
      pause();
    } else {
      listen();
      refresh();
    }
  });
  window.addEventListener("pagehide", pause);
  if (!document.hidden) listen();
})();
