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

// Cards scroll sideways on narrow screens (wide tables). A scrolling card must be reachable
// from the keyboard (WCAG 2.1.1; axe "scrollable-region-focusable"): give exactly those a tab
// stop, and take it away again when the card fits.
(function () {
  function mark() {
    document.querySelectorAll(".card").forEach(function (card) {
      var scrolls = card.scrollWidth > card.clientWidth + 1;
      if (scrolls && !card.hasAttribute("tabindex")) {
        card.setAttribute("tabindex", "0");
        card.dataset.scrollStop = "1";
      } else if (!scrolls && card.dataset.scrollStop) {
        card.removeAttribute("tabindex");
        delete card.dataset.scrollStop;
      }
    });
  }
  mark();
  window.addEventListener("resize", mark);
})();
