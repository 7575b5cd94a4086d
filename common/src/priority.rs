//! Lower scheduling priority for threads whose work may wait a moment: the administrator's
//! commit thread and policy workers, and the load generator's synthetic agents. Lowering
//! one's own priority needs no privilege.

use thread_priority::{
    set_thread_priority_and_policy, thread_native_id, NormalThreadSchedulePolicy, ThreadPriority, ThreadSchedulePolicy,
};

/// Sets the calling thread's nice value to `nice` (0–19; higher is lower priority), under
/// `SCHED_BATCH` when `batch` (CPU-bound work that never needs a quick wake-up), else
/// `SCHED_OTHER`. On failure the thread keeps its priority, which is slower for the others
/// but never wrong; the caller says so.
pub fn lower_current_thread(nice: u8, batch: bool) -> Result<(), String> {
    let nice = nice.min(19);
    // thread-priority maps its 0–99 scale linearly onto nice 19 … -20 (rounding down).
    let value = (99.0 * (1.0 - (f32::from(nice) + 20.0) / 39.0)).floor() as u8;
    let priority = value.try_into().map_or(ThreadPriority::Min, ThreadPriority::Crossplatform);
    let policy = ThreadSchedulePolicy::Normal(if batch {
        NormalThreadSchedulePolicy::Batch
    } else {
        NormalThreadSchedulePolicy::Other
    });
    set_thread_priority_and_policy(thread_native_id(), priority, policy).map_err(|e| format!("{e:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The thread's nice value as the kernel reports it (`/proc/thread-self/stat`, field 19).
    #[cfg(target_os = "linux")]
    fn current_nice() -> i32 {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
        // The command name (field 2) may hold spaces: count from its closing parenthesis.
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        rest.split(' ').nth(16).unwrap().parse().unwrap()
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_thread_gets_the_nice_value_asked_for() {
        // Raising a thread's priority needs privilege: only values at or below ours are asked for.
        let ours = current_nice();
        for (nice, batch) in [(5, false), (10, true), (19, false)].into_iter().filter(|(n, _)| i32::from(*n) >= ours) {
            let got = std::thread::spawn(move || {
                lower_current_thread(nice, batch).unwrap();
                current_nice()
            })
            .join()
            .unwrap();
            assert_eq!(got, i32::from(nice));
        }
    }
}
