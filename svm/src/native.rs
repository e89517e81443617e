//! Running the gpumesh program natively inside a real Solana runtime.
//!
//! The program cannot be compiled to SBF on machines without Solana's platform tools, so the
//! in-process runtime registers its host build as a builtin: the runtime hands us the
//! instruction, we serialize its accounts exactly as the SBF loader would, deserialize them into
//! `AccountInfo`s, call the program's entrypoint, and copy lamports, data and owner back. What the
//! program asks of the runtime (logs, events, sysvars, CPIs into SPL Token) arrives through the
//! syscall stubs below, installed into `solana-sysvar` 3.x, the copy that anchor-lang and
//! solana-invoke call on the host. CPIs run the callee for real (SPL Token is the real SBF
//! program), with its compute metered.
//!
//! The stubs are process-wide; the invoke context they act on is per thread, so independent
//! runtimes on different threads (parallel tests) do not see each other.

use anchor_lang::prelude::{AccountInfo, Pubkey};
use solana_instruction::{Instruction, error::InstructionError};
use solana_program_entrypoint::SUCCESS;
use solana_program_error::{ProgramError, ProgramResult};
use solana_program_runtime::solana_sbpf::vm::ContextObject;
use solana_program_runtime::{
    invoke_context::InvokeContext, serialization::serialize_parameters, stable_log,
    sysvar_cache::SysvarCache,
};
use solana_svm_timings::ExecuteTimings;
use std::{cell::Cell, collections::HashSet, panic::AssertUnwindSafe, sync::Once};

/// An Anchor program's entrypoint: one `'info` lifetime for the slice and its accounts.
pub type NativeEntry =
    for<'info> fn(&'info Pubkey, &'info [AccountInfo<'info>], &'info [u8]) -> ProgramResult;

thread_local! {
    /// The invoke context of the native instruction running on this thread (null outside one).
    static INVOKE_CONTEXT: Cell<usize> = const { Cell::new(0) };
}

/// Restores the previous invoke-context pointer when a (possibly nested) call returns.
struct ContextGuard(usize);

impl ContextGuard {
    fn enter(ic: &mut InvokeContext) -> Self {
        let ptr = ic as *mut InvokeContext as usize;
        ContextGuard(INVOKE_CONTEXT.with(|c| c.replace(ptr)))
    }
}

impl Drop for ContextGuard {
    fn drop(&mut self) {
        INVOKE_CONTEXT.with(|c| c.set(self.0));
    }
}

/// The invoke context of the running native instruction.
///
/// Only called from syscall stubs, which only run inside `invoke_native` on this thread, while
/// the `&mut InvokeContext` it was given is alive and not otherwise used.
fn invoke_context<'a>() -> Option<&'a mut InvokeContext<'static, 'static>> {
    let ptr = INVOKE_CONTEXT.with(|c| c.get());
    if ptr == 0 {
        return None;
    }
    // SAFETY: see above; the pointer was set by `ContextGuard::enter` from a live `&mut`.
    Some(unsafe { &mut *(ptr as *mut InvokeContext<'static, 'static>) })
}

/// Installs the syscall stubs once per process.
pub fn install_syscall_stubs() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        solana_sysvar::program_stubs::set_syscall_stubs(Box::new(NativeStubs));
    });
}

