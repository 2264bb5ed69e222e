//! Lambda mode without AWS: a minimal Lambda Runtime API on 127.0.0.1 ([`RuntimeApi`]: the
//! documented `GET /2018-06-01/runtime/invocation/next`, `POST …/{id}/response`,
//! `POST …/{id}/error` and `POST …/init/error`), a real `flowpilot lambda` process polling it
//! ([`spawn_lambda`]), and the test playing the SQS event source mapping ([`Mapping`]): receive
//! a batch, invoke, delete the records the answer does not name.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, anyhow, bail};
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use aws_sdk_sqs::types::{
    DeleteMessageBatchRequestEntry, MessageSystemAttributeName, QueueAttributeName,
};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::routing::{get, post};
use serde_json::Value;
use tokio::process::Command;
use tokio::sync::{mpsc, oneshot};

use super::e2e::{Env, Worker};
use super::{REGION, WORKER_PROFILE};

/// What the function answered for one invocation.
#[derive(Debug)]
pub enum Answer {
    Response(Value),
    Error(Value),
}

struct Pending {
    id: String,
    body: String,
}

struct Shared {
    /// Invocations waiting for the function's next poll.
    queue: tokio::sync::Mutex<mpsc::Receiver<Pending>>,
    answers: Mutex<HashMap<String, oneshot::Sender<Answer>>>,
    first_poll: OnceLock<Instant>,
    init_errors: Mutex<Vec<Value>>,
    /// How long the function has per invocation (the deadline header).
    timeout: Duration,
}

/// The Runtime API one function process polls; stops when dropped.
pub struct RuntimeApi {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    invocations: mpsc::Sender<Pending>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.server.abort();
    }
}

const BASE: &str = "/2018-06-01/runtime";

impl RuntimeApi {
    /// Serves on a free 127.0.0.1 port; invocations get `timeout` (the function's Timeout).
    pub async fn start(timeout: Duration) -> anyhow::Result<RuntimeApi> {
        let (invocations, queue) = mpsc::channel(16);
        let shared = Arc::new(Shared {
            queue: tokio::sync::Mutex::new(queue),
            answers: Mutex::default(),
            first_poll: OnceLock::new(),
            init_errors: Mutex::default(),
            timeout,
        });
        let app = axum::Router::new()
            .route(&format!("{BASE}/invocation/next"), get(next))
            .route(
                &format!("{BASE}/invocation/{{id}}/response"),
                post(response),
            )
            .route(&format!("{BASE}/invocation/{{id}}/error"), post(error))
            .route(&format!("{BASE}/init/error"), post(init_error))
            .with_state(Arc::clone(&shared));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(RuntimeApi {
            addr,
            shared,
            invocations,
            server,
        })
    }

    /// `AWS_LAMBDA_RUNTIME_API`: host and port, no scheme.
    pub fn host_port(&self) -> String {
        self.addr.to_string()
    }

    /// When the function first asked for an event (the end of its cold start).
    pub fn first_poll(&self) -> Option<Instant> {
        self.shared.first_poll.get().copied()
    }

    pub fn init_errors(&self) -> Vec<Value> {
        self.shared
            .init_errors
            .lock()
            .map(|e| e.clone())
            .unwrap_or_default()
    }

    /// Hands `event` to the function's next poll and waits for its answer.
    pub async fn invoke(&self, event: &Value, wait: Duration) -> anyhow::Result<Answer> {
        let id = uuid::Uuid::new_v4().to_string();
        let (tx, rx) = oneshot::channel();
        self.shared
            .answers
            .lock()
            .map_err(|_| anyhow!("answers lock poisoned"))?
            .insert(id.clone(), tx);
        self.invocations
            .send(Pending {
                id: id.clone(),
                body: event.to_string(),
            })
            .await
            .map_err(|_| anyhow!("the runtime API stopped"))?;
        tokio::time::timeout(wait, rx)
            .await
            .with_context(|| format!("invocation {id} got no answer within {wait:?}"))?
            .map_err(|_| anyhow!("invocation {id} was dropped"))
    }
}

