// A range set: the ranges one address per ADD is taken from (backend/allocator/range_set.go).
import { formatIP, type IP } from '../../shared/ip';
import { canonicalizeRange, inRange, rangesOverlap, rangeString, RangeRuleError, type Range, type RawRange } from './range';

export type RangeSet = Range[];

/** Canonicalises every range; a set is one family and its ranges do not overlap. */
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
  for (let i = 0; i < set.length; i++)
    for (let j = i + 1; j < set.length; j++)
      if (rangesOverlap(set[i]!, set[j]!))
        throw new RangeRuleError(`subnets ${rangeString(set[i]!)} and ${rangeString(set[j]!)} overlap`, 'subnet', j);
  return set;
}

export const rangeFor = (set: RangeSet, ip: IP): Range | undefined => set.find((r) => inRange(r, ip));

export const setContains = (set: RangeSet, ip: IP): boolean => rangeFor(set, ip) !== undefined;

export const setFamily = (set: RangeSet): 4 | 6 => set[0]!.rangeStart.family;

export function setsOverlap(a: RangeSet, b: RangeSet): boolean {
  return a.some((r) => b.some((r1) => rangesOverlap(r, r1)));
}

export const setString = (set: RangeSet): string => set.map(rangeString).join(',');

export const notInSet = (set: RangeSet, ip: IP): string => `${formatIP(ip)} not in range set ${setString(set)}`;
