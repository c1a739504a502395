//! etcd's auth changes (users, roles, permissions, enable/disable) and `Authenticate`'s simple
//! token: the rules are `keel_model::auth::etcd`; the records are the auth sub-store's.

use keel_model::auth::etcd::{check_names, AuthCommand, AuthError};
use keel_model::auth::micro;

use crate::command::AuthResponse;
use crate::error::ServerError;
use crate::mvcc::{AuthOutcome, MvccError, MvccStore, OpError};

use super::Apply;

impl Apply for AuthCommand {
    /// Names past the limit are refused before proposing (apply refuses them too).
    fn check(&self) -> Result<(), ServerError> {
        if let AuthCommand::Micro(command) = self {
            micro::check_command(command).map_err(AuthError::Micro)?;
        }
        Ok(check_names(self.names())?)
    }

    fn apply(&self, state: &mut MvccStore) -> Result<AuthResponse, OpError> {
        match state.auth.apply(self) {
            Ok(()) => {}
            Err(AuthOutcome::Rejected(error)) => return Err(MvccError::Auth(error).into()),
            Err(AuthOutcome::Storage(error)) => return Err(error.into()),
        }
        let token = match self {
            AuthCommand::Authenticate { token, .. } => token.clone(),
            _ => String::new(),
        };
        Ok(AuthResponse { header_revision: state.current_revision(), token })
    }
}
