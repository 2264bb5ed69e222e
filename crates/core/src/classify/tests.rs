//! Every row of the table, real messages, and the documented tables.

use super::*;
use Verdict::{Permanent, Reconnect, SourceBudget, Transient};

fn patterns(r: &Rule) -> &'static [&'static str] {
    match r.pattern {
        Pattern::Codes(p) | Pattern::Fragments(p) => p,
    }
}

/// Every row, every pattern: the row itself decides, with its verdict.
#[test]
fn every_code_row_decides_for_its_codes() {
    for rule in CODE_RULES {
        for code in patterns(rule) {
            let j = judge(ErrorInput::coded(code, "some message"));
            assert_eq!(j.rule, Some(rule), "code {code}");
            assert_eq!(j.verdict, rule.verdict, "code {code}");
            // Namespaced and lower-cased forms are the same code.
            let namespaced = format!("com.amazonaws.appflow#{code}");
            assert_eq!(classify(ErrorInput::coded(&namespaced, "")), rule.verdict);
            let lower = code.to_ascii_lowercase();
            assert_eq!(classify(ErrorInput::coded(&lower, "")), rule.verdict);
        }
    }
}

#[test]
fn every_message_row_decides_for_its_fragments() {
    for rule in MESSAGE_RULES {
        for fragment in patterns(rule) {
            let message = format!("Flow run failed: {fragment} (details follow)");
            let j = judge(message.as_str());
            assert_eq!(j.rule, Some(rule), "{message:?}");
            assert_eq!(j.verdict, rule.verdict, "{message:?}");
            let upper = message.to_ascii_uppercase();
            assert_eq!(classify(upper.as_str()), rule.verdict, "{upper:?}");
        }
    }
}

/// Real-world messages, one or more per row, with the verdict a person would give.
#[test]
fn documented_messages() {
    let cases: &[(Option<&str>, &str, Verdict)] = &[
        // Reconnect
        (
            Some("ConnectorAuthenticationException"),
            "Unable to authenticate",
            Reconnect,
        ),
        (
            None,
            "INVALID_SESSION_ID: Session expired or invalid",
            Reconnect,
        ),
        (
            None,
            "[{\"message\":\"Session expired or invalid\",\"errorCode\":\"INVALID_SESSION_ID\"}]",
            Reconnect,
        ),
        (
            None,
            "{\"error\":\"invalid_grant\",\"error_description\":\"expired access/refresh token\"}",
            Reconnect,
        ),
        (
            None,
            "ConnectorAuthenticationException: bad credentials",
            Reconnect,
        ),
        // Source budget
        (
            None,
            "REQUEST_LIMIT_EXCEEDED: TotalRequests Limit exceeded.",
            SourceBudget,
        ),
        (
            None,
            "REQUEST_LIMIT_EXCEEDED: TotalRequests Limit exceeded, try again later",
            SourceBudget,
        ),
        (None, "Marketo error 607: Daily quota reached", SourceBudget),
        (
            Some("ConnectorServerException"),
            "REQUEST_LIMIT_EXCEEDED: TotalRequests Limit exceeded.",
            SourceBudget,
        ),
        // Transient
        (
            None,
            "REQUEST_LIMIT_EXCEEDED: ConcurrentRequests (Concurrent API Requests) Limit exceeded.",
            Transient,
        ),
        (
            Some("ConnectorServerException"),
            "Error retrieving data from the connector endpoint",
            Transient,
        ),
        (Some("ThrottlingException"), "Rate exceeded", Transient),
        (
            Some("TooManyRequestsException"),
            "Too Many Requests",
            Transient,
        ),
        (
            Some("InternalServerException"),
            "An internal error occurred. Try again later.",
            Transient,
        ),
        (
            Some("Transport"),
            "dispatch failure: connection refused",
            Transient,
        ),
        (
            Some("ExpiredTokenException"),
            "The security token included in the request is expired",
            Transient,
        ),
        (None, "Rate exceeded", Transient),
        (None, "429 Too Many Requests", Transient),
        (None, "Internal Server Error: invalid state", Transient),
        (None, "HTTP 502 Bad Gateway", Transient),
        (None, "503 Service Unavailable", Transient),
        (None, "504 Gateway Timeout", Transient),
        (None, "Read timeout", Transient),
        (None, "Connection timed out", Transient),
        (None, "Connection reset by peer", Transient),
        (None, "InternalServerException", Transient),
        (None, "ThrottlingException", Transient),
        // Permanent
        (
            Some("ValidationException"),
            "Destination object for the destination connector can not be updated",
            Permanent,
        ),
        (
            Some("AccessDeniedException"),
            "User: arn:aws:sts::1:assumed-role/w/s is not authorized to perform: appflow:StartFlow",
            Permanent,
        ),
        (
            Some("ResourceNotFoundException"),
            "Connector Profile with name sf does not exist",
            Permanent,
        ),
        (
            Some("ServiceQuotaExceededException"),
            "flow quota",
            Permanent,
        ),
        (
            Some("ConflictException"),
            "Flow with name f already exists",
            Permanent,
        ),
        (
            Some("BadRequestException"),
            "Flow x does not write to Customer Profiles domain d",
            Permanent,
        ),
        (
            Some("InvalidRequest"),
            "a required member is missing",
            Permanent,
        ),
        (
            Some("ConnectorServerException"),
            "INVALID_FIELD: No such column 'Foo__c' on entity 'Account'",
            Permanent,
        ),
        (
            None,
            "INVALID_FIELD: No such column 'Industry__c' on entity 'Account'",
            Permanent,
        ),
        (
            None,
            "INVALID_TYPE: sObject type 'Acount' is not supported.",
            Permanent,
        ),
        (
            None,
            "MALFORMED_QUERY: unexpected token: BETWEEN",
            Permanent,
        ),
        (
            None,
            "INSUFFICIENT_ACCESS_OR_READONLY: insufficient access rights on object id",
            Permanent,
        ),
        (
            None,
            "User: arn:aws:iam::1:user/u is not authorized to perform: kms:Decrypt",
            Permanent,
        ),
        (
            None,
            "Customer Profiles domain acme does not exist or is not accessible",
            Permanent,
        ),
        (None, "ValidationException: bad task", Permanent),
        (None, "ResourceNotFoundException", Permanent),
        (None, "timeout while reading INVALID_FIELD", Permanent),
        // Unknown: transient, and no row claims it.
        (None, "Something odd happened", Transient),
        (None, "", Transient),
        (Some("SomeNewException"), "never seen before", Transient),
    ];
    for (code, message, want) in cases {
        let input = ErrorInput {
            code: *code,
            message,
        };
        assert_eq!(classify(input), *want, "{code:?} {message:?}");
    }
}

