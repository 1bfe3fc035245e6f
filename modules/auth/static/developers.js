/* The Developers screens (API keys, webhooks): a secret shown once, copying it, and a
   confirmation before a change that cannot be undone. Loaded with defer: the page is parsed. */
(function () {
  "use strict";

  // The page showing a secret answers a POST. Replacing its history entry with the plain
  // address makes a reload (or coming back to it) fetch that page, without the secret,
  // instead of posting the form again.
  var shown = document.querySelector("[data-secret-once]");
  if (shown && window.history && window.history.replaceState) {
    window.history.replaceState(null, "", shown.getAttribute("data-reload-url"));
  }

  document.querySelectorAll("button[data-copy]").forEach(function (button) {
    var field = document.getElementById(button.getAttribute("data-copy"));
    if (!field || !navigator.clipboard) {
      return; // stays hidden: the field can still be selected and copied by hand
    }
    button.hidden = false;
    button.addEventListener("click", function () {
      navigator.clipboard.writeText(field.value).then(
        function () { button.textContent = "Copied"; },
        function () { field.select(); }
      );
    });
  });

  document.querySelectorAll("form[data-confirm]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (!window.confirm(form.getAttribute("data-confirm"))) {
        event.preventDefault();
      }
    });
  });

  // A form is sent once: a second click while the answer is on its way would create a second
  // key or roll again (the server refuses that too, but the page would then show no secret).
  // Registered after the confirmations: a cancelled form stays usable.
  document.querySelectorAll("form[method=post]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (event.defaultPrevented) {
        return;
      }
      form.querySelectorAll("button[type=submit]").forEach(function (button) {
        button.disabled = true;
      });
    });
  });
  // Coming back to the page from the history may show it as it was left: usable again.
  window.addEventListener("pageshow", function () {
    document.querySelectorAll("form[method=post] button[type=submit]").forEach(function (button) {
      button.disabled = false;
    });
  });
})();
