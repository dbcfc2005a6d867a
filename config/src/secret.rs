//! Secrets: values that never appear in the config file, in logs or in `config show`.
//!
//! A secret comes from an environment variable (`ATHENA_<SECTION>_<KEY>`) or from a file that the
//! config names (`<key>_file`). Its `Debug` and `Display` print `***`, and it serializes as
//! `"***"`, so no print of a `Config` can leak it.

use std::fmt;

/// A secret string; every textual form of it is redacted.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that must use it (an HTTP header, a signer).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl serde::Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("***")
    }
}

/// Where a secret of the schema is read from: its environment variable and its `_file` key.
#[derive(Debug, Clone, Copy)]
pub struct SecretSlot {
    /// Section of the config, e.g. `api`.
    pub section: &'static str,
    /// Key of the secret, e.g. `admin_token`; the file key is `<key>_file`.
    pub key: &'static str,
    /// Its file must be the owner's only (no permission for group or others): a signing key
    /// that other users could read is a key they could spend with.
    pub owner_only: bool,
}

impl SecretSlot {
    /// The environment variable that carries this secret.
    pub fn env_var(&self) -> String {
        format!(
            "ATHENA_{}_{}",
            self.section.to_ascii_uppercase(),
            self.key.to_ascii_uppercase()
        )
    }
}

/// Every secret the schema knows.
pub const SECRET_SLOTS: &[SecretSlot] = &[
    SecretSlot {
        section: "api",
        key: "admin_token",
        owner_only: false,
    },
    SecretSlot {
        section: "llm",
        key: "api_key",
        owner_only: false,
    },
    SecretSlot {
        section: "chain",
        key: "private_key",
        owner_only: true,
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_textual_form_is_redacted() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "Secret(***)");
        assert_eq!(format!("{s}"), "***");
        assert_eq!(toml::Value::try_from(&s).unwrap().as_str(), Some("***"));
        assert_eq!(s.expose(), "hunter2");
    }
}
