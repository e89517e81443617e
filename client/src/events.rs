//! Decoding the program's events from a transaction's logs (`Program data: <base64>` lines).

use anchor_lang::{AnchorDeserialize, Discriminator};
use base64::Engine;

macro_rules! events {
    ($($name:ident),* $(,)?) => {
        /// Every event the program emits.
        #[derive(Debug, Clone)]
        pub enum GpumeshEvent {
            $($name(gpumesh::events::$name),)*
        }

        impl GpumeshEvent {
            /// Decodes one event from its bytes (discriminator ‖ borsh), if it is one of ours.
            pub fn decode(bytes: &[u8]) -> Option<Self> {
                $(
                    let disc = <gpumesh::events::$name as Discriminator>::DISCRIMINATOR;
                    if let Some(mut rest) = bytes.strip_prefix(disc) {
                        return gpumesh::events::$name::deserialize(&mut rest).ok().map(Self::$name);
                    }
                )*
                None
            }
        }
    };
}

events!(
    MarketInitialized,
    MarketUpdated,
    WorkerRegistered,
    WorkerUpdated,
    StakeChanged,
    WorkerClosed,
    EarningsClaimed,
    OrderCreated,
    OrderToppedUp,
    OrderClosed,
    OrderCloseRequested,
    LeaseAssigned,
    ReceiptSettled,
    LeaseClosed,
    LeasePreempted,
    FeesBurned,
    WorkerSlashed,
    WorkerJailChanged,
    BreakerTripped,
    ReferencePriceUpdated,
    RewardsFunded,
    RewardsClaimed,
    TreasuryWithdrawn,
);

/// All gpumesh events in a transaction's logs, in order.
pub fn parse_logs(logs: &[String]) -> Vec<GpumeshEvent> {
    logs.iter()
        .filter_map(|line| line.strip_prefix("Program data: "))
        .flat_map(|fields| fields.split(' '))
        .filter_map(|b64| base64::engine::general_purpose::STANDARD.decode(b64).ok())
        .filter_map(|bytes| GpumeshEvent::decode(&bytes))
        .collect()
}
