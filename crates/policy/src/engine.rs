//! Deciding requests and issuances with a policy set, and the engine that
//! holds the active set and swaps it atomically.

use std::path::Path;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use cedar_policy::{
    Context, Effect, Entities, Entity, EntityUid, PolicyId, Request, RestrictedExpression,
};

use leash_core::scope::Scope;
use leash_core::{Owner, Workload};

use crate::action::{action_class, normalize_action};
use crate::decision::{Decision, Reason, ReasonKind};
use crate::error::PolicyError;
use crate::input::{DecisionInput, IssuanceInput, Subject, normalize_environment};
use crate::policies::{Partition, PolicyMeta, PolicySet};
use crate::schema::{Attr, Compiled, Needs, compiled};

impl PolicySet {
    /// Decide one request with this set's policies.
    ///
    /// Allowed when some permit applies and no forbid does. Denied, with a
    /// reason per forbid, when a forbid applies; denied when no permit
    /// applies; and denied when any policy fails to evaluate (Cedar would
    /// skip such a policy; Leash fails closed instead).
    pub fn decide(&self, input: &DecisionInput<'_>) -> Decision {
        let part = &self.requests;
        self.authorize(part, Subject::Request(input), |c| {
            build(c, input, part.needs)
        })
    }

    /// [`PolicySet::decide`], remembering the answer: `epoch` stands for
    /// the owner, workload, workflow and run records in `input` and must
    /// change whenever any of them can have changed (the registry's
    /// generation). The same token, action, resource and tool in the same
    /// epoch then get the remembered decision without evaluating again.
    /// The token's revocation is not part of a decision and must be
    /// checked before. Sets whose policies read `context.now` evaluate
    /// every time.
    pub fn decide_in_epoch(&self, input: &DecisionInput<'_>, epoch: u64) -> Arc<Decision> {
        if self.requests.needs.has(Attr::Now) {
            return Arc::new(self.decide(input));
        }
        let key = crate::memo::key(epoch, input);
        if let Some(d) = self.memo.get(&key) {
            return d;
        }
        let d = Arc::new(self.decide(input));
        self.memo.put(key, &d);
        d
    }

    /// How many decisions [`PolicySet::decide_in_epoch`] answered from
    /// memory, and how many it evaluated.
    pub fn memo_stats(&self) -> (u64, u64) {
        self.memo.stats()
    }

    /// Decide whether a token may be issued (`Leash::Action::"issue"`),
    /// after Leash's built-in issuance rules have passed.
    ///
    /// The same rules as [`PolicySet::decide`]: allowed when some permit
    /// applies and no forbid does; every forbid that applies is a reason
    /// ([`ReasonKind::Forbid`], with the policy id); denied when a policy
    /// fails to evaluate.
    pub fn decide_issuance(&self, input: &IssuanceInput<'_>) -> Decision {
        let part = &self.issuance;
        self.authorize(part, Subject::Issue(input), |c| {
            build_issuance(c, input, part.needs)
        })
    }

    /// Evaluate the request `build` makes with the policies of `part` and
    /// explain the outcome.
    fn authorize(
        &self,
        part: &Partition,
        subject: Subject<'_>,
        build: impl FnOnce(&Compiled) -> Result<(Request, Entities), String>,
    ) -> Decision {
        let (request, entities) = match compiled().map_err(|e| e.to_string()).and_then(build) {
            Ok(x) => x,
            Err(e) => return evaluation_failure(e),
        };
        let response = self
            .authorizer
            .is_authorized(&request, &part.cedar, &entities);
        let diagnostics = response.diagnostics();

        let mut reasons: Vec<(usize, Reason)> = Vec::new();
        for err in diagnostics.errors() {
            let (order, policy, message) = match err {
                cedar_policy::AuthorizationError::PolicyEvaluationError(e) => {
                    let id = e.policy_id();
                    (
                        self.meta.get(id).map_or(usize::MAX, |m| m.order),
                        Some(id.to_string()),
                        format!(
                            "policy `{id}`{} could not be evaluated, so the {} is denied: {}; fix the policy",
                            self.source_note(id),
                            subject_noun(subject),
                            e.inner()
                        ),
                    )
                }
            };
            reasons.push((
                order,
                Reason {
                    kind: ReasonKind::EvaluationError,
                    policy,
                    message,
                },
            ));
        }
        let errored = !reasons.is_empty();
        let allow = response.decision() == cedar_policy::Decision::Allow && !errored;

        for id in diagnostics.reason() {
            let Some(meta) = self.meta.get(id) else {
                continue;
            };
            // On a deny caused only by evaluation errors, the permits that
            // applied are not reasons.
            if !allow && meta.effect == Effect::Permit {
                continue;
            }
            reasons.push((meta.order, policy_reason(id, meta, subject)));
        }
        if !allow && reasons.is_empty() {
            reasons.push((
                usize::MAX,
                Reason::new(ReasonKind::NoPermit, no_permit_message(subject)),
            ));
        }
        reasons.sort_by_key(|(order, _)| *order);
        Decision {
            allow,
            reasons: reasons.into_iter().map(|(_, r)| r).collect(),
        }
    }

