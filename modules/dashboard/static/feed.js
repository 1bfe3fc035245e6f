// The dashboard's activity feed: the live module's Server-Sent Events (same origin: the session
// cookie goes along), a line per event, newest first, at most MAX_LINES. EventSource reconnects
// by itself and sends Last-Event-ID, so the server replays what was missed; an event already
// shown (same outbox id) is not shown twice. Only the event types in data-events are listened
// to (EventSource hands named events only to their own listeners), with what to call them.
(function () {
  "use strict";

  var MAX_LINES = 50;

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

  function start() {
    var feed = document.getElementById("activity-feed");
    if (!feed || !window.EventSource) return;
    var labels = JSON.parse(feed.dataset.events);
    var lines = feed.querySelector(".feed-lines");
    var state = feed.querySelector(".feed-state");
    var seen = new Set();
    var source = new EventSource(feed.dataset.stream);

    function say(text, kind) {
      state.textContent = text;
      state.dataset.state = kind;
    }

    function show(message) {
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

    Object.keys(labels).forEach(function (type) { source.addEventListener(type, show); });
    source.addEventListener("open", function () { say("Live", "live"); });
    source.addEventListener("error", function () {
      if (source.readyState === EventSource.CLOSED) {
        say("Live updates stopped: reload the page to try again", "stopped");
      } else {
        say("Reconnecting…", "connecting");
      }
    });
    source.addEventListener("session-ended", function (message) {
      source.close();
      var detail = "";
      try {
        detail = JSON.parse(message.data).detail || "";
      } catch (error) {
        detail = "";
      }
      say("Your session ended" + (detail ? ": " + detail : "") + ". Reload the page to log in again.", "stopped");
    });
    window.addEventListener("pagehide", function () { source.close(); });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
