// The menu button of narrow screens (< 800 px): shows and hides the side menu. A static file,
// not inline script, so a Content-Security-Policy without 'unsafe-inline' allows it.
(function () {
  var button = document.getElementById("nav-toggle");
  var nav = document.getElementById("sidenav");
  if (!button || !nav) return;
  button.addEventListener("click", function () {
    var open = document.body.classList.toggle("nav-open");
    button.setAttribute("aria-expanded", open ? "true" : "false");
  });
})();
