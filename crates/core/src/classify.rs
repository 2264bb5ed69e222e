//! The error table: what an AppFlow, Customer Profiles or SaaS-source error means for a batch.
//!
//! Input ([`ErrorInput`]): the error code when there is one (an effect's SDK error: the
//! exception type, e.g. `ConnectorAuthenticationException`) and the message. AppFlow reports
//! a failed *run* as free text only (the End report's `error`, the execution record's
//! `executionResult.errorInfo.executionMessage`), so run failures have no code.
//!
//! [`judge`] decides in this order, and says which row decided ([`Judgement::rule`]):
//! 1. **Code.** A code in a code row decides. `ConnectorServerException` is the exception:
//!    it wraps the connector's own error, so a message row that matches its message decides
//!    instead (a Salesforce `REQUEST_LIMIT_EXCEEDED` inside it is the SaaS allowance, not a
//!    flaky endpoint).
//! 2. **Exception named in the message.** With no code (or one no row knows), a code row's
//!    `...Exception` name appearing in the message as a whole word decides, with the same
//!    `ConnectorServerException` rule: AppFlow's free text sometimes carries the type.
//! 3. **Message fragments**, case-insensitive substrings, top to bottom: the first match
//!    wins. Specific rows come before general ones (`ConcurrentRequests` before
//!    `REQUEST_LIMIT_EXCEEDED`), and definition errors before transport wording, so
//!    "timeout while reading INVALID_FIELD" is permanent.
//! 4. **Anything else is [`Verdict::Transient`].** Retrying an unfamiliar message costs a few
//!    bounded, backed-off attempts; failing a multi-day backfill on an unknown hiccup costs an
//!    operator; and a truly permanent error still fails once the retry budget is spent.
//!
//! There is deliberately no row for broad words such as `invalid`, `not found` or `quota`:
//! "Internal Server Error: invalid state" is a server error.
//!
//! | verdict | code (exact) / message fragment | cause | source |
//! |---|---|---|---|
//! | reconnect | code `ConnectorAuthenticationException` | AppFlow could not authenticate with the SaaS application (401) | botocore AppFlow model; aws-wire-facts §2.2 |
//! | transient | code `ConnectorServerException` (its message rows decide first) | the connector endpoint failed while AppFlow read from it | botocore AppFlow model; aws-wire-facts §2.2 (bounded app-level backoff is a judgement) |
//! | transient | codes `Throttling`, `ThrottlingException`, `ThrottledException`, `RequestThrottledException`, `TooManyRequestsException`, `ProvisionedThroughputExceededException`, `TransactionInProgressException`, `RequestLimitExceeded`, `BandwidthLimitExceeded`, `LimitExceededException`, `RequestThrottled`, `SlowDown`, `PriorRequestNotComplete`, `EC2ThrottledException` | AWS API rate limit | smithy-rs `aws-runtime` `THROTTLING_ERRORS`; aws-wire-facts §0 |
//! | transient | codes `RequestTimeout`, `RequestTimeoutException` | AWS request timed out | smithy-rs `aws-runtime` `TRANSIENT_ERRORS`; aws-wire-facts §0 |
//! | transient | codes `InternalServerException`, `InternalFailure`, `ServiceUnavailable`, `ServiceUnavailableException` | AWS-side 500 / 503 | botocore AppFlow and Customer Profiles models (500); AWS common errors <https://docs.aws.amazon.com/appflow/1.0/APIReference/CommonErrors.html>; aws-wire-facts §2.2, §4.1 |
//! | transient | codes `Timeout`, `Transport` | flowpilot's own codes for a call that got no answer | `src/aws/mod.rs` (`effect_error`) |
//! | transient | codes `ExpiredTokenException`, `ExpiredToken` | flowpilot's own AWS session expired; the SDK's credentials provider fetches fresh credentials for the next attempt (judgement) | docs/research/iam-facts.md §7, §8 |
//! | permanent | codes `ValidationException`, `BadRequestException`, `UnsupportedOperationException` | the request or flow definition is wrong | botocore models; aws-wire-facts §2.2, §4.1 |
//! | permanent | codes `AccessDeniedException`, `AccessDenied` | IAM / KMS permissions missing | botocore models; docs/research/iam-facts.md §7 |
//! | permanent | code `ResourceNotFoundException` | flow, connector profile or domain missing | botocore models; aws-wire-facts §2.2, §4.1 |
//! | permanent | code `ServiceQuotaExceededException` | an account quota needs raising (402); a batch's StartFlow or CreateFlow is not judged: the shell lowers the shared budget and the batch waits | botocore AppFlow model; aws-wire-facts §2.2 |
//! | permanent | code `ConflictException` | already exists / wrong state: the same call gets the same answer | botocore AppFlow model; aws-wire-facts §2.2 |
//! | permanent | codes `UnrecognizedClientException`, `InvalidClientTokenId`, `MissingAuthenticationTokenException`, `InvalidRequest` | flowpilot's own AWS credentials are wrong, or the SDK refused to build the request | docs/research/iam-facts.md §7; `src/aws/mod.rs` (`InvalidRequest`) |
//! | transient | fragment `ConcurrentRequests` | Salesforce's concurrent long-running request limit: clears as requests finish | <https://developer.salesforce.com/docs/platform/salesforce-app-limits-cheatsheet/guide/salesforce-app-limits-platform-api.html> |
//! | source budget | fragments `REQUEST_LIMIT_EXCEEDED`, `TotalRequests Limit exceeded` | Salesforce's rolling 24-hour API allowance is spent | same Salesforce page; <https://help.salesforce.com/s/articleView?id=xcloud.setup_system_overview_api.htm>; aws-wire-facts §3.1 |
//! | source budget | fragment `Daily quota reached` | Marketo's daily API quota (REST error 607) is spent | <https://experienceleague.adobe.com/en/docs/marketo-developer/marketo/rest/error-codes> |
//! | reconnect | fragments `INVALID_SESSION_ID`, `Session expired or invalid` | Salesforce refused the session (expired or revoked token) | <https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/errorcodes.htm> (401); Salesforce "Understanding the OAuth Refresh Token Process"; aws-wire-facts §5 |
//! | reconnect | fragments `invalid_grant`, `expired access/refresh token` | the refresh token is expired or revoked | RFC 6749 §5.2; Salesforce OAuth token endpoint; <https://docs.aws.amazon.com/appflow/latest/userguide/salesforce.html> (refresh token policy) |
//! | permanent | fragments `INVALID_FIELD`, `No such column` | the object has no such field | Salesforce API status codes (`INVALID_FIELD`, "No such column '…' on entity '…'") |
//! | permanent | fragment `INVALID_TYPE` | the object (sObject type) does not exist or is not supported | Salesforce API status codes |
//! | permanent | fragment `MALFORMED_QUERY` | the source query (filter) is malformed | Salesforce API status codes |
//! | permanent | fragment `INSUFFICIENT_ACCESS` | the Salesforce user lacks access to the object or record | Salesforce API status codes (`INSUFFICIENT_ACCESS_OR_READONLY`, ...) |
//! | permanent | fragment `is not authorized to perform` | an IAM denial ("User: … is not authorized to perform: …") | IAM user guide, troubleshoot access denied; docs/research/iam-facts.md §7 |
//! | permanent | fragment `does not exist` | AppFlow's not-found wording ("Connector Profile with name … does not exist") | terraform-provider-aws #27707; aws-wire-facts §5 |
//! | transient | fragment `Rate exceeded` | an AWS API rate limit | AWS `ThrottlingException` message; aws-wire-facts §2.2 |
//! | transient | fragment `Too Many Requests` | HTTP 429 | RFC 6585 §4; cdk-appflow #107 (aws-wire-facts §5) |
//! | transient | fragments `Internal Server Error`, `Bad Gateway`, `Service Unavailable`, `Gateway Timeout` | HTTP 500 / 502 / 503 / 504 | RFC 9110 §15.6 |
//! | transient | fragments `timed out`, `timeout`, `Connection reset` | transport failures | POSIX `ETIMEDOUT` ("Connection timed out"), `ECONNRESET` ("Connection reset by peer") |
//! | transient | anything else | unknown: retried within the budget | rule 4 above |

