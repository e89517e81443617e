//! What can go wrong talking to a chain, in words a user can act on.

use anchor_lang::prelude::Pubkey;
use gpumesh::errors::GpumeshError;
use solana_instruction::error::InstructionError;
use solana_transaction_error::TransactionError;

#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// The program refused an instruction; nothing in the transaction took effect.
    #[error("instruction {instruction} refused: {message} ({name}, code {code})")]
    Program {
        instruction: u8,
        code: u32,
        name: String,
        message: String,
        logs: Vec<String>,
    },
    /// The runtime refused the transaction (signatures, funds for fees, account rules…).
    #[error("transaction failed: {error}")]
    Transaction { error: String, logs: Vec<String> },
    #[error("account {0} does not exist")]
    AccountNotFound(Pubkey),
    #[error("account {key} is not a {expected}: {reason}")]
    Decode {
        key: Pubkey,
        expected: &'static str,
        reason: String,
    },
    /// The endpoint did not answer or refused a request; nothing was sent (a transaction whose
    /// outcome is in doubt is [`ChainError::UnknownOutcome`], never this).
    #[error("could not reach the cluster: {0}")]
    Rpc(String),
    /// A transaction was signed and may have reached the cluster, but whether it landed could not
    /// be learned. It may still land (until its blockhash expires) or may have landed already.
    #[error(
        "the transaction {signature} was sent, but whether it landed is unknown ({reason}). Check \
         it with `gpumesh confirm {signature}` before doing anything again: running the command \
         again may apply it twice"
    )]
    UnknownOutcome { signature: String, reason: String },
    /// A transaction was sent and never landed, and its blockhash has expired, so it never will:
    /// nothing it asked for happened.
    #[error(
        "the transaction {signature} did not land and its blockhash has expired, so it never \
         will; nothing changed: run the command again"
    )]
    Expired { signature: String },
    #[error("{0} is not supported by this chain backend")]
    Unsupported(&'static str),
}

impl ChainError {
    /// The program error, if the program refused the transaction with one of its own errors.
    pub fn gpumesh_error(&self) -> Option<GpumeshError> {
        match self {
            ChainError::Program { code, .. } => GpumeshError::from_code(*code),
            _ => None,
        }
    }

    /// The numeric custom error code, if any (gpumesh or Anchor framework).
    pub fn code(&self) -> Option<u32> {
        match self {
            ChainError::Program { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// The signature of a sent transaction whose outcome is in doubt.
    pub fn unknown_signature(&self) -> Option<&str> {
        match self {
            ChainError::UnknownOutcome { signature, .. } => Some(signature),
            _ => None,
        }
    }

    pub fn from_transaction_error(err: &TransactionError, logs: Vec<String>) -> Self {
        match err {
            TransactionError::InstructionError(index, InstructionError::Custom(code)) => {
                let (name, message) = describe_code(*code);
                ChainError::Program {
                    instruction: *index,
                    code: *code,
                    name,
                    message,
                    logs,
                }
            }
            other => ChainError::Transaction {
                error: other.to_string(),
                logs,
            },
        }
    }
}

/// Name and message of a custom error code: gpumesh's own, or Anchor's account and constraint
/// checks.
pub fn describe_code(code: u32) -> (String, String) {
    if let Some(e) = GpumeshError::from_code(code) {
        return (e.name(), e.to_string());
    }
    match ANCHOR_CODES.iter().find(|(c, _, _)| *c == code) {
        Some((_, name, msg)) => (name.to_string(), msg.to_string()),
        None => ("Unknown".into(), format!("custom program error {code}")),
    }
}

/// The Anchor framework checks a user can trip by passing the wrong account.
const ANCHOR_CODES: &[(u32, &str, &str)] = &[
    (
        2000,
        "ConstraintMut",
        "an account that must be writable was passed read-only",
    ),
    (
        2001,
        "ConstraintHasOne",
        "an account does not belong to the one it must belong to",
    ),
    (
        2002,
        "ConstraintSigner",
        "an account that must sign did not",
    ),
    (2003, "ConstraintRaw", "an account constraint was violated"),
    (
        2004,
        "ConstraintOwner",
        "an account is owned by the wrong program",
    ),
    (
        2006,
        "ConstraintSeeds",
        "an account is not the expected program-derived address",
    ),
    (2011, "ConstraintClose", "a close constraint was violated"),
    (
        2012,
        "ConstraintAddress",
        "an account is not at the expected address",
    ),
    (
        2014,
        "ConstraintTokenMint",
        "a token account has the wrong mint",
    ),
    (
        2015,
        "ConstraintTokenOwner",
        "a token account has the wrong owner",
    ),
    (
        2040,
        "ConstraintDuplicateMutableAccount",
        "the same writable account was passed twice",
    ),
    (
        3001,
        "AccountDiscriminatorNotFound",
        "an account has no data where a gpumesh account was expected",
    ),
    (
        3002,
        "AccountDiscriminatorMismatch",
        "an account is of the wrong kind (e.g. an order passed as a worker)",
    ),
    (
        3003,
        "AccountDidNotDeserialize",
        "an account's data could not be read",
    ),
    (
        3005,
        "AccountNotEnoughKeys",
        "not enough accounts were passed",
    ),
    (
        3006,
        "AccountNotMutable",
        "an account that must be writable was passed read-only",
    ),
    (
        3007,
        "AccountOwnedByWrongProgram",
        "an account is owned by a different program than expected",
    ),
    (
        3008,
        "InvalidProgramId",
        "a program account is not the expected program",
    ),
    (
        3010,
        "AccountNotSigner",
        "an account that must sign did not",
    ),
    (
        3011,
        "AccountNotSystemOwned",
        "an account is not owned by the system program",
    ),
    (
        3012,
        "AccountNotInitialized",
        "an account does not exist (already closed, or never created)",
    ),
    (
        3015,
        "AccountSysvarMismatch",
        "a sysvar account is not the expected sysvar",
    ),
];
