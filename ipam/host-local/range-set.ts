// A range set: the ranges one address per ADD is taken from (backend/allocator/range_set.go).
import { compareIP, formatIP, type IP } from '../../shared/ip';
import { canonicalizeRange, inRange, rangeString, RangeRuleError, type Range, type RawRange } from './range';

export type RangeSet = Range[];

/** Canonicalises every range; a set is one family and its ranges do not overlap. Throws RangeRuleError. */
export function canonicalizeRangeSet(raw: RawRange[]): RangeSet {
  if (raw.length === 0) throw new RangeRuleError('empty range set', '');
  const set = raw.map((r, i) => {
    try {
      return canonicalizeRange(r);
    } catch (e) {
      throw e instanceof RangeRuleError ? new RangeRuleError(e.message, e.field, i) : e;
    }
  });
  const fam = set[0]!.rangeStart.family;
  const mixed = set.findIndex((r) => r.rangeStart.family !== fam);
  if (mixed >= 0) throw new RangeRuleError('mixed address families', 'subnet', mixed);
  const o = findOverlap(set);
  if (o) throw new RangeRuleError(`subnets ${rangeString(set[o[0]]!)} and ${rangeString(set[o[1]]!)} overlap`, 'subnet', o[1]);
  return set;
}

/**
 * Two ranges whose [rangeStart, rangeEnd] intersect, as indices into `ranges` (i < j), or null.
 * Sort by start and sweep, O(n log n): the reference compares every pair (issue 10: 5,000 ranges took
 * 10.8 s). Same answer as its Range.Overlaps: both ends of a canonical range lie in its subnet, so
 * "Contains(either end of the other)" is exactly interval intersection. Families never overlap.
 */
export function findOverlap(ranges: readonly Range[]): [number, number] | null {
  const order = ranges.map((_, i) => i);
  order.sort((a, b) => {
    const x = ranges[a]!.rangeStart;
    const y = ranges[b]!.rangeStart;
    return x.family - y.family || compareIP(x, y) || a - b;
  });
  let reach: Range | null = null; // of the ranges seen in this family, the one ending last
  let reachAt = -1;
  for (const k of order) {
    const r = ranges[k]!;
    if (reach && reach.rangeStart.family === r.rangeStart.family) {
      // Every range seen starts at or before r: r meets one of them iff it meets the one ending last.
      if (compareIP(r.rangeStart, reach.rangeEnd) <= 0) return reachAt < k ? [reachAt, k] : [k, reachAt];
      if (compareIP(r.rangeEnd, reach.rangeEnd) <= 0) continue;
    }
    reach = r;
    reachAt = k;
  }
  return null;
}

/** Where two sets overlap: [set, range] of each, the first set earlier. Each set must be canonical (no overlap within). */
export function findSetOverlap(sets: readonly RangeSet[]): { a: [number, number]; b: [number, number] } | null {
  const where: Array<[number, number]> = [];
  sets.forEach((s, i) => s.forEach((_, j) => where.push([i, j])));
  const o = findOverlap(sets.flat());
  // Flattening keeps set order and no set overlaps itself, so the first index is in the earlier set.
  return o ? { a: where[o[0]]!, b: where[o[1]]! } : null;
}

// Each set's ranges by start, built on first lookup (a set is never changed once canonical).
const byStart = new WeakMap<RangeSet, Range[]>();

/**
 * The range of `set` holding `ip`, if any. Binary search over the ranges by start, O(log n): a
 * canonical set's ranges do not overlap, so only the last one starting at or before `ip` can hold
 * it. STATUS and stale-lease reclaim look up every lease, and a set may have up to MAX_RANGES
 * (config.ts) ranges.
 */
export function rangeFor(set: RangeSet, ip: IP): Range | undefined {
  let sorted = byStart.get(set);
  if (!sorted) {
    sorted = [...set].sort((a, b) => compareIP(a.rangeStart, b.rangeStart));
    byStart.set(set, sorted);
  }
  let lo = 0;
  let hi = sorted.length - 1;
  let at = -1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (compareIP(sorted[mid]!.rangeStart, ip) <= 0) {
      at = mid;
      lo = mid + 1;
    } else hi = mid - 1;
  }
  const r = sorted[at];
  return r && inRange(r, ip) ? r : undefined;
}

export const setContains = (set: RangeSet, ip: IP): boolean => rangeFor(set, ip) !== undefined;

export const setFamily = (set: RangeSet): 4 | 6 => set[0]!.rangeStart.family;

export const setString = (set: RangeSet): string => set.map(rangeString).join(',');

export const notInSet = (set: RangeSet, ip: IP): string => `${formatIP(ip)} not in range set ${setString(set)}`;
