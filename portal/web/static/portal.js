// Progressive enhancement only: every page works without this file.
(function () {
  "use strict";

  // Copy buttons: <button data-copy="input-id" hidden>, shown once scripts run.
  document.querySelectorAll("button[data-copy]").forEach(function (button) {
    var input = document.getElementById(button.getAttribute("data-copy"));
    var status = button.parentElement.querySelector(".copied");
    if (!input) return;
    button.hidden = false;
    button.addEventListener("click", function () {
      input.select();
      var done = function () { if (status) status.textContent = "Copied."; };
      if (navigator.clipboard && navigator.clipboard.writeText) {
        navigator.clipboard.writeText(input.value).then(done, function () {
          document.execCommand("copy"); done();
        });
      } else {
        document.execCommand("copy"); done();
      }
    });
  });

  var utc = function (ts) { return uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC"); };
  var fit = function (element) { return Math.max(280, element.clientWidth || 600); };

  // Publisher analytics: requests and errors (left axis), p95 latency in ms (right axis).
  var analytics = document.getElementById("analytics-chart");
  var analyticsSource = document.getElementById("analytics-data");
  if (analytics && analyticsSource && typeof uPlot !== "undefined") {
    var a = JSON.parse(analyticsSource.textContent);
    var chart = new uPlot({
      width: fit(analytics), height: 280, tzDate: utc,
      scales: { x: { time: true }, ms: {} },
      series: [{},
        { label: "requests", stroke: "#0550ae", width: 2 },
        { label: "errors", stroke: "#cf222e", width: 2 },
        { label: "throttled", stroke: "#bf8700", width: 2 },
        { label: "p95 ms", stroke: "#8250df", dash: [6, 4], width: 2, scale: "ms" }],
      axes: [{}, { label: "requests" }, { side: 1, scale: "ms", label: "p95 latency (ms)", grid: { show: false } }]
    }, [a.x, a.requests, a.errors, a.throttled, a.p95_ms], analytics);
    analytics.setAttribute("data-drawn", "true");
    window.addEventListener("resize", function () { chart.setSize({ width: fit(analytics), height: 280 }); });
  }

  // Usage chart: requests per hour/day by outcome, and the plan's limit as a line.
  var holder = document.getElementById("usage-chart");
  var source = document.getElementById("usage-data");
  if (!holder || !source || typeof uPlot === "undefined") return;
  var data = JSON.parse(source.textContent);
  var colors = { successful: "#1a7f37", throttled: "#bf8700", refused: "#cf222e", errors: "#8250df" };
  var names = ["successful", "throttled", "refused", "errors"];
  var columns = [data.x].concat(names.map(function (n) { return data[n]; }));
  var series = [{}].concat(names.map(function (n) {
    return { label: n, stroke: colors[n], fill: colors[n] + "33", width: 2, points: { show: true, size: 6 } };
  }));
  if (data.quota > 0) {
    columns.push(data.x.map(function () { return data.quota; }));
    series.push({ label: "limit", stroke: "#57606a", dash: [6, 4], width: 1, points: { show: false } });
  }
  var width = function () { return Math.max(280, holder.clientWidth || 600); };
  var plot = new uPlot({
    width: width(), height: 260, series: series,
    scales: { x: { time: true } },
    tzDate: function (ts) { return uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC"); },
    axes: [{}, { label: "requests" }]
  }, columns, holder);
  holder.setAttribute("data-drawn", "true");
  window.addEventListener("resize", function () { plot.setSize({ width: width(), height: 260 }); });
})();
