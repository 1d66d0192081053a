//! Compatibility levels (`/config`) and modes (`/mode`): per subject, per context, global.
//!
//! Resolution, as Confluent: the subject's own setting, else its context's (`:.ctx:`, outside
//! the default context), else the global one, else the default (the configured level,
//! READWRITE). A subject key is always stored canonical (`context::Qualified::subject`), so
//! `:.:s` and `s` share one setting, and `:.:` is the global key.

use super::compat::CompatibilityLevel;
use super::context::{Qualified, context_of};
use super::error::RegistryError;
use super::mode::Mode;
use super::service::{Registry, read_only};
use super::store::Store;
use std::future::Future;

type Result<T> = std::result::Result<T, RegistryError>;

/// The subject key and, for a subject (not a context) outside the default context, its
/// context's key.
fn keys(subject: &str) -> Result<(String, Option<String>)> {
    let q = Qualified::parse(subject)?;
    let context = if q.name.is_empty() { None } else { q.context_key() };
    Ok((q.subject(), context))
}

/// `None` for the global key (`""`, or `:.:` made canonical).
fn key_opt(subject_opt: Option<&str>) -> Result<Option<String>> {
    Ok(match subject_opt {
        Some(subject) => Some(Qualified::parse(subject)?.subject()).filter(|k| !k.is_empty()),
        None => None,
    })
}

/// A per-subject setting with context and global fallbacks.
trait Setting: Sized {
    fn read<'a>(store: &'a Store, key: Option<&'a str>) -> impl Future<Output = Result<Option<Self>>> + Send + 'a;
    /// The error for a subject without a setting of its own.
    fn not_configured(subject: String) -> RegistryError;
}

impl Setting for Mode {
    fn read<'a>(store: &'a Store, key: Option<&'a str>) -> impl Future<Output = Result<Option<Self>>> + Send + 'a {
        store.mode(key)
    }

    fn not_configured(subject: String) -> RegistryError {
        RegistryError::SubjectModeNotConfigured(subject)
    }
}

impl Setting for CompatibilityLevel {
    fn read<'a>(store: &'a Store, key: Option<&'a str>) -> impl Future<Output = Result<Option<Self>>> + Send + 'a {
        store.config(key)
    }

    fn not_configured(subject: String) -> RegistryError {
        RegistryError::SubjectCompatibilityNotConfigured(subject)
    }
}

/// The setting in force (see the module doc); without `default_to_global` a subject without
/// its own is [`Setting::not_configured`].
async fn in_force<T: Setting>(store: &Store, subject_opt: Option<&str>, default_to_global: bool, default: T) -> Result<T> {
    if let Some(subject) = subject_opt {
        let (own, context) = keys(subject)?;
        if let Some(v) = T::read(store, Some(&own).filter(|k| !k.is_empty()).map(String::as_str)).await? {
            return Ok(v);
        }
        if !default_to_global {
            return Err(T::not_configured(own));
        }
        if let Some(key) = context
            && let Some(v) = T::read(store, Some(&key)).await?
        {
            return Ok(v);
        }
    }
    Ok(T::read(store, None).await?.unwrap_or(default))
}

impl Registry {
    /// The mode in force for `subject_opt` (`None` = global). Without `default_to_global`, a
    /// subject with no mode of its own is `SubjectModeNotConfigured`.
    pub async fn mode(&self, subject_opt: Option<&str>, default_to_global: bool) -> Result<Mode> {
        in_force(&self.store, subject_opt, default_to_global, Mode::ReadWrite).await
    }

    /// Sets a mode. IMPORT over existing schemas needs `force` (ids could collide), as Confluent.
    pub async fn set_mode(&self, subject_opt: Option<&str>, mode: Mode, force: bool) -> Result<()> {
        let key = key_opt(subject_opt)?;
        if mode == Mode::Import && !force {
            let occupied = match key.as_deref().map(Qualified::parse).transpose()? {
                Some(q) if !q.name.is_empty() => !self.store.versions(&q.subject()).await?.is_empty(),
                Some(q) => self.store.subjects(true).await?.iter().any(|s| context_of(s) == q.context),
                None => !self.store.subjects(true).await?.is_empty(),
            };
            if occupied {
                return Err(RegistryError::OperationNotPermitted(
                    "cannot import since found existing subjects; pass force=true to import into a registry or subject that holds schemas"
                        .into(),
                ));
            }
        }
        self.store.set_mode(key.as_deref(), mode).await
    }

    /// Removes a subject's mode; returns the one in force before.
    pub async fn delete_mode(&self, subject: &str) -> Result<Mode> {
        let previous = self.mode(Some(subject), true).await?;
        let key = key_opt(Some(subject))?;
        let Some(key) = key else {
            return Ok(self.store.delete_mode(None).await?.unwrap_or(previous));
        };
        if self.store.delete_mode(Some(&key)).await?.is_none() && self.store.versions(&key).await?.is_empty() {
            return Err(RegistryError::SubjectNotFound(key));
        }
        Ok(previous)
    }

    pub(super) async fn refuse_if_read_only(&self, subject: &str) -> Result<()> {
        match self.mode(Some(subject), true).await? {
            Mode::ReadOnly => Err(read_only(subject)),
            _ => Ok(()),
        }
    }

    /// The level in force for `subject_opt` (`None` = global). Without `default_to_global`,
    /// a subject with no level of its own is `SubjectCompatibilityNotConfigured`.
    pub async fn level(&self, subject_opt: Option<&str>, default_to_global: bool) -> Result<CompatibilityLevel> {
        in_force(&self.store, subject_opt, default_to_global, self.default_level).await
    }

    pub async fn set_level(&self, subject_opt: Option<&str>, level: CompatibilityLevel) -> Result<()> {
        self.store.set_config(key_opt(subject_opt)?.as_deref(), level).await
    }

    /// Removes a configured level; returns the one in force before the removal.
    pub async fn delete_level(&self, subject_opt: Option<&str>) -> Result<CompatibilityLevel> {
        let previous = self.level(subject_opt, true).await?;
        let key = key_opt(subject_opt)?;
        let removed_opt = self.store.delete_config(key.as_deref()).await?;
        // As Confluent: deleting the config of an unknown subject is 40401.
        if let (None, Some(subject)) = (removed_opt, key)
            && !subject.ends_with(':')
            && self.store.versions(&subject).await?.is_empty()
        {
            return Err(RegistryError::SubjectNotFound(subject));
        }
        Ok(previous)
    }
}