async fn next(State(s): State<Arc<Shared>>) -> Result<(HeaderMap, String), StatusCode> {
    let _ = s.first_poll.set(Instant::now());
    // Long poll, as Lambda's does: the answer is the next invocation.
    let pending = s.queue.lock().await.recv().await.ok_or(StatusCode::GONE)?;
    let deadline = SystemTime::now()
        .checked_add(s.timeout)
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_millis().to_string())
        .ok_or(StatusCode::INTERNAL_SERVER_ERROR)?;
    let mut headers = HeaderMap::new();
    let value = |v: &str| HeaderValue::from_str(v).map_err(|_| StatusCode::INTERNAL_SERVER_ERROR);
    headers.insert("lambda-runtime-aws-request-id", value(&pending.id)?);
    headers.insert("lambda-runtime-deadline-ms", value(&deadline)?);
    headers.insert(
        "lambda-runtime-invoked-function-arn",
        value(&format!(
            "arn:aws:lambda:{REGION}:123456789012:function:flowpilot-worker"
        ))?,
    );
    headers.insert(
        "lambda-runtime-trace-id",
        value("Root=1-00000000-000000000000000000000000;Sampled=0")?,
    );
    Ok((headers, pending.body))
}

fn answer(s: &Shared, id: &str, a: Answer) -> StatusCode {
    match s.answers.lock().ok().and_then(|mut m| m.remove(id)) {
        Some(tx) => {
            let _ = tx.send(a);
            StatusCode::ACCEPTED
        }
        None => StatusCode::BAD_REQUEST,
    }
}

async fn response(
    State(s): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: String,
) -> StatusCode {
    let v = serde_json::from_str(&body).unwrap_or(Value::String(body));
    answer(&s, &id, Answer::Response(v))
}

async fn error(State(s): State<Arc<Shared>>, Path(id): Path<String>, body: String) -> StatusCode {
    let v = serde_json::from_str(&body).unwrap_or(Value::String(body));
    answer(&s, &id, Answer::Error(v))
}

async fn init_error(State(s): State<Arc<Shared>>, body: String) -> StatusCode {
    let v = serde_json::from_str(&body).unwrap_or(Value::String(body));
    if let Ok(mut errors) = s.init_errors.lock() {
        errors.push(v);
    }
    StatusCode::ACCEPTED
}

/// A `flowpilot lambda` process holding the worker profile (in a lambda-mode stack: the
/// function's role), with the environment Lambda gives a function, polling `api`.
pub fn spawn_lambda(env: &Env, label: &str, api: &RuntimeApi) -> anyhow::Result<(Worker, Instant)> {
    let log =
        super::scratch_dir().join(format!("lambda-{}-{label}-{}.log", env.name, env.moto.port));
    let file = std::fs::File::create(&log)?;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_flowpilot"));
    cmd.arg("lambda")
        .envs(env.process_env(WORKER_PROFILE))
        .env("AWS_LAMBDA_RUNTIME_API", api.host_port())
        .env("AWS_LAMBDA_FUNCTION_NAME", "flowpilot-worker")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        // What the deployed deferral and drain timings would be is not under test here.
        .env("RUST_LOG", "info,aws_config=warn,aws_smithy_runtime=warn")
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(file)
        .kill_on_drop(true);
    let spawned = Instant::now();
    let child = cmd.spawn().context("spawning flowpilot lambda")?;
    Ok((
        Worker {
            child,
            log,
            label: label.to_owned(),
        },
        spawned,
    ))
}

/// The init duration the function logged ("cold start: ready for the first event …").
pub fn logged_init_ms(log: &str) -> Option<u64> {
    log.lines()
        .find(|l| l.contains("cold start: ready for the first event"))?
        .split("init_ms=")
        .nth(1)?
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// What one mapping poll did.
#[derive(Debug, Default, Clone, Copy)]
pub struct Poll {
    pub records: usize,
    pub failures: usize,
    pub invoke_time: Duration,
}

/// The test in the role of the SQS event source mapping, polling with `sqs` (the function's
/// role: the mapping polls with it) and invoking through `api`.
pub struct Mapping<'a> {
    pub sqs: aws_sdk_sqs::Client,
    pub queue_url: String,
    pub queue_arn: String,
    pub api: &'a RuntimeApi,
}

