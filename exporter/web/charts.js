// Small hand-rolled SVG charts: time series (line/area), horizontal bars and a donut pie.
// Each call redraws the whole <svg> at its current on-screen width, so text stays readable on any
// screen; colours come from CSS (classes or custom properties) so the light/dark theme applies.

const SVG_NS = 'http://www.w3.org/2000/svg';

function draw(parent, name, attrs = {}, text) {
  const node = document.createElementNS(SVG_NS, name);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === 'style') Object.assign(node.style, value);
    else node.setAttribute(key, value);
  }
  if (text !== undefined) node.textContent = text;
  parent.append(node);
  return node;
}

// Prepare an <svg> for drawing; returns its width, or 0 when it is not laid out (hidden tab).
function canvas(svg, height) {
  const width = Math.round(svg.getBoundingClientRect().width);
  if (!width) return 0;
  svg.replaceChildren();
  svg.setAttribute('viewBox', `0 0 ${width} ${height}`);
  svg.setAttribute('height', height);
  return width;
}

const ONE_TWO_FIVE = (raw) => {
  const power = 10 ** Math.floor(Math.log10(raw));
  return [1, 2, 5, 10].find((m) => m * power >= raw) * power;
};

/** Steps that read naturally on a clock: seconds, then whole minutes, then hours. */
export const DURATION_STEPS = (raw) => [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200]
  .find((step) => step >= raw) ?? ONE_TWO_FIVE(raw / 3600) * 3600;

// Grid values from 0 to a round top a little above `max` (about four steps), so lines never sit
// on the top edge and labels read 0, 10, 20… rather than 0, 12.5, 25…
function axisTicks(max, stepFor = ONE_TWO_FIVE) {
  const step = stepFor(max > 0 ? max / 4 : 0.25);
  const top = (Math.floor(max / step) + 1) * step;
  const ticks = [];
  for (let value = 0; value <= top + step / 2; value += step) ticks.push(value);
  return ticks;
}

function emptyMessage(svg, width, height, message) {
  draw(svg, 'text', { x: width / 2, y: height / 2, 'text-anchor': 'middle', class: 'chart-empty' }, message);
}

/** Where the time axis is labelled: every minute for 5 min, every 3 for 15, every 10 for an hour. */
function timeLabelStep(windowSeconds) {
  if (windowSeconds <= 600) return 60;
  if (windowSeconds <= 1800) return 180;
  return 600;
}

/**
 * Line or area chart over a sliding time window ending now.
 * series: [{ points: [[timeMs, value|null], ...], className, area, name }]; nulls are gaps.
 * unit: shown above the axis and in the tooltip; describe(value) gives a value with its unit.
 */
