//! Running a plan: what gets built (`plan`), how one cell is built (`cell`), engines, workers and resuming (`schedule`), how a build becomes a record (`record`), and a whole run from options to results file (`execute`).

mod cell;
mod error;
pub mod execute;
pub mod plan;
pub mod project;
mod record;
mod schedule;
pub mod suite;

pub use error::{RunError, ENGINE_LOST, RUN_LABEL};
pub use cell::{apply_step, prefetch_bumps, unreachable_frontend};
pub use plan::*;
pub use record::{layer_records, new_results};
pub use schedule::{check_matrix, resume, run, Event, ProxyHandles, RunContext, RunEngine};
use cell::*;
use record::*;
use schedule::*;
use error::ms;
