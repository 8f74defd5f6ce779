//! Parsing the two payload shapes the IoT consumer accepts into one [`Measurement`]:
//!
//! * EMQX-style readings, as an EMQX rule forwards a device's MQTT message:
//!   `{"timestamp":1700000000000,"client_id":"emqx-client-004","temp":21.5,"hum":48.2}` (epoch millis; the
//!   client id is the device and the partition key).
//! * MODE-style events: `{"eventType":"sensorReading","eventData":{"temperature":21.5,"humidity":48.2},
//!   "timestamp":"2026-11-22T05:44:00.123Z","homeId":104,"originDeviceId":1007}` (RFC 3339 UTC or epoch millis).
//!   Only [`SENSOR_EVENT_TYPES`] carry measurements; other events (a door opened) are not this consumer's business,
//!   which [`wanted`] tells the framework's record filter.
//!
//! Anything else is a [`ParseError`]: the consumer reports such records as failed and they end in the failure
//! destination. Error texts never quote the payload (payloads stay out of logs).

use serde_json::{Map, Value};

/// MODE event types that carry temperature/humidity in `eventData`.
pub const SENSOR_EVENT_TYPES: [&str; 2] = ["sensorReading", "climate"];

/// Plausible sensor ranges: values outside are a broken sensor or a corrupted message, not weather.
const TEMP_RANGE: (f64, f64) = (-60.0, 100.0);
const HUM_RANGE: (f64, f64) = (0.0, 100.0);

/// One device measurement, whichever format it came in.
#[derive(Clone, Debug, PartialEq)]
pub struct Measurement {
    /// The device: the EMQX client id, or `mode-<originDeviceId>`.
    pub device: String,
    /// When the device measured, in milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    /// Temperature in °C, if measured.
    pub temp: Option<f64>,
    /// Relative humidity in %, if measured.
    pub hum: Option<f64>,
}

/// Why a payload is not a valid reading or event.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The payload is not a JSON object.
    #[error("payload is not a JSON object")]
    NotJson,
    /// Neither `client_id` (EMQX) nor `eventType` (MODE) is present.
    #[error("neither an EMQX reading (client_id) nor a MODE event (eventType)")]
    UnknownShape,
    /// A required field is absent.
    #[error("field `{0}` is missing")]
    Missing(&'static str),
    /// A field has the wrong JSON type.
    #[error("field `{0}` has the wrong type")]
    WrongType(&'static str),
    /// The timestamp is neither epoch millis nor RFC 3339.
    #[error("timestamp is neither epoch milliseconds nor RFC 3339")]
    BadTimestamp,
    /// A value is outside what a sensor can measure.
    #[error("field `{0}` is out of the sensor's range")]
    OutOfRange(&'static str),
    /// A reading without temperature and without humidity.
    #[error("reading has neither temperature nor humidity")]
    NoValues,
}

/// Parses a payload: `Ok(Some(..))` for a measurement, `Ok(None)` for a well-formed MODE event that carries none
/// (not a sensor event type), `Err` for anything malformed.
pub fn parse(payload: &[u8]) -> Result<Option<Measurement>, ParseError> {
    let Ok(Value::Object(object)) = serde_json::from_slice::<Value>(payload) else { return Err(ParseError::NotJson) };
    if object.contains_key("eventType") {
        parse_mode(&object)
    } else if object.contains_key("client_id") {
        parse_emqx(&object).map(Some)
    } else {
        Err(ParseError::UnknownShape)
    }
}

/// Whether a record is worth processing: everything except well-formed MODE events of a type that carries no
/// measurement. Malformed payloads are wanted, so they reach the processor and, failed, the failure destination.
pub fn wanted(payload: &[u8]) -> bool {
    match serde_json::from_slice::<Value>(payload) {
        Ok(Value::Object(object)) => match object.get("eventType") {
            Some(Value::String(kind)) => SENSOR_EVENT_TYPES.contains(&kind.as_str()),
            _ => true,
        },
        _ => true,
    }
}

fn parse_emqx(object: &Map<String, Value>) -> Result<Measurement, ParseError> {
    let device = string(object, "client_id")?;
    let timestamp_ms = timestamp(object)?;
    let temp = optional_number(object, "temp", TEMP_RANGE)?;
    let hum = optional_number(object, "hum", HUM_RANGE)?;
    measurement(device, timestamp_ms, temp, hum)
}

fn parse_mode(object: &Map<String, Value>) -> Result<Option<Measurement>, ParseError> {
    let kind = string(object, "eventType")?;
    let data = match object.get("eventData") {
        Some(Value::Object(data)) => data,
        Some(_) => return Err(ParseError::WrongType("eventData")),
        None => return Err(ParseError::Missing("eventData")),
    };
    let timestamp_ms = timestamp(object)?;
    match object.get("homeId") {
        Some(Value::Number(_) | Value::String(_)) => {}
        Some(_) => return Err(ParseError::WrongType("homeId")),
        None => return Err(ParseError::Missing("homeId")),
    }
    let device = match object.get("originDeviceId") {
        Some(Value::Number(id)) => format!("mode-{id}"),
        Some(Value::String(id)) if !id.is_empty() => format!("mode-{id}"),
        Some(_) => return Err(ParseError::WrongType("originDeviceId")),
        None => return Err(ParseError::Missing("originDeviceId")),
    };
    if !SENSOR_EVENT_TYPES.contains(&kind.as_str()) {
        return Ok(None);
    }
    let temp = optional_number(data, "temperature", TEMP_RANGE)?;
    let hum = optional_number(data, "humidity", HUM_RANGE)?;
    measurement(device, timestamp_ms, temp, hum).map(Some)
}

fn measurement(
    device: String,
    timestamp_ms: u64,
    temp: Option<f64>,
    hum: Option<f64>,
) -> Result<Measurement, ParseError> {
    if temp.is_none() && hum.is_none() {
        return Err(ParseError::NoValues);
    }
    Ok(Measurement { device, timestamp_ms, temp, hum })
}

fn string(object: &Map<String, Value>, field: &'static str) -> Result<String, ParseError> {
    match object.get(field) {
        Some(Value::String(text)) if !text.is_empty() => Ok(text.clone()),
        Some(_) => Err(ParseError::WrongType(field)),
        None => Err(ParseError::Missing(field)),
    }
}

fn optional_number(
    object: &Map<String, Value>,
    field: &'static str,
    range: (f64, f64),
) -> Result<Option<f64>, ParseError> {
    match object.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(number)) => match number.as_f64() {
            Some(value) if (range.0..=range.1).contains(&value) => Ok(Some(value)),
            _ => Err(ParseError::OutOfRange(field)),
        },
        Some(_) => Err(ParseError::WrongType(field)),
    }
}

