//! gpumesh-svm: the in-process chain. LiteSVM, a real Solana runtime, with the gpumesh program
//! registered natively ([`native`]) and SPL Token running as its real SBF program, behind the
//! client's [`Chain`] interface; a clock that tests can move ([`SvmChain::warp`]); and
//! [`fixtures`] that set up a mint, a market and funded users on any chain. Tests, the demo and
//! the local node (whose surfpool runtime is a LiteSVM too) use it; the program's own runtime
//! tests live in this crate's `tests/`.

pub mod fixtures;
pub mod native;

use anchor_lang::prelude::Pubkey;
use gpumesh_client::chain::{AccountFilter, Chain, Outcome, RawAccount};
use gpumesh_client::error::ChainError;
use gpumesh_client::events::parse_logs;
use litesvm::LiteSVM;
use solana_clock::Clock;
use solana_instruction::Instruction;
use solana_keypair::Keypair;
use solana_program_runtime::solana_sbpf::program::BuiltinFunctionDefinition;
use solana_signer::Signer;
use solana_transaction::Transaction;

crate::native_builtin!(GpumeshBuiltin, gpumesh_client::program::entry);

/// Registers the gpumesh program (its host build, through [`native`]) in a LiteSVM runtime.
/// The in-process chain and the local RPC node (gpumesh-localnet, whose surfpool node runs on
/// the same LiteSVM) both load the program through here.
pub fn register_program(svm: &mut LiteSVM) {
    native::install_syscall_stubs();
    svm.add_builtin(
        gpumesh_client::program::ID,
        <GpumeshBuiltin as BuiltinFunctionDefinition<_>>::register,
    );
}

/// Unix time the in-process clock starts at (2026-01-01T00:00:00Z).
pub const GENESIS_UNIX_TIME: i64 = 1_767_225_600;
/// Slots per second of warped time (400 ms slots).
const SLOTS_PER_SECOND: f64 = 2.5;

pub struct SvmChain {
    svm: LiteSVM,
}

impl Default for SvmChain {
    fn default() -> Self {
        Self::new()
    }
}

impl SvmChain {
    pub fn new() -> Self {
        let mut svm = LiteSVM::new().with_log_bytes_limit(Some(1 << 20));
        register_program(&mut svm);
        let mut clock: Clock = svm.get_sysvar();
        clock.unix_timestamp = GENESIS_UNIX_TIME;
        clock.epoch_start_timestamp = GENESIS_UNIX_TIME;
        svm.set_sysvar(&clock);
        Self { svm }
    }

    /// The runtime itself, for what the `Chain` interface does not cover.
    pub fn svm(&mut self) -> &mut LiteSVM {
        &mut self.svm
    }

    /// Moves the clock forward by `seconds` (and the slot with it, 400 ms a slot): what a test
    /// does instead of waiting.
    pub fn warp(&mut self, seconds: i64) -> Result<(), ChainError> {
        let mut clock: Clock = self.svm.get_sysvar();
        clock.unix_timestamp = clock
            .unix_timestamp
            .checked_add(seconds)
            .ok_or(ChainError::Unsupported("a warp this far"))?;
        let slots = (seconds.max(0) as f64 * SLOTS_PER_SECOND) as u64;
        clock.slot = clock.slot.saturating_add(slots);
        self.svm.set_sysvar(&clock);
        Ok(())
    }
}

impl Chain for SvmChain {
    fn send(
        &mut self,
        instructions: &[Instruction],
        payer: &Keypair,
        signers: &[&Keypair],
    ) -> Result<Outcome, ChainError> {
        let mut all: Vec<&Keypair> = vec![payer];
        all.extend(
            signers
                .iter()
                .copied()
                .filter(|k| k.pubkey() != payer.pubkey()),
        );
        let tx = Transaction::new_signed_with_payer(
            instructions,
            Some(&payer.pubkey()),
            &all,
            self.svm.latest_blockhash(),
        );
        let result = self.svm.send_transaction(tx);
        // A fresh blockhash per transaction: sending the same instructions twice (a replayed
        // receipt, a retried command) is a new transaction, as it would be on a cluster.
        self.svm.expire_blockhash();
        match result {
            Ok(meta) => Ok(Outcome {
                signature: meta.signature.to_string(),
                events: parse_logs(&meta.logs),
                logs: meta.logs,
            }),
            Err(failed) => Err(ChainError::from_transaction_error(
                &failed.err,
                failed.meta.logs,
            )),
        }
    }

    fn account(&self, key: &Pubkey) -> Result<Option<RawAccount>, ChainError> {
        Ok(self.svm.get_account(key).map(|a| RawAccount {
            lamports: a.lamports,
            owner: a.owner,
            data: a.data,
        }))
    }

    fn list(
        &self,
        program: &Pubkey,
        filters: &[AccountFilter],
    ) -> Result<Vec<(Pubkey, RawAccount)>, ChainError> {
        use solana_account::ReadableAccount;
        Ok(self
            .svm
            .accounts_db()
            .inner
            .iter()
            .filter(|(_, a)| a.owner() == program && a.lamports() > 0)
            .filter(|(_, a)| filters.iter().all(|f| f.matches(a.data())))
            .map(|(key, a)| {
                (
                    *key,
                    RawAccount {
                        lamports: a.lamports(),
                        owner: *a.owner(),
                        data: a.data().to_vec(),
                    },
                )
            })
            .collect())
    }

    fn unix_time(&self) -> Result<i64, ChainError> {
        Ok(self.svm.get_sysvar::<Clock>().unix_timestamp)
    }

    fn airdrop(&mut self, to: &Pubkey, lamports: u64) -> Result<(), ChainError> {
        self.svm
            .airdrop(to, lamports)
            .map(|_| ())
            .map_err(|f| ChainError::from_transaction_error(&f.err, f.meta.logs))
    }

    fn rent_exempt_minimum(&self, data_len: usize) -> Result<u64, ChainError> {
        Ok(self.svm.minimum_balance_for_rent_exemption(data_len))
    }
}