use serde::{Deserialize, Serialize};

mod rules;
pub mod size;

pub use rules::{CODE_RULES, MESSAGE_RULES};
pub use size::{SIZE_RULES, too_big_for_one_run};

/// What to do about an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Retry with backoff within the retry budget.
    Transient,
    /// Fail the batch: someone must change the definition, permissions or quota first.
    Permanent,
    /// The connector profile's credentials no longer authenticate: fail without spending
    /// retries and recommend reconnecting (renewing) the connector profile, then redrive.
    Reconnect,
    /// The SaaS application's API allowance is spent: pause starts until it refills rather
    /// than spending retries (it refills by itself).
    SourceBudget,
}

/// The former name, when the table knew only two verdicts.
pub type Transience = Verdict;

impl Verdict {
    /// "May succeed later with nobody changing anything": [`Verdict::Transient`] and
    /// [`Verdict::SourceBudget`]. Callers that only know transient vs permanent keep their
    /// behaviour: a spent allowance is retried, an expired connection fails the batch.
    pub fn is_transient(self) -> bool {
        matches!(self, Self::Transient | Self::SourceBudget)
    }

    /// Only [`Verdict::Transient`] is worth an immediate retry with backoff.
    pub fn retry_with_backoff(self) -> bool {
        self == Self::Transient
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Transient => "transient",
            Self::Permanent => "permanent",
            Self::Reconnect => "reconnect",
            Self::SourceBudget => "source_budget",
        }
    }
}

