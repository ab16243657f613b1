//! Connection startup: any user and database are accepted without a password (no
//! authentication yet); the client gets the ParameterStatus values drivers rely on and a
//! BackendKeyData whose pid and secret key it can cancel queries with.
//!
//! This is the first step of every connection's flow (pgwire session → `sql::Session` →
//! shards): it runs before any query reaches the connection's `Session`.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures::Sink;
use pgwire::api::auth::{
    finish_authentication, protocol_negotiation, save_startup_parameters_to_metadata, ServerParameterProvider,
    StartupHandler,
};
use pgwire::api::{ClientInfo, METADATA_APPLICATION_NAME, METADATA_DATABASE, METADATA_USER};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};

use super::cancel::{Cancels, Registration};
use super::connection::Connection;

/// The server's parameters and their values unless the session says otherwise.
const PARAMETERS: &[(&str, &str)] = &[
    ("server_version", "15.0"),
    ("server_encoding", "UTF8"),
    ("client_encoding", "UTF8"),
    ("DateStyle", "ISO, MDY"),
    ("IntervalStyle", "postgres"),
    ("TimeZone", "UTC"),
    ("integer_datetimes", "on"),
    ("standard_conforming_strings", "on"),
    ("is_superuser", "on"),
    ("in_hot_standby", "off"),
    ("default_transaction_read_only", "off"),
];

/// Startup of one connection; keeps its cancel registration for the connection's lifetime.
pub(super) struct Startup {
    pub(super) conn: Arc<Connection>,
    pub(super) cancels: Arc<Cancels>,
    pub(super) registration: Mutex<Option<Registration>>,
}

#[async_trait]
impl StartupHandler for Startup {
    async fn on_startup<C>(&self, client: &mut C, message: PgWireFrontendMessage) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let PgWireFrontendMessage::Startup(startup) = message else {
            return Ok(());
        };
        protocol_negotiation(client, &startup).await?;
        save_startup_parameters_to_metadata(client, &startup);
        let (pid, secret, registration) = self.cancels.register(&*client, self.conn.cancel_counter());
        *self.registration.lock().unwrap_or_else(|p| p.into_inner()) = Some(registration);
        client.set_pid_and_secret_key(pid, secret);

        if let Some(user) = client.metadata().get(METADATA_USER) {
            self.conn.set_user(user).await;
        }
        // PostgreSQL's default database is the user's name.
        if let Some(database) = client.metadata().get(METADATA_DATABASE).or(client.metadata().get(METADATA_USER)) {
            self.conn.set_database(database).await;
        }
        let mut settings = HashMap::new();
        for (name, _) in PARAMETERS {
            if let Some(value) = self.conn.setting(name).await {
                settings.insert(name.to_string(), value);
            }
        }
        let parameters = Parameters(parameters(client.metadata(), &settings));
        tracing::debug!(peer = %client.socket_addr(), pid, "pg connection started");
        finish_authentication(client, &parameters).await
    }
}

/// The ParameterStatus values sent at startup: the session's settings, our defaults where it
/// has none, and the client's application name and user echoed back.
fn parameters(metadata: &HashMap<String, String>, settings: &HashMap<String, String>) -> HashMap<String, String> {
    let mut all: HashMap<String, String> = PARAMETERS
        .iter()
        .map(|(name, default)| (name.to_string(), settings.get(*name).cloned().unwrap_or_else(|| default.to_string())))
        .collect();
    let application = metadata.get(METADATA_APPLICATION_NAME).cloned().unwrap_or_default();
    all.insert("application_name".into(), application);
    if let Some(user) = metadata.get(METADATA_USER) {
        all.insert("session_authorization".into(), user.clone());
    }
    all
}

struct Parameters(HashMap<String, String>);

impl ServerParameterProvider for Parameters {
    fn server_parameters<C>(&self, _client: &C) -> Option<HashMap<String, String>>
    where
        C: ClientInfo,
    {
        Some(self.0.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_echo_the_client_and_prefer_session_settings() {
        let metadata = HashMap::from([
            ("user".to_string(), "alice".to_string()),
            ("application_name".to_string(), "psql".to_string()),
        ]);
        let settings = HashMap::from([("TimeZone".to_string(), "Etc/UTC".to_string())]);
        let p = parameters(&metadata, &settings);
        assert_eq!(p["server_version"], "15.0");
        assert_eq!(p["DateStyle"], "ISO, MDY");
        assert_eq!(p["TimeZone"], "Etc/UTC");
        assert_eq!(p["integer_datetimes"], "on");
        assert_eq!(p["standard_conforming_strings"], "on");
        assert_eq!(p["application_name"], "psql");
        assert_eq!(p["session_authorization"], "alice");

        let p = parameters(&HashMap::new(), &HashMap::new());
        assert_eq!(p["application_name"], "");
        assert_eq!(p["TimeZone"], "UTC");
        assert!(!p.contains_key("session_authorization"));
    }
}
