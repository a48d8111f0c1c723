//! The SQL server's users: a JSON file of names, roles, tenants and SCRAM
//! verifiers (never a password), written by `agentledger user add`.
//!
//! A verifier is PostgreSQL's own text,
//! `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>` (base64),
//! so one can also be copied from a PostgreSQL server's `pg_authid`. It
//! lets the server check a password proof; it cannot be used to log in.

use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use agentledger_transforms::Scope;

/// The file's format, written as its `format` field.
pub const FORMAT: &str = "agentledger-users/1";

/// PBKDF2 iterations of a new verifier (PostgreSQL's default).
pub const ITERATIONS: u32 = 4096;

/// Length of a new verifier's salt, in bytes.
const SALT_LEN: usize = 16;

/// What a user may see (SPEC section 9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything, the quarantine's raw lines included.
    Admin,
    /// Every tenant's rows in every table and view but the quarantine.
    Analyst,
    /// Only the rows of the user's tenants; no quarantine.
    Tenant,
}

impl Role {
    /// The role's name as written in the file and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Analyst => "analyst",
            Role::Tenant => "tenant",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "admin" => Ok(Role::Admin),
            "analyst" => Ok(Role::Analyst),
            "tenant" => Ok(Role::Tenant),
            _ => Err(format!(
                "unknown role {s:?}: the roles are admin, analyst and tenant"
            )),
        }
    }
}

/// One user as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    /// The name clients log in with.
    pub name: String,
    /// What the user may see.
    pub role: Role,
    /// The tenants of a `tenant` user (empty for the other roles).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tenants: Vec<String>,
    /// The SCRAM-SHA-256 verifier; a user without one cannot log in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scram: Option<String>,
}

impl User {
    /// The rows this user's sessions see.
    pub fn scope(&self) -> Scope {
        match self.role {
            Role::Admin => Scope::everything(),
            Role::Analyst => Scope::all_tenants(),
            Role::Tenant => Scope::tenants(self.tenants.iter().cloned()),
        }
    }

    fn check(&self) -> Result<(), String> {
        if self.name.is_empty() || self.name.chars().any(char::is_control) {
            return Err(format!(
                "user name {:?} is empty or holds a control character",
                self.name
            ));
        }
        match (self.role, self.tenants.is_empty()) {
            (Role::Tenant, true) => Err(format!(
                "user {:?} has the role tenant but no tenants",
                self.name
            )),
            (Role::Admin | Role::Analyst, false) => Err(format!(
                "user {:?} has the role {} and tenants {:?}: only a tenant user is limited to tenants",
                self.name,
                self.role.name(),
                self.tenants
            )),
            _ => Ok(()),
        }?;
        if let Some(text) = &self.scram {
            Verifier::parse(text).map_err(|e| format!("user {:?}: {e}", self.name))?;
        }
        Ok(())
    }
}

/// The users file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Users {
    /// Always [`FORMAT`].
    pub format: String,
    /// Every user, by name.
    pub users: Vec<User>,
}

/// A users file that cannot be read or used.
#[derive(Debug, thiserror::Error)]
#[error("users file {}: {reason}", path.display())]
pub struct UsersError {
    /// The file.
    pub path: PathBuf,
    /// Why.
    pub reason: String,
}

impl Default for Users {
    fn default() -> Self {
        Self {
            format: FORMAT.to_string(),
            users: Vec::new(),
        }
    }
}

