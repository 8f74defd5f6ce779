//! Feeds arbitrary bytes to the `GetRecords` decoders (CBOR and JSON, response and error bodies) and checks that
//! they never panic, that a failure is always a retryable dispatch error, and that every record's data lies inside
//! the input (CBOR byte strings) or the decoded buffer.
//!
//! The first input byte picks the format: even = CBOR, odd = JSON.
#![no_main]

use bytes::Bytes;
use kcl_core::retrieve::{ApiErrorKind, WireFormat};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let Some((&mode, rest)) = input.split_first() else {
        return;
    };
    let format = if mode % 2 == 0 { WireFormat::Cbor } else { WireFormat::Json };
    let body = Bytes::copy_from_slice(rest);
    match format.decode_get_records(body) {
        Ok(output) => {
            let data: usize = output.records.iter().map(|r| r.data.len()).sum();
            // Decoded data is never longer than the body that carried it.
            assert!(data <= rest.len(), "{data} bytes of data from a {}-byte body", rest.len());
            for child in &output.child_shards {
                assert!(child.hash_key_range.start <= child.hash_key_range.end);
            }
        }
        Err(error) => assert_eq!(error.kind, ApiErrorKind::Dispatch, "{error}"),
    }
    let error = format.decode_error(400, None, rest);
    assert!(!error.message.is_empty());
});
