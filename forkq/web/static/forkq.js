// forkq web UI: confirmations, select-all, and the dashboard's live chart.
// Loaded as a file (the Content-Security-Policy forbids inline script); works without it too.
"use strict";

document.addEventListener("click", function (event) {
  var button = event.target.closest("[data-confirm]");
  if (button && !window.confirm(button.getAttribute("data-confirm"))) {
    event.preventDefault();
  }
});

document.addEventListener("change", function (event) {
  var name = event.target.getAttribute("data-check-all");
  if (!name) return;
  var form = event.target.form;
  form.querySelectorAll('input[type=checkbox][name="' + name + '"]').forEach(function (box) {
    box.checked = event.target.checked;
  });
});

document.addEventListener("DOMContentLoaded", function () {
  var panel = document.getElementById("live");
  if (panel) startLiveChart(panel);
  // On a phone the tabs scroll sideways; keep the current one in view.
  var active = document.querySelector(".tabs .active");
  if (active) active.scrollIntoView({block: "nearest", inline: "nearest"});
});

function startLiveChart(panel) {
  var url = panel.getAttribute("data-stats-url");
  var interval = Number(panel.getAttribute("data-interval")) * 1000;
  var svg = document.getElementById("live-chart");
  var toggle = document.getElementById("live-toggle");
  var samples = [];  // {processed, failed} deltas, oldest first
  // Seeded with the counters the page was rendered with, so the first poll already draws a
  // sample (the jobs since the page loaded), and the axes show at once.
  var last = {processed: Number(panel.getAttribute("data-processed")),
              failed: Number(panel.getAttribute("data-failed"))};
  var paused = false;
  var MAX_SAMPLES = 60;

  panel.hidden = false;
  toggle.addEventListener("click", function () {
    paused = !paused;
    toggle.textContent = paused ? "Resume" : "Pause";
  });

  function poll() {
    if (paused || document.hidden) return;
    fetch(url, {credentials: "same-origin", headers: {Accept: "application/json"}})
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (stats) {
        if (!stats) return;
        updateCards(stats);
        if (last) {
          samples.push({processed: Math.max(0, stats.processed - last.processed),
                        failed: Math.max(0, stats.failed - last.failed)});
          if (samples.length > MAX_SAMPLES) samples.shift();
        }
        last = stats;
        draw(svg, samples, MAX_SAMPLES);
      })
      .catch(function () { /* the next poll tries again */ });
  }
  draw(svg, samples, MAX_SAMPLES);
  window.setTimeout(poll, Math.min(interval, 1000));
  window.setInterval(poll, interval);
}

function updateCards(stats) {
  document.querySelectorAll("[data-stat]").forEach(function (element) {
    var value = stats[element.getAttribute("data-stat")];
    if (typeof value === "number") element.textContent = value.toLocaleString("en-US");
  });
}

function draw(svg, samples, slots) {
  var NS = "http://www.w3.org/2000/svg";
  var width = 800, height = 140, left = 72, right = 12, top = 10, bottom = 10;
  var highest = 1;
  samples.forEach(function (s) { highest = Math.max(highest, s.processed, s.failed); });
  var step = niceStep(highest);
  var ceiling = step * Math.ceil(highest / step);
  while (svg.firstChild) svg.removeChild(svg.firstChild);

  function x(i) { return left + (width - left - right) * (i + slots - samples.length) / (slots - 1); }
  function y(v) { return top + (height - top - bottom) * (1 - v / ceiling); }
  function add(tag, attributes, text) {
    var element = document.createElementNS(NS, tag);
    Object.keys(attributes).forEach(function (k) { element.setAttribute(k, attributes[k]); });
    if (text !== undefined) element.textContent = text;
    svg.appendChild(element);
  }
  for (var v = 0; v <= ceiling; v += step) {
    add("line", {"class": "grid", x1: left, x2: width - right, y1: y(v), y2: y(v)});
    add("text", {"class": "axis", x: left - 8, y: y(v), "text-anchor": "end",
                 "dominant-baseline": "middle"}, String(v));
  }
  ["processed", "failed"].forEach(function (key) {
    var points = samples.map(function (s, i) { return x(i).toFixed(1) + "," + y(s[key]).toFixed(1); });
    if (points.length) add("polyline", {"class": "line-" + key, points: points.join(" ")});
  });
}

function niceStep(maximum) {
  var raw = maximum / 3;
  var power = Math.pow(10, Math.floor(Math.log10(raw)));
  var multipliers = [1, 2, 5, 10];
  for (var i = 0; i < multipliers.length; i++) {
    if (multipliers[i] * power >= raw) return Math.max(1, multipliers[i] * power);
  }
  return Math.max(1, 10 * power);
}