#[test]
fn the_broad_words_of_the_old_table_no_longer_decide() {
    for message in [
        "Internal Server Error: invalid state",
        "object not found in cache, retrying",
        "quota service slow to answer",
        "Invalid response from upstream",
    ] {
        let j = judge(message);
        assert_eq!(j.verdict, Transient, "{message:?}");
    }
    assert_eq!(judge("Something odd happened").rule, None);
}

#[test]
fn a_code_decides_before_the_message() {
    // The message alone would be permanent; AWS said it was a server error.
    assert_eq!(
        classify(ErrorInput::coded(
            "InternalServerException",
            "Flow f does not exist"
        )),
        Transient
    );
    assert_eq!(
        classify(ErrorInput::coded("ValidationException", "Rate exceeded")),
        Permanent
    );
    // An unknown code falls through to the message.
    assert_eq!(
        classify(ErrorInput::coded("Unknown", "INVALID_SESSION_ID")),
        Reconnect
    );
}

#[test]
fn exception_names_count_only_as_whole_words() {
    assert!(contains_word(
        "x: ValidationException: y",
        "ValidationException"
    ));
    assert!(!contains_word(
        "MyValidationExceptionHandler",
        "ValidationException"
    ));
    assert_eq!(
        classify("MyValidationExceptionHandler went away"),
        Transient
    );
}

#[test]
fn compatibility_with_transient_or_permanent_callers() {
    assert!(Transient.is_transient() && SourceBudget.is_transient());
    assert!(!Permanent.is_transient() && !Reconnect.is_transient());
    assert!(Transient.retry_with_backoff());
    assert!(!SourceBudget.retry_with_backoff() && !Reconnect.retry_with_backoff());
    // The decide callers pass `&String`.
    let owned = String::from("INVALID_SESSION_ID: Session expired or invalid");
    assert!(!classify(&owned).is_transient());
    let owned = String::from("REQUEST_LIMIT_EXCEEDED: TotalRequests Limit exceeded.");
    assert!(classify(&owned).is_transient());
    assert_eq!(
        serde_json::to_string(&SourceBudget).unwrap(),
        "\"source_budget\""
    );
    for v in [Transient, Permanent, Reconnect, SourceBudget] {
        assert_eq!(serde_json::to_value(v).unwrap(), v.as_str());
    }
}

/// The module doc and the README runbook list every code and fragment of the table.
#[test]
fn the_documented_tables_list_every_pattern() {
    let module_doc: String = include_str!("../classify.rs")
        .lines()
        .filter(|l| l.starts_with("//! |"))
        .collect::<Vec<_>>()
        .join("\n");
    let readme = include_str!("../../../../README.md");
    for rule in CODE_RULES.iter().chain(MESSAGE_RULES) {
        for p in patterns(rule) {
            let quoted = format!("`{p}`");
            assert!(module_doc.contains(&quoted), "module doc lacks {quoted}");
            assert!(readme.contains(&quoted), "README lacks {quoted}");
        }
    }
}
