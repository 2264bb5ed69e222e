//! What the AWS SDK itself costs per request on this host: the floor under the worker's CPU per
//! message. A client configured as the worker's (same HTTP client, stalled-stream settings and
//! request counter) calls a do-nothing HTTP server on loopback, and the CPU of the client's one
//! thread is read from `/proc/thread-self/schedstat`, so the server's work is not counted.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};

use anyhow::{Context as _, anyhow};
use aws_sdk_dynamodb::types::AttributeValue;
use flowpilot::aws::Clients;
use flowpilot::metrics::Metrics;

/// Client CPU per request, in microseconds.
pub struct SdkFloor {
    /// The smallest DynamoDB call, a GetItem of one key, back to back: caches warm.
    pub get_item_us: f64,
    /// A PutItem as large as a 12-batch workflow's header (a 5.6 KB document), with a condition,
    /// back to back.
    pub put_item_us: f64,
    /// The GetItem with the thread idle for [`IDLE`] before each, as a worker waiting on AWS
    /// is, while the other processes of the machine run: what the idle loop itself costs is
    /// subtracted. Caches and branch predictors have gone cold by then.
    pub get_item_idle_us: f64,
}

const WARM_UP: usize = 200;
const MEASURED: usize = 2000;
const SPACED: usize = 500;
const IDLE: std::time::Duration = std::time::Duration::from_millis(5);

pub fn measure() -> anyhow::Result<SdkFloor> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let url = format!("http://{}", listener.local_addr()?);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || serve(stream));
        }
    });
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(client(&url))
    })
    .join()
    .map_err(|_| anyhow!("the SDK floor's client thread panicked"))?
}

async fn client(url: &str) -> anyhow::Result<SdkFloor> {
    let sdk = flowpilot::aws::local_sdk_config(url, "us-east-1", "AKIDFLOOR", "floor").await;
    let ddb = Clients::new(&sdk, &Metrics::new()).dynamodb;
    let doc = "x".repeat(5600);
    let get = || {
        ddb.get_item()
            .table_name("floor")
            .key("pk", AttributeValue::S("wf#floor".into()))
            .consistent_read(true)
            .send()
    };
    let put = || {
        ddb.put_item()
            .table_name("floor")
            .item("pk", AttributeValue::S("wf#floor".into()))
            .item("doc", AttributeValue::S(doc.clone()))
            .item("version", AttributeValue::N("7".into()))
            .condition_expression("version = :expected")
            .expression_attribute_values(":expected", AttributeValue::N("6".into()))
            .send()
    };
    for _ in 0..WARM_UP {
        get()
            .await
            .context("GetItem against the do-nothing server")?;
        put()
            .await
            .context("PutItem against the do-nothing server")?;
    }
    let before = thread_cpu()?;
    for _ in 0..MEASURED {
        get().await?;
    }
    let after_get = thread_cpu()?;
    for _ in 0..MEASURED {
        put().await?;
    }
    let after_put = thread_cpu()?;
    for _ in 0..SPACED {
        tokio::time::sleep(IDLE).await;
        get().await?;
    }
    let after_spaced = thread_cpu()?;
    for _ in 0..SPACED {
        tokio::time::sleep(IDLE).await;
    }
    let after_idle = thread_cpu()?;
    let per = |seconds: f64, n: usize| seconds * 1e6 / n as f64;
    Ok(SdkFloor {
        get_item_us: per(after_get - before, MEASURED),
        put_item_us: per(after_put - after_get, MEASURED),
        get_item_idle_us: per(
            (after_spaced - after_put) - (after_idle - after_spaced),
            SPACED,
        ),
    })
}

/// This thread's CPU time in seconds (nanosecond resolution).
fn thread_cpu() -> anyhow::Result<f64> {
    let ns = crate::schedstat_ns(std::path::Path::new("/proc/thread-self/schedstat"))
        .context("reading /proc/thread-self/schedstat")?;
    Ok(ns as f64 / 1e9)
}

/// HTTP/1.1 keep-alive: every request gets `200 {}`, which every DynamoDB output accepts.
fn serve(stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    loop {
        let mut length = 0usize;
        let mut line = String::new();
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            if line == "\r\n" {
                break;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let answer = b"HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.0\r\nContent-Length: 2\r\n\r\n{}";
        if writer.write_all(answer).is_err() {
            return;
        }
    }
}
