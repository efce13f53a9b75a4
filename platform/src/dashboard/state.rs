//! [`DashState`]: what every handler and extractor shares.

use std::sync::Arc;

use super::config::DashboardConfig;
use crate::manager_client::ManagerClient;

/// What every handler shares.
#[derive(Clone)]
pub struct DashState {
    /// The configuration.
    pub config: Arc<DashboardConfig>,
    /// The manager.
    pub client: ManagerClient,
}
