use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

use crate::error::{AppError, AppResult};

/// Hashes a password with Argon2id (off the async threads: it is deliberately slow).
pub async fn hash_password(password: String) -> AppResult<String> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|hash| hash.to_string())
            .map_err(|err| anyhow::anyhow!("password hashing failed: {err}"))
    })
    .await
    .map_err(|err| AppError::Internal(err.into()))?
    .map_err(AppError::Internal)
}

/// Checks a password against a stored hash. With no stored hash (unknown email), a dummy hash
/// is checked instead, so both answers take the same time.
pub async fn verify_password(password: String, stored: Option<String>) -> AppResult<bool> {
    const DUMMY: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$0CvN4F6YfrN9hCAaMmxWAsOmmnIdmF7OoJx1rUKyoY8";
    let found = stored.is_some();
    let stored = stored.unwrap_or_else(|| DUMMY.to_string());
    tokio::task::spawn_blocking(move || {
        let ok = PasswordHash::new(&stored)
            .map(|hash| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &hash)
                    .is_ok()
            })
            .unwrap_or(false);
        found && ok
    })
    .await
    .map_err(|err| AppError::Internal(err.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_password_verifies_against_its_own_hash_only() {
        let hash = hash_password("correct horse".into()).await.unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(
            verify_password("correct horse".into(), Some(hash.clone()))
                .await
                .unwrap()
        );
        assert!(
            !verify_password("wrong horse".into(), Some(hash))
                .await
                .unwrap()
        );
        assert!(!verify_password("correct horse".into(), None).await.unwrap());
    }
}
