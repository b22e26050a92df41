// A preview frame holding the keyboard focus shows a ring. Tabbing into a frame puts the
// focus in the frame's own document, and the page's `iframe:focus` never matches then
// (Chromium), so the page marks the frame that is its active element. The page gets no
// event when the focus moves from one frame straight into another, so while the focus is
// away from the page it looks again every 200 ms.
(function () {
  var frames = document.querySelectorAll("iframe.frame");
  if (!frames.length) return;
  var watching = null;
  function mark() {
    frames.forEach(function (frame) {
      frame.classList.toggle("focused", document.activeElement === frame);
    });
  }
  window.addEventListener("blur", function () {
    setTimeout(mark, 0);
    if (watching === null) watching = setInterval(mark, 200);
  });
  window.addEventListener("focus", function () {
    clearInterval(watching);
    watching = null;
    mark();
  });
  document.addEventListener("focusin", mark);
})();
