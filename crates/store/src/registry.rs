//! The in-memory registry: owners, workloads, workflows and running runs.
//!
//! The SQLite store has exactly one writer, and the writer is the only code
//! that changes this registry, in the same order as it commits. Issuance
//! checks therefore run against memory (no query per mint) and still see
//! every run end, workflow change and offboarding that was ordered before
//! them. Ended runs are not kept: a run missing here is not running.

use std::collections::HashMap;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use leash_core::{Client, IdentityRule, Issuer, Owner, Run, Workflow, Workload};

/// Registry entities by id and name.
#[derive(Debug, Default, Clone)]
pub struct Registry {
    owners: HashMap<i64, Owner>,
    owner_names: HashMap<String, i64>,
    workloads: HashMap<i64, Workload>,
    workload_names: HashMap<String, i64>,
    workflows: HashMap<i64, Workflow>,
    workflow_names: HashMap<String, i64>,
    running: HashMap<i64, Run>,
    clients: HashMap<String, Client>,
    issuers: HashMap<i64, Issuer>,
    rules: Vec<IdentityRule>,
    /// Changes whenever the writer takes the registry to change it.
    generation: u64,
}

impl Registry {
    /// A number that is different after every change to the registry (and
    /// the same while nothing changes): a decision made from these records
    /// can be reused while it stays the same.
    pub fn generation(&self) -> u64 {
        self.generation
    }
    pub fn owner(&self, id: i64) -> Option<&Owner> {
        self.owners.get(&id)
    }
    pub fn owner_by_name(&self, name: &str) -> Option<&Owner> {
        self.owner_names
            .get(name)
            .and_then(|id| self.owners.get(id))
    }
    pub fn workload(&self, id: i64) -> Option<&Workload> {
        self.workloads.get(&id)
    }
    pub fn workload_by_name(&self, name: &str) -> Option<&Workload> {
        self.workload_names
            .get(name)
            .and_then(|id| self.workloads.get(id))
    }
    pub fn workflow(&self, id: i64) -> Option<&Workflow> {
        self.workflows.get(&id)
    }
    pub fn workflow_by_name(&self, name: &str) -> Option<&Workflow> {
        self.workflow_names
            .get(name)
            .and_then(|id| self.workflows.get(id))
    }
    /// A run, only while it is running.
    pub fn running_run(&self, id: i64) -> Option<&Run> {
        self.running.get(&id)
    }
    /// An OAuth client by `client_id`.
    pub fn client(&self, id: &str) -> Option<&Client> {
        self.clients.get(id)
    }
    /// A trusted issuer by its `iss` value.
    pub fn issuer_by_iss(&self, iss: &str) -> Option<&Issuer> {
        self.issuers.values().find(|i| i.issuer == iss)
    }
    /// A trusted issuer by name.
    pub fn issuer_by_name(&self, name: &str) -> Option<&Issuer> {
        self.issuers.values().find(|i| i.name == name)
    }
    /// A trusted issuer by id.
    pub fn issuer(&self, id: i64) -> Option<&Issuer> {
        self.issuers.get(&id)
    }
    /// Every issuer, sorted by name.
    pub fn issuers(&self) -> Vec<&Issuer> {
        sorted(self.issuers.values(), |i| &i.name)
    }
    /// The identity rules of one issuer.
    pub fn rules_of(&self, issuer_id: i64) -> impl Iterator<Item = &IdentityRule> {
        self.rules.iter().filter(move |r| r.issuer_id == issuer_id)
    }
    /// Every client, sorted by id.
    pub fn clients(&self) -> Vec<&Client> {
        sorted(self.clients.values(), |c| &c.id)
    }
    /// Runs still running.
    pub fn running_runs(&self) -> impl Iterator<Item = &Run> {
        self.running.values()
    }
    /// Every owner, sorted by name.
    pub fn owners(&self) -> Vec<&Owner> {
        sorted(self.owners.values(), |o| &o.name)
    }
    /// Every workload, sorted by name.
    pub fn workloads(&self) -> Vec<&Workload> {
        sorted(self.workloads.values(), |w| &w.name)
    }
    /// Every workflow, sorted by name.
    pub fn workflows(&self) -> Vec<&Workflow> {
        sorted(self.workflows.values(), |w| &w.name)
    }

    pub(crate) fn put_owner(&mut self, o: Owner) {
        self.owner_names.insert(o.name.clone(), o.id);
        self.owners.insert(o.id, o);
    }
    pub(crate) fn put_workload(&mut self, w: Workload) {
        self.workload_names.insert(w.name.clone(), w.id);
        self.workloads.insert(w.id, w);
    }
    pub(crate) fn put_workflow(&mut self, w: Workflow) {
        self.workflow_names.insert(w.name.clone(), w.id);
        self.workflows.insert(w.id, w);
    }
    pub(crate) fn put_issuer(&mut self, i: Issuer) {
        self.issuers.insert(i.id, i);
    }
    pub(crate) fn put_rule(&mut self, r: IdentityRule) {
        self.rules.push(r);
    }
    pub(crate) fn put_client(&mut self, c: Client) {
        self.clients.insert(c.id.clone(), c);
    }
    pub(crate) fn put_run(&mut self, r: Run) {
        if r.state == leash_core::RunState::Running {
            self.running.insert(r.id, r);
        } else {
            self.running.remove(&r.id);
        }
    }
}

fn sorted<'a, T>(it: impl Iterator<Item = &'a T>, key: impl Fn(&T) -> &String) -> Vec<&'a T> {
    let mut v: Vec<&T> = it.collect();
    v.sort_by(|a, b| key(a).cmp(key(b)));
    v
}

/// The registry shared between the writer and readers.
#[derive(Debug, Clone, Default)]
pub struct SharedRegistry(Arc<RwLock<Registry>>);

impl SharedRegistry {
    pub(crate) fn new(r: Registry) -> Self {
        SharedRegistry(Arc::new(RwLock::new(r)))
    }
    /// Read access. A poisoned lock still holds consistent data (writers
    /// only insert whole entities), so it is read through.
    pub fn read(&self) -> RwLockReadGuard<'_, Registry> {
        self.0.read().unwrap_or_else(|e| e.into_inner())
    }
    /// Write access; the generation moves on before anyone can read the
    /// change.
    pub(crate) fn write(&self) -> RwLockWriteGuard<'_, Registry> {
        let mut g = self.0.write().unwrap_or_else(|e| e.into_inner());
        g.generation = g.generation.wrapping_add(1);
        g
    }
    /// Replace the whole registry; the generation keeps counting up (a
    /// fresh registry never reuses a number readers may have seen).
    pub(crate) fn replace(&self, r: Registry) {
        let mut g = self.write();
        let generation = g.generation;
        *g = r;
        g.generation = generation;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decisions are remembered per generation, so every change moves it
    /// on and a replacement never moves it back to a number already seen.
    #[test]
    fn every_change_moves_the_generation_on_and_never_back() {
        let shared = SharedRegistry::new(Registry::default());
        let g0 = shared.read().generation();
        assert_eq!(shared.read().generation(), g0, "reading changes nothing");
        drop(shared.write());
        let g1 = shared.read().generation();
        assert!(g1 > g0);
        shared.replace(Registry::default());
        let g2 = shared.read().generation();
        assert!(
            g2 > g1,
            "a fresh registry keeps counting up: {g2} after {g1}"
        );
    }
}
