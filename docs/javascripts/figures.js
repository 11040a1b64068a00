// Figures on a projector: every figure of the content (the notebooks' outputs, the pages'
// images) at least MIN_WIDTH pixels wide as drawn is shown at the full width of the content
// column, and a click (or Enter) opens it at its own size over the page, to scroll about;
// a click or Escape closes it. No library, no network: the site works from disk.
(function () {
  "use strict";
  var MIN_WIDTH = 600;  // the library draws its figures 1280 px wide and more

  function mark(img) {
    if (img.naturalWidth < MIN_WIDTH || img.closest("a")) return;  // a link keeps its click
    img.classList.add("tc-figure");
    img.tabIndex = 0;
    img.title = img.title || "Click to see the figure at full size";
  }

  function scan() {
    document.querySelectorAll(".md-content img").forEach(function (img) {
      if (img.complete) mark(img);
      else img.addEventListener("load", function () { mark(img); }, { once: true });
    });
  }

  function open(img) {
    var overlay = document.createElement("div");
    overlay.className = "tc-zoom";
    overlay.setAttribute("role", "dialog");
    overlay.setAttribute("aria-label", (img.alt || "Figure") + " (full size; click or Escape to close)");
    var big = document.createElement("img");
    big.src = img.currentSrc || img.src;
    big.alt = img.alt;
    overlay.appendChild(big);
    function close() {
      overlay.remove();
      document.removeEventListener("keydown", onKey);
      img.focus({ preventScroll: true });
    }
    function onKey(event) {
      if (event.key === "Escape") close();
    }
    overlay.addEventListener("click", close);
    document.addEventListener("keydown", onKey);
    document.body.appendChild(overlay);
    overlay.tabIndex = -1;
    overlay.focus();
  }

  document.addEventListener("click", function (event) {
    var img = event.target.closest && event.target.closest("img.tc-figure");
    if (img) open(img);
  });
  document.addEventListener("keydown", function (event) {
    var img = event.target;
    if (event.key === "Enter" && img.classList && img.classList.contains("tc-figure")) open(img);
  });

  // mkdocs-material announces each page (also after instant navigation) on document$
  if (window.document$ && typeof window.document$.subscribe === "function") window.document$.subscribe(scan);
  else if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", scan);
  else scan();
})();
