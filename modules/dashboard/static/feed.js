// The dashboard's activity feed: the live module's Server-Sent Events (same origin: the session
// cookie goes along), a line per event, newest first, at most MAX_LINES. Only the event types in
// data-events are listened to (EventSource hands named events only to their own listeners), with
// what to call them; an event already shown (same outbox id) is not shown twice.
//
// Reconnecting. When a stream ends (after an hour, a server stopping, a client too slow),
// EventSource reconnects by itself with Last-Event-ID, and the server replays what was missed.
// But an answer other than 200 (a full or stopping server's 503, a 429, a 401) closes it for good,
// and it never reads Retry-After. Then the feed asks the stream why with a HEAD request: a 401
// means the session is gone (below); anything else, or no answer, opens a new EventSource after a
// wait that doubles from 2 s to 30 s (at least the Retry-After, with some jitter), resuming with
// ?last_event_id= (a new EventSource cannot send the header): the id of the last event received,
// else the position the page was rendered at (data-last-event-id), so nothing committed since the
// page was drawn is lost.
//
// The session. A stream whose session was replaced, ended or expired sends session-ended; a
// reconnect after that is a 401. Either way the feed loads this page again: the server sends a
// browser whose session is gone to the login page with a message saying why (modules/web), and
// back here after the login. A changed role (role-changed) loads the page again too: it then
// shows what the new role may see. An open feed is not activity: the stream does not slide the
// session's idle expiry, so a dashboard left open is logged out after LAPAK_SESSION_IDLE_MINUTES
// like any page nobody uses.
//
// replay-truncated: the feed was too far behind for the server to replay what it missed, so the
// page is loaded again for figures that include it (at most once a minute, else it says so).
(function () {
  "use strict";

  var MAX_LINES = 50;
  var FIRST_WAIT_MS = 2000;
  var LONGEST_WAIT_MS = 30000;
  var RELOADED_AT = "lapak.feed.reloaded-at";

  function describe(payload) {
    // What the event is about, from the fields its payload names: its number, its amount, its state.
    var parts = [];
    var name = payload.name || payload.reference || payload.credit_note;
    if (name) parts.push(name);
    var amount = payload.amount != null ? payload.amount : payload.amount_total;
    if (amount != null) parts.push(amount + (payload.currency ? " " + payload.currency : ""));
    var state = payload.state || payload.payment_state;
    if (state) parts.push(state);
    if (payload.reason) parts.push(payload.reason);
    return parts.join(" · ");
  }

  function clock(iso) {
    var moment = new Date(iso);
    if (isNaN(moment.getTime())) return iso;
    return moment.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  }

  function reloadedAt() {
    try {
      return Number(window.sessionStorage.getItem(RELOADED_AT) || 0);
    } catch (error) {
      return Date.now(); // no storage: never reload by itself
    }
  }

  function remember(key, value) {
    try {
      window.sessionStorage.setItem(key, value);
    } catch (error) {
      // no storage: reloadedAt() says not to reload
    }
  }

  function reloadPage() {
    // A fresh GET of this page: the server answers it, or sends it to the login page saying why.
    window.location.assign(window.location.href);
  }

  function start() {
    var feed = document.getElementById("activity-feed");
    if (!feed || !window.EventSource) return;
    var labels = JSON.parse(feed.dataset.events);
    var stream = feed.dataset.stream;
    var lines = feed.querySelector(".feed-lines");
    var state = feed.querySelector(".feed-state");
    var seen = new Set();
    var lastId = feed.dataset.lastEventId || "";
    var source = null;
    var wait = 0;
    var timer = null;
    var done = false;

    function say(text, kind) {
      state.textContent = text;
      state.dataset.state = kind;
    }

    function resumeUrl() {
      return lastId ? stream + "?last_event_id=" + encodeURIComponent(lastId) : stream;
    }

    function note(message) {
      if (message.lastEventId && (!lastId || +message.lastEventId > +lastId)) {
        lastId = message.lastEventId;
      }
    }

    function show(message) {
      note(message);
      if (message.lastEventId && seen.has(message.lastEventId)) return;
      var event;
      try {
        event = JSON.parse(message.data);
      } catch (error) {
        return;
      }
      if (message.lastEventId) seen.add(message.lastEventId);
      var line = document.createElement("li");
      line.dataset.type = message.type;
      line.dataset.id = message.lastEventId;
      var time = document.createElement("time");
      time.dateTime = event.time;
      time.textContent = clock(event.time);
      var what = document.createElement("strong");
      what.textContent = labels[message.type] || message.type;
      var detail = document.createElement("span");
      detail.className = "detail";
      detail.textContent = describe(event.payload || {});
      line.append(time, " ", what, " ", detail);
      lines.prepend(line);
      while (lines.children.length > MAX_LINES) {
        var last = lines.lastElementChild;
        seen.delete(last.dataset.id);
        lines.removeChild(last);
      }
      feed.dataset.lines = String(lines.children.length);
    }

    function stop() {
      done = true;
      if (timer) clearTimeout(timer);
      if (source) source.close();
    }

    function sessionEnded(message) {
      stop();
      var ended = {};
      try {
        ended = JSON.parse(message.data) || {};
      } catch (error) {
        ended = {};
      }
      say("Your session ended" + (ended.detail ? ": " + ended.detail : "") + ". Opening the login page…", "stopped");
      feed.dataset.ended = ended.reason || "session-ended";
      reloadPage();
    }

    function truncated(message) {
      note(message);
      if (Date.now() - reloadedAt() > 60000) {
        remember(RELOADED_AT, String(Date.now()));
        stop();
        say("Catching up: loading the page again…", "connecting");
        reloadPage();
      } else {
        say("Live, but some earlier activity is not shown: reload the page to see it", "live");
      }
    }

    function later(retryAfterSeconds) {
      wait = Math.min(LONGEST_WAIT_MS, wait ? wait * 2 : FIRST_WAIT_MS);
      var delay = Math.max(wait * (0.75 + Math.random() / 2), (retryAfterSeconds || 0) * 1000);
      say("Reconnecting…", "connecting");
      timer = setTimeout(connect, delay);
    }

    function closed() {
      // The stream answered something other than 200, or could not be reached: ask it why.
      say("Reconnecting…", "connecting");
      window.fetch(stream, { method: "HEAD", credentials: "same-origin", cache: "no-store" }).then(
        function (answer) {
          if (done) return;
          if (answer.status === 401) {
            stop();
            say("Your session ended. Opening the login page…", "stopped");
            reloadPage();
            return;
          }
          later(parseInt(answer.headers.get("Retry-After") || "0", 10) || 0);
        },
        function () {
          if (!done) later(0);
        }
      );
    }

    function connect() {
      timer = null;
      if (done) return;
      source = new EventSource(resumeUrl());
      var own = source;
      Object.keys(labels).forEach(function (type) { own.addEventListener(type, show); });
      own.addEventListener("open", function () {
        wait = 0;
        say("Live", "live");
      });
      own.addEventListener("error", function () {
        if (done || own !== source) return;
        if (own.readyState === EventSource.CLOSED) {
          closed();
        } else {
          say("Reconnecting…", "connecting"); // EventSource tries again by itself
        }
      });
      own.addEventListener("session-ended", sessionEnded);
      own.addEventListener("replay-truncated", truncated);
    }

    window.addEventListener("pagehide", stop);
    window.addEventListener("pageshow", function (shown) {
      if (shown.persisted && done) {
        // Back from the browser's page cache: the same page, its stream closed at pagehide.
        done = false;
        wait = 0;
        connect();
      }
    });
    connect();
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
