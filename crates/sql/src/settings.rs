//! A session's settings (SET / SHOW, `current_setting`, `set_config`, `pg_settings`): below
//! the stages, which all read them (the session sets them, the planner's functions and the
//! `pg_catalog` overlay read them).

use std::sync::Arc;

/// Settings every session starts with (names lower-case), as PostgreSQL 15 reports them, but
/// for the isolation level: every transaction runs serializable.
pub(crate) const DEFAULT_SETTINGS: &[(&str, &str)] = &[
    ("application_name", ""),
    ("bytea_output", "hex"),
    ("client_encoding", "UTF8"),
    ("datestyle", "ISO, MDY"),
    ("default_table_access_method", "heap"),
    ("default_tablespace", ""),
    ("default_transaction_isolation", "serializable"),
    ("default_transaction_read_only", "off"),
    ("extra_float_digits", "1"),
    ("integer_datetimes", "on"),
    ("intervalstyle", "postgres"),
    ("is_superuser", "on"),
    ("lc_collate", "C"),
    ("lc_ctype", "C"),
    ("max_identifier_length", "63"),
    ("search_path", "\"$user\", public"),
    ("server_encoding", "UTF8"),
    ("server_version", "15.0"),
    ("server_version_num", "150000"),
    // The user the client named at startup (`Session::set_user`): `current_user` and
    // `session_user` read it.
    ("session_authorization", "postgres"),
    ("standard_conforming_strings", "on"),
    ("statement_timeout", "0"),
    ("timezone", "UTC"),
    ("transaction_isolation", "serializable"),
    ("transaction_read_only", "off"),
];

/// The setting holding the session's user (`current_user`).
pub(crate) const USER_SETTING: &str = "session_authorization";

/// Settings a SET may not change: the isolation level is always serializable (a weaker level
/// asked for runs serializable, and SHOW says so).
const FIXED_SETTINGS: &[&str] = &["default_transaction_isolation", "transaction_isolation"];

/// A session's settings (SET / SHOW, `current_setting`, `set_config`), names lower-case, and
/// the database it connected to.
#[derive(Clone, Default, Debug)]
pub(crate) struct Settings(Arc<std::sync::RwLock<std::collections::BTreeMap<String, String>>>, Database);

/// The database named in the startup message (None: none was), which is not a setting
/// PostgreSQL shows: `current_database()` answers it, `pg_database` lists it.
type Database = Arc<std::sync::RwLock<Option<String>>>;

impl Settings {
    pub(crate) fn new(defaults: impl IntoIterator<Item = (String, String)>) -> Self {
        Settings(Arc::new(std::sync::RwLock::new(defaults.into_iter().collect())), Database::default())
    }

    pub(crate) fn get(&self, name: &str) -> Option<String> {
        self.0.read().expect("settings lock").get(name).cloned()
    }

    /// The database the session connected to, if it named one. raftable has one database,
    /// which answers to any name.
    pub(crate) fn database(&self) -> Option<String> {
        self.1.read().expect("settings lock").clone()
    }

    pub(crate) fn set_database(&self, name: String) {
        *self.1.write().expect("settings lock") = Some(name);
    }

    /// Sets `name` (SET, `set_config`), except the settings that are [`FIXED_SETTINGS`].
    pub(crate) fn set(&self, name: String, value: String) {
        if !FIXED_SETTINGS.contains(&name.as_str()) {
            self.0.write().expect("settings lock").insert(name, value);
        }
    }

    /// Every setting, by name.
    pub(crate) fn all(&self) -> Vec<(String, String)> {
        self.0.read().expect("settings lock").iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}
