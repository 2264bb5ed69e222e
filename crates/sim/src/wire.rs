//! restJson1 helpers: body parsing, epoch-second timestamps, member validation, paging.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value};

use crate::error::{ApiError, ErrorKind, Service};

/// Parse a request body; an empty body is an empty structure (GETs and member-less POSTs).
pub fn body(service: Service, bytes: &[u8]) -> Result<Map<String, Value>, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(invalid(service, "request body must be a JSON object")),
        Err(e) => Err(invalid(service, format!("malformed JSON body: {e}"))),
    }
}

pub fn invalid(service: Service, msg: impl Into<String>) -> ApiError {
    match service {
        Service::AppFlow => ApiError::appflow(ErrorKind::Validation, msg),
        Service::Profiles => ApiError::profiles(ErrorKind::BadRequest, msg),
    }
}

pub fn req_str<'a>(
    service: Service,
    m: &'a Map<String, Value>,
    key: &str,
) -> Result<&'a str, ApiError> {
    match m.get(key) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(invalid(service, format!("{key} must be a string"))),
        None => Err(invalid(
            service,
            format!(
                "1 validation error detected: Value null at '{key}' failed to satisfy constraint: Member must not be null"
            ),
        )),
    }
}

pub fn opt_str<'a>(m: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    m.get(key).and_then(Value::as_str)
}

pub fn req<'a>(
    service: Service,
    m: &'a Map<String, Value>,
    key: &str,
) -> Result<&'a Value, ApiError> {
    m.get(key).filter(|v| !v.is_null()).ok_or_else(|| {
        invalid(
            service,
            format!("1 validation error detected: Value null at '{key}' failed to satisfy constraint: Member must not be null"),
        )
    })
}

/// restJson1 body timestamps: epoch seconds, possibly fractional.
pub fn epoch(t: DateTime<Utc>) -> Value {
    let ms = t.timestamp_millis();
    if ms % 1000 == 0 {
        Value::from(ms / 1000)
    } else {
        Value::from(ms as f64 / 1000.0)
    }
}

pub fn parse_epoch(v: &Value) -> Option<DateTime<Utc>> {
    let secs = v.as_f64()?;
    // Rounding to whole ms keeps 1634244800.435 from becoming ...434.999.
    DateTime::from_timestamp_millis((secs * 1000.0).round() as i64)
}

pub fn rfc3339_ms(ms: i64) -> String {
    crate::source::ms_to_datetime(ms).to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// `[a-zA-Z0-9][\w!@#.-]+`, at most 256 characters.
pub fn valid_flow_name(name: &str) -> bool {
    let mut chars = name.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    name.len() >= 2
        && name.len() <= 256
        && first.is_ascii_alphanumeric()
        && chars.all(|c| c.is_ascii_alphanumeric() || "_!@#.-".contains(c))
}

/// `^[a-zA-Z0-9_-]+$`, 1..=64.
pub fn valid_domain_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Opaque page token: the offset into a stable ordering.
pub fn page<T: Clone>(
    service: Service,
    items: &[T],
    max_results: Option<&Value>,
    default: usize,
    next_token: Option<&str>,
) -> Result<(Vec<T>, Option<String>), ApiError> {
    let max = match max_results {
        None | Some(Value::Null) => default,
        Some(v) => match v.as_u64() {
            Some(n) if (1..=100).contains(&n) => n as usize,
            _ => {
                return Err(invalid(
                    service,
                    "maxResults must be an integer between 1 and 100",
                ));
            }
        },
    };
    let start = match next_token {
        None => 0,
        Some(t) => t
            .strip_prefix("sim-page-")
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|n| *n <= items.len())
            .ok_or_else(|| invalid(service, "invalid nextToken"))?,
    };
    let end = (start + max).min(items.len());
    let next = (end < items.len()).then(|| format!("sim-page-{end}"));
    Ok((items[start..end].to_vec(), next))
}

/// Decode `%XX` escapes (and `+` as space, for query strings).
pub fn percent_decode(s: &str, plus_is_space: bool) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// All values of `key` in a raw query string (repeated keys allowed).
pub fn query_values(raw: Option<&str>, key: &str) -> Vec<String> {
    raw.unwrap_or("")
        .split('&')
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (percent_decode(k, true) == key).then(|| percent_decode(v, true))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flow_name_pattern() {
        assert!(valid_flow_name("fp-wf1-b0001"));
        assert!(valid_flow_name("a.b@c#d!e_f"));
        assert!(!valid_flow_name("-leading-dash"));
        assert!(!valid_flow_name("has space"));
        assert!(!valid_flow_name("x"));
        assert!(!valid_flow_name(&"a".repeat(257)));
        assert!(!valid_flow_name("arn:aws:appflow"));
    }

    #[test]
    fn percent_decoding_and_repeated_query_keys() {
        assert_eq!(
            percent_decode("arn%3Aaws%3Aappflow%2Fx", false),
            "arn:aws:appflow/x"
        );
        assert_eq!(percent_decode("100%", false), "100%");
        assert_eq!(
            query_values(Some("tagKeys=a&x=1&tagKeys=b%20c"), "tagKeys"),
            vec!["a", "b c"]
        );
    }

    #[test]
    fn epoch_round_trip_keeps_milliseconds() {
        let t = parse_epoch(&serde_json::json!(1634244800.435)).unwrap();
        assert_eq!(t.timestamp_millis(), 1_634_244_800_435);
        assert_eq!(parse_epoch(&epoch(t)).unwrap(), t);
    }
}