    fn source_note(&self, id: &PolicyId) -> String {
        self.meta
            .get(id)
            .map(|m| format!(" (in `{}`)", m.source))
            .unwrap_or_default()
    }
}

fn subject_noun(subject: Subject<'_>) -> &'static str {
    match subject {
        Subject::Request(_) => "request",
        Subject::Issue(_) => "issuance",
    }
}

fn no_permit_message(subject: Subject<'_>) -> String {
    match subject {
        Subject::Request(input) => format!(
            "no policy permits `{}` on {} `{}` for workload `{}`; add a permit policy for it",
            normalize_action(input.action),
            input.resource.resource_type,
            input.resource.id,
            input.workload.name
        ),
        Subject::Issue(input) => format!(
            "no policy permits issuing a token ({}) to workload `{}`; add a permit policy for `Leash::Action::\"issue\"`",
            input.kind, input.workload.name
        ),
    }
}

fn policy_reason(id: &PolicyId, meta: &PolicyMeta, subject: Subject<'_>) -> Reason {
    let (kind, verb) = match meta.effect {
        Effect::Permit => (ReasonKind::Permit, "permits"),
        Effect::Forbid => (ReasonKind::Forbid, "forbids"),
    };
    let message = match &meta.reason {
        Some(t) => t.render(subject),
        None => format!(
            "policy `{id}` in `{}` {verb} this {} (add a @reason(\"…\") annotation to it to say why)",
            meta.source,
            subject_noun(subject)
        ),
    };
    Reason {
        kind,
        policy: Some(id.to_string()),
        message,
    }
}

fn evaluation_failure(message: String) -> Decision {
    Decision::deny(Reason::new(
        ReasonKind::EvaluationError,
        format!("the request could not be evaluated, so it is denied: {message}"),
    ))
}

fn s(v: &str) -> RestrictedExpression {
    RestrictedExpression::new_string(v.to_owned())
}

fn uid_expr(uid: &EntityUid) -> RestrictedExpression {
    RestrictedExpression::new_entity_uid(uid.clone())
}

/// Entity id for a registry record we only know by number (the workflow of
/// a run, or an owner who is not the token's): `#ID`, which no registry name
/// can be, so it never collides with a named entity.
fn numbered(id: i64) -> String {
    format!("#{id}")
}

/// Attributes of one entity (or the context), keeping only those a policy
/// set reads.
struct Attrs {
    needs: Needs,
    list: Vec<(String, RestrictedExpression)>,
}

impl Attrs {
    fn new(needs: Needs) -> Self {
        Self {
            needs,
            list: Vec::new(),
        }
    }

    fn add(&mut self, attr: Attr, value: impl FnOnce() -> RestrictedExpression) {
        if self.needs.has(attr) {
            self.list.push((attr.name().to_owned(), value()));
        }
    }

    fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    fn entity(self, uid: EntityUid, parent: Option<EntityUid>) -> Result<Entity, String> {
        Entity::new_with_tags(uid, self.list, parent, []).map_err(|e| e.to_string())
    }
}

/// The Owner entity id for owner number `id`: by name when it is `owner`,
/// else [`numbered`].
fn owner_uid(c: &Compiled, owner: &Owner, id: i64) -> EntityUid {
    if id == owner.id {
        c.uid(&c.owner, &owner.name)
    } else {
        c.uid(&c.owner, &numbered(id))
    }
}

/// A set of strings (scopes, tool names).
fn string_set<T: std::fmt::Display>(items: &[T]) -> RestrictedExpression {
    RestrictedExpression::new_set(
        items
            .iter()
            .map(|i| RestrictedExpression::new_string(i.to_string())),
    )
}

/// The entities every decision has: the principal Workload (with its owner
/// as parent, for `in`) always, and its Owner when a policy reads an owner
/// attribute. Returns the Workload's id.
fn principal_entities(
    c: &Compiled,
    owner: &Owner,
    workload: &Workload,
    needs: Needs,
    entities: &mut Vec<Entity>,
) -> Result<EntityUid, String> {
    let workload_uid = c.uid(&c.workload, &workload.name);
    let workload_owner = owner_uid(c, owner, workload.owner_id);
    let mut a = Attrs::new(needs);
    a.add(Attr::Environment, || s(workload.environment.as_str()));
    a.add(Attr::Owner, || uid_expr(&workload_owner));
    if let Some(identity) = &workload.identity {
        a.add(Attr::Identity, || s(identity));
    }
    entities.push(a.entity(workload_uid.clone(), Some(workload_owner))?);

    let mut a = Attrs::new(needs);
    a.add(Attr::Kind, || s(owner.kind.as_str()));
    a.add(Attr::Status, || s(owner.status.as_str()));
    if !a.is_empty() {
        entities.push(a.entity(c.uid(&c.owner, &owner.name), None)?);
    }
    Ok(workload_uid)
}

/// The request, with `context` as its context record.
fn request(
    principal: EntityUid,
    action: &EntityUid,
    resource: EntityUid,
    context: Attrs,
) -> Result<Request, String> {
    let context = Context::from_pairs(context.list).map_err(|e| e.to_string())?;
    Request::new(principal, action.clone(), resource, context, None).map_err(|e| e.to_string())
}

/// The Cedar request and entities for `input`, with only the attributes
/// `needs` names, and only the entities that then have attributes (the
/// principal Workload, with its owner as parent, and the Resource always).
/// No schema checks here: the shapes are fixed by this function and tested
/// against the schema.
pub(crate) fn build(
    c: &Compiled,
    input: &DecisionInput<'_>,
    needs: Needs,
) -> Result<(Request, Entities), String> {
    let owner_of = |id: i64| owner_uid(c, input.owner, id);
    let token_uid = || c.uid(&c.token, &input.token.id);
    let workflow_uid = |w: &leash_core::Workflow| c.uid(&c.workflow, &w.name);
    let run_id = input.run.map(|r| r.id).or(input.token.run_id);
    let run_uid = |id: i64| c.uid(&c.run, &id.to_string());
    let mut entities = Vec::with_capacity(6);

    let workload_uid = principal_entities(c, input.owner, input.workload, needs, &mut entities)?;

    let resource_uid = c.uid(
        &c.resource,
        &format!("{}:{}", input.resource.resource_type, input.resource.id),
    );
    let mut a = Attrs::new(needs);
    a.add(Attr::Type, || s(input.resource.resource_type));
    a.add(Attr::Id, || s(input.resource.id));
    a.add(Attr::Environment, || {
        s(&normalize_environment(input.resource.environment))
    });
    entities.push(a.entity(resource_uid.clone(), None)?);

    if let Some(w) = input.workflow {
        let mut a = Attrs::new(needs);
        a.add(Attr::Owner, || uid_expr(&owner_of(w.owner_id)));
        a.add(Attr::Tools, || string_set(&w.tools));
        if !a.is_empty() {
            entities.push(a.entity(workflow_uid(w), None)?);
        }
    }

    if let Some(r) = input.run {
        let mut a = Attrs::new(needs);
        a.add(Attr::Workflow, || {
            RestrictedExpression::new_entity_uid(match input.workflow {
                Some(w) if w.id == r.workflow_id => workflow_uid(w),
                _ => c.uid(&c.workflow, &numbered(r.workflow_id)),
            })
        });
        a.add(Attr::State, || s(r.state.as_str()));
        if !a.is_empty() {
            entities.push(a.entity(run_uid(r.id), None)?);
        }
    }

    let token = input.token;
    let mut a = Attrs::new(needs);
    a.add(Attr::Owner, || uid_expr(&owner_of(token.owner_id)));
    a.add(Attr::Workload, || uid_expr(&workload_uid));
    if let Some(id) = run_id {
        a.add(Attr::Run, || {
            RestrictedExpression::new_entity_uid(run_uid(id))
        });
    }
    a.add(Attr::Scopes, || string_set(&token.scopes));
    a.add(Attr::HasWrite, || {
        RestrictedExpression::new_bool(token.has_write())
    });
    a.add(Attr::BreakGlass, || {
        RestrictedExpression::new_bool(input.break_glass)
    });
    a.add(Attr::ExpiresAt, || {
        RestrictedExpression::new_long(token.expires_at)
    });
    if !a.is_empty() {
        entities.push(a.entity(token_uid(), None)?);
    }
    let entities = Entities::from_entities(entities, None).map_err(|e| e.to_string())?;

    let mut a = Attrs::new(needs);
    a.add(Attr::Action, || s(&normalize_action(input.action)));
    a.add(Attr::RunState, || s(Subject::Request(input).run_state()));
    a.add(Attr::Token, || {
        RestrictedExpression::new_entity_uid(token_uid())
    });
    a.add(Attr::TokenId, || s(&token.id));
    a.add(Attr::Now, || RestrictedExpression::new_long(input.now));
    if let Some(tool) = input.tool {
        a.add(Attr::Tool, || s(tool));
    }
    if let Some(w) = input.workflow {
        a.add(Attr::WorkflowTools, || string_set(&w.tools));
        a.add(Attr::Workflow, || {
            RestrictedExpression::new_entity_uid(workflow_uid(w))
        });
    }
    if let Some(r) = input.run {
        a.add(Attr::Run, || {
            RestrictedExpression::new_entity_uid(run_uid(r.id))
        });
    }
    let action = c.action(action_class(input.action));
    Ok((request(workload_uid, action, resource_uid, a)?, entities))
}

/// The Cedar request and entities for an issuance: the principal Workload
/// is also the resource; the rest is context. Like [`build`], only the
/// attributes `needs` names.
pub(crate) fn build_issuance(
    c: &Compiled,
    input: &IssuanceInput<'_>,
    needs: Needs,
) -> Result<(Request, Entities), String> {
    let mut entities = Vec::with_capacity(2);
    let workload_uid = principal_entities(c, input.owner, input.workload, needs, &mut entities)?;
    let entities = Entities::from_entities(entities, None).map_err(|e| e.to_string())?;

    let mut a = Attrs::new(needs);
    a.add(Attr::Kind, || s(input.kind.as_str()));
    a.add(Attr::Scopes, || string_set(input.scopes));
    a.add(Attr::HasWrite, || {
        RestrictedExpression::new_bool(input.scopes.iter().any(Scope::is_write))
    });
    a.add(Attr::TtlSecs, || {
        RestrictedExpression::new_long(i64::try_from(input.ttl_secs).unwrap_or(i64::MAX))
    });
    a.add(Attr::AboveCeiling, || string_set(input.above_ceiling));
    a.add(Attr::OwnerStatus, || s(input.owner.status.as_str()));
    a.add(Attr::RunState, || s(Subject::Issue(input).run_state()));
    if let Some(env) = input.parent_environment {
        a.add(Attr::ParentEnvironment, || s(env.as_str()));
    }
    if let Some(env) = input.actor_environment {
        a.add(Attr::ActorEnvironment, || s(env.as_str()));
    }
    a.add(Attr::Justified, || {
        RestrictedExpression::new_bool(input.justified)
    });
    a.add(Attr::Now, || RestrictedExpression::new_long(input.now));
    let request = request(workload_uid.clone(), &c.issue, workload_uid, a)?;
    Ok((request, entities))
}

/// Holds the active [`PolicySet`] and decides requests and issuances with it.
///
/// Reading the active set is one atomic load (`arc-swap`), so decisions
/// never wait for a reload. A new set replaces the old one only once it has
/// been built, and a [`PolicySet`] can only be built from sources that
/// validated, so the engine is never without policies and never runs
/// unvalidated ones. Writers (`update`, `reload_from_dir`) are serialized so
/// concurrent edits through the API cannot lose one another.
#[derive(Debug)]
pub struct PolicyEngine {
    active: ArcSwap<PolicySet>,
    writer: Mutex<()>,
}

impl PolicyEngine {
    /// An engine deciding with `set`.
    pub fn new(set: PolicySet) -> Self {
        Self {
            active: ArcSwap::from_pointee(set),
            writer: Mutex::new(()),
        }
    }

    /// An engine with the shipped default policies.
    ///
    /// # Errors
    /// Only on a bug in the built-in schema or policies.
    pub fn with_defaults() -> Result<Self, PolicyError> {
        PolicySet::defaults().map(Self::new)
    }

    /// Decide one request with the active policies
    /// ([`PolicySet::decide`]).
    pub fn decide(&self, input: &DecisionInput<'_>) -> Decision {
        self.active.load().decide(input)
    }

    /// Decide one request with the active policies, remembering the answer
    /// for the same request in the same `epoch`
    /// ([`PolicySet::decide_in_epoch`]).
    pub fn decide_in_epoch(&self, input: &DecisionInput<'_>, epoch: u64) -> Arc<Decision> {
        self.active.load().decide_in_epoch(input, epoch)
    }

    /// Decide whether a token may be issued, with the active policies
    /// ([`PolicySet::decide_issuance`]).
    pub fn decide_issuance(&self, input: &IssuanceInput<'_>) -> Decision {
        self.active.load().decide_issuance(input)
    }

    /// The active set (a snapshot: later swaps do not change it).
    pub fn active(&self) -> Arc<PolicySet> {
        self.active.load_full()
    }

    /// Activate `set`, returning the set it replaced.
    pub fn replace(&self, set: PolicySet) -> Arc<PolicySet> {
        let _guard = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        self.active.swap(Arc::new(set))
    }

    /// Build a new set from the active one (e.g. `|s| s.with_source(src)`
    /// for a policy posted to the API) and activate it. Concurrent updates
    /// run one after another, each seeing the previous one's result.
    ///
    /// # Errors
    /// Whatever `build` returns; the active set is then unchanged.
    pub fn update(
        &self,
        build: impl FnOnce(&PolicySet) -> Result<PolicySet, PolicyError>,
    ) -> Result<Arc<PolicySet>, PolicyError> {
        let _guard = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let next = Arc::new(build(&self.active.load())?);
        self.active.store(Arc::clone(&next));
        Ok(next)
    }

    /// Rebuild from the defaults and `dir` ([`PolicySet::from_dir`]) and
    /// activate the result. Call it on a timer or on SIGHUP.
    ///
    /// # Errors
    /// [`PolicyError::Read`] or [`PolicyError::Invalid`]; the active set is
    /// then unchanged.
    pub fn reload_from_dir(&self, dir: &Path) -> Result<Arc<PolicySet>, PolicyError> {
        self.update(|_| PolicySet::from_dir(dir))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use leash_core::{
        Environment, Owner, OwnerKind, OwnerStatus, Run, RunState, Token, TokenFormat, Workflow,
        Workload,
    };

    use crate::input::ResourceRef;
    use crate::policies::PolicySource;

    fn records() -> (Owner, Workload, Workflow, Run, Token) {
        let owner = Owner {
            id: 1,
            name: "team-ai".into(),
            email: "ai@example.com".into(),
            kind: OwnerKind::Team,
            business_owner: true,
            status: OwnerStatus::Active,
            created_at: 0,
            offboarded_at: None,
        };
        let workload = Workload {
            id: 2,
            name: "triage-bot".into(),
            owner_id: 1,
            identity: Some("spiffe://acme/triage".into()),
            environment: Environment::Dev,
            scope_ceiling: vec![],
            created_at: 0,
        };
        let workflow = Workflow {
            id: 3,
            name: "triage".into(),
            owner_id: 1,
            digest: String::new(),
            tools: vec!["git-push".into()],
            created_at: 0,
            updated_at: 0,
        };
        let run = Run {
            id: 7,
            workflow_id: 3,
            workload_id: 2,
            digest: String::new(),
            state: RunState::Running,
            started_at: 0,
            ended_at: None,
        };
        let token = Token {
            id: "tok-1".into(),
            format: TokenFormat::Jwt,
            owner_id: 1,
            workload_id: 2,
            run_id: Some(7),
            workflow_id: Some(3),
            scopes: vec!["repo:acme/*:write".parse().unwrap()],
            audience: vec![],
            issued_at: 0,
            expires_at: 10,
            parent_id: None,
            justification: None,
            revocation: None,
            depth: 0,
            act: None,
            may_act: None,
            cnf_jkt: None,
            break_glass: false,
        };
        (owner, workload, workflow, run, token)
    }

    /// The shapes `build` produces without schema checks conform to the
    /// schema, with and without the optional parts, for every action class.
    #[test]
    fn built_entities_and_requests_conform_to_the_schema() {
        let c = compiled().unwrap();
        let (owner, mut workload, workflow, run, token) = records();
        let props = serde_json::json!({"environment": "prod"});
        for full in [true, false] {
            if !full {
                workload.identity = None;
            }
            for action in ["read", "push", "delete"] {
                let input = DecisionInput {
                    owner: &owner,
                    workload: &workload,
                    workflow: full.then_some(&workflow),
                    run: full.then_some(&run),
                    token: &token,
                    break_glass: false,
                    action,
                    resource: ResourceRef::with_properties("repo", "acme/api", Some(&props)),
                    tool: full.then_some("git-push"),
                    now: 5,
                };
                let built = build(c, &input, Needs::ALL).unwrap();
                assert_eq!(built.1.len(), if full { 6 } else { 4 });
                assert_conforms(c, built, &format!("{full}, {action}"));
            }
        }
    }

    /// The same for issuance requests, with and without the optional
    /// context attributes.
    #[test]
    fn built_issuance_requests_conform_to_the_schema() {
        let c = compiled().unwrap();
        let (owner, workload, _, run, token) = records();
        for full in [true, false] {
            let input = IssuanceInput {
                owner: &owner,
                workload: &workload,
                kind: crate::IssuanceKind::Exchange,
                scopes: &token.scopes,
                ttl_secs: u64::MAX,
                above_ceiling: &token.scopes,
                run: full.then_some(&run),
                run_id: full.then_some(run.id),
                parent_environment: full.then_some(Environment::Prod),
                actor_environment: full.then_some(Environment::Stage),
                justified: full,
                now: 5,
            };
            let built = build_issuance(c, &input, Needs::ALL).unwrap();
            assert_eq!(built.1.len(), 2);
            assert_conforms(c, built, &full.to_string());
        }
    }

    /// Check what `build` or `build_issuance` made against the schema.
    fn assert_conforms(c: &Compiled, (request, entities): (Request, Entities), case: &str) {
        Entities::from_entities(entities.iter().cloned(), Some(c.schema()))
            .unwrap_or_else(|e| panic!("entities ({case}): {e}"));
        Request::new(
            request.principal().unwrap().clone(),
            request.action().unwrap().clone(),
            request.resource().unwrap().clone(),
            request.context().unwrap().clone(),
            Some(c.schema()),
        )
        .unwrap_or_else(|e| panic!("request ({case}): {e}"));
    }

    fn input<'a>(
        (owner, workload, workflow, run, token): &'a (Owner, Workload, Workflow, Run, Token),
        running: bool,
        action: &'a str,
        tool: Option<&'a str>,
    ) -> DecisionInput<'a> {
        DecisionInput {
            owner,
            workload,
            workflow: Some(workflow),
            run: running.then_some(run),
            token,
            break_glass: false,
            action,
            resource: ResourceRef::new("repo", "acme/api"),
            tool,
            now: 5,
        }
    }

    /// A remembered decision is the decision: the same request in the same
    /// epoch is answered from memory, a new epoch (the run ended) or
    /// another request field is evaluated afresh, and each answer equals a
    /// plain evaluation.
    #[test]
    fn remembered_decisions_follow_the_epoch_and_every_request_field() {
        let set = PolicySet::defaults().unwrap();
        let recs = records();
        let running = input(&recs, true, "push", Some("git-push"));
        let allowed = set.decide_in_epoch(&running, 1);
        assert!(allowed.allow, "{allowed:?}");
        assert_eq!(set.memo_stats(), (0, 1));
        let again = set.decide_in_epoch(&running, 1);
        assert!(
            Arc::ptr_eq(&again, &allowed),
            "remembered, not evaluated again"
        );
        assert_eq!(set.memo_stats(), (1, 1));

        // the run ended: the registry moved to a new epoch
        let ended = input(&recs, false, "push", Some("git-push"));
        let denied = set.decide_in_epoch(&ended, 2);
        assert!(!denied.allow);
        assert_eq!(*denied, set.decide(&ended));
        assert_eq!(set.memo_stats(), (1, 2));

        // another tool, action or resource is another request
        let undeclared = input(&recs, true, "push", Some("curl"));
        assert!(!set.decide_in_epoch(&undeclared, 1).allow);
        let no_tool = input(&recs, true, "push", None);
        assert!(set.decide_in_epoch(&no_tool, 1).allow);
        let mut prod = input(&recs, true, "push", Some("git-push"));
        prod.resource.environment = Some("prod");
        assert!(!set.decide_in_epoch(&prod, 1).allow);
        assert_eq!(set.memo_stats(), (1, 5));
    }

    /// Keys are length-prefixed: moving bytes from one field into the next
    /// never yields the key of another request.
    #[test]
    fn memo_keys_do_not_run_fields_together() {
        let recs = records();
        let a = input(&recs, true, "ab", Some("c"));
        let b = input(&recs, true, "a", Some("bc"));
        let mut c = input(&recs, true, "ab", Some("c"));
        c.resource = ResourceRef::new("repoab", "");
        let mut d = input(&recs, true, "ab", Some("c"));
        d.resource = ResourceRef::new("repo", "abacme/api");
        let keys = [&a, &b, &c, &d].map(|i| crate::memo::key(1, i));
        for (i, x) in keys.iter().enumerate() {
            for y in &keys[i + 1..] {
                assert_ne!(x, y);
            }
        }
        assert_ne!(crate::memo::key(1, &a), crate::memo::key(2, &a));
        let mut glass = a;
        glass.break_glass = true;
        assert_ne!(crate::memo::key(1, &a), crate::memo::key(1, &glass));
    }

    /// A set whose policies read the clock evaluates every time; a reload
    /// (a new set) and a copy start with nothing remembered.
    #[test]
    fn clock_reading_sets_are_never_remembered_and_new_sets_start_empty() {
        let clocked = PolicySet::defaults()
            .unwrap()
            .with_source(PolicySource::new(
                "night.cedar",
                "@id(\"no-night-writes\")\nforbid (principal, action == Leash::Action::\"write\", resource) when { context.now < 0 };",
            ))
            .unwrap();
        let recs = records();
        let req = input(&recs, true, "push", Some("git-push"));
        clocked.decide_in_epoch(&req, 1);
        clocked.decide_in_epoch(&req, 1);
        assert_eq!(clocked.memo_stats(), (0, 0));

        let engine = PolicyEngine::with_defaults().unwrap();
        engine.decide_in_epoch(&req, 1);
        engine.decide_in_epoch(&req, 1);
        assert_eq!(engine.active().memo_stats(), (1, 1));
        assert_eq!(engine.active().as_ref().clone().memo_stats(), (0, 0));
        engine.replace(PolicySet::defaults().unwrap());
        engine.decide_in_epoch(&req, 1);
        assert_eq!(engine.active().memo_stats(), (0, 1));
    }

    #[test]
    fn the_engine_swaps_sets_atomically() {
        let engine = PolicyEngine::with_defaults().unwrap();
        let first = engine.active();
        let old = engine.replace(PolicySet::defaults().unwrap());
        assert!(Arc::ptr_eq(&first, &old));
        assert!(!Arc::ptr_eq(&first, &engine.active()));
    }
}