fn timestamp(object: &Map<String, Value>) -> Result<u64, ParseError> {
    match object.get("timestamp") {
        Some(Value::Number(number)) => number.as_u64().ok_or(ParseError::BadTimestamp),
        Some(Value::String(text)) => parse_rfc3339(text).ok_or(ParseError::BadTimestamp),
        Some(_) => Err(ParseError::WrongType("timestamp")),
        None => Err(ParseError::Missing("timestamp")),
    }
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)` into epoch millis (fractions beyond millis are dropped).
/// Hand-written rather than a date crate: this is the one format MODE sends.
pub fn parse_rfc3339(text: &str) -> Option<u64> {
    let bytes = text.as_bytes();
    let digits = |from: usize, len: usize| -> Option<i64> {
        let part = text.get(from..from + len)?;
        if !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        part.parse().ok()
    };
    if bytes.len() < 20 || bytes[4] != b'-' || bytes[7] != b'-' || !matches!(bytes[10], b'T' | b't' | b' ') {
        return None;
    }
    if bytes[13] != b':' || bytes[16] != b':' {
        return None;
    }
    let (year, month, day) = (digits(0, 4)?, digits(5, 2)?, digits(8, 2)?);
    let (hour, minute, second) = (digits(11, 2)?, digits(14, 2)?, digits(17, 2)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut rest = &text[19..];
    let mut millis = 0i64;
    if let Some(fraction) = rest.strip_prefix('.') {
        let len = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if len == 0 {
            return None;
        }
        let padded = format!("{:0<3}", &fraction[..len.min(3)]);
        millis = padded.parse().ok()?;
        rest = &fraction[len..];
    }
    let offset_minutes = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first() {
                Some(b'+') => 1,
                Some(b'-') => -1,
                _ => return None,
            };
            if rest.len() != 6 || rest.as_bytes()[3] != b':' {
                return None;
            }
            let hours: i64 = rest[1..3].parse().ok()?;
            let minutes: i64 = rest[4..6].parse().ok()?;
            sign * (hours * 60 + minutes)
        }
    };
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset_minutes * 60;
    u64::try_from(seconds * 1000 + millis).ok()
}

/// Formats epoch millis as `YYYY-MM-DDTHH:MM:SS.mmmZ` (what the generator's MODE events carry).
pub fn format_rfc3339(epoch_millis: u64) -> String {
    let millis = (epoch_millis % 1000) as i64;
    let seconds = (epoch_millis / 1000) as i64;
    let (days, of_day) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60
    )
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The inverse of [`days_from_civil`].
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (year_of_era + era * 400 + i64::from(month <= 2), month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emqx_readings_parse() {
        let payload = br#"{"timestamp":1700000000000,"client_id":"emqx-client-004","temp":21.5,"hum":48.2}"#;
        let m = parse(payload).unwrap().unwrap();
        assert_eq!(
            m,
            Measurement {
                device: "emqx-client-004".into(),
                timestamp_ms: 1_700_000_000_000,
                temp: Some(21.5),
                hum: Some(48.2)
            }
        );
        let only_temp = parse(br#"{"timestamp":1,"client_id":"c","temp":-3}"#).unwrap().unwrap();
        assert_eq!((only_temp.temp, only_temp.hum), (Some(-3.0), None));
    }

    #[test]
    fn mode_events_parse_with_either_timestamp() {
        let payload = br#"{"eventType":"sensorReading","eventData":{"temperature":19.0,"humidity":55},
            "timestamp":"2023-11-14T22:13:20.250Z","homeId":104,"originDeviceId":1007}"#;
        let m = parse(payload).unwrap().unwrap();
        assert_eq!(
            m,
            Measurement {
                device: "mode-1007".into(),
                timestamp_ms: 1_700_000_000_250,
                temp: Some(19.0),
                hum: Some(55.0)
            }
        );
        let millis =
            br#"{"eventType":"climate","eventData":{"humidity":40},"timestamp":5,"homeId":"h","originDeviceId":"x"}"#;
        assert_eq!(parse(millis).unwrap().unwrap().device, "mode-x");
    }

    #[test]
    fn other_mode_events_carry_nothing_and_are_not_wanted() {
        let door = br#"{"eventType":"doorOpened","eventData":{},"timestamp":5,"homeId":1,"originDeviceId":2}"#;
        assert_eq!(parse(door), Ok(None));
        assert!(!wanted(door));
        assert!(wanted(br#"{"eventType":"sensorReading"}"#));
        assert!(wanted(b"garbage"), "malformed payloads must reach the processor");
        assert!(wanted(br#"{"client_id":"c"}"#));
    }

    #[test]
    fn malformed_payloads_say_why() {
        let cases: [(&[u8], ParseError); 9] = [
            (b"temp=21.5;hum=40", ParseError::NotJson),
            (br#"{"timestamp":1,"client_id":"c","temp":2"#, ParseError::NotJson),
            (br#"[1,2]"#, ParseError::NotJson),
            (br#"{"timestamp":1,"temp":2}"#, ParseError::UnknownShape),
            (br#"{"client_id":"c","temp":2}"#, ParseError::Missing("timestamp")),
            (br#"{"timestamp":1,"client_id":"c","temp":"hot"}"#, ParseError::WrongType("temp")),
            (br#"{"timestamp":1,"client_id":"c","temp":999}"#, ParseError::OutOfRange("temp")),
            (br#"{"timestamp":1,"client_id":"c"}"#, ParseError::NoValues),
            (
                br#"{"eventType":"climate","eventData":{"temperature":1},"timestamp":"yesterday","homeId":1,"originDeviceId":2}"#,
                ParseError::BadTimestamp,
            ),
        ];
        for (payload, expected) in cases {
            assert_eq!(parse(payload), Err(expected), "{}", String::from_utf8_lossy(payload));
        }
        let no_home = br#"{"eventType":"climate","eventData":{"temperature":1},"timestamp":1,"originDeviceId":2}"#;
        assert_eq!(parse(no_home), Err(ParseError::Missing("homeId")));
    }

    #[test]
    fn rfc3339_round_trips_and_honours_offsets() {
        for millis in [0, 1, 951_782_400_000, 1_700_000_000_250, 4_102_444_799_999] {
            assert_eq!(parse_rfc3339(&format_rfc3339(millis)), Some(millis));
        }
        assert_eq!(format_rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(parse_rfc3339("2023-11-14T23:13:20+01:00"), Some(1_700_000_000_000));
        assert_eq!(parse_rfc3339("2023-11-14T22:13:20.5Z"), Some(1_700_000_000_500));
        for bad in ["2023-11-14", "2023-13-14T22:13:20Z", "2023-11-14T22:13:20", "2023-11-14T22:13:20.Z", "yesterday"] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }
}
