// An import's progress page: asks its status URL every second and moves the bar; when the
// import has ended, the page is loaded again and shows the report. Without this script
// the page's link shows the progress again.
(function () {
  var box = document.getElementById("import-job");
  if (!box || !window.fetch) return;
  var bar = document.getElementById("import-progress");
  var state = document.getElementById("import-state");
  var url = box.getAttribute("data-status");
  function tick() {
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (answer) { return answer.ok ? answer.json() : null; })
      .then(function (status) {
        if (!status) return;  // signed out or gone: the link still works
        if (status.finished) { window.location.reload(); return; }
        if (status.total !== null) {
          bar.max = Math.max(status.total, 1);
          bar.value = status.done;
          bar.textContent = status.done + " of " + status.total;
          var text = "Imported " + status.done + " of " + status.total + " rows…";
          if (state.textContent !== text) state.textContent = text;
        }
        setTimeout(tick, 1000);
      })
      .catch(function () { setTimeout(tick, 3000); });
  }
  setTimeout(tick, 1000);
})();
