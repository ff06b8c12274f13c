// Keyplane dashboard: the little a server-rendered page cannot do alone. No inline script
// anywhere (the Content-Security-Policy forbids it); every behaviour hangs off data attributes.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  // The copy-once views (a key, a webhook signing secret): the address bar shows the key's page (so reload and back never
  // re-post the form or show the key again), and the key leaves the page when it is left.
  const replaceUrl = document.body.dataset.replaceUrl;
  if (replaceUrl) {
    history.replaceState(null, "", replaceUrl);
    window.addEventListener("pagehide", () => {
      for (const id of ["new-key", "new-secret"]) {
        const secret = document.getElementById(id);
        if (secret) secret.textContent = "(hidden: it was shown once)";
      }
    });
  }

  // A page restored from the back-forward cache is fetched again instead.
  window.addEventListener("pageshow", (event) => {
    if (event.persisted && replaceUrl) location.reload();
  });

  // Copy buttons: data-copy names the element whose text is copied.
  for (const button of document.querySelectorAll("button[data-copy]")) {
    button.addEventListener("click", async () => {
      const source = document.getElementById(button.dataset.copy);
      const status = document.getElementById(button.dataset.status || "");
      try {
        await navigator.clipboard.writeText(source.textContent.trim());
        if (status) status.textContent = "Copied to the clipboard.";
      } catch (error) {
        if (status) status.textContent = "Could not copy: select the key and copy it by hand.";
      }
    });
  }

  // One-time links carry their token in the fragment (never sent to a server or logged):
  // it goes into the form's hidden field, and out of the address bar.
  for (const field of document.querySelectorAll("input[data-from-fragment]")) {
    const match = /(?:^#|&)token=([^&]+)/.exec(location.hash);
    if (match) {
      field.value = decodeURIComponent(match[1]);
      history.replaceState(null, "", location.pathname);
    }
    const form = field.form;
    if (form && form.dataset.autosubmit !== undefined && field.value) form.submit();
    const missing = document.getElementById("token-missing");
    if (missing && !field.value) missing.hidden = false;
  }

  // The expiry date field is only needed for "On a date".
  const dateField = document.getElementById("expires-date");
  if (dateField) {
    const sync = () => {
      const chosen = document.querySelector("input[name=expires]:checked");
      dateField.disabled = !(chosen && chosen.value === "date");
    };
    for (const radio of document.querySelectorAll("input[name=expires]")) {
      radio.addEventListener("change", sync);
    }
    sync();
  }
});