/// Runs one instruction of a native program inside the runtime, as the SBF loader would.
pub fn invoke_native(entry: NativeEntry, ic: &mut InvokeContext) -> Result<(), InstructionError> {
    install_syscall_stubs();
    let _guard = ContextGuard::enter(ic);
    ic.compute_meter
        .consume_checked(1)
        .map_err(|_| InstructionError::ComputationalBudgetExceeded)?;

    let log_collector = ic.get_log_collector();
    let direct_pointers = ic
        .get_feature_set()
        .direct_account_pointers_in_program_input;
    let instruction_context = ic.transaction_context.get_current_instruction_context()?;
    let program_id = *instruction_context.get_program_key()?;
    stable_log::program_invoke(&log_collector, &program_id, ic.get_stack_height());
    let account_count = instruction_context.get_number_of_instruction_accounts();
    let (mut parameter_bytes, _regions, _lengths, _data_offset) =
        serialize_parameters(&instruction_context, false, false, direct_pointers)?;

    // SAFETY: the buffer was just laid out by the runtime's own serializer for this instruction.
    let (_, account_infos, input) = unsafe {
        solana_program_entrypoint::deserialize(parameter_bytes.as_slice_mut().as_mut_ptr())
    };
    // SAFETY: Anchor wants the slice and the accounts under one lifetime. Both borrow
    // `parameter_bytes`, which outlives the call, and nothing the entrypoint returns keeps them.
    let infos: &[AccountInfo<'_>] = unsafe { std::mem::transmute(account_infos.as_slice()) };

    let result = std::panic::catch_unwind(AssertUnwindSafe(|| entry(&program_id, infos, input)));
    match result {
        Ok(Ok(())) => {}
        Ok(Err(program_error)) => {
            let err = InstructionError::from(u64::from(program_error));
            stable_log::program_failure(&log_collector, &program_id, &err);
            return Err(err);
        }
        Err(_) => {
            let err = InstructionError::ProgramFailedToComplete;
            stable_log::program_failure(&log_collector, &program_id, &err);
            return Err(err);
        }
    }
    stable_log::program_success(&log_collector, &program_id);

    // Commit what the program changed back into the runtime's accounts, as the SBF loader does
    // after a program returns: every account, writable or not, goes through the runtime's own
    // checks, so a change to a read-only account (or to one the program does not own) fails the
    // instruction (`ReadonlyDataModified`, `ReadonlyLamportChange`, …) instead of being dropped.
    // The instruction context is fetched again: a CPI may have replaced it.
    let instruction_context = ic.transaction_context.get_current_instruction_context()?;
    let mut seen = HashSet::new();
    for index in 0..account_count {
        let mut account = instruction_context.try_borrow_instruction_account(index)?;
        if !seen.insert(*account.get_key()) {
            continue;
        }
        let Some(info) = account_infos.iter().find(|i| i.key == account.get_key()) else {
            continue;
        };
        if account.get_lamports() != info.lamports() {
            account.set_lamports(info.lamports())?;
        }
        let data = info
            .try_borrow_data()
            .map_err(|_| InstructionError::AccountBorrowFailed)?;
        if account.get_data() != &data[..] {
            account.set_data_from_slice(&data)?;
        }
        if account.get_owner() != info.owner {
            account.set_owner(info.owner.as_ref())?;
        }
    }
    Ok(())
}

/// Registers `invoke_native(entry)` as a builtin function the runtime can call. One type per
/// program, so this is a macro.
#[macro_export]
macro_rules! native_builtin {
    ($name:ident, $entry:path) => {
        solana_program_runtime::declare_process_instruction!($name, 0, |invoke_context| {
            $crate::native::invoke_native($entry, invoke_context)
        });
    };
}

struct NativeStubs;

impl NativeStubs {
    fn write_sysvar<T: Clone>(
        &self,
        fetch: impl FnOnce(&SysvarCache) -> Result<std::sync::Arc<T>, InstructionError>,
        var_addr: *mut u8,
    ) -> u64 {
        let Some(ic) = invoke_context() else {
            return solana_instruction::error::UNSUPPORTED_SYSVAR;
        };
        match fetch(ic.environment_config.sysvar_cache()) {
            Ok(value) => {
                // SAFETY: the caller passes a pointer to a `T` (the syscall's contract).
                unsafe { *(var_addr as *mut T) = T::clone(&value) };
                SUCCESS
            }
            Err(_) => solana_instruction::error::UNSUPPORTED_SYSVAR,
        }
    }

    fn write_sysvar_bytes<T: serde::Serialize>(
        &self,
        fetch: impl FnOnce(&SysvarCache) -> Result<std::sync::Arc<T>, InstructionError>,
        var_addr: *mut u8,
        offset: u64,
        length: u64,
    ) -> u64 {
        let Some(ic) = invoke_context() else {
            return solana_instruction::error::UNSUPPORTED_SYSVAR;
        };
        let Ok(value) = fetch(ic.environment_config.sysvar_cache()) else {
            return solana_instruction::error::UNSUPPORTED_SYSVAR;
        };
        let Ok(bytes) = bincode::serialize(&*value) else {
            return solana_instruction::error::UNSUPPORTED_SYSVAR;
        };
        let (Ok(start), Ok(len)) = (usize::try_from(offset), usize::try_from(length)) else {
            return solana_instruction::error::UNSUPPORTED_SYSVAR;
        };
        let Some(slice) = start.checked_add(len).and_then(|end| bytes.get(start..end)) else {
            return solana_instruction::error::UNSUPPORTED_SYSVAR;
        };
        // SAFETY: the caller passes a buffer of `length` bytes (the syscall's contract).
        unsafe { std::ptr::copy_nonoverlapping(slice.as_ptr(), var_addr, len) };
        SUCCESS
    }

    fn cpi(
        &self,
        instruction: &Instruction,
        account_infos: &[AccountInfo],
        signers_seeds: &[&[&[u8]]],
    ) -> Result<(), ProgramError> {
        let ic = invoke_context().ok_or(ProgramError::UnsupportedSysvar)?;
        let log_collector = ic.get_log_collector();
        let caller = ic
            .transaction_context
            .get_current_instruction_context()
            .and_then(|c| c.get_program_key().copied())
            .map_err(to_program_error)?;
        let signers = signers_seeds
            .iter()
            .map(|seeds| Pubkey::create_program_address(seeds, &caller))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| ProgramError::InvalidSeeds)?;
        ic.prepare_next_cpi_instruction(instruction.clone(), &signers)
            .map_err(to_program_error)?;

        // Caller's in-memory changes → runtime accounts, before the callee runs.
        let mut writable = Vec::new();
        {
            let tc = &ic.transaction_context;
            let caller_ctx = tc
                .get_current_instruction_context()
                .map_err(to_program_error)?;
            let callee_ctx = tc
                .get_next_instruction_context()
                .map_err(to_program_error)?;
            for ia in callee_ctx.instruction_accounts().iter() {
                let key = tc
                    .get_key_of_account_at_index(ia.index_in_transaction)
                    .map_err(to_program_error)?;
                let info_index = account_infos
                    .iter()
                    .position(|info| info.key == key)
                    .ok_or(ProgramError::NotEnoughAccountKeys)?;
                let info = &account_infos[info_index];
                let in_caller = caller_ctx
                    .get_index_of_account_in_instruction(ia.index_in_transaction)
                    .map_err(to_program_error)?;
                let mut account = caller_ctx
                    .try_borrow_instruction_account(in_caller)
                    .map_err(to_program_error)?;
                if account.get_lamports() != info.lamports() {
                    account
                        .set_lamports(info.lamports())
                        .map_err(to_program_error)?;
                }
                let data = info.try_borrow_data()?;
                if account.get_data() != &data[..] {
                    account
                        .set_data_from_slice(&data)
                        .map_err(to_program_error)?;
                }
                if account.get_owner() != info.owner {
                    account
                        .set_owner(info.owner.as_ref())
                        .map_err(to_program_error)?;
                }
                if ia.is_writable() {
                    writable.push((ia.index_in_transaction, info_index));
                }
            }
        }

        stable_log::program_invoke(
            &log_collector,
            &instruction.program_id,
            ic.get_stack_height(),
        );
        let mut units = 0;
        ic.process_instruction(&mut units, &mut ExecuteTimings::default())
            .map_err(to_program_error)?;

        // Callee's changes → the caller's `AccountInfo`s.
        let tc = &ic.transaction_context;
        let caller_ctx = tc
            .get_current_instruction_context()
            .map_err(to_program_error)?;
        for (index_in_transaction, info_index) in writable {
            let in_caller = caller_ctx
                .get_index_of_account_in_instruction(index_in_transaction)
                .map_err(to_program_error)?;
            let account = caller_ctx
                .try_borrow_instruction_account(in_caller)
                .map_err(to_program_error)?;
            let info = &account_infos[info_index];
            **info.try_borrow_mut_lamports()? = account.get_lamports();
            if info.owner != account.get_owner() {
                // The callee (e.g. the system program on `create_account`) may assign the
                // account; `AccountInfo` exposes its owner only by shared reference.
                // SAFETY: the owner lives in the serialized parameter buffer, which we own.
                #[allow(invalid_reference_casting)]
                unsafe {
                    std::ptr::write(
                        info.owner as *const Pubkey as *mut Pubkey,
                        *account.get_owner(),
                    )
                };
            }
            let new_data = account.get_data();
            if info.data_len() != new_data.len() {
                info.resize(new_data.len())?;
            }
            info.try_borrow_mut_data()?.copy_from_slice(new_data);
        }
        stable_log::program_success(&log_collector, &instruction.program_id);
        Ok(())
    }
}

