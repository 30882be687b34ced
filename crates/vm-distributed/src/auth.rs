//! Authentication: mutual HMAC-SHA256 challenge-response over the cluster token.
//!
//! ```text
//! client -> server  Hello { magic, version, role, client_nonce }
//! server -> client  Challenge { version, server_nonce,
//!                               proof = HMAC(token, "vmxd-server" | role | cn | sn) }
//! client -> server  Proof { HMAC(token, "vmxd-client" | role | cn | sn) }
//! server -> client  Welcome                  (or Refused, then close)
//! ```
//!
//! # Invariants
//! - The token never crosses the wire; only HMACs over fresh 32-byte nonces from both sides
//!   do, and the two directions use different labels, so one side's proof can never be
//!   replayed as the other's.
//! - Proofs are compared in constant time (`Mac::verify_slice`).
//! - Until the server has checked the client's proof it reads nothing but handshake frames
//!   of at most [`HANDSHAKE_FRAME_BYTES`]; the caller bounds the whole handshake with a
//!   time-out, so a silent or slow peer cannot hold a connection open.
//! - The client checks the server's proof too, so a worker never takes tasks from an
//!   impostor coordinator.

use crate::protocol::{
    read_message, write_message, Handshake, Role, HANDSHAKE_FRAME_BYTES, MAGIC, PROTOCOL_VERSION,
};
use crate::Error;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::path::Path;
use tokio::io::{AsyncRead, AsyncWrite};

type HmacSha256 = Hmac<Sha256>;

/// Fewest bytes a token may have.
pub const MIN_TOKEN_BYTES: usize = 16;

/// The shared secret of a cluster. Its `Debug` form does not show it.
#[derive(Clone)]
pub struct ClusterToken(Vec<u8>);

impl std::fmt::Debug for ClusterToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterToken(..)")
    }
}

impl ClusterToken {
    /// A token from its bytes (surrounding whitespace removed); at least
    /// [`MIN_TOKEN_BYTES`] long.
    pub fn new(bytes: &[u8]) -> Result<ClusterToken, Error> {
        let trimmed = bytes.trim_ascii();
        if trimmed.len() < MIN_TOKEN_BYTES {
            return Err(Error::Invalid(format!(
                "the cluster token must have at least {MIN_TOKEN_BYTES} bytes"
            )));
        }
        Ok(ClusterToken(trimmed.to_vec()))
    }

    /// Reads a token file.
    pub fn from_file(path: &Path) -> Result<ClusterToken, Error> {
        let bytes = std::fs::read(path).map_err(|e| {
            Error::Invalid(format!("cannot read token file {}: {e}", path.display()))
        })?;
        ClusterToken::new(&bytes)
    }

    /// A fresh random token: 64 hexadecimal digits.
    pub fn generate() -> Result<ClusterToken, Error> {
        let raw = random_nonce()?;
        let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
        ClusterToken::new(hex.as_bytes())
    }

    /// The token's bytes (to write a token file).
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    fn mac(&self, label: &[u8], role: Role, cn: &[u8; 32], sn: &[u8; 32]) -> HmacSha256 {
        // HMAC takes keys of any length.
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("HMAC accepts any key length");
        mac.update(label);
        mac.update(&[role_byte(role)]);
        mac.update(cn);
        mac.update(sn);
        mac
    }

    fn proof(&self, label: &[u8], role: Role, cn: &[u8; 32], sn: &[u8; 32]) -> [u8; 32] {
        self.mac(label, role, cn, sn).finalize().into_bytes().into()
    }

    fn verify(&self, label: &[u8], role: Role, cn: &[u8; 32], sn: &[u8; 32], p: &[u8]) -> bool {
        self.mac(label, role, cn, sn).verify_slice(p).is_ok()
    }
}

const SERVER_LABEL: &[u8] = b"vmxd-server";
const CLIENT_LABEL: &[u8] = b"vmxd-client";

fn role_byte(role: Role) -> u8 {
    match role {
        Role::Worker => 1,
        Role::Client => 2,
    }
}

/// 32 random bytes from the operating system.
pub fn random_nonce() -> Result<[u8; 32], Error> {
    let mut n = [0u8; 32];
    getrandom::getrandom(&mut n).map_err(|e| Error::Invalid(format!("no randomness: {e}")))?;
    Ok(n)
}

async fn refuse<S: AsyncWrite + Unpin>(stream: &mut S, why: &str) {
    // Best effort: the peer may be gone already.
    let _ = write_message(stream, &Handshake::Refused(why.to_string())).await;
}

/// The server side of the handshake. Returns the authenticated peer's role. The caller
/// bounds it with a time-out.
pub async fn server_handshake<S>(stream: &mut S, token: &ClusterToken) -> Result<Role, Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let hello: Handshake = read_message(stream, HANDSHAKE_FRAME_BYTES).await?;
    let Handshake::Hello { magic, version, role, nonce: cn } = hello else {
        refuse(stream, "expected Hello").await;
        return Err(Error::Handshake("the first message was not Hello".into()));
    };
    if magic != MAGIC {
        return Err(Error::Handshake("bad magic".into()));
    }
    if version != PROTOCOL_VERSION {
        refuse(stream, &format!("protocol version {version} unsupported")).await;
        return Err(Error::VersionMismatch { ours: PROTOCOL_VERSION, theirs: version });
    }
    let sn = random_nonce()?;
    let proof = token.proof(SERVER_LABEL, role, &cn, &sn);
    write_message(stream, &Handshake::Challenge { version: PROTOCOL_VERSION, nonce: sn, proof })
        .await?;
    let answer: Handshake = read_message(stream, HANDSHAKE_FRAME_BYTES).await?;
    let Handshake::Proof { proof } = answer else {
        refuse(stream, "expected Proof").await;
        return Err(Error::Handshake("expected Proof".into()));
    };
    if !token.verify(CLIENT_LABEL, role, &cn, &sn, &proof) {
        refuse(stream, "authentication failed").await;
        return Err(Error::AuthFailed);
    }
    write_message(stream, &Handshake::Welcome).await?;
    Ok(role)
}

