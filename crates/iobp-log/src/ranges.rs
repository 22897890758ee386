//! A set of sequence numbers stored as disjoint half-open ranges, so that marking a million
//! lost records Done costs one entry, not a million.

use std::collections::BTreeMap;
use std::ops::Range;

/// Disjoint, non-adjacent ranges: `start -> end` (exclusive).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct SeqRanges {
    map: BTreeMap<u64, u64>,
}

impl SeqRanges {
    pub(crate) fn insert(&mut self, seq: u64) {
        self.insert_range(seq..seq + 1);
    }

    pub(crate) fn insert_range(&mut self, r: Range<u64>) {
        if r.is_empty() {
            return;
        }
        let (mut start, mut end) = (r.start, r.end);
        // Merge with a range that starts before and reaches `start`.
        if let Some((&s, &e)) = self.map.range(..=start).next_back()
            && e >= start
        {
            start = s;
            end = end.max(e);
            self.map.remove(&s);
        }
        // Merge with ranges starting inside or right after.
        while let Some((&s, &e)) = self.map.range(start..=end).next() {
            end = end.max(e);
            self.map.remove(&s);
        }
        self.map.insert(start, end);
    }

    pub(crate) fn contains(&self, seq: u64) -> bool {
        self.map.range(..=seq).next_back().is_some_and(|(_, &e)| seq < e)
    }

    /// Removes every number `<= upto`.
    pub(crate) fn remove_through(&mut self, upto: u64) {
        while let Some((&s, &e)) = self.map.first_key_value() {
            if s > upto {
                break;
            }
            self.map.remove(&s);
            if e > upto + 1 {
                self.map.insert(upto + 1, e);
                break;
            }
        }
    }

    /// If the lowest range starts at `seq`, removes it and returns its end (exclusive).
    pub(crate) fn take_run_from(&mut self, seq: u64) -> Option<u64> {
        let (&s, &e) = self.map.first_key_value()?;
        (s == seq).then(|| {
            self.map.remove(&s);
            e
        })
    }

    /// How many numbers lie in `r`.
    pub(crate) fn count_in(&self, r: Range<u64>) -> u64 {
        let mut n = 0;
        let before = self.map.range(..r.start).next_back();
        let inside = self.map.range(r.start..r.end);
        for (&s, &e) in before.into_iter().chain(inside) {
            let lo = s.max(r.start);
            let hi = e.min(r.end);
            n += hi.saturating_sub(lo);
        }
        n
    }

    pub(crate) fn len(&self) -> u64 {
        self.map.iter().map(|(s, e)| e - s).sum()
    }

    /// The ranges at or above `from`, clipped.
    pub(crate) fn from(&self, from: u64) -> SeqRanges {
        let mut out = SeqRanges::default();
        let before = self.map.range(..from).next_back();
        for (&s, &e) in before.into_iter().chain(self.map.range(from..)) {
            out.insert_range(s.max(from)..e);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    proptest! {
        #[test]
        fn matches_a_plain_set(ops in prop::collection::vec((0u8..4, 0u64..60, 0u64..8), 0..60)) {
            let mut r = SeqRanges::default();
            let mut set = BTreeSet::new();
            for (op, a, len) in ops {
                match op {
                    0 => { r.insert(a); set.insert(a); }
                    1 => { r.insert_range(a..a + len); set.extend(a..a + len); }
                    2 => { r.remove_through(a); set.retain(|&x| x > a); }
                    _ => {
                        let first = set.first().copied();
                        let run = r.take_run_from(a);
                        if first == Some(a) {
                            let mut end = a;
                            while set.remove(&end) { end += 1; }
                            prop_assert_eq!(run, Some(end));
                        } else {
                            prop_assert_eq!(run, None);
                        }
                    }
                }
                prop_assert_eq!(r.len(), set.len() as u64);
                for x in 0..70 {
                    prop_assert_eq!(r.contains(x), set.contains(&x));
                }
                prop_assert_eq!(r.count_in(10..30), set.range(10..30).count() as u64);
                prop_assert_eq!(r.from(20).len(), set.range(20..).count() as u64);
            }
        }
    }

    #[test]
    fn a_huge_lost_range_is_one_entry() {
        let mut r = SeqRanges::default();
        r.insert_range(5..50_000_005);
        assert_eq!(r.map.len(), 1);
        assert_eq!(r.len(), 50_000_000);
    }
}