export function timeSeriesChart(svg, { series, windowSeconds = 300, now = Date.now(),
  formatValue = String, describe = formatValue, unit = '', height = 180, gapSeconds = 5, steps }) {
  const width = canvas(svg, height);
  if (!width) return;
  const start = now - windowSeconds * 1000;
  const visible = series.map((s) => ({ ...s,
    points: s.points.filter(([t, v]) => t >= start && t <= now + 1000 && v != null && Number.isFinite(v)) }));
  svg.dataset.points = String(Math.max(0, ...visible.map((s) => s.points.length)));
  if (!visible.some((s) => s.points.length)) {
    emptyMessage(svg, width, height, 'Waiting for data…');
    svg.chartTip = null;
    return;
  }
  const ticks = axisTicks(Math.max(...visible.flatMap((s) => s.points.map(([, v]) => v))), steps);
  const top = ticks.at(-1);
  const labelWidth = Math.max(...ticks.map((v) => formatValue(v).length), unit.length * 0.8) * 7 + 10;
  const box = { left: labelWidth, right: width - 8, top: unit ? 20 : 8, bottom: height - 22 };
  const x = (t) => box.left + ((t - start) / (now - start)) * (box.right - box.left);
  const y = (v) => box.bottom - (v / top) * (box.bottom - box.top);

  if (unit) draw(svg, 'text', { x: 2, y: 11, class: 'chart-label chart-unit' }, unit);
  for (const tick of ticks) {
    draw(svg, 'line', { x1: box.left, x2: box.right, y1: y(tick), y2: y(tick), class: 'chart-gridline' });
    draw(svg, 'text', { x: box.left - 6, y: y(tick) + 4, 'text-anchor': 'end', class: 'chart-label' },
      formatValue(tick));
  }
  const labelEvery = timeLabelStep(windowSeconds);
  for (let ago = 0; ago <= windowSeconds; ago += labelEvery) {
    const label = ago === 0 ? 'now' : `−${ago / 60} min`;
    const anchor = ago === 0 ? 'end' : (ago === windowSeconds ? 'start' : 'middle');
    draw(svg, 'text', { x: x(now - ago * 1000), y: height - 6, 'text-anchor': anchor,
      class: 'chart-label' }, label);
  }

  for (const s of visible) {
    if (!s.points.length) continue;
    // A gap in the samples means the service or the stream was down; bridging it would invent data.
    for (const run of splitAtGaps(s.points, gapSeconds * 1000)) {
      const line = run.map(([t, v], i) => `${i ? 'L' : 'M'}${x(t).toFixed(1)},${y(v).toFixed(1)}`).join('');
      if (s.area) {
        const first = x(run[0][0]).toFixed(1);
        const last = x(run.at(-1)[0]).toFixed(1);
        draw(svg, 'path', { d: `${line}L${last},${box.bottom}L${first},${box.bottom}Z`,
          class: `chart-area ${s.className}` });
      }
      draw(svg, 'path', { d: line, class: `chart-line ${s.className}` });
    }
    const [lastT, lastV] = s.points.at(-1);
    draw(svg, 'circle', { cx: x(lastT), cy: y(lastV), r: 3.5, class: `chart-dot ${s.className}` });
  }
  const guide = draw(svg, 'line', { x1: 0, x2: 0, y1: box.top, y2: box.bottom, class: 'chart-guide',
    visibility: 'hidden' });
  svg.chartTip = { visible, x, y, box, describe, guide, start, now };
  armTooltip(svg);
}

const timeOfDay = new Intl.DateTimeFormat(undefined, { hour: 'numeric', minute: '2-digit', second: '2-digit' });

// One tooltip per chart: the nearest sample to the pointer, each series with its unit.
function armTooltip(svg) {
  if (svg.dataset.tooltip) return;
  svg.dataset.tooltip = 'on';
  const tip = document.createElement('div');
  tip.className = 'chart-tip';
  tip.hidden = true;
  tip.setAttribute('role', 'presentation');
  svg.after(tip);
  const hide = () => {
    tip.hidden = true;
    svg.chartTip?.guide.setAttribute('visibility', 'hidden');
  };
  svg.addEventListener('pointerleave', hide);
  svg.addEventListener('pointermove', (event) => {
    const state = svg.chartTip;
    if (!state) return hide();
    const bounds = svg.getBoundingClientRect();
    const scale = bounds.width / (svg.viewBox.baseVal?.width || bounds.width);
    const px = (event.clientX - bounds.left) / scale;
    const at = state.start + ((px - state.box.left) / (state.box.right - state.box.left)) * (state.now - state.start);
    const rows = [];
    let when = null;
    for (const s of state.visible) {
      const point = nearest(s.points, at);
      if (!point) continue;
      when ??= point[0];
      rows.push(`${s.name ? `${s.name}: ` : ''}${state.describe(point[1])}`);
    }
    if (when == null) return hide();
    tip.textContent = `${timeOfDay.format(new Date(when))} · ${rows.join(' · ')}`;
    tip.hidden = false;
    const gx = state.x(when);
    state.guide.setAttribute('x1', gx);
    state.guide.setAttribute('x2', gx);
    state.guide.setAttribute('visibility', 'visible');
    tip.style.left = `${Math.min(Math.max(0, gx * scale - tip.offsetWidth / 2), bounds.width - tip.offsetWidth)}px`;
  });
}

function nearest(points, at) {
  let lo = 0;
  let hi = points.length - 1;
  if (hi < 0) return null;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (points[mid][0] < at) lo = mid + 1;
    else hi = mid;
  }
  const before = points[Math.max(0, lo - 1)];
  return Math.abs(before[0] - at) < Math.abs(points[lo][0] - at) ? before : points[lo];
}

