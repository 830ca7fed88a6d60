//! The one authorization decision every server asks: may this principal do that?

use crate::identity::{Principal, Role};
use crate::service::ServiceError;

/// Something a caller wants to do; [`authorize`] decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action<'a> {
    /// Read a table: its detail, rows, or SQL over it.
    ReadTable(&'a crate::table::TableId),
    /// Append rows to a table.
    WriteRows(&'a crate::table::TableId),
    /// Read run history (`_system.runs` through the runs endpoints).
    ReadRuns,
    /// Start a run.
    StartRun,
    /// Read the server's metrics.
    ReadMetrics,
    /// List, create and change accounts.
    ManageAccounts,
    /// See the API keys of every account.
    ListAllKeys,
    /// Revoke an API key owned by `owner`.
    RevokeKey {
        /// The key's recorded owner ([`Principal::key_owner`]).
        owner: &'a str,
    },
}

/// Whether `principal` may do `action`: the one authorization decision of every server.
///
/// # Errors
/// A table in a layer the role does not see is not found (it does not exist for the
/// caller); an action above the role is forbidden, naming who needs to do it.
pub fn authorize(principal: &Principal, action: Action<'_>) -> Result<(), ServiceError> {
    let role = principal.role;
    let needs = |who: &str, what: &str| {
        Err(ServiceError::forbidden(format!(
            "user `{}` ({role}) may not {what}: {who} only",
            principal.name
        )))
    };
    match action {
        Action::ReadTable(id) => {
            if role.can_read(id.layer) {
                Ok(())
            } else {
                Err(ServiceError::not_found(format!("table {id} not found")))
            }
        }
        Action::WriteRows(id) => {
            authorize(principal, Action::ReadTable(id))?;
            if role == Role::Admin {
                Ok(())
            } else {
                needs("admins", &format!("write rows to {id}"))
            }
        }
        Action::ReadRuns | Action::ReadMetrics if role >= Role::Engineer => Ok(()),
        Action::ReadRuns => needs("engineers and admins", "see run history"),
        Action::ReadMetrics => needs("engineers and admins", "read metrics"),
        _ if role == Role::Admin => Ok(()),
        Action::RevokeKey { owner }
            if Principal::from_key_owner(owner).is_some_and(|o| o.same_identity(principal)) =>
        {
            Ok(())
        }
        Action::RevokeKey { .. } => Err(ServiceError::not_found("no such API key")),
        Action::StartRun => needs("admins", "start runs"),
        Action::ManageAccounts => needs("admins", "manage accounts"),
        Action::ListAllKeys => needs("admins", "list every account's API keys"),
    }
}