fn to_program_error(err: InstructionError) -> ProgramError {
    ProgramError::try_from(err).unwrap_or(ProgramError::Custom(u32::MAX))
}

impl solana_sysvar::program_stubs::SyscallStubs for NativeStubs {
    fn sol_log(&self, message: &str) {
        match invoke_context() {
            Some(ic) => stable_log::program_log(&ic.get_log_collector(), message),
            None => println!("{message}"),
        }
    }

    fn sol_log_data(&self, fields: &[&[u8]]) {
        if let Some(ic) = invoke_context() {
            stable_log::program_data(&ic.get_log_collector(), fields);
        }
    }

    fn sol_log_compute_units(&self) {
        if let Some(ic) = invoke_context() {
            let remaining = ic.get_remaining();
            stable_log::program_log(
                &ic.get_log_collector(),
                &format!("Program consumption: {remaining} units remaining"),
            );
        }
    }

    fn sol_remaining_compute_units(&self) -> u64 {
        invoke_context().map(|ic| ic.get_remaining()).unwrap_or(0)
    }

    fn sol_invoke_signed(
        &self,
        instruction: &Instruction,
        account_infos: &[AccountInfo],
        signers_seeds: &[&[&[u8]]],
    ) -> ProgramResult {
        self.cpi(instruction, account_infos, signers_seeds)
    }

