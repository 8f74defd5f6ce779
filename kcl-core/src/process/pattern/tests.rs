//! Table-driven tests of the pattern language, from the examples of AWS's Lambda event-filtering and EventBridge
//! content-filtering documentation (each EventBridge rule placed under `data`, as a Kinesis filter has it).

use std::time::{Duration, UNIX_EPOCH};

use super::FilterCriteria;
use crate::KclError;
use crate::types::{Record, SequenceNumber};

fn record(data: &str, partition_key: &str) -> Record {
    let mut record = Record::new(
        data.to_owned(),
        partition_key,
        SequenceNumber::parse("49590338271490256608559692538361571095921575989136588898").unwrap(),
    );
    record.approximate_arrival_timestamp = Some(UNIX_EPOCH + Duration::from_millis(1_545_084_650_987));
    record
}

/// (what, pattern, payload, partition key, expected)
const CASES: &[(&str, &str, &str, &str, bool)] = &[
    // Lambda, "Using event filtering with a Kinesis event source".
    (
        "kinesis order type",
        r#"{"data":{"order":{"type":["buy"]}}}"#,
        r#"{"record":12345,"order":{"type":"buy","stock":"ANYCO","quantity":1000}}"#,
        "1",
        true,
    ),
    (
        "kinesis order type, other",
        r#"{"data":{"order":{"type":["buy"]}}}"#,
        r#"{"record":12345,"order":{"type":"sell"}}"#,
        "1",
        false,
    ),
    // Lambda's comparison-operator table.
    ("null", r#"{"data":{"UserID":[null]}}"#, r#"{"UserID":null}"#, "k", true),
    ("null is not absent", r#"{"data":{"UserID":[null]}}"#, r#"{}"#, "k", false),
    ("null is not empty", r#"{"data":{"UserID":[null]}}"#, r#"{"UserID":""}"#, "k", false),
    ("empty", r#"{"data":{"LastName":[""]}}"#, r#"{"LastName":""}"#, "k", true),
    ("empty, not", r#"{"data":{"LastName":[""]}}"#, r#"{"LastName":"Doe"}"#, "k", false),
    ("equals", r#"{"data":{"Name":["Alice"]}}"#, r#"{"Name":"Alice"}"#, "k", true),
    ("equals is case-sensitive", r#"{"data":{"Name":["Alice"]}}"#, r#"{"Name":"alice"}"#, "k", false),
    ("equals-ignore-case", r#"{"data":{"Name":[{"equals-ignore-case":"alice"}]}}"#, r#"{"Name":"ALICE"}"#, "k", true),
    (
        "and",
        r#"{"data":{"Location":["New York"],"Day":["Monday"]}}"#,
        r#"{"Location":"New York","Day":"Monday"}"#,
        "k",
        true,
    ),
    (
        "and, one fails",
        r#"{"data":{"Location":["New York"],"Day":["Monday"]}}"#,
        r#"{"Location":"New York","Day":"Tuesday"}"#,
        "k",
        false,
    ),
    ("or", r#"{"data":{"PaymentType":["Credit","Debit"]}}"#, r#"{"PaymentType":"Debit"}"#, "k", true),
    ("or, none", r#"{"data":{"PaymentType":["Credit","Debit"]}}"#, r#"{"PaymentType":"Cash"}"#, "k", false),
    (
        "$or across fields",
        r#"{"data":{"$or":[{"Location":["New York"]},{"Day":["Monday"]}]}}"#,
        r#"{"Location":"Paris","Day":"Monday"}"#,
        "k",
        true,
    ),
    (
        "$or across fields, none",
        r#"{"data":{"$or":[{"Location":["New York"]},{"Day":["Monday"]}]}}"#,
        r#"{"Location":"Paris","Day":"Sunday"}"#,
        "k",
        false,
    ),
    ("not", r#"{"data":{"Weather":[{"anything-but":["Raining"]}]}}"#, r#"{"Weather":"Sunny"}"#, "k", true),
    ("not, excluded", r#"{"data":{"Weather":[{"anything-but":["Raining"]}]}}"#, r#"{"Weather":"Raining"}"#, "k", false),
    ("not needs the field", r#"{"data":{"Weather":[{"anything-but":["Raining"]}]}}"#, r#"{}"#, "k", false),
    ("numeric equals", r#"{"data":{"Price":[{"numeric":["=",100]}]}}"#, r#"{"Price":100}"#, "k", true),
    ("numeric equals 100.0", r#"{"data":{"Price":[{"numeric":["=",100]}]}}"#, r#"{"Price":100.0}"#, "k", true),
    (
        "numeric equals, a string is not a number",
        r#"{"data":{"Price":[{"numeric":["=",100]}]}}"#,
        r#"{"Price":"100"}"#,
        "k",
        false,
    ),
    ("numeric range", r#"{"data":{"Price":[{"numeric":[">",10,"<=",20]}]}}"#, r#"{"Price":20}"#, "k", true),
    (
        "numeric range, lower bound excluded",
        r#"{"data":{"Price":[{"numeric":[">",10,"<=",20]}]}}"#,
        r#"{"Price":10}"#,
        "k",
        false,
    ),
    ("numeric range, above", r#"{"data":{"Price":[{"numeric":[">",10,"<=",20]}]}}"#, r#"{"Price":20.5}"#, "k", false),
    ("exists", r#"{"data":{"ProductName":[{"exists":true}]}}"#, r#"{"ProductName":"x"}"#, "k", true),
    ("exists, absent", r#"{"data":{"ProductName":[{"exists":true}]}}"#, r#"{"Other":"x"}"#, "k", false),
    ("does not exist", r#"{"data":{"ProductName":[{"exists":false}]}}"#, r#"{"Other":"x"}"#, "k", true),
    ("does not exist, present", r#"{"data":{"ProductName":[{"exists":false}]}}"#, r#"{"ProductName":"x"}"#, "k", false),
    ("begins with", r#"{"data":{"Region":[{"prefix":"us-"}]}}"#, r#"{"Region":"us-east-1"}"#, "k", true),
    ("begins with, not", r#"{"data":{"Region":[{"prefix":"us-"}]}}"#, r#"{"Region":"eu-west-1"}"#, "k", false),
    ("ends with", r#"{"data":{"FileName":[{"suffix":".png"}]}}"#, r#"{"FileName":"image.png"}"#, "k", true),
    ("ends with, not", r#"{"data":{"FileName":[{"suffix":".png"}]}}"#, r#"{"FileName":"image.PNG"}"#, "k", false),
    // EventBridge, "Content filtering in event patterns".
    ("prefix time", r#"{"data":{"time":[{"prefix":"2017-10-02"}]}}"#, r#"{"time":"2017-10-02T18:43:48Z"}"#, "k", true),
    (
        "prefix ignoring case",
        r#"{"data":{"service":[{"prefix":{"equals-ignore-case":"EventB"}}]}}"#,
        r#"{"service":"eventbridge"}"#,
        "k",
        true,
    ),
    (
        "suffix ignoring case",
        r#"{"data":{"FileName":[{"suffix":{"equals-ignore-case":".png"}}]}}"#,
        r#"{"FileName":"IMAGE.PNG"}"#,
        "k",
        true,
    ),
    (
        "anything-but string",
        r#"{"data":{"state":[{"anything-but":"initializing"}]}}"#,
        r#"{"state":"running"}"#,
        "k",
        true,
    ),
    (
        "anything-but string, excluded",
        r#"{"data":{"state":[{"anything-but":"initializing"}]}}"#,
        r#"{"state":"initializing"}"#,
        "k",
        false,
    ),
    ("anything-but number", r#"{"data":{"x-limit":[{"anything-but":123}]}}"#, r#"{"x-limit":456}"#, "k", true),
    (
        "anything-but number, excluded",
        r#"{"data":{"x-limit":[{"anything-but":123}]}}"#,
        r#"{"x-limit":123}"#,
        "k",
        false,
    ),
    (
        "anything-but list",
        r#"{"data":{"state":[{"anything-but":["stopped","overloaded"]}]}}"#,
        r#"{"state":"overloaded"}"#,
        "k",
        false,
    ),
    (
        "anything-but number list",
        r#"{"data":{"x-limit":[{"anything-but":[100,200,300]}]}}"#,
        r#"{"x-limit":250}"#,
        "k",
        true,
    ),
    (
        "anything-but prefix",
        r#"{"data":{"state":[{"anything-but":{"prefix":"init"}}]}}"#,
        r#"{"state":"initializing"}"#,
        "k",
        false,
    ),
    (
        "anything-but prefix, other",
        r#"{"data":{"state":[{"anything-but":{"prefix":"init"}}]}}"#,
        r#"{"state":"running"}"#,
        "k",
        true,
    ),
    (
        "anything-but suffix",
        r#"{"data":{"FileName":[{"anything-but":{"suffix":".txt"}}]}}"#,
        r#"{"FileName":"notes.txt"}"#,
        "k",
        false,
    ),
    (
        "anything-but suffix, other",
        r#"{"data":{"FileName":[{"anything-but":{"suffix":".txt"}}]}}"#,
        r#"{"FileName":"photo.png"}"#,
        "k",
        true,
    ),
    (
        "anything-but ignoring case",
        r#"{"data":{"state":[{"anything-but":{"equals-ignore-case":["Stopped","OverLoaded"]}}]}}"#,
        r#"{"state":"STOPPED"}"#,
        "k",
        false,
    ),
    (
        "anything-but ignoring case, other",
        r#"{"data":{"state":[{"anything-but":{"equals-ignore-case":["Stopped","OverLoaded"]}}]}}"#,
        r#"{"state":"running"}"#,
        "k",
        true,
    ),
    (
        "numeric example",
        r#"{"data":{"c-count":[{"numeric":[">",0,"<=",5]}],"d-count":[{"numeric":["<",10]}],"x-limit":[{"numeric":["=",3.018e2]}]}}"#,
        r#"{"c-count":5,"d-count":3,"x-limit":301.8}"#,
        "k",
        true,
    ),
    (
        "numeric example, one out",
        r#"{"data":{"c-count":[{"numeric":[">",0,"<=",5]}],"d-count":[{"numeric":["<",10]}]}}"#,
        r#"{"c-count":0,"d-count":3}"#,
        "k",
        false,
    ),
    (
        "arrays: any element",
        r#"{"data":{"resources":["arn:aws:ec2:us-east-1:123456789012:instance/i-b188560f"]}}"#,
        r#"{"resources":["arn:aws:ec2:us-east-1:123456789012:instance/i-0000","arn:aws:ec2:us-east-1:123456789012:instance/i-b188560f"]}"#,
        "k",
        true,
    ),
    ("arrays: no element", r#"{"data":{"resources":["x"]}}"#, r#"{"resources":["a","b"]}"#, "k", false),
    (
        "arrays of objects",
        r#"{"data":{"readings":{"temp":[{"numeric":[">",30]}]}}}"#,
        r#"{"readings":[{"temp":20},{"temp":35}]}"#,
        "k",
        true,
    ),
    (
        "exists on a nested leaf",
        r#"{"data":{"detail":{"state":[{"exists":true}]}}}"#,
        r#"{"detail":{"state":"on"}}"#,
        "k",
        true,
    ),
    (
        "exists is for leaves, not objects",
        r#"{"data":{"detail":[{"exists":true}]}}"#,
        r#"{"detail":{"state":"on"}}"#,
        "k",
        false,
    ),
    ("booleans", r#"{"data":{"ok":[true]}}"#, r#"{"ok":true}"#, "k", true),
    ("a string is not a number", r#"{"data":{"n":["5"]}}"#, r#"{"n":5}"#, "k", false),
    // Metadata of the Kinesis record.
    ("partition key", r#"{"partitionKey":["device-7"]}"#, r#"{}"#, "device-7", true),
    ("partition key prefix", r#"{"partitionKey":[{"prefix":"device-"}]}"#, r#"{}"#, "sensor-1", false),
    (
        "metadata and data",
        r#"{"partitionKey":[{"prefix":"device-"}],"data":{"temp":[{"exists":true}]}}"#,
        r#"{"temp":1}"#,
        "device-1",
        true,
    ),
    (
        "sequence number",
        r#"{"sequenceNumber":["49590338271490256608559692538361571095921575989136588898"]}"#,
        r#"1"#,
        "k",
        true,
    ),
    ("schema version", r#"{"kinesisSchemaVersion":["1.0"]}"#, r#"1"#, "k", true),
    (
        "arrival time in epoch seconds",
        r#"{"approximateArrivalTimestamp":[{"numeric":[">=",1545084650.987]}]}"#,
        r#"1"#,
        "k",
        true,
    ),
    (
        "arrival time, later bound",
        r#"{"approximateArrivalTimestamp":[{"numeric":[">",1545084651]}]}"#,
        r#"1"#,
        "k",
        false,
    ),
    ("unknown metadata never exists", r#"{"eventSource":["aws:kinesis"]}"#, r#"{}"#, "k", false),
    ("$or of metadata and data", r#"{"$or":[{"partitionKey":["a"]},{"data":{"x":[1]}}]}"#, r#"{"x":1}"#, "b", true),
    // Payloads that are not JSON (Lambda: data patterns never match them; metadata patterns still can).
    ("non-JSON vs data pattern", r#"{"data":{"temp":[{"exists":false}]}}"#, "not json", "k", false),
    (
        "non-JSON vs data-only $or",
        r#"{"$or":[{"data":{"a":[1]}},{"data":{"a":[{"exists":false}]}}]}"#,
        "\u{1}\u{2}binary",
        "k",
        false,
    ),
    ("non-JSON vs metadata pattern", r#"{"partitionKey":["k"]}"#, "not json", "k", true),
    ("non-JSON vs metadata or data", r#"{"$or":[{"partitionKey":["k"]},{"data":{"a":[1]}}]}"#, "not json", "k", true),
    ("JSON scalar data", r#"{"data":[42]}"#, "42", "k", true),
];

#[test]
fn documented_examples() {
    let mut failures = Vec::new();
    for &(what, pattern, payload, key, expected) in CASES {
        match FilterCriteria::pattern(pattern) {
            Ok(criteria) if criteria.matches(&record(payload, key)) == expected => {}
            Ok(_) => failures.push(format!("{what}: expected {expected}")),
            Err(e) => failures.push(format!("{what}: {e}")),
        }
    }
    assert!(failures.is_empty(), "{} of {} cases wrong:\n{}", failures.len(), CASES.len(), failures.join("\n"));
}

#[test]
fn several_filters_are_ored_and_parsed_from_lambda_json() {
    let criteria = FilterCriteria::from_json(
        r#"{"Filters":[{"Pattern":"{\"data\":{\"temp\":[{\"numeric\":[\">\",30]}]}}"},
                       {"Pattern":"{\"partitionKey\":[{\"prefix\":\"alarm-\"}]}"}]}"#,
    )
    .unwrap();
    assert!(criteria.matches(&record(r#"{"temp":31}"#, "device-1")));
    assert!(criteria.matches(&record(r#"{"temp":20}"#, "alarm-1")));
    assert!(criteria.matches(&record("not json", "alarm-1")));
    assert!(!criteria.matches(&record(r#"{"temp":20}"#, "device-1")));
    let more =
        FilterCriteria::pattern(r#"{"data":{"temp":[1]}}"#).unwrap().or_pattern(r#"{"data":{"temp":[2]}}"#).unwrap();
    assert!(more.matches(&record(r#"{"temp":2}"#, "k")));
    assert!(!more.matches(&record(r#"{"temp":3}"#, "k")));
}

/// (criteria JSON or a bare pattern, the text the error must contain)
const BAD: &[(&str, &str)] = &[
    (r#"{"data":{"temp":[{"numbers":[">",1]}]}}"#, r#"Pattern: at data.temp[0].numbers: unknown operator "numbers""#),
    (r#"{"data":{"temp":">1"}}"#, "at data.temp: a field needs an array"),
    (r#"{"data":{"temp":[]}}"#, "at data.temp: an empty array"),
    (r#"{"data":{}}"#, "at data: an empty object"),
    (r#"{"data":{"t":[{"numeric":[">",5,"<",1]}]}}"#, "at data.t[0].numeric: the range is empty"),
    (r#"{"data":{"t":[{"numeric":["~",5]}]}}"#, r#"at data.t[0].numeric: unknown comparison "~""#),
    (r#"{"data":{"t":[{"numeric":[">",1,">",2]}]}}"#, "at most one lower"),
    (r#"{"data":{"t":[{"exists":"yes"}]}}"#, "at data.t[0].exists: expects true or false"),
    (r#"{"data":{"t":[{"prefix":1}]}}"#, "at data.t[0].prefix: expects a string"),
    (r#"{"data":{"t":[{"anything-but":["a",1]}]}}"#, "only strings or only numbers"),
    (r#"{"data":{"t":[{"anything-but":{"wildcard":"*"}}]}}"#, "at data.t[0].anything-but"),
    (r#"{"data":{"ip":[{"cidr":"10.0.0.0/24"}]}}"#, "at data.ip[0].cidr: is an EventBridge operator"),
    (r#"{"data":{"$or":[{"a":[1]}]}}"#, "at data.$or: $or needs an array of at least two"),
    (r#"{"data":{"$or":[{"a":[1]},{"b":[{"nope":1}]}]}}"#, r#"at data.$or[1].b[0].nope: unknown operator"#),
    (r#"{"data":{"t":[["a"]]}}"#, "at data.t[0]: arrays cannot be nested"),
    (r#"{"data":{"t":["a"]},}"#, "Pattern: line 1 column 21: not valid JSON"),
    (r#"["data"]"#, "at the top: a pattern is a JSON object"),
    (
        r#"{"Filters":[{"Pattern":"{\"data\":{\"a\":[1]}}"},{"Pattern":"{\"data\":{\"a\":[{\"prefix\":2}]}}"}]}"#,
        "Filters[1].Pattern: at data.a[0].prefix",
    ),
    (r#"{"Filters":[{"Pattern":{"data":{}}}]}"#, "Filters[0].Pattern: expected a string holding the pattern's JSON"),
    (r#"{"Filters":[]}"#, "FilterCriteria.Filters: needs at least one filter"),
];

#[test]
fn bad_patterns_name_the_position() {
    for &(text, expected) in BAD {
        let result = if text.starts_with(r#"{"Filters""#) {
            FilterCriteria::from_json(text)
        } else {
            FilterCriteria::pattern(text)
        };
        match result {
            Err(KclError::InvalidFilter(message)) => {
                assert!(message.contains(expected), "{text}: got {message:?}, expected it to contain {expected:?}")
            }
            other => panic!("{text}: expected an InvalidFilter error, got {other:?}"),
        }
    }
}