impl Users {
    /// Reads and checks the file; a missing file is an error.
    pub fn load(path: &Path) -> Result<Self, UsersError> {
        let err = |reason: String| UsersError {
            path: path.to_path_buf(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        Self::parse(&text).map_err(err)
    }

    /// Parses and checks the text of a users file.
    pub fn parse(text: &str) -> Result<Self, String> {
        let users: Users = serde_json::from_str(text).map_err(|e| e.to_string())?;
        if users.format != FORMAT {
            return Err(format!(
                "format {:?} is not {FORMAT:?}: written by another version of agentledger",
                users.format
            ));
        }
        let mut names = std::collections::HashSet::new();
        for user in &users.users {
            user.check()?;
            if !names.insert(user.name.as_str()) {
                return Err(format!("user {:?} appears twice", user.name));
            }
        }
        Ok(users)
    }

    /// The user called `name`.
    pub fn get(&self, name: &str) -> Option<&User> {
        self.users.iter().find(|u| u.name == name)
    }

    /// Adds `user`, or replaces the user of that name.
    pub fn upsert(&mut self, user: User) -> Result<(), String> {
        user.check()?;
        match self.users.iter_mut().find(|u| u.name == user.name) {
            Some(old) => *old = user,
            None => self.users.push(user),
        }
        Ok(())
    }

    /// Writes the file whole (a temporary file renamed over it), readable
    /// by its owner only.
    pub fn save(&self, path: &Path) -> Result<(), UsersError> {
        let err = |reason: String| UsersError {
            path: path.to_path_buf(),
            reason,
        };
        let mut text = serde_json::to_string_pretty(self).map_err(|e| err(e.to_string()))?;
        text.push('\n');
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| err(e.to_string()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            tmp.as_file()
                .set_permissions(std::fs::Permissions::from_mode(0o600))
                .map_err(|e| err(e.to_string()))?;
        }
        std::io::Write::write_all(&mut tmp, text.as_bytes()).map_err(|e| err(e.to_string()))?;
        tmp.as_file().sync_all().map_err(|e| err(e.to_string()))?;
        tmp.persist(path).map_err(|e| err(e.to_string()))?;
        Ok(())
    }
}

/// A parsed SCRAM-SHA-256 verifier.
#[derive(Clone, PartialEq, Eq)]
pub struct Verifier {
    /// PBKDF2 iterations.
    pub iterations: u32,
    /// The salt.
    pub salt: Vec<u8>,
    /// `H(HMAC(SaltedPassword, "Client Key"))`.
    pub stored_key: Vec<u8>,
    /// `HMAC(SaltedPassword, "Server Key")`.
    pub server_key: Vec<u8>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Verifier({} iterations)", self.iterations)
    }
}

impl Verifier {
    /// A new verifier of `password` with a random salt.
    pub fn new(password: &str) -> Result<Self, String> {
        let mut salt = vec![0u8; SALT_LEN];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut salt)
            .map_err(|_| "the system's random number generator failed".to_string())?;
        Ok(Self::with_salt(password, salt, ITERATIONS))
    }

    /// The verifier of `password` with this salt and iteration count.
    pub fn with_salt(password: &str, salt: Vec<u8>, iterations: u32) -> Self {
        let salted = salted_password(password, &salt, iterations);
        let client_key = hmac(&salted, b"Client Key");
        Self {
            iterations,
            stored_key: sha256(&client_key),
            server_key: hmac(&salted, b"Server Key"),
            salt,
        }
    }

    /// Parses PostgreSQL's verifier text.
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = || {
            "the scram field is not a SCRAM-SHA-256 verifier (SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>)".to_string()
        };
        let rest = text.strip_prefix("SCRAM-SHA-256$").ok_or_else(bad)?;
        let (params, keys) = rest.split_once('$').ok_or_else(bad)?;
        let (iterations, salt) = params.split_once(':').ok_or_else(bad)?;
        let (stored, server) = keys.split_once(':').ok_or_else(bad)?;
        let iterations: u32 = iterations.parse().map_err(|_| bad())?;
        if iterations == 0 {
            return Err(bad());
        }
        let decode = |s: &str| STANDARD.decode(s).map_err(|_| bad());
        let verifier = Self {
            iterations,
            salt: decode(salt)?,
            stored_key: decode(stored)?,
            server_key: decode(server)?,
        };
        if verifier.stored_key.len() != 32 || verifier.server_key.len() != 32 {
            return Err(bad());
        }
        Ok(verifier)
    }

    /// PostgreSQL's text of this verifier.
    pub fn text(&self) -> String {
        format!(
            "SCRAM-SHA-256${}:{}${}:{}",
            self.iterations,
            STANDARD.encode(&self.salt),
            STANDARD.encode(&self.stored_key),
            STANDARD.encode(&self.server_key)
        )
    }
}