    fn sol_get_clock_sysvar(&self, var_addr: *mut u8) -> u64 {
        self.write_sysvar(SysvarCache::get_clock, var_addr)
    }

    fn sol_get_epoch_schedule_sysvar(&self, var_addr: *mut u8) -> u64 {
        self.write_sysvar(SysvarCache::get_epoch_schedule, var_addr)
    }

    fn sol_get_rent_sysvar(&self, var_addr: *mut u8) -> u64 {
        self.write_sysvar(SysvarCache::get_rent, var_addr)
    }

    fn sol_get_epoch_rewards_sysvar(&self, var_addr: *mut u8) -> u64 {
        self.write_sysvar(SysvarCache::get_epoch_rewards, var_addr)
    }

    fn sol_get_last_restart_slot(&self, var_addr: *mut u8) -> u64 {
        self.write_sysvar(SysvarCache::get_last_restart_slot, var_addr)
    }

    fn sol_get_sysvar(
        &self,
        sysvar_id_addr: *const u8,
        var_addr: *mut u8,
        offset: u64,
        length: u64,
    ) -> u64 {
        use solana_sdk_ids::sysvar;
        // SAFETY: the caller passes a pointer to a 32-byte sysvar id (the syscall's contract).
        let id = unsafe { &*(sysvar_id_addr as *const Pubkey) };
        match *id {
            sysvar::clock::ID => {
                self.write_sysvar_bytes(SysvarCache::get_clock, var_addr, offset, length)
            }
            sysvar::rent::ID => {
                self.write_sysvar_bytes(SysvarCache::get_rent, var_addr, offset, length)
            }
            sysvar::epoch_schedule::ID => {
                self.write_sysvar_bytes(SysvarCache::get_epoch_schedule, var_addr, offset, length)
            }
            sysvar::epoch_rewards::ID => {
                self.write_sysvar_bytes(SysvarCache::get_epoch_rewards, var_addr, offset, length)
            }
            sysvar::last_restart_slot::ID => self.write_sysvar_bytes(
                SysvarCache::get_last_restart_slot,
                var_addr,
                offset,
                length,
            ),
            _ => solana_instruction::error::UNSUPPORTED_SYSVAR,
        }
    }

    fn sol_get_return_data(&self) -> Option<(Pubkey, Vec<u8>)> {
        let ic = invoke_context()?;
        let (program_id, data) = ic.transaction_context.get_return_data();
        Some((*program_id, data.to_vec()))
    }

    fn sol_set_return_data(&self, data: &[u8]) {
        let Some(ic) = invoke_context() else { return };
        let tc = &mut ic.transaction_context;
        let Ok(caller) = tc
            .get_current_instruction_context()
            .and_then(|c| c.get_program_key().copied())
        else {
            return;
        };
        let _ = tc.set_return_data(caller, data.to_vec());
    }

    fn sol_get_stack_height(&self) -> u64 {
        invoke_context()
            .map(|ic| ic.get_stack_height() as u64)
            .unwrap_or(0)
    }
}
