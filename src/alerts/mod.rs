//! Alerting with no other infrastructure: rules evaluated on every
//! published snapshot, and notifications to webhooks, Slack or a command.

mod engine;
mod rule;

pub use engine::{Engine, Notification, Rule, Saved, SavedFiring};
pub use rule::{Condition, Measured, Op, Quantity};
