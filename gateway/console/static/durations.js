// Durations for the console: how long a run or a stage took, from its status times,
// and how a number of seconds is shown. The times to the millisecond
// (startTimePrecise, completionTimePrecise) are used when the status has them; the
// Kubernetes-style whole-second ones (startTime, completionTime) otherwise, and the
// duration then says it is only known to the second. Loaded by the page before app.js,
// and by the unit tests in node (module.exports below).
"use strict";

/** Milliseconds since the epoch of an RFC 3339 time, or null when there is none. */
function timeMs(text) {
  if (typeof text !== "string" || !text) return null;
  const ms = Date.parse(text);
  return Number.isNaN(ms) ? null : ms;
}

/** { seconds, precise } between an object's start and completion times; null until both
 *  are known. `precise`: from the millisecond times, not the whole-second ones. */
function statusDuration(obj) {
  if (!obj) return null;
  const pairs = [["startTimePrecise", "completionTimePrecise", true], ["startTime", "completionTime", false]];
  for (const [from, to, precise] of pairs) {
    const a = timeMs(obj[from]);
    const b = timeMs(obj[to]);
    if (a !== null && b !== null) return { seconds: Math.max(b - a, 0) / 1000, precise };
  }
  return null;
}

function fmtSeconds(s) {
  if (s === null || s === undefined || Number.isNaN(s)) return "–";
  if (s < 1) return `${Math.round(s * 1000)} ms`;
  if (s < 120) return `${s.toFixed(1)} s`;
  if (s < 7200) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
  if (s < 172800) return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`;
  return `${Math.floor(s / 86400)} days ${Math.round((s % 86400) / 3600)} h`;
}

/** A statusDuration as shown: to the millisecond when precise; from whole-second times
 *  only to the second ("< 1 s" when both fell in the same second). */
function fmtDuration(d) {
  if (!d) return "–";
  if (d.precise) return fmtSeconds(d.seconds);
  if (d.seconds < 1) return "< 1 s";
  return d.seconds < 120 ? `≈ ${Math.round(d.seconds)} s` : `≈ ${fmtSeconds(d.seconds)}`;
}

if (typeof module === "object" && module.exports) {
  module.exports = { timeMs, statusDuration, fmtSeconds, fmtDuration };
}
