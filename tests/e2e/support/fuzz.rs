//! Fuzzed SQS message bodies for the poison-message scenario: random characters, truncated
//! JSON, deeply nested JSON, huge bodies and EventBridge envelopes with wrong types.
//!
//! Every body is one the worker must refuse (never delete), so all of them must end in the
//! DLQ: [`bodies`] checks each with the worker's own pure parser and draws again if one happens
//! to be a valid, or a valid-but-ignorable, message.

use flowpilot::core::event::parse_message;
use serde_json::{Value, json};

/// SQS's classic maximum message size (bodies here stay at or under it).
pub const MAX_BODY: usize = 256 * 1024;

/// The kinds of bodies, for the test's summary.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    RandomChars,
    TruncatedJson,
    DeeplyNested,
    Huge,
    WrongTypes,
}

/// `n` poison bodies drawn from `rng`, roughly 20% of each kind except huge ones (2%, they
/// are expensive for moto to copy around).
pub fn bodies(rng: &mut fastrand::Rng, n: usize) -> Vec<(Kind, String)> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let roll = rng.u32(0..100);
        let (kind, body) = match roll {
            0..=1 => (Kind::Huge, huge(rng)),
            2..=25 => {
                let len = rng.usize(1..2048);
                (Kind::RandomChars, random_chars(rng, len))
            }
            26..=50 => (Kind::TruncatedJson, truncated(rng)),
            51..=70 => (Kind::DeeplyNested, nested(rng)),
            _ => (Kind::WrongTypes, wrong_types(rng)),
        };
        // Only bodies the worker must keep (poison): a valid or ignorable one would be
        // deleted and never reach the DLQ. SQS also refuses empty bodies.
        if !body.is_empty() && body.len() <= MAX_BODY && parse_message(&body).is_err() {
            out.push((kind, body));
        }
    }
    out
}

/// Characters SQS accepts (#x9 #xA #xD #x20-#xD7FF #xE000-#xFFFD #x10000-#x10FFFF), biased
/// towards JSON punctuation so some bodies get deep into the parser.
fn random_chars(rng: &mut fastrand::Rng, len: usize) -> String {
    const PUNCT: &[char] = &['{', '}', '[', ']', '"', ':', ',', '\\', '0', 'e', '-', '.'];
    (0..len)
        .map(|_| match rng.u32(0..10) {
            0..=3 => PUNCT[rng.usize(0..PUNCT.len())],
            4..=6 => rng.char(' '..='~'),
            7 => ['\t', '\n', '\r'][rng.usize(0..3)],
            8 => rng.char('\u{a0}'..='\u{d7ff}'),
            _ => rng.char('\u{10000}'..='\u{10ffff}'),
        })
        .collect()
}

/// A plausible AppFlow End report or command envelope.
fn valid_envelope(rng: &mut fastrand::Rng) -> Value {
    if rng.bool() {
        json!({
            "version": "0",
            "id": format!("{:032x}", rng.u128(..)),
            "detail-type": "AppFlow End Flow Run Report",
            "source": "aws.appflow",
            "time": "2026-01-01T00:00:00Z",
            "region": "us-east-1",
            "resources": [format!("{:032x}", rng.u128(..))],
            "detail": {
                "flow-name": format!("fp-fuzz{}-b{:04}", rng.u32(0..1000), rng.u32(0..30)),
                "execution-id": format!("{:x}", rng.u64(..)),
                "status": "Execution Successful",
                "num-of-records-processed": rng.u32(0..10_000).to_string(),
                "end-time": "2026-01-01T00:00:01.000Z[UTC]",
            }
        })
    } else {
        let command = ["start", "cancel", "redrive", "rebuild", "retry_due"][rng.usize(0..5)];
        json!({
            "version": "0",
            "id": format!("fuzz-{}", rng.u64(..)),
            "detail-type": "Workflow Command",
            "source": "flowpilot.command",
            "time": "2026-01-01T00:00:00Z",
            "resources": [],
            "detail": {
                "command": command,
                "workflow_id": format!("fuzz-{}", rng.u32(0..1000)),
                "batch": rng.u32(0..30),
                "attempt": rng.u32(1..4),
                "due_at": "2026-01-01T00:00:00Z",
            }
        })
    }
}

fn truncated(rng: &mut fastrand::Rng) -> String {
    let full = valid_envelope(rng).to_string();
    // Compact JSON ends with its closing brace: every proper prefix is incomplete JSON.
    let mut cut = rng.usize(1..full.len());
    while !full.is_char_boundary(cut) {
        cut -= 1;
    }
    full[..cut].to_owned()
}

/// Nesting deeper than serde_json's recursion limit (128), bare or inside an envelope.
fn nested(rng: &mut fastrand::Rng) -> String {
    let depth = rng.usize(129..20_000);
    let (open, close) = if rng.bool() {
        ("{\"a\":", "}")
    } else {
        ("[", "]")
    };
    let inner = format!("{}1{}", open.repeat(depth), close.repeat(depth));
    if rng.bool() {
        inner
    } else {
        let mut env = valid_envelope(rng).to_string();
        // Replace the detail object's last member with the nested value.
        env.truncate(env.len() - 2);
        format!("{env},\"x\":{inner}}}}}")
    }
}

/// 64 KiB up to exactly the limit: padding inside a wrong-typed envelope, or plain characters.
fn huge(rng: &mut fastrand::Rng) -> String {
    let size = if rng.u32(0..4) == 0 {
        MAX_BODY
    } else {
        rng.usize(64 * 1024..MAX_BODY)
    };
    if rng.bool() {
        let head = "{\"detail-type\":42,\"source\":\"aws.appflow\",\"detail\":{},\"pad\":\"";
        let tail = "\"}";
        let pad = size - head.len() - tail.len();
        format!("{head}{}{tail}", "x".repeat(pad))
    } else {
        // ASCII only, so the byte length is exactly `size`.
        (0..size).map(|_| rng.char(' '..='~')).collect()
    }
}

/// A valid envelope with one field replaced by a value of the wrong type.
fn wrong_types(rng: &mut fastrand::Rng) -> String {
    let mut env = valid_envelope(rng);
    let wrong = [
        json!(null),
        json!(42),
        json!(-1.5e300),
        json!(true),
        json!([]),
        json!({}),
        json!(["a", 1]),
        json!({"nested": {"deeper": []}}),
    ];
    let value = wrong[rng.usize(0..wrong.len())].clone();
    let is_command = env["source"] == "flowpilot.command";
    let targets: &[&str] = if is_command {
        &[
            "detail-type",
            "source",
            "detail",
            "detail.command",
            "detail.workflow_id",
            "detail.batch",
            "detail.attempt",
            "detail.due_at",
        ]
    } else {
        &[
            "detail-type",
            "source",
            "detail",
            "detail.flow-name",
            "detail.status",
        ]
    };
    match rng.u32(0..10) {
        // Not an object at all.
        0 => return wrong[rng.usize(0..wrong.len())].to_string(),
        // Right shape, unknown source.
        1 => env["source"] = json!(format!("aws.fuzz{}", rng.u32(..))),
        _ => {
            let target = targets[rng.usize(0..targets.len())];
            match target.split_once('.') {
                Some((outer, inner)) => env[outer][inner] = value,
                None => env[target] = value,
            }
        }
    }
    env.to_string()
}
