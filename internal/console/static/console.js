// Keyward console: the little the pages need beyond HTML. Served from the console itself (CSP script-src
// 'self'); the pages work without it.
(function () {
  "use strict";
  // Count down to the session's end, and go to the sign-in page when it comes: the server ends the session
  // then whatever this script does.
  var expires = Number(document.body.getAttribute("data-expires") || 0);
  var left = document.getElementById("session-left");
  if (expires > 0 && left) {
    var tick = function () {
      var ms = expires - Date.now();
      if (ms <= 0) {
        window.location.assign("/console/login?ended=1");
        return;
      }
      var min = Math.ceil(ms / 60000);
      left.textContent = "session: " + min + " min left";
    };
    tick();
    window.setInterval(tick, 15000);
  }
  // The revoke form's button stays disabled until a reason is chosen.
  var reason = document.getElementById("reason-select");
  var revoke = document.getElementById("revoke-button");
  if (reason && revoke) {
    var sync = function () { revoke.disabled = reason.value === ""; };
    reason.addEventListener("change", sync);
    sync();
  }
})();
