//! Per-key async mutexes that clean up after themselves (one entry per key currently locked
//! or waited for, so the map never grows with the number of workflows ever seen).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

pub struct KeyedLocks<K> {
    map: Arc<Mutex<HashMap<K, Arc<AsyncMutex<()>>>>>,
}

impl<K> Default for KeyedLocks<K> {
    fn default() -> Self {
        Self {
            map: Arc::new(Mutex::new(HashMap::new())),
        }
    }
}

/// Holds the lock of one key; dropping it releases the lock and forgets idle keys.
pub struct KeyGuard<K: Eq + Hash + Clone> {
    key: K,
    guard: Option<OwnedMutexGuard<()>>,
    map: Arc<Mutex<HashMap<K, Arc<AsyncMutex<()>>>>>,
}

impl<K: Eq + Hash + Clone> KeyedLocks<K> {
    pub async fn lock(&self, key: K) -> KeyGuard<K> {
        let mutex = {
            // The std mutex is held only for a map operation, never across an await.
            let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
            Arc::clone(map.entry(key.clone()).or_default())
        };
        let guard = mutex.lock_owned().await;
        KeyGuard {
            key,
            guard: Some(guard),
            map: Arc::clone(&self.map),
        }
    }
}

impl<K: Eq + Hash + Clone> Drop for KeyGuard<K> {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        // Only the map holds it: nobody owns or waits for this key any more.
        if map
            .get(&self.key)
            .is_some_and(|m| Arc::strong_count(m) == 1)
        {
            map.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn same_key_is_exclusive_and_entries_are_forgotten() {
        let locks: KeyedLocks<&str> = KeyedLocks::default();
        let g = locks.lock("a").await;
        let other = locks.lock("b").await;
        let pending = tokio::time::timeout(std::time::Duration::from_millis(20), locks.lock("a"));
        assert!(
            pending.await.is_err(),
            "second lock of the same key must wait"
        );
        drop(g);
        drop(other);
        let _again = locks.lock("a").await;
        assert_eq!(locks.map.lock().unwrap().len(), 1);
    }
}
