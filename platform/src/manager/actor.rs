//! [`Actor`]: who an authenticated API request stands for, and the role checks the service layer
//! makes with it. Authenticating (the extractor) is `api::extract`'s.

use super::error::{ApiError, ApiResult};
use crate::api_types::User;

/// The authenticated caller of an API request.
#[derive(Debug, Clone)]
pub struct Actor {
    /// Who is calling.
    pub user: User,
    /// The id of the token they authenticated with (what logout revokes).
    pub key_id: String,
}

impl Actor {
    /// Whether the caller is an admin.
    pub fn is_admin(&self) -> bool {
        self.user.is_admin()
    }

    /// Refuses non-admins with a 403 that names no object.
    pub fn require_admin(&self) -> ApiResult<()> {
        if self.is_admin() {
            Ok(())
        } else {
            Err(ApiError::Forbidden("this endpoint requires the admin role"))
        }
    }
}
