//! How a failed batch is cut into messages that fit a size limit (SQS and SNS take at most 256 KiB): a pure
//! function of the record count, the limit and the size of the message for a range of records.

use std::ops::Range;

/// One message to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Part {
    /// These records fit in one message.
    Fits(Range<usize>),
    /// This record alone makes a message above the limit: it needs the overflow bucket.
    TooLarge(usize),
}

/// Cuts `0..count` into consecutive ranges whose message (`size_of`) is at most `limit` bytes, halving a range
/// that does not fit. Every record is in exactly one part, in order.
pub(crate) fn plan(count: usize, limit: usize, size_of: &mut dyn FnMut(Range<usize>) -> usize) -> Vec<Part> {
    let mut parts = Vec::new();
    if count > 0 {
        cut(0..count, limit, size_of, &mut parts);
    }
    parts
}

fn cut(range: Range<usize>, limit: usize, size_of: &mut dyn FnMut(Range<usize>) -> usize, parts: &mut Vec<Part>) {
    if size_of(range.clone()) <= limit {
        parts.push(Part::Fits(range));
    } else if range.len() == 1 {
        parts.push(Part::TooLarge(range.start));
    } else {
        let middle = range.start + range.len() / 2;
        cut(range.start..middle, limit, size_of, parts);
        cut(middle..range.end, limit, size_of, parts);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A message is 100 bytes of envelope plus each record's size.
    fn sizes(records: &[usize], limit: usize) -> Vec<Part> {
        plan(records.len(), limit, &mut |range| 100 + records[range].iter().sum::<usize>())
    }

    #[test]
    fn cuts_by_size_in_order_and_flags_single_records_that_cannot_fit() {
        let cases: &[(&[usize], usize, Vec<Part>)] = &[
            (&[], 1000, vec![]),
            (&[10, 20, 30], 1000, vec![Part::Fits(0..3)]),
            (&[400, 400, 400, 400], 1000, vec![Part::Fits(0..2), Part::Fits(2..4)]),
            (&[400, 400, 400], 1000, vec![Part::Fits(0..1), Part::Fits(1..3)]),
            (&[10, 5000, 10], 1000, vec![Part::Fits(0..1), Part::TooLarge(1), Part::Fits(2..3)]),
            (&[950], 1000, vec![Part::TooLarge(0)]),
            (&[900], 1000, vec![Part::Fits(0..1)]),
        ];
        for (records, limit, expected) in cases {
            assert_eq!(&sizes(records, *limit), expected, "{records:?} under {limit}");
        }
    }

    #[test]
    fn every_record_is_covered_once() {
        let records: Vec<usize> = (0..257).map(|i| (i * 7919) % 3000).collect();
        let parts = sizes(&records, 20_000);
        let mut next = 0;
        for part in parts {
            match part {
                Part::Fits(range) => {
                    assert_eq!(range.start, next);
                    assert!(100 + records[range.clone()].iter().sum::<usize>() <= 20_000);
                    next = range.end;
                }
                Part::TooLarge(i) => {
                    assert_eq!(i, next);
                    next += 1;
                }
            }
        }
        assert_eq!(next, records.len());
    }
}