/// What a rule matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pattern {
    /// Error codes (exception types), compared exactly but for ASCII case.
    Codes(&'static [&'static str]),
    /// Case-insensitive substrings of the message.
    Fragments(&'static [&'static str]),
}

/// One row of the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rule {
    pub verdict: Verdict,
    pub pattern: Pattern,
    /// What the error means, in plain words.
    pub cause: &'static str,
    /// Where the code or wording is documented.
    pub source: &'static str,
}

/// An error to judge: its code when there is one, and its message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ErrorInput<'a> {
    pub code: Option<&'a str>,
    pub message: &'a str,
}

impl<'a> ErrorInput<'a> {
    /// Free text only (an AppFlow run failure).
    pub fn message(message: &'a str) -> Self {
        Self {
            code: None,
            message,
        }
    }

    /// An API error with its code (e.g. `EffectError { code, message }`).
    pub fn coded(code: &'a str, message: &'a str) -> Self {
        Self {
            code: Some(code),
            message,
        }
    }
}

impl<'a> From<&'a str> for ErrorInput<'a> {
    fn from(message: &'a str) -> Self {
        Self::message(message)
    }
}

impl<'a> From<&'a String> for ErrorInput<'a> {
    fn from(message: &'a String) -> Self {
        Self::message(message)
    }
}

/// A verdict and the row that decided it (`None`: nothing matched, rule 4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Judgement {
    pub verdict: Verdict,
    pub rule: Option<&'static Rule>,
}

/// Judges an error (see the module table). `classify(&message)` judges free text;
/// `classify(ErrorInput::coded(code, &message))` an API error.
pub fn classify<'a>(input: impl Into<ErrorInput<'a>>) -> Verdict {
    judge(input).verdict
}

/// [`classify`], plus the row that decided.
pub fn judge<'a>(input: impl Into<ErrorInput<'a>>) -> Judgement {
    let input = input.into();
    let code_rule = input
        .code
        .map(sanitize_code)
        .and_then(code_rule)
        .or_else(|| exception_named_in(input.message));
    let by_message = || message_rule(input.message);
    let rule = match code_rule {
        Some(r) if r.pattern == Pattern::Codes(&[rules::WRAPS_CONNECTOR_ERRORS]) => {
            by_message().or(Some(r))
        }
        Some(r) => Some(r),
        None => by_message(),
    };
    Judgement {
        verdict: rule.map_or(Verdict::Transient, |r| r.verdict),
        rule,
    }
}

/// restJson1 codes may carry a namespace (`aws.appflow#X`) or a suffix (`X:http://...`).
fn sanitize_code(code: &str) -> &str {
    let code = code.split(':').next().unwrap_or(code);
    code.rsplit('#').next().unwrap_or(code).trim()
}

fn code_rule(code: &str) -> Option<&'static Rule> {
    CODE_RULES.iter().find(|r| match r.pattern {
        Pattern::Codes(codes) => codes.iter().any(|c| c.eq_ignore_ascii_case(code)),
        Pattern::Fragments(_) => false,
    })
}

/// A code row whose `...Exception` name is a whole word of `message`.
fn exception_named_in(message: &str) -> Option<&'static Rule> {
    CODE_RULES.iter().find(|r| match r.pattern {
        Pattern::Codes(codes) => codes
            .iter()
            .filter(|c| c.ends_with("Exception"))
            .any(|c| contains_word(message, c)),
        Pattern::Fragments(_) => false,
    })
}

fn message_rule(message: &str) -> Option<&'static Rule> {
    let lower = message.to_ascii_lowercase();
    MESSAGE_RULES.iter().find(|r| match r.pattern {
        Pattern::Fragments(fragments) => fragments
            .iter()
            .any(|f| lower.contains(&f.to_ascii_lowercase())),
        Pattern::Codes(_) => false,
    })
}

/// `word` occurs in `text` (ASCII case-insensitively) with no letter or digit on either side.
fn contains_word(text: &str, word: &str) -> bool {
    let (text, word) = (text.to_ascii_lowercase(), word.to_ascii_lowercase());
    let bytes = text.as_bytes();
    text.match_indices(&word).any(|(at, _)| {
        let before = at.checked_sub(1).map(|i| bytes[i]);
        let after = bytes.get(at + word.len()).copied();
        !before.is_some_and(|b| b.is_ascii_alphanumeric())
            && !after.is_some_and(|b| b.is_ascii_alphanumeric())
    })
}

#[cfg(test)]
mod tests;
