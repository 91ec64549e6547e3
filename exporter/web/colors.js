// One colour per activity, the same in every chart, badge and legend, in both themes.
// Known activities have fixed hues far apart; others get the next spare hue in the order they are
// first seen, so no two share one. "unknown" and "other" are neutral grey: they are not activities.

const FIXED = { Browsing: 215, Search: 275, Product: 175, Cart: 125, Checkout: 35, Delivery: 320,
  Deals: 0, Account: 55 };
const SPARE = [95, 245, 190, 295, 15, 150, 340, 70, 260, 110, 305, 230];
const NEUTRAL = { unknown: 'Unknown', other: 'Other', '': 'Unknown' };
const assigned = new Map();

/** True for the stand-ins that are no activity of their own (shown grey). */
export function isNeutral(name = '') {
  return name.toLowerCase() in NEUTRAL;
}

/** How an activity is named on the page ("Unknown" and "Other" capitalised). */
export function activityLabel(name = '') {
  return NEUTRAL[name.toLowerCase()] ?? name;
}

/** The hue of an activity (null for the neutral ones). */
export function activityHue(name = '') {
  if (isNeutral(name)) return null;
  if (name in FIXED) return FIXED[name];
  if (!assigned.has(name)) {
    const i = assigned.size;
    // Past the spare hues, keep turning by the golden angle: never the same hue twice.
    assigned.set(name, i < SPARE.length ? SPARE[i] : Math.round((i * 137.508) % 360 * 10) / 10);
  }
  return assigned.get(name);
}

/** The activity's colour for charts; follows the theme through --chart-lightness. */
export function activityColor(name = '') {
  const hue = activityHue(name);
  if (hue != null) return `hsl(${hue} 62% var(--chart-lightness))`;
  // Two greys, so Unknown and Other stay apart from each other too.
  return name.toLowerCase() === 'other' ? 'hsl(0 0% var(--other-lightness))' : 'hsl(0 0% var(--unknown-lightness))';
}

/** CSS custom properties for an activity's badge or card (hue, and no saturation when neutral). */
export function activityStyle(name = '') {
  const hue = activityHue(name);
  return hue == null ? '--hue: 0; --sat: 0%' : `--hue: ${hue}; --sat: 65%`;
}
