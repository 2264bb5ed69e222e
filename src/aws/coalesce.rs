//! Coalescing: calls from many workflows' handlers that AWS accepts in batches (health events
//! for PutEvents, message deletions for DeleteMessageBatch) are gathered for a short linger
//! and sent together, so at load each such request serves several batches instead of one.
//! Neither is on the critical path (both happen after the next run has started), so the linger
//! costs no source time.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{Notify, mpsc, oneshot};

/// Requests queued at most before senders wait (back-pressure on a slow AWS).
const QUEUE: usize = 1024;

type Request<T, R> = (T, oneshot::Sender<R>);

/// A handle to one coalescing task: `submit` an item, get its own result back.
pub struct Coalescer<T, R> {
    tx: mpsc::Sender<Request<T, R>>,
}

impl<T, R> Clone for Coalescer<T, R> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
        }
    }
}

/// Someone waiting for what the items being gathered hold (a poller waiting for handling
/// permits that messages awaiting deletion keep): a coalescer told about it sends as soon as
/// it has gathered enough, instead of lingering on.
#[derive(Default)]
pub struct Pressure {
    waiting: AtomicUsize,
    changed: Notify,
}

impl Pressure {
    /// Marks one waiter until the guard is dropped.
    pub fn waiting(self: &Arc<Self>) -> PressureGuard {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        self.changed.notify_one();
        PressureGuard(Arc::clone(self))
    }

    fn is_on(&self) -> bool {
        self.waiting.load(Ordering::SeqCst) > 0
    }
}

/// One waiter of a [`Pressure`]; dropping it (the wait ended or was abandoned) ends the wait.
pub struct PressureGuard(Arc<Pressure>);

impl Drop for PressureGuard {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::SeqCst);
    }
}

/// When a coalescer sends before its linger is over: under pressure, with `at_least` items.
pub struct EarlySend {
    pub pressure: Arc<Pressure>,
    pub at_least: usize,
}

impl<T: Send + 'static, R: Send + 'static> Coalescer<T, R> {
    /// Starts the task: it waits for a first item, gathers more for `linger` or until it has
    /// `max`, and calls `send` with them; `send` answers one result per item, in order. The
    /// task ends once every handle is dropped.
    pub fn spawn<F, Fut>(max: usize, linger: Duration, send: F) -> Self
    where
        F: Fn(Vec<T>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Vec<R>> + Send,
    {
        Self::spawn_with(max, linger, None, send)
    }

    /// [`spawn`](Self::spawn), also sending early as `early` says.
    pub fn spawn_with<F, Fut>(
        max: usize,
        linger: Duration,
        early: Option<EarlySend>,
        send: F,
    ) -> Self
    where
        F: Fn(Vec<T>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Vec<R>> + Send,
    {
        let (tx, mut rx) = mpsc::channel::<Request<T, R>>(QUEUE);
        let send = Arc::new(send);
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut batch = vec![first];
                let deadline = tokio::time::Instant::now() + linger;
                while batch.len() < max.max(1) {
                    if let Some(e) = &early
                        && batch.len() >= e.at_least
                        && e.pressure.is_on()
                    {
                        break;
                    }
                    let pressure_changed = async {
                        match &early {
                            Some(e) => e.pressure.changed.notified().await,
                            None => std::future::pending().await,
                        }
                    };
                    // `recv` is cancel-safe: an item is either taken or left in the channel.
                    tokio::select! {
                        r = tokio::time::timeout_at(deadline, rx.recv()) => match r {
                            Ok(Some(item)) => batch.push(item),
                            Ok(None) | Err(_) => break,
                        },
                        () = pressure_changed => {}
                    }
                }
                let (items, replies): (Vec<T>, Vec<oneshot::Sender<R>>) = batch.into_iter().unzip();
                let results = send(items).await;
                // A submitter that gave up waiting has dropped its receiver: nothing to tell it.
                for (reply, result) in replies.into_iter().zip(results) {
                    let _ = reply.send(result);
                }
            }
        });
        Self { tx }
    }

    /// Queues `item` and waits for its result; `None` if the task is gone (shutdown) or
    /// `send` answered fewer results than items.
    pub async fn submit(&self, item: T) -> Option<R> {
        let (reply, answer) = oneshot::channel();
        self.tx.send((item, reply)).await.ok()?;
        answer.await.ok()
    }

    /// Queues every item at once (so they can share a batch) and waits for all results.
    pub async fn submit_all(&self, items: Vec<T>) -> Vec<Option<R>> {
        let mut answers = Vec::with_capacity(items.len());
        for item in items {
            let (reply, answer) = oneshot::channel();
            if self.tx.send((item, reply)).await.is_err() {
                answers.push(None);
                continue;
            }
            answers.push(Some(answer));
        }
        let mut out = Vec::with_capacity(answers.len());
        for a in answers {
            out.push(match a {
                Some(a) => a.await.ok(),
                None => None,
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[tokio::test]
    async fn concurrent_submissions_share_one_call_and_get_their_own_results() {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&calls);
        let c: Coalescer<u32, u32> =
            Coalescer::spawn(10, Duration::from_millis(50), move |items| {
                seen.lock().unwrap().push(items.len());
                let out = items.iter().map(|i| i * 10).collect();
                async move { out }
            });
        let handles: Vec<_> = (0..4u32)
            .map(|i| {
                let c = c.clone();
                tokio::spawn(async move { c.submit(i).await })
            })
            .collect();
        let mut results = Vec::new();
        for h in handles {
            results.push(h.await.unwrap());
        }
        assert_eq!(results, [Some(0), Some(10), Some(20), Some(30)]);
        assert_eq!(*calls.lock().unwrap(), [4], "one call for all four");
    }

    #[tokio::test]
    async fn a_full_batch_goes_at_once_and_the_rest_follows() {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&calls);
        let c: Coalescer<u32, ()> = Coalescer::spawn(3, Duration::from_millis(20), move |items| {
            seen.lock().unwrap().push(items.len());
            let out = vec![(); items.len()];
            async move { out }
        });
        let results = c.submit_all((0..7).collect()).await;
        assert_eq!(results.len(), 7);
        assert!(results.iter().all(Option::is_some));
        assert_eq!(*calls.lock().unwrap(), [3, 3, 1]);
    }

    #[tokio::test]
    async fn under_pressure_a_batch_goes_once_it_has_enough_instead_of_lingering() {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&calls);
        let pressure = Arc::new(Pressure::default());
        let early = EarlySend {
            pressure: Arc::clone(&pressure),
            at_least: 2,
        };
        // A linger no test waits out: whatever arrives in time was sent early.
        let c: Coalescer<u32, ()> =
            Coalescer::spawn_with(10, Duration::from_secs(600), Some(early), move |items| {
                seen.lock().unwrap().push(items.len());
                let out = vec![(); items.len()];
                async move { out }
            });
        let _waiting = pressure.waiting();
        let first = tokio::spawn({
            let c = c.clone();
            async move { c.submit(1).await }
        });
        // One item is below `at_least`: it keeps lingering, pressure or not.
        let first = tokio::time::timeout(Duration::from_millis(200), first).await;
        assert!(first.is_err(), "sent with fewer items than at_least");
        let both = tokio::time::timeout(Duration::from_secs(30), c.submit(2)).await;
        assert_eq!(
            both.ok(),
            Some(Some(())),
            "the second item completes the early batch"
        );
        assert_eq!(*calls.lock().unwrap(), [2]);
    }
}
