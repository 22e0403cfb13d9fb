// A small SVG line chart (loss curves): series of {x, y} points on shared, padded axes.

const NS = "http://www.w3.org/2000/svg";
const DEFAULT_WIDTH = 900;
const H = 230;
const PAD = { left: 52, right: 14, top: 12, bottom: 28 };

function svg(tag, attrs = {}, text) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = text;
  return el;
}

function extent(values) {
  let lo = Math.min(...values);
  let hi = Math.max(...values);
  if (lo === hi) { lo -= 1; hi += 1; }
  return [lo, hi];
}

function ticks([lo, hi], count) {
  return Array.from({ length: count + 1 }, (_, i) => lo + ((hi - lo) * i) / count);
}

const label = (v) => (Math.abs(v) >= 100 ? v.toFixed(0) : Math.abs(v) >= 1 ? v.toFixed(2) : v.toPrecision(2));

// series: [{points: [{x, y}], cls}] -> <svg>, drawn at the pixel width it will be shown at
// (so labels keep their size); an empty chart says so.
export function lineChart(series, { width, testid } = {}) {
  const W = Math.max(320, Math.round(width || DEFAULT_WIDTH));
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, class: "chart", role: "img" });
  if (testid) root.setAttribute("data-testid", testid);
  const all = series.flatMap((s) => s.points).filter((p) => Number.isFinite(p.y));
  if (!all.length) {
    root.append(svg("text", { x: W / 2, y: H / 2, class: "chart-empty", "text-anchor": "middle" },
      "no loss logged yet"));
    return root;
  }
  const xs = extent(all.map((p) => p.x));
  const ys = extent(all.map((p) => p.y));
  const sx = (x) => PAD.left + ((x - xs[0]) / (xs[1] - xs[0])) * (W - PAD.left - PAD.right);
  const sy = (y) => H - PAD.bottom - ((y - ys[0]) / (ys[1] - ys[0])) * (H - PAD.top - PAD.bottom);
  for (const t of ticks(ys, 4)) {
    root.append(svg("line", { x1: PAD.left, x2: W - PAD.right, y1: sy(t), y2: sy(t), class: "grid" }));
    root.append(svg("text", { x: PAD.left - 6, y: sy(t) + 4, "text-anchor": "end", class: "tick" }, label(t)));
  }
  for (const t of ticks(xs, 4)) {
    root.append(svg("text", { x: sx(t), y: H - 8, "text-anchor": "middle", class: "tick" }, Math.round(t)));
  }
  for (const s of series) {
    const pts = s.points.filter((p) => Number.isFinite(p.y));
    if (!pts.length) continue;
    const d = pts.map((p, i) => `${i ? "L" : "M"}${sx(p.x).toFixed(1)},${sy(p.y).toFixed(1)}`).join(" ");
    root.append(svg("path", { d, class: `line ${s.cls || ""}` }, undefined));
    const last = pts[pts.length - 1];
    root.append(svg("circle", { cx: sx(last.x), cy: sy(last.y), r: 3, class: `dot ${s.cls || ""}` }));
  }
  return root;
}
