use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use anyhow::{Context, bail};

const NONCE_LEN: usize = 12;

/// Seals secrets with AES-256-GCM under the master key. Each value gets a fresh random nonce,
/// stored in front of the ciphertext; the associated data binds a ciphertext to its row, so a
/// sealed value copied into another row does not open.
#[derive(Clone)]
pub struct SecretBox {
    cipher: Aes256Gcm,
}

impl SecretBox {
    pub fn new(master_key: &[u8; 32]) -> Self {
        Self {
            cipher: Aes256Gcm::new(master_key.into()),
        }
    }

    pub fn seal(&self, plaintext: &[u8], associated_data: &[u8]) -> anyhow::Result<Vec<u8>> {
        let nonce_bytes: [u8; NONCE_LEN] = rand::random();
        let ciphertext = self
            .cipher
            .encrypt(
                &Nonce::from(nonce_bytes),
                Payload {
                    msg: plaintext,
                    aad: associated_data,
                },
            )
            .map_err(|_| anyhow::anyhow!("encryption failed"))?;
        let mut sealed = nonce_bytes.to_vec();
        sealed.extend(ciphertext);
        Ok(sealed)
    }

    pub fn open(&self, sealed: &[u8], associated_data: &[u8]) -> anyhow::Result<Vec<u8>> {
        if sealed.len() < NONCE_LEN {
            bail!("sealed value is too short");
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into()?;
        self.cipher
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: ciphertext,
                    aad: associated_data,
                },
            )
            .map_err(|_| anyhow::anyhow!("decryption failed"))
            .context("wrong master key, or the value was tampered with")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_the_same_key_and_row() {
        let secret_box = SecretBox::new(&[7; 32]);
        let sealed = secret_box.seal(b"hunter2", b"row-1").unwrap();
        assert!(!sealed.windows(7).any(|w| w == b"hunter2"));
        assert_eq!(secret_box.open(&sealed, b"row-1").unwrap(), b"hunter2");
        assert!(secret_box.open(&sealed, b"row-2").is_err());
        assert!(SecretBox::new(&[8; 32]).open(&sealed, b"row-1").is_err());
        let again = secret_box.seal(b"hunter2", b"row-1").unwrap();
        assert_ne!(sealed, again, "nonces must differ");
    }
}
