//! Hash keys: where Kinesis routes a record, and so which shard's hash key range it belongs to.

use md5::{Digest, Md5};

use crate::types::Record;

/// The hash key Kinesis derives from a partition key: the MD5 digest of its UTF-8 bytes read as an unsigned
/// 128-bit **big-endian** integer (as Java KCL's `new BigInteger(1, md5(partitionKey.getBytes("UTF-8")))`).
pub fn partition_key_hash_key(partition_key: &str) -> u128 {
    u128::from_be_bytes(Md5::digest(partition_key.as_bytes()).into())
}

/// Parses an explicit hash key: decimal ASCII digits (leading zeros allowed, no sign or spaces) whose value fits
/// in 128 bits. `None` for anything else, which Kinesis would not have accepted as a hash key.
pub fn parse_explicit_hash_key(text: &str) -> Option<u128> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// The hash key that decides which shard a (user) record belongs to: its explicit hash key, parsed as a decimal
/// `u128`, when it has one, otherwise [`partition_key_hash_key`] of its partition key.
///
/// `None` only when the record carries an explicit hash key that is not a valid 128-bit decimal number (records this
/// crate de-aggregates never do: such an aggregate is reported as corrupt).
pub fn effective_hash_key(record: &Record) -> Option<u128> {
    match &record.explicit_hash_key {
        Some(explicit) => parse_explicit_hash_key(explicit),
        None => Some(partition_key_hash_key(&record.partition_key)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::SequenceNumber;

    // Digests from `printf %s KEY | md5sum`, read as one big-endian number.
    #[test]
    fn partition_key_hashes_are_big_endian_md5() {
        // md5("") = d41d8cd98f00b204e9800998ecf8427e
        assert_eq!(partition_key_hash_key(""), 0xd41d8cd98f00b204e9800998ecf8427e);
        // md5("a") = 0cc175b9c0f1b6a831c399e269772661 (leading zero byte: must not be sign- or length-confused)
        assert_eq!(partition_key_hash_key("a"), 0x0cc175b9c0f1b6a831c399e269772661);
        // md5("abc") = 900150983cd24fb0d6963f7d28e17f72, whose high bit is set: unsigned, not negative.
        assert_eq!(partition_key_hash_key("abc"), 0x900150983cd24fb0d6963f7d28e17f72);
        assert_eq!(partition_key_hash_key("abc"), 191415658344158766168031473277922803570);
        // md5("ключ"), over its UTF-8 bytes d0 ba d0 bb d1 8e d1 87, = c3657b66c60a307292aae11f07b04ae7
        assert_eq!(partition_key_hash_key("ключ"), 0xc3657b66c60a307292aae11f07b04ae7);
    }

    #[test]
    fn explicit_hash_keys_are_decimal_u128() {
        assert_eq!(parse_explicit_hash_key("0"), Some(0));
        assert_eq!(parse_explicit_hash_key("007"), Some(7));
        assert_eq!(parse_explicit_hash_key("340282366920938463463374607431768211455"), Some(u128::MAX));
        for bad in ["", "340282366920938463463374607431768211456", "-1", "+1", " 1", "1 ", "0x10", "1e3", "١"] {
            assert_eq!(parse_explicit_hash_key(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn effective_hash_key_prefers_the_explicit_one() {
        let mut record = Record::new(&b"x"[..], "abc", SequenceNumber::from_u128(1));
        assert_eq!(effective_hash_key(&record), Some(0x900150983cd24fb0d6963f7d28e17f72));
        record.explicit_hash_key = Some("12345".into());
        assert_eq!(effective_hash_key(&record), Some(12345));
        record.explicit_hash_key = Some("not a number".into());
        assert_eq!(effective_hash_key(&record), None);
    }
}
