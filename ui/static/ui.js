// Slipway's small progressive enhancements. Every page works without it.
"use strict";

/** The page's CSRF token (for fetch() calls: send it as the X-CSRF-Token header). */
function slipwayCsrfToken() {
  const field = document.querySelector('input[name="_csrf"]');
  return field ? field.value : "";
}

document.addEventListener("click", (event) => {
  const button = event.target.closest("button.copy[data-copy]");
  if (button) {
    const text = button.getAttribute("data-copy");
    const done = () => { button.classList.add("copied"); setTimeout(() => button.classList.remove("copied"), 1500); };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, () => fallbackCopy(text, done));
    } else {
      fallbackCopy(text, done);
    }
    return;
  }
  const confirmer = event.target.closest("[data-confirm]");
  if (confirmer && !window.confirm(confirmer.getAttribute("data-confirm"))) {
    event.preventDefault();
  }
});

function fallbackCopy(text, done) {
  const area = document.createElement("textarea");
  area.value = text;
  area.setAttribute("readonly", "");
  area.style.position = "absolute";
  area.style.left = "-9999px";
  document.body.appendChild(area);
  area.select();
  try { document.execCommand("copy"); done(); } finally { area.remove(); }
}

// <dialog> openers: <button data-dialog="id">.
document.addEventListener("click", (event) => {
  const opener = event.target.closest("[data-dialog]");
  if (opener) {
    const dialog = document.getElementById(opener.getAttribute("data-dialog"));
    if (dialog && dialog.showModal) { event.preventDefault(); dialog.showModal(); }
  }
  const closer = event.target.closest("[data-close-dialog]");
  if (closer) { const dialog = closer.closest("dialog"); if (dialog) dialog.close(); }
});
