// The editor's live preview: a short pause after typing, the draft goes to the preview
// frames (the same form buttons a keyboard user presses; nothing is saved).
(function () {
  var form = document.getElementById("editor");
  if (!form || !document.getElementById("preview-phone-button")) return;
  var wide = "preview-desktop";
  ["preview-desktop", "preview-dark", "preview-text"].forEach(function (id) {
    var button = document.getElementById(id);
    if (button) button.addEventListener("click", function () { wide = id; });
  });
  var timer = null;
  form.addEventListener("input", function () {
    clearTimeout(timer);
    timer = setTimeout(function () {
      form.requestSubmit(document.getElementById(wide));
      form.requestSubmit(document.getElementById("preview-phone-button"));
    }, 600);
  });
})();