/// The client side of the handshake (workers and clients). The caller bounds it with a
/// time-out.
pub async fn client_handshake<S>(
    stream: &mut S,
    token: &ClusterToken,
    role: Role,
) -> Result<(), Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let cn = random_nonce()?;
    write_message(
        stream,
        &Handshake::Hello { magic: MAGIC, version: PROTOCOL_VERSION, role, nonce: cn },
    )
    .await?;
    let sn = match read_message(stream, HANDSHAKE_FRAME_BYTES).await? {
        Handshake::Challenge { version, nonce, proof } => {
            if version != PROTOCOL_VERSION {
                return Err(Error::VersionMismatch { ours: PROTOCOL_VERSION, theirs: version });
            }
            if !token.verify(SERVER_LABEL, role, &cn, &nonce, &proof) {
                return Err(Error::Handshake(
                    "the coordinator could not prove it holds the cluster token".into(),
                ));
            }
            nonce
        }
        Handshake::Refused(why) => return Err(Error::Refused(why)),
        other => return Err(Error::Handshake(format!("unexpected {other:?}"))),
    };
    let proof = token.proof(CLIENT_LABEL, role, &cn, &sn);
    write_message(stream, &Handshake::Proof { proof }).await?;
    match read_message(stream, HANDSHAKE_FRAME_BYTES).await? {
        Handshake::Welcome => Ok(()),
        Handshake::Refused(why) if why == "authentication failed" => Err(Error::AuthFailed),
        Handshake::Refused(why) => Err(Error::Refused(why)),
        other => Err(Error::Handshake(format!("unexpected {other:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(s: &str) -> ClusterToken {
        ClusterToken::new(s.as_bytes()).unwrap()
    }

    async fn pair(
        server_token: ClusterToken,
        client_token: ClusterToken,
    ) -> (Result<Role, Error>, Result<(), Error>) {
        let (mut a, mut b) = tokio::io::duplex(4096);
        let server = tokio::spawn(async move { server_handshake(&mut a, &server_token).await });
        let client = client_handshake(&mut b, &client_token, Role::Worker).await;
        // A client that gave up closes its connection.
        drop(b);
        (server.await.unwrap(), client)
    }

    #[tokio::test]
    async fn matching_tokens_authenticate_both_ways() {
        let (s, c) = pair(token("0123456789abcdef-x"), token("0123456789abcdef-x\n")).await;
        assert_eq!(s.unwrap(), Role::Worker);
        c.unwrap();
    }

    #[tokio::test]
    async fn a_wrong_token_is_refused_on_both_sides() {
        let (s, c) = pair(token("0123456789abcdef-x"), token("0123456789abcdef-y")).await;
        assert!(s.is_err(), "the server must not accept it: {s:?}");
        // The client notices first: the server's proof does not verify under its token.
        assert!(matches!(c, Err(Error::Handshake(_))), "{c:?}");
    }

    #[tokio::test]
    async fn a_client_with_a_wrong_proof_is_refused() {
        let (mut a, mut b) = tokio::io::duplex(4096);
        let t = token("0123456789abcdef-x");
        let server = tokio::spawn(async move { server_handshake(&mut a, &t).await });
        let hello = Handshake::Hello {
            magic: MAGIC,
            version: PROTOCOL_VERSION,
            role: Role::Client,
            nonce: [1; 32],
        };
        write_message(&mut b, &hello).await.unwrap();
        let _: Handshake = read_message(&mut b, HANDSHAKE_FRAME_BYTES).await.unwrap();
        write_message(&mut b, &Handshake::Proof { proof: [0; 32] }).await.unwrap();
        let reply: Handshake = read_message(&mut b, HANDSHAKE_FRAME_BYTES).await.unwrap();
        assert_eq!(reply, Handshake::Refused("authentication failed".into()));
        assert!(matches!(server.await.unwrap(), Err(Error::AuthFailed)));
    }

    #[tokio::test]
    async fn a_wrong_version_is_refused() {
        let (mut a, mut b) = tokio::io::duplex(4096);
        let t = token("0123456789abcdef-x");
        let server = tokio::spawn(async move { server_handshake(&mut a, &t).await });
        let hello =
            Handshake::Hello { magic: MAGIC, version: 99, role: Role::Client, nonce: [1; 32] };
        write_message(&mut b, &hello).await.unwrap();
        let reply: Handshake = read_message(&mut b, HANDSHAKE_FRAME_BYTES).await.unwrap();
        assert!(matches!(reply, Handshake::Refused(_)));
        assert!(matches!(server.await.unwrap(), Err(Error::VersionMismatch { theirs: 99, .. })));
    }

    #[test]
    fn short_tokens_are_rejected_and_the_token_is_not_printed() {
        assert!(ClusterToken::new(b"  short \n").is_err());
        let t = ClusterToken::generate().unwrap();
        assert_eq!(t.as_bytes().len(), 64);
        assert!(!format!("{t:?}").contains(std::str::from_utf8(t.as_bytes()).unwrap()));
    }
}
