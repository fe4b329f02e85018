//! The commands behind the binary: each reads its input, does its job through the library, and prints what happened; `Ok(false)` means a check failed.

mod check;
mod dispatch;
mod engine;
mod run;

pub use dispatch::dispatch;
