// The dashboard's daily volume chart (the vendored uPlot), drawn from the series the page carries
// in #volume-chart's data-series attribute: {"days": ["2026-11-01", ...], "volume": ["9500.00",
// ...], "currency": "IDR"}. Amounts stay the API's strings for what is written (the legend);
// only the bars' heights use them as numbers. No inline script: the page's CSP allows none.
(function () {
  "use strict";

  var HEIGHT = 260;
  var DAY_SECONDS = 86400;

  function draw(box) {
    var series = JSON.parse(box.dataset.series);
    // Each day at midnight UTC, shown in UTC: the day the server named, whatever the browser's zone.
    var days = series.days.map(function (day) { return Date.parse(day + "T00:00:00Z") / 1000; });
    // A day without volume has no bar (not a flat one on the axis).
    var heights = series.volume.map(function (amount) { return Number(amount) > 0 ? Number(amount) : null; });
    var compact = new Intl.NumberFormat(undefined, { notation: "compact", maximumFractionDigits: 1 });
    var options = {
      width: Math.max(box.clientWidth, 280),
      height: HEIGHT,
      tzDate: function (ts) { return uPlot.tzDate(new Date(ts * 1000), "Etc/UTC"); },
      cursor: { drag: { x: false, y: false } },
      scales: {
        x: { time: true, range: function (u, min, max) { return [min - DAY_SECONDS / 2, max + DAY_SECONDS / 2]; } },
        y: { range: function (u, min, max) { return [0, max > 0 ? max * 1.1 : 1]; } },
      },
      axes: [
        { space: 60 },
        { size: 56, values: function (u, ticks) { return ticks.map(function (v) { return compact.format(v); }); } },
      ],
      series: [
        { label: "Day", value: function (u, ts, si, i) { return i == null ? "—" : series.days[i]; } },
        {
          label: "Volume (" + series.currency + ")",
          stroke: "#0b5cad",
          fill: "rgba(11, 92, 173, 0.35)",
          width: 1,
          paths: uPlot.paths.bars({ size: [0.7, 48] }),
          points: { show: false },
          value: function (u, v, si, i) { return i == null ? "—" : series.volume[i]; },
        },
      ],
    };
    var chart = new uPlot(options, [days, heights], box);
    var resizing = null;
    window.addEventListener("resize", function () {
      clearTimeout(resizing);
      resizing = setTimeout(function () {
        chart.setSize({ width: Math.max(box.clientWidth, 280), height: HEIGHT });
      }, 100);
    });
    box.dataset.drawn = "yes";
  }

  function start() {
    var box = document.getElementById("volume-chart");
    if (box && window.uPlot) {
      draw(box);
    }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
