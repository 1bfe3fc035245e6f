// The web client's own script, on every page (a file: the CSP allows no inline script).
// A refused htmx request (a wrong role, a stale CSRF token, a service's refusal, an outage)
// shows in the layout's notices instead of doing nothing.
(function () {
  "use strict";

  function showNotice(text) {
    var notices = document.getElementById("notices");
    if (!notices) {
      return;
    }
    var line = document.createElement("p");
    line.className = "notice notice-error";
    line.setAttribute("role", "alert");
    line.textContent = text;
    notices.replaceChildren(line);
  }

  // The shell answers a refused htmx request with a notice aimed at #notices (HX-Retarget);
  // htmx swaps no error answer unless told to.
  document.addEventListener("htmx:beforeSwap", function (event) {
    var detail = event.detail;
    if (detail.isError && detail.xhr.getResponseHeader("HX-Retarget") === "#notices") {
      detail.shouldSwap = true;
      detail.isError = false;
    }
  });

  // Any other failed answer (a proxy's error page, say) or none at all says so too.
  document.addEventListener("htmx:responseError", function (event) {
    showNotice(
      "The request failed (error " + event.detail.xhr.status + "). Reload the page and try again."
    );
  });
  document.addEventListener("htmx:sendError", function () {
    showNotice("The server could not be reached. Check the connection and try again.");
  });
})();