/// `Hi(Normalize(password), salt, i)` of RFC 5802 with SHA-256. The
/// password is SASLprep-normalized where it can be, as PostgreSQL does,
/// and used as its bytes where it cannot.
pub fn salted_password(password: &str, salt: &[u8], iterations: u32) -> Vec<u8> {
    let normalized = stringprep::saslprep(password)
        .map(|p| p.into_owned())
        .unwrap_or_else(|_| password.to_string());
    let mut out = vec![0u8; 32];
    ring::pbkdf2::derive(
        ring::pbkdf2::PBKDF2_HMAC_SHA256,
        std::num::NonZeroU32::new(iterations.max(1)).expect("at least 1"),
        salt,
        normalized.as_bytes(),
        &mut out,
    );
    out
}

/// HMAC-SHA-256.
pub fn hmac(key: &[u8], message: &[u8]) -> Vec<u8> {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    ring::hmac::sign(&key, message).as_ref().to_vec()
}

/// SHA-256.
pub fn sha256(data: &[u8]) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, data)
        .as_ref()
        .to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifier_text_reads_back() {
        let v = Verifier::with_salt("pencil", b"salt-of-16-bytes".to_vec(), 4096);
        let again = Verifier::parse(&v.text()).unwrap();
        assert_eq!(v, again);
        assert!(
            v.text()
                .starts_with("SCRAM-SHA-256$4096:c2FsdC1vZi0xNi1ieXRlcw==$")
        );
        assert_ne!(
            v,
            Verifier::with_salt("pencil!", b"salt-of-16-bytes".to_vec(), 4096)
        );
    }

    #[test]
    fn rfc7677_test_vector() {
        // RFC 7677 section 3: password "pencil", salt
        // W22ZaJ0SNY7soEsUEjb6gQ==, 4096 iterations. The keys were worked
        // out with Python's hashlib; scram.rs checks the RFC's proof and
        // server signature with them.
        let salt = STANDARD.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let v = Verifier::with_salt("pencil", salt, 4096);
        assert_eq!(
            STANDARD.encode(&v.stored_key),
            "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY="
        );
        assert_eq!(
            STANDARD.encode(&v.server_key),
            "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU="
        );
    }

    #[test]
    fn bad_files_fail_loudly() {
        let ok = r#"{"format":"agentledger-users/1","users":[{"name":"ann","role":"tenant","tenants":["t1"]}]}"#;
        assert!(Users::parse(ok).is_ok());
        for (bad, says) in [
            (r#"{"format":"x","users":[]}"#, "format"),
            (
                r#"{"format":"agentledger-users/1","users":[{"name":"ann","role":"tenant"}]}"#,
                "no tenants",
            ),
            (
                r#"{"format":"agentledger-users/1","users":[{"name":"ann","role":"analyst","tenants":["t"]}]}"#,
                "only a tenant user",
            ),
            (
                r#"{"format":"agentledger-users/1","users":[{"name":"ann","role":"root"}]}"#,
                "unknown variant",
            ),
            (
                r#"{"format":"agentledger-users/1","users":[{"name":"ann","role":"admin","password":"x"}]}"#,
                "unknown field",
            ),
            (
                r#"{"format":"agentledger-users/1","users":[{"name":"ann","role":"admin","scram":"md5abc"}]}"#,
                "not a SCRAM-SHA-256 verifier",
            ),
            (
                r#"{"format":"agentledger-users/1","users":[{"name":"a","role":"admin"},{"name":"a","role":"admin"}]}"#,
                "twice",
            ),
        ] {
            let e = Users::parse(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn a_saved_file_holds_no_password_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.json");
        let mut users = Users::default();
        let user = User {
            name: "ann".into(),
            role: Role::Tenant,
            tenants: vec!["t2".into(), "t1".into()],
            scram: Some(Verifier::new("correct horse").unwrap().text()),
        };
        users.upsert(user.clone()).unwrap();
        users.save(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("correct horse"), "{text}");
        assert_eq!(Users::load(&path).unwrap().get("ann"), Some(&user));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert_eq!(
            user.scope(),
            Scope::tenants(["t1".to_string(), "t2".to_string()])
        );
    }
}
