//! In-memory [`Store`] with the same conditional-write semantics as DynamoDB. Unit tests only.

use std::collections::BTreeMap;
use std::sync::Mutex;

use flowpilot_core::ids::WorkflowId;
use flowpilot_core::model::Workflow;

use super::{Listing, Store, StoreError};

#[derive(Default)]
pub struct MemoryStore {
    workflows: Mutex<BTreeMap<WorkflowId, Workflow>>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn map(&self) -> std::sync::MutexGuard<'_, BTreeMap<WorkflowId, Workflow>> {
        // A panic while holding the lock cannot leave a half-written map: every write is a
        // single insert.
        self.workflows.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Store for MemoryStore {
    async fn create(&self, wf: &Workflow) -> Result<(), StoreError> {
        let mut map = self.map();
        if map.contains_key(&wf.id) {
            return Err(StoreError::AlreadyExists(wf.id.clone()));
        }
        map.insert(wf.id.clone(), wf.clone());
        Ok(())
    }

    async fn load(&self, id: &WorkflowId) -> Result<Option<Workflow>, StoreError> {
        Ok(self.map().get(id).cloned())
    }

    async fn save(&self, wf: &Workflow, expected_version: u64) -> Result<(), StoreError> {
        let mut map = self.map();
        match map.get(&wf.id) {
            Some(current) if current.version == expected_version => {
                map.insert(wf.id.clone(), wf.clone());
                Ok(())
            }
            _ => Err(StoreError::Conflict {
                id: wf.id.clone(),
                expected: expected_version,
            }),
        }
    }

    /// Never with unreadable items: this store holds typed workflows, not documents.
    async fn list_active(&self) -> Result<Listing, StoreError> {
        Ok(Listing {
            workflows: self
                .map()
                .values()
                .filter(|w| w.status.is_active())
                .cloned()
                .collect(),
            unreadable: Vec::new(),
        })
    }

    async fn list_all(&self) -> Result<Listing, StoreError> {
        Ok(Listing {
            workflows: self.map().values().cloned().collect(),
            unreadable: Vec::new(),
        })
    }
}