impl<'a> Mapping<'a> {
    /// Reads the queue's attributes first, as creating a mapping does.
    pub async fn new(
        sqs: aws_sdk_sqs::Client,
        queue_url: &str,
        api: &'a RuntimeApi,
    ) -> anyhow::Result<Self> {
        let attrs = sqs
            .get_queue_attributes()
            .queue_url(queue_url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .context("GetQueueAttributes as the function's role (the mapping's first call)")?;
        let queue_arn = attrs
            .attributes()
            .and_then(|a| a.get(&QueueAttributeName::QueueArn))
            .cloned()
            .context("no QueueArn")?;
        Ok(Self {
            sqs,
            queue_url: queue_url.to_owned(),
            queue_arn,
            api,
        })
    }

    /// Receives up to 10 messages (waiting up to `wait`); nothing received → `None`.
    pub async fn receive(&self, wait: Duration) -> anyhow::Result<Option<SqsEvent>> {
        let out = self
            .sqs
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(i32::try_from(wait.as_secs()).unwrap_or(20))
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await
            .context("ReceiveMessage as the function's role")?;
        let messages = out.messages.unwrap_or_default();
        if messages.is_empty() {
            return Ok(None);
        }
        let mut event = SqsEvent::default();
        for m in messages {
            let mut r = SqsMessage::default();
            r.message_id = m.message_id;
            r.receipt_handle = m.receipt_handle;
            r.body = m.body;
            r.md5_of_body = m.md5_of_body;
            r.attributes = m
                .attributes
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k.as_str().to_owned(), v))
                .collect();
            r.event_source = Some("aws:sqs".to_owned());
            r.event_source_arn = Some(self.queue_arn.clone());
            r.aws_region = Some(REGION.to_owned());
            event.records.push(r);
        }
        Ok(Some(event))
    }

    /// Invokes the function with `event`; returns its partial batch response.
    pub async fn invoke(&self, event: &SqsEvent) -> anyhow::Result<SqsBatchResponse> {
        match self
            .api
            .invoke(&serde_json::to_value(event)?, Duration::from_secs(90))
            .await?
        {
            Answer::Response(v) => Ok(serde_json::from_value(v)?),
            Answer::Error(e) => {
                bail!("the invocation failed as a whole (every record would be redelivered): {e}")
            }
        }
    }

    /// Deletes the records of `event` that `response` does not name (what the mapping does
    /// with ReportBatchItemFailures); the named ones stay for their visibility timeout.
    pub async fn settle(
        &self,
        event: &SqsEvent,
        response: &SqsBatchResponse,
    ) -> anyhow::Result<()> {
        let failed: Vec<&str> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
        let entries = event
            .records
            .iter()
            .filter(|r| !failed.contains(&r.message_id.as_deref().unwrap_or_default()))
            .enumerate()
            .map(|(i, r)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(r.receipt_handle.clone().unwrap_or_default())
                    .build()
            })
            .collect::<Result<Vec<_>, _>>()?;
        if entries.is_empty() {
            return Ok(());
        }
        let out = self
            .sqs
            .delete_message_batch()
            .queue_url(&self.queue_url)
            .set_entries(Some(entries))
            .send()
            .await
            .context("DeleteMessageBatch as the function's role")?;
        if !out.failed.is_empty() {
            bail!("DeleteMessageBatch failed for {:?}", out.failed);
        }
        Ok(())
    }

    /// One poll: receive, invoke, settle.
    pub async fn poll(&self, wait: Duration) -> anyhow::Result<Poll> {
        let Some(event) = self.receive(wait).await? else {
            return Ok(Poll::default());
        };
        let started = Instant::now();
        let response = self.invoke(&event).await?;
        let invoke_time = started.elapsed();
        self.settle(&event, &response).await?;
        Ok(Poll {
            records: event.records.len(),
            failures: response.batch_item_failures.len(),
            invoke_time,
        })
    }
}
