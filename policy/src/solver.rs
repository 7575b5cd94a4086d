//! Z3 upkeep: each thread's solver kept between analyses, the budget of every check (time,
//! and optionally Z3's resource units), and the process-wide memory ceiling. What a question
//! asks is in `question`; how the questions are driven through the solver, in `verifier`.

use std::time::Duration;

use z3::{Params, Solver};

use crate::analysis::AnalysisOptions;

/// Sets Z3's memory ceiling (process-wide: Z3 has one allocator) when it changes. A check
/// that goes above it ends as `unknown` ("memout"), which is an UNKNOWN verdict. It is Z3's
/// high watermark, not `memory_max_size`: in Z3 4.8.12 reaching `memory_max_size` sets a
/// flag that is never cleared, and every later check of the process fails.
pub(crate) fn set_memory_limit(mib: u32) {
    static CURRENT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    if CURRENT.swap(mib, std::sync::atomic::Ordering::Relaxed) != mib {
        z3::set_global_param(
            "memory_high_watermark",
            &(u64::from(mib) * 1024 * 1024).min(u64::from(u32::MAX)).to_string(),
        );
    }
}

/// A solver with a budget on every check.
pub(crate) fn new_solver(budget: Budget) -> Solver {
    let solver = Solver::new();
    set_budget(&solver, budget);
    solver
}

/// What one solver check may spend: time, and optionally Z3's resource units.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Budget {
    pub time: Duration,
    pub resources: Option<u32>,
}

impl Budget {
    pub fn of(opts: &AnalysisOptions) -> Budget {
        Budget { time: opts.budget, resources: opts.resource_limit }
    }

    /// The same resource bound, with `time` left.
    pub fn with_time(self, time: Duration) -> Budget {
        Budget { time, ..self }
    }
}

pub(crate) fn set_budget(solver: &Solver, budget: Budget) {
    let mut params = Params::new();
    params.set_u32("timeout", u32::try_from(budget.time.as_millis()).unwrap_or(u32::MAX).max(1));
    // 0 is Z3's "unbounded"; a solver kept from an earlier analysis loses its old bound.
    params.set_u32("rlimit", budget.resources.unwrap_or(0));
    solver.set_params(&params);
}

/// A thread keeps its solver for the next analysis only when no check took this long.
pub(crate) const KEEP_SOLVER_BELOW: Duration = Duration::from_millis(50);

/// The least time worth giving a solver check; with less left, the question is UNKNOWN.
pub(crate) const MIN_CHECK: Duration = Duration::from_millis(1);

/// How many analyses a thread's solver serves before it is replaced (bounding whatever state
/// Z3 keeps between scopes).
pub(crate) const SOLVER_REUSE: u32 = 1000;

thread_local! {
    /// The thread's solver and its use count, kept between analyses: a new Z3 solver spends
    /// milliseconds on its first check, more than most questions take. Questions run in
    /// push/pop scopes, so its base scope stays empty.
    static SOLVER: std::cell::RefCell<Option<(Solver, u32)>> = const { std::cell::RefCell::new(None) };
}

/// Takes the thread's solver (or a new one) with the given budget.
pub(crate) fn take_solver(budget: Budget) -> (Solver, u32) {
    match SOLVER.with(|s| s.borrow_mut().take()) {
        Some((solver, uses)) if uses < SOLVER_REUSE => {
            set_budget(&solver, budget);
            (solver, uses + 1)
        }
        _ => (new_solver(budget), 1),
    }
}

/// Gives a solver back for the thread's next analysis.
pub(crate) fn return_solver(solver: Solver, uses: u32) {
    SOLVER.with(|s| *s.borrow_mut() = Some((solver, uses)));
}
