// Numbers for people. Amounts arrive as strings of base units (u64 does not fit a JavaScript
// number) and are formatted exactly with BigInt: every digit the chain holds is shown.

/** Base units as whole tokens: "1234500", 6 → "1.2345"; thousands grouped, nothing rounded. */
export function tokens(base, decimals) {
  if (base === null || base === undefined || base === '') return '—';
  let v = BigInt(base);
  const negative = v < 0n;
  if (negative) v = -v;
  const scale = 10n ** BigInt(decimals);
  const whole = group((v / scale).toString());
  const frac = decimals > 0 ? (v % scale).toString().padStart(decimals, '0').replace(/0+$/, '') : '';
  return `${negative ? '-' : ''}${whole}${frac ? `.${frac}` : ''}`;
}

function group(digits) {
  return digits.replace(/\B(?=(\d{3})+(?!\d))/g, ',');
}

/** An integer count with thousands grouped. */
export function count(n) {
  if (n === null || n === undefined) return '—';
  return group(String(n));
}

/** A price in base units per GPU-second as tokens per GPU-hour (exact: × 3,600). */
export function perHour(basePerSecond, decimals) {
  if (basePerSecond === null || basePerSecond === undefined) return '—';
  return `${tokens((BigInt(basePerSecond) * 3600n).toString(), decimals)} /GPU-h`;
}

/** Base units per second as tokens per hour (a spend rate). */
export function ratePerHour(basePerSecond, decimals) {
  if (basePerSecond === null || basePerSecond === undefined) return '—';
  return `${tokens((BigInt(basePerSecond) * 3600n).toString(), decimals)} /h`;
}

/** Base units as a floating-point number of tokens, for charts only. */
export function tokenNumber(base, decimals) {
  if (base === null || base === undefined) return null;
  return Number(BigInt(base)) / 10 ** decimals;
}

/** Basis points as a percentage: 250 → "2.5 %". */
export function bps(v) {
  if (v === null || v === undefined) return '—';
  return `${(v / 100).toLocaleString('en-US', { maximumFractionDigits: 2 })} %`;
}

/** Seconds as a short duration: 3725 → "1 h 02 min". */
export function duration(seconds) {
  if (seconds === null || seconds === undefined) return '—';
  let s = Math.max(0, Math.floor(Number(seconds)));
  if (s < 60) return `${s} s`;
  const d = Math.floor(s / 86400); s -= d * 86400;
  const hr = Math.floor(s / 3600); s -= hr * 3600;
  const m = Math.floor(s / 60); s -= m * 60;
  if (d > 365 * 2) return `${(d / 365).toFixed(1)} years`;
  if (d > 0) return `${d} d ${hr} h`;
  if (hr > 0) return `${hr} h ${String(m).padStart(2, '0')} min`;
  return `${m} min ${String(s).padStart(2, '0')} s`;
}

/** A Unix time (seconds) or Unix ms as a local date and time. */
export function when(unix, { ms = false } = {}) {
  if (!unix) return '—';
  const d = new Date(ms ? Number(unix) : Number(unix) * 1000);
  const p = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

/** How long ago a Unix ms time was. */
export function ago(unixMs) {
  if (!unixMs) return '—';
  const s = Math.round((Date.now() - Number(unixMs)) / 1000);
  return s <= 0 ? 'now' : `${duration(s)} ago`;
}

/** An address shortened for tables (the full one in the title and in links). */
export function short(address) {
  if (!address) return '—';
  return address.length > 12 ? `${address.slice(0, 4)}…${address.slice(-4)}` : address;
}

/** A number with a unit and a fixed number of decimals, or a dash. */
export function num(v, unit = '', digits = 1) {
  if (v === null || v === undefined || Number.isNaN(v)) return '—';
  return `${Number(v).toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits })}${unit ? ` ${unit}` : ''}`;
}

/** MiB as GiB. */
export function gib(mib) {
  if (mib === null || mib === undefined) return '—';
  return `${(Number(mib) / 1024).toLocaleString('en-US', { maximumFractionDigits: 1 })} GiB`;
}
