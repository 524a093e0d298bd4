//! Leash downstream PostgreSQL credentials.
//!
//! A token minted with format `postgres` is not a bearer token Leash checks
//! itself: it is a PostgreSQL role, created for that token alone in the
//! operator's credential database, whose connection string is the secret.
//! Its scopes become grants ([`GrantPlan`]): `pg:SCHEMA.TABLE:read` is
//! `SELECT`, `…:write` adds `INSERT, UPDATE, DELETE`, `pg:SCHEMA.*:…` is
//! every table of the schema. The role expires with the token (`VALID
//! UNTIL`) and is dropped — sessions terminated first — when the token is
//! revoked or expires ([`CredentialDatabase::drop_role`]).
//!
//! Design choice: nothing taken from a request is ever interpolated raw into
//! SQL. Identifiers must match a strict pattern and are always quoted; the
//! password travels only as a SCRAM-SHA-256 verifier, so it never appears in
//! a statement (nor in PostgreSQL's logs).
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use leash_pgcred::{CredentialDatabase, GrantPlan, Password, role_name};
//! let db = CredentialDatabase::connect("postgres://leash@127.0.0.1/shop", None).await?;
//! let scopes = ["pg:public.orders:read".parse()?];
//! let plan = GrantPlan::from_scopes(&scopes)?;
//! let role = role_name("tok_0AbCdEfGhIjKlMnOpQrStU");
//! let password = Password::generate()?;
//! db.create_role(&role, &password, 1_900_000_000_000, &plan).await?;
//! println!("{}", db.connection_string(&role, &password).expose());
//! db.drop_role(&role).await?;
//! # Ok(()) }
//! ```

mod database;
mod grants;
mod password;

pub use database::{
    CONNECTION_LIMIT, ConnectionString, CreateError, CredentialDatabase, DropError, Dropped,
    SetupError,
};
pub use grants::{
    Grant, GrantError, GrantPlan, MAX_IDENT, SCOPE_HELP, SCOPE_TYPE, Tables, is_identifier,
    quote_ident, role_name,
};
pub use password::{PASSWORD_LEN, Password, RandomError};