function splitAtGaps(points, maxGapMs) {
  const runs = [];
  let run = [];
  for (const point of points) {
    if (run.length && point[0] - run.at(-1)[0] > maxGapMs) {
      runs.push(run);
      run = [];
    }
    run.push(point);
  }
  if (run.length) runs.push(run);
  return runs;
}

/** Horizontal bars, one row per item: label on the left, value at the end of the bar. */
export function barChart(svg, { bars, formatValue = String, describe = formatValue, rowHeight = 30 }) {
  const height = Math.max(1, bars.length) * rowHeight + 8;
  const width = canvas(svg, height);
  if (!width) return;
  if (!bars.length) {
    emptyMessage(svg, width, height, 'No activity yet');
    return;
  }
  const labelWidth = Math.min(width * 0.35, Math.max(...bars.map((b) => b.label.length)) * 7.5 + 12);
  const valueWidth = Math.max(...bars.map((b) => formatValue(b.value).length)) * 7.5 + 12;
  const span = width - labelWidth - valueWidth;
  const top = Math.max(...bars.map((b) => b.value)) || 1;
  bars.forEach((bar, i) => {
    const y = 4 + i * rowHeight;
    const length = Math.max(2, (bar.value / top) * span);
    draw(svg, 'text', { x: labelWidth - 8, y: y + rowHeight / 2 + 4, 'text-anchor': 'end',
      class: 'chart-label chart-label-strong' }, bar.label);
    const rect = draw(svg, 'rect', { x: labelWidth, y: y + 5, width: length, height: rowHeight - 10, rx: 4,
      class: 'chart-bar', style: { fill: bar.color } });
    draw(rect, 'title', {}, `${bar.label}: ${describe(bar.value)}`);
    draw(svg, 'text', { x: labelWidth + length + 6, y: y + rowHeight / 2 + 4, class: 'chart-label' },
      formatValue(bar.value));
  });
}

/** Donut chart of shares; the centre shows the total. */
export function pieChart(svg, { slices, size = 200, centreLabel = '', describe = String }) {
  const width = canvas(svg, size);
  if (!width) return;
  const total = slices.reduce((sum, s) => sum + s.value, 0);
  if (!total) {
    emptyMessage(svg, width, size, 'No shoppers online');
    return;
  }
  const cx = width / 2;
  const cy = size / 2;
  const outer = size / 2 - 4;
  const inner = outer * 0.58;
  let angle = -Math.PI / 2;
  for (const slice of slices) {
    const sweep = (slice.value / total) * Math.PI * 2;
    const path = sweep >= Math.PI * 2 - 1e-6
      ? ring(cx, cy, outer, inner)
      : wedge(cx, cy, outer, inner, angle, angle + sweep);
    const node = draw(svg, 'path', { d: path, class: 'chart-slice', style: { fill: slice.color } });
    draw(node, 'title', {}, `${slice.label}: ${describe(slice.value, slice.value / total)}`);
    angle += sweep;
  }
  draw(svg, 'text', { x: cx, y: cy + 2, 'text-anchor': 'middle', class: 'chart-centre' }, String(total));
  draw(svg, 'text', { x: cx, y: cy + 20, 'text-anchor': 'middle', class: 'chart-label' }, centreLabel);
}

function polar(cx, cy, r, a) {
  return `${(cx + r * Math.cos(a)).toFixed(2)},${(cy + r * Math.sin(a)).toFixed(2)}`;
}

function wedge(cx, cy, outer, inner, from, to) {
  const large = to - from > Math.PI ? 1 : 0;
  return `M${polar(cx, cy, outer, from)}A${outer},${outer} 0 ${large} 1 ${polar(cx, cy, outer, to)}`
    + `L${polar(cx, cy, inner, to)}A${inner},${inner} 0 ${large} 0 ${polar(cx, cy, inner, from)}Z`;
}

// A full circle cannot be one arc command, so a 100 % slice is drawn as two half rings.
function ring(cx, cy, outer, inner) {
  return wedge(cx, cy, outer, inner, 0, Math.PI) + wedge(cx, cy, outer, inner, Math.PI, Math.PI * 2);
}
