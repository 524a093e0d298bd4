//! The OpenAPI 3.1 document at `/v1/openapi.json`.

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{
    approvals, audit, authzen, clients, credentials, dto, exposures, federation, oauth, policies,
    registry, review, revocation_stream, tokens,
};
use crate::error::Problem;

struct OperatorAuth;

impl Modify for OperatorAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        if let Some(c) = openapi.components.as_mut() {
            c.add_security_scheme(
                "operator",
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .description(Some("The operator credential from DIR/operator.token"))
                        .build(),
                ),
            );
            c.add_security_scheme(
                "client_basic",
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Basic)
                        .description(Some("A resource-server OAuth client: client_id and client_secret (revocation stream)"))
                        .build(),
                ),
            );
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Leash", description = "Control plane for the tokens AI agents and automations use. Every /v1 call needs the operator credential as a Bearer token; errors are RFC 9457 problem details (see the Problem schema)."),
    paths(
        registry::create_owner, registry::list_owners, registry::get_owner, registry::offboard_owner,
        registry::create_workload, registry::list_workloads, registry::get_workload,
        registry::create_workflow, registry::list_workflows, registry::get_workflow, registry::update_workflow,
        registry::start_run, registry::list_runs, registry::get_run, registry::end_run,
        tokens::mint, tokens::list, tokens::get, tokens::explain, tokens::revoke, revocation_stream::stream, credentials::list,
        audit::events, audit::verify, audit::health, audit::metrics,
        oauth::introspect, oauth::jwks, oauth::token, oauth::revoke, oauth::metadata, oauth::keys, oauth::rotate_keys,
        clients::create, clients::list,
        federation::create_issuer, federation::list_issuers, federation::add_rule,
        exposures::report, exposures::list, exposures::get, exposures::github_partner,
        exposures::list_findings, exposures::get_finding, exposures::set_finding_status,
        exposures::create_external, exposures::list_external, exposures::get_external,
        authzen::evaluation_endpoint, authzen::evaluations_endpoint, authzen::configuration,
        policies::list, policies::put, policies::delete, policies::reload, policies::test,
        approvals::list, approvals::get, approvals::approve, approvals::deny, approvals::claim,
        approvals::create_owner_credential, approvals::add_delegate, approvals::write_ratio,
        approvals::break_glass, approvals::list_break_glass, approvals::token_usage,
        review::import, review::ingest, review::sweep, review::report,
        review::create_removal_test, review::list_removal_tests, review::get_removal_test,
    ),
    components(schemas(Problem, dto::Ttl, dto::ExternalExplanation)),
    modifiers(&OperatorAuth),
    security(("operator" = [])),
)]
pub struct ApiDoc;

/// Serve the document.
pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
