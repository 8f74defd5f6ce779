//! The checkpoint watermark of one shard: records are registered as they are read and completed when processed,
//! filtered out or accepted by the failure destination — in any order, by concurrent processors. The watermark is
//! the position of the newest record below which (inclusive) every registered record has completed: the furthest
//! the checkpoint may go.

use std::collections::VecDeque;

use crate::types::ExtendedSequenceNumber;

/// Tracks completion of a shard's records by index (assigned in shard order by [`register`](Self::register)).
#[derive(Debug)]
pub(crate) struct Watermark {
    /// Index of the first entry of `entries`.
    base: u64,
    /// Registered records not yet below the watermark: their positions and whether each has completed.
    entries: VecDeque<(ExtendedSequenceNumber, bool)>,
    /// How many of `entries` have completed.
    completed_in_entries: usize,
    mark: Option<ExtendedSequenceNumber>,
}

impl Watermark {
    /// A watermark starting at the lease's checkpoint (`None` when it is not a record position).
    pub(crate) fn new(start: Option<ExtendedSequenceNumber>) -> Self {
        Self { base: 0, entries: VecDeque::new(), completed_in_entries: 0, mark: start }
    }

    /// Registers the next record in shard order; returns its index.
    pub(crate) fn register(&mut self, position: ExtendedSequenceNumber) -> u64 {
        self.entries.push_back((position, false));
        self.base + self.entries.len() as u64 - 1
    }

    /// Marks a registered record completed. Completing one twice, or an index below the watermark, changes nothing.
    pub(crate) fn complete(&mut self, index: u64) {
        let Some(offset) = index.checked_sub(self.base) else { return };
        if let Some(entry) = self.entries.get_mut(offset as usize)
            && !entry.1
        {
            entry.1 = true;
            self.completed_in_entries += 1;
        }
        while self.entries.front().is_some_and(|entry| entry.1) {
            if let Some((position, _)) = self.entries.pop_front() {
                self.mark = Some(position);
            }
            self.base += 1;
            self.completed_in_entries -= 1;
        }
    }

    /// The newest position below which every registered record has completed.
    pub(crate) fn mark(&self) -> Option<&ExtendedSequenceNumber> {
        self.mark.as_ref()
    }

    /// Registered records that have not completed.
    pub(crate) fn pending(&self) -> usize {
        self.entries.len() - self.completed_in_entries
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::SequenceNumber;

    fn pos(n: u128) -> ExtendedSequenceNumber {
        ExtendedSequenceNumber::sequence(SequenceNumber::from_u128(n))
    }

    #[test]
    fn advances_only_over_contiguous_completions() {
        let mut w = Watermark::new(Some(pos(5)));
        let idx: Vec<u64> = (10..15).map(|n| w.register(pos(n))).collect();
        assert_eq!(w.mark(), Some(&pos(5)));
        w.complete(idx[1]);
        w.complete(idx[2]);
        assert_eq!(w.mark(), Some(&pos(5)), "record 10 is still pending");
        assert_eq!(w.pending(), 3);
        w.complete(idx[0]);
        assert_eq!(w.mark(), Some(&pos(12)));
        w.complete(idx[0]);
        w.complete(idx[4]);
        assert_eq!(w.mark(), Some(&pos(12)));
        w.complete(idx[3]);
        assert_eq!(w.mark(), Some(&pos(14)));
        assert_eq!(w.pending(), 0);
        let next = w.register(pos(20));
        assert_eq!(next, 5);
        w.complete(next);
        assert_eq!(w.mark(), Some(&pos(20)));
    }

    use proptest::prelude::*;

    proptest! {
        #[test]
        fn mark_is_the_last_position_of_the_completed_prefix(
            order in proptest::sample::subsequence((0u64..40).collect::<Vec<_>>(), 0..40).prop_shuffle()
        ) {
            let mut w = Watermark::new(None);
            for n in 0..40u128 { w.register(pos(n)); }
            let mut done = [false; 40];
            for index in order {
                w.complete(index);
                done[index as usize] = true;
                let prefix = done.iter().take_while(|d| **d).count();
                let expected = prefix.checked_sub(1).map(|last| pos(last as u128));
                prop_assert_eq!(w.mark().cloned(), expected);
            }
        }
    }
}
